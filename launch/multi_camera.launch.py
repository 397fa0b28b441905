"""One ttvos_node per camera namespace, each reading <namespace>/<image>.

ros2 launch ros2_ttvos multi_camera.launch.py cameras:=front,rear image:=image_raw
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

from launch import LaunchDescription

SINGLE = Path(get_package_share_directory("ros2_ttvos")) / "launch" / "ttvos.launch.py"


def _nodes(context):
    cameras = [c.strip() for c in LaunchConfiguration("cameras").perform(context).split(",") if c.strip()]
    image = LaunchConfiguration("image").perform(context)
    return [
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(str(SINGLE)),
            launch_arguments={
                "namespace": camera,
                "image": image,
                "params_file": LaunchConfiguration("params_file"),
                "device": LaunchConfiguration("device"),
                "weights": LaunchConfiguration("weights"),
            }.items(),
        )
        for camera in cameras
    ]


def generate_launch_description() -> LaunchDescription:
    share = SINGLE.parent.parent
    return LaunchDescription(
        [
            DeclareLaunchArgument("cameras", default_value="front,rear", description="comma-separated namespaces"),
            DeclareLaunchArgument("image", default_value="image_raw", description="image topic inside a namespace"),
            DeclareLaunchArgument(
                "params_file", default_value=str(share / "config" / "ttvos.yaml"), description="node parameters"
            ),
            DeclareLaunchArgument("device", default_value="auto", description="auto, cpu or cuda:N"),
            DeclareLaunchArgument("weights", default_value="", description="checkpoint; empty = shipped weights"),
            OpaqueFunction(function=_nodes),
        ]
    )
