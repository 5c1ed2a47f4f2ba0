"""class_core.ros_msgs.MsgFactory for rclpy: message classes from the generated packages."""

from __future__ import annotations

import importlib

from class_core.ros_msgs import MsgFactory, array_sequence


def _get_class(typename: str):
    pkg, sub, name = typename.split("/")
    return getattr(importlib.import_module(f"{pkg}.{sub}"), name)


def rclpy_factory() -> MsgFactory:
    return MsgFactory(_get_class, array_sequence, "rclpy", byte_as_bytes=True)


def msg_class(typename: str):
    return _get_class(typename)
