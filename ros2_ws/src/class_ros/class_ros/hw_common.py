"""Shared by the hardware nodes: robot.yaml loading and the message factory for rclpy."""

from __future__ import annotations

from typing import Any

from rclpy.node import Node

from class_core.hardware.recording import load_robot_config


def robot_config(node: Node) -> dict[str, Any]:
    """Parameters `config` (path to config/robot.yaml) and `overrides` (key=value list)."""
    node.declare_parameter("config", "config/robot.yaml")
    node.declare_parameter("overrides", [""])
    path = node.get_parameter("config").value
    overrides = [o for o in node.get_parameter("overrides").value if o]
    return load_robot_config(path, overrides)


def now_ns(node: Node) -> int:
    return node.get_clock().now().nanoseconds
