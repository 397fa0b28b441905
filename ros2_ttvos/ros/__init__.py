"""The ROS 2 layer: the only part of ros2_ttvos that imports rclpy or message types."""
