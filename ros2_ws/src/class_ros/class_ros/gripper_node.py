"""Gripper (WSG-50 or Franka Hand): /class/gripper/command (Float64 action in [0, 1]) in,
/class/gripper/state (JointState, width in metres) out at the control rate.

fake_hardware:=true: a WSG-50 is the protocol-level loopback server of
class_core.hardware.wsg50, run in this process on a free port of 127.0.0.1; a Franka Hand is
franky-sim's on 127.0.0.1 (robot.launch.py starts it)."""

from __future__ import annotations

import dataclasses

from rclpy.node import Node

from class_core import ros_msgs as rm
from class_core.hardware.gripper import make_gripper
from class_core.hardware.wsg50 import WSG50LoopbackServer
from class_ros.common import RELIABLE, SENSOR, run_node
from class_ros.hw_common import exit_logger, robot_config
from class_ros.msg_factory import msg_class, rclpy_factory

# config: path to robot.yaml; overrides: key=value list applied to it; fake_hardware: the
# WSG-50 loopback server (or franky-sim's Franka Hand) instead of a gripper
DEFAULTS = {"config": "config/robot.yaml", "overrides": [""], "fake_hardware": False}


class GripperNode(Node):
    def __init__(self) -> None:
        super().__init__("class_gripper")
        params, cfgs = robot_config(self, DEFAULTS)
        cfg = cfgs["gripper"]
        self.f = rclpy_factory()
        self.g = None
        self.fake: WSG50LoopbackServer | None = None
        if params["fake_hardware"] and cfg.kind == "wsg50":
            self.fake = WSG50LoopbackServer(max_width_mm=cfg.open_width_m * 1e3).start()
            cfg = dataclasses.replace(cfg, host="127.0.0.1", port=self.fake.port)
        elif params["fake_hardware"] and cfg.kind == "franka_hand":
            cfg = dataclasses.replace(cfg, host="127.0.0.1")
        self.g = make_gripper(cfg, clock=lambda: self.get_clock().now().nanoseconds * 1e-9)
        if self.g is None:
            self.stop_gripper()
            raise SystemExit("gripper.kind is none: nothing to run")
        self.g.start()
        self.get_logger().info(
            f"gripper started: {cfg.kind} at {cfg.host}:{cfg.port}"
            + (" (fake: WSG-50 loopback server)" if self.fake is not None else "")
        )
        self.pub = self.create_publisher(
            msg_class("sensor_msgs/msg/JointState"), "/class/gripper/state", SENSOR
        )
        self.create_subscription(
            msg_class("std_msgs/msg/Float64"),
            "/class/gripper/command",
            lambda m: self.g.set_action(m.data),
            RELIABLE,
        )
        self.create_timer(1.0 / cfg.rate_hz, self.publish)

    def publish(self) -> None:
        if self.g is not None and self.g.stamp_s > 0:
            stamp = int(self.g.stamp_s * 1e9)
            self.pub.publish(rm.numpy_to_joint_state(self.f, [self.g.width_m], ["gripper_width"], stamp))

    def stop_gripper(self) -> None:
        """Stops the control loop and disconnects from the gripper, then the fake one."""
        if self.g is not None:
            self.g.stop()
            self.g = None
            exit_logger(self).info("gripper stopped")
        if self.fake is not None:
            self.fake.stop()
            self.fake = None


def main(args: list[str] | None = None) -> int:
    return run_node(GripperNode, "gripper_node", on_exit=lambda node: node.stop_gripper(), args=args)
