"""Gripper (WSG-50 or Franka Hand): /class/gripper/command (Float64 action in [0, 1]) in,
/class/gripper/state (JointState, width in metres) out at the control rate."""

from __future__ import annotations

from rclpy.node import Node

from class_core import ros_msgs as rm
from class_core.hardware.gripper import make_gripper
from class_ros.common import RELIABLE, SENSOR, run_node
from class_ros.hw_common import robot_config
from class_ros.msg_factory import msg_class, rclpy_factory

# config: path to robot.yaml; overrides: key=value list applied to it
DEFAULTS = {"config": "config/robot.yaml", "overrides": [""]}


class GripperNode(Node):
    def __init__(self) -> None:
        super().__init__("class_gripper")
        cfg = robot_config(self, DEFAULTS)[1]["gripper"]
        self.f = rclpy_factory()
        self.g = make_gripper(cfg, clock=lambda: self.get_clock().now().nanoseconds * 1e-9)
        if self.g is None:
            raise SystemExit("gripper.kind is none: nothing to run")
        self.g.start()
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
        if self.g.stamp_s > 0:
            stamp = int(self.g.stamp_s * 1e9)
            self.pub.publish(rm.numpy_to_joint_state(self.f, [self.g.width_m], ["gripper_width"], stamp))


def main(args: list[str] | None = None) -> int:
    return run_node(GripperNode, "gripper_node", on_exit=lambda node: node.g.stop(), args=args)
