"""ros2_ttvos: TTVOS video object segmentation as a library and a ROS 2 node."""

__version__ = "0.1.0"
