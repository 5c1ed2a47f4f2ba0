"""Franka arm: executes /class/policy/action_chunk (policy) or /class/teleop/target (teleop),
publishes /joint_states and /class/robot/ee_pose. Safety lives in class_core.hardware.arm."""

from __future__ import annotations

from rclpy.node import Node
from std_srvs.srv import Trigger

from class_core import ros_msgs as rm
from class_core.hardware.arm import ChunkRejected, FrankaArm
from class_ros.common import RELIABLE, SENSOR, run_node
from class_ros.hw_common import exit_logger, now_ns, robot_config
from class_ros.msg_factory import msg_class, rclpy_factory

JOINTS = [f"fr3_joint{i}" for i in range(1, 8)]
ACTION_NAMES = ["x", "y", "z", "r00", "r10", "r20", "r01", "r11", "r21", "gripper"]
# config: path to robot.yaml; overrides: key=value list applied to it; mode: policy | teleop
DEFAULTS = {"config": "config/robot.yaml", "overrides": [""], "mode": "policy", "publish_hz": 100.0}


class ArmNode(Node):
    def __init__(self) -> None:
        super().__init__("class_arm")
        params, cfg = robot_config(self, DEFAULTS)
        self.f = rclpy_factory()
        self.pub_grip_cmd = self.create_publisher(
            msg_class("std_msgs/msg/Float64"), "/class/gripper/command", RELIABLE
        )
        self.arm = FrankaArm(cfg["arm"], clock=lambda: now_ns(self) * 1e-9, gripper_cb=self.on_gripper)
        self.arm.connect()
        self.arm.home()
        mode = params["mode"]
        self.arm.watch_observations = mode == "policy"
        self.pub_js = self.create_publisher(msg_class("sensor_msgs/msg/JointState"), "/joint_states", SENSOR)
        self.pub_ee = self.create_publisher(
            msg_class("geometry_msgs/msg/PoseStamped"), "/class/robot/ee_pose", SENSOR
        )
        if mode == "policy":
            self.create_subscription(
                msg_class("trajectory_msgs/msg/JointTrajectory"),
                "/class/policy/action_chunk",
                self.on_chunk,
                RELIABLE,
            )
            self.create_subscription(
                msg_class("sensor_msgs/msg/Image"),
                "/class/obs/image",
                lambda m: self.arm.feed_observation(rm.stamp_ns(m) * 1e-9),
                SENSOR,
            )
        else:
            self.create_subscription(
                msg_class("geometry_msgs/msg/PoseStamped"), "/class/teleop/target", self.on_target, RELIABLE
            )
            self.create_subscription(
                msg_class("sensor_msgs/msg/Joy"), "/class/teleop/joy", self.on_joy, RELIABLE
            )
        self._grip = 0.0
        self.create_service(Trigger, "~/home", self.on_home)
        self.create_service(Trigger, "~/reset_fault", self.on_reset)
        self.create_timer(1.0 / params["publish_hz"], self.publish_state)
        self.arm.start()

    def on_gripper(self, g: float) -> None:
        self.pub_grip_cmd.publish(self.f.new("std_msgs/msg/Float64", data=float(g)))

    def on_chunk(self, msg) -> None:
        try:
            ch = rm.joint_trajectory_to_chunk(msg, ACTION_NAMES)
            self.arm.execute_chunk(ch.times * 1e-9, ch.actions)
        except (ChunkRejected, rm.MessageError) as e:
            self.get_logger().error(f"action chunk refused: {e}")

    def on_joy(self, msg) -> None:
        axes, _ = rm.joy_to_numpy(msg)
        self._grip = float(axes[0]) if len(axes) else 0.0

    def on_target(self, msg) -> None:
        pos, quat = rm.pose_to_numpy(msg)
        try:
            self.arm.execute_target(pos, quat, self._grip)
        except ChunkRejected as e:
            self.get_logger().error(f"teleop target refused: {e}")

    def publish_state(self) -> None:
        s = self.arm.read_state()
        stamp = now_ns(self)
        self.pub_js.publish(rm.numpy_to_joint_state(self.f, s.joint_pos, JOINTS, stamp))
        self.pub_ee.publish(rm.numpy_to_pose_stamped(self.f, s.ee_pos, s.ee_quat, stamp, "fr3_link0"))

    def on_home(self, req, res):
        self.arm.home()
        res.success, res.message = True, "homed"
        return res

    def on_reset(self, req, res):
        self.arm.reset_fault()
        res.success, res.message = True, "fault reset"
        return res


def _stop_arm(node: ArmNode) -> None:
    """The control loop ends and a running motion is stopped before the node goes."""
    node.arm.stop()
    exit_logger(node).info("arm stopped")


def main(args: list[str] | None = None) -> int:
    return run_node(ArmNode, "arm_node", on_exit=_stop_arm, args=args)
