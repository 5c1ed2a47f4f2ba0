"""Shared by the hardware nodes: robot.yaml loading and the message factory for rclpy."""

from __future__ import annotations

from typing import Any

from rclpy.node import Node

from class_core.hardware.recording import load_robot_config
from class_ros.common import declare


def robot_config(node: Node, defaults: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Declare ``defaults`` (a node's DEFAULTS, which must hold ``config`` and ``overrides``) and
    return (parameter values, robot.yaml resolved with the overrides)."""
    params = declare(node, defaults)
    overrides = [o for o in params["overrides"] if o]
    return params, load_robot_config(params["config"], overrides)


def now_ns(node: Node) -> int:
    return node.get_clock().now().nanoseconds
