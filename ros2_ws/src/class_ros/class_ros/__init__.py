"""rclpy shells over class_core.deploy (every decision lives there, tested without ROS)."""
