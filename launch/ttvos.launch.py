"""Start one ttvos_node on a camera.

ros2 launch ros2_ttvos ttvos.launch.py image:=/camera/image_raw namespace:=front device:=cuda:0
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

SHARE = Path(get_package_share_directory("ros2_ttvos"))


def generate_launch_description() -> LaunchDescription:
    arguments = [
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        DeclareLaunchArgument("image", default_value="image", description="input image topic (remapped from image)"),
        DeclareLaunchArgument(
            "params_file", default_value=str(SHARE / "config" / "ttvos.yaml"), description="node parameters (YAML)"
        ),
        DeclareLaunchArgument("device", default_value="auto", description="auto, cpu or cuda:N"),
        DeclareLaunchArgument("weights", default_value="", description="checkpoint; empty = shipped weights"),
        DeclareLaunchArgument(
            "large_message_profile",
            default_value="true",
            choices=["true", "false"],
            description="use the package's Fast DDS profile (16 MB shared memory) so 480p images are not dropped",
        ),
    ]
    profile = SetEnvironmentVariable(
        "FASTDDS_DEFAULT_PROFILES_FILE",
        str(SHARE / "config" / "fastdds.xml"),
        condition=IfCondition(LaunchConfiguration("large_message_profile")),
    )
    node = Node(
        package="ros2_ttvos",
        executable="ttvos_node",
        name="ttvos",
        namespace=LaunchConfiguration("namespace"),
        parameters=[
            LaunchConfiguration("params_file"),
            {"device": LaunchConfiguration("device"), "weights": LaunchConfiguration("weights")},
        ],
        remappings=[("image", LaunchConfiguration("image"))],
        output="screen",
    )
    return LaunchDescription([*arguments, profile, node])
