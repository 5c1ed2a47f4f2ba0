"""Meta Quest teleoperation: /class/teleop/target (PoseStamped), /class/teleop/joy (Joy: axes
[trigger, grip], buttons [engaged, A, B, RJ]) and /class/episode/event (String) at teleop.rate_hz.
The mapping lives in class_core.hardware.teleop.

trace:=<file> replays a recorded oculus_reader logcat trace instead of the headset (adb), one
frame per tick, looping; fake_hardware:=true without a trace replays a built-in one
(hw_common.builtin_trace_lines: engage, a 3 cm circle, the trigger, no buttons)."""

from __future__ import annotations

import numpy as np
from rclpy.node import Node

from class_core import ros_msgs as rm
from class_core.hardware.teleop import ControllerSample, LogcatReader, TeleopMapper
from class_ros.common import RELIABLE, SENSOR, run_node
from class_ros.hw_common import TraceReplay, builtin_trace_lines, exit_logger, now_ns, robot_config
from class_ros.msg_factory import msg_class, rclpy_factory

# config: path to robot.yaml; overrides: key=value list applied to it; trace: a logcat trace to
# replay instead of the headset; fake_hardware: replay the built-in trace when no trace is given
DEFAULTS = {"config": "config/robot.yaml", "overrides": [""], "trace": "", "fake_hardware": False}


class TeleopNode(Node):
    def __init__(self) -> None:
        super().__init__("class_teleop")
        params, cfgs = robot_config(self, DEFAULTS)
        cfg, lim = cfgs["teleop"], cfgs["arm"].limits
        self.f = rclpy_factory()
        self.mapper = TeleopMapper(cfg, clip=lambda p: np.clip(p, lim.lo, lim.hi))
        self.reader: LogcatReader | TraceReplay | None = None
        if params["trace"]:
            with open(params["trace"]) as fh:
                self.reader = TraceReplay(fh.read().splitlines(), cfg.hand)
            self.get_logger().info(f"replaying {len(self.reader.samples)} frames of {params['trace']}")
        elif params["fake_hardware"]:
            self.reader = TraceReplay(builtin_trace_lines(cfg.rate_hz, cfg.hand), cfg.hand)
            self.get_logger().info("fake hardware: replaying the built-in controller trace")
        elif cfg.source == "adb":
            self.reader = LogcatReader(cfg.hand, serial=cfg.adb_serial).start()
        self._bridge: ControllerSample | None = None
        if self.reader is None and cfg.source == "topic":
            # an existing VR bridge: controller pose + Joy(axes [trigger, grip])
            self.create_subscription(
                msg_class("geometry_msgs/msg/PoseStamped"), "/vr/controller/pose", self.on_bridge_pose, SENSOR
            )
        self.ee = None
        self.create_subscription(
            msg_class("geometry_msgs/msg/PoseStamped"),
            "/class/robot/ee_pose",
            lambda m: setattr(self, "ee", rm.pose_to_numpy(m)),
            SENSOR,
        )
        self.pub_target = self.create_publisher(
            msg_class("geometry_msgs/msg/PoseStamped"), "/class/teleop/target", RELIABLE
        )
        self.pub_joy = self.create_publisher(msg_class("sensor_msgs/msg/Joy"), "/class/teleop/joy", RELIABLE)
        self.pub_ev = self.create_publisher(
            msg_class("std_msgs/msg/String"), "/class/episode/event", RELIABLE
        )
        self.create_timer(1.0 / cfg.rate_hz, self.tick)

    def on_bridge_pose(self, msg) -> None:
        from class_core.geometry import quat_to_matrix

        pos, quat = rm.pose_to_numpy(msg)
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = quat_to_matrix(quat), pos
        self._bridge = ControllerSample(rm.stamp_ns(msg) * 1e-9, m, 1.0, 0.0, {})

    def tick(self) -> None:
        if self.ee is None:  # engaging needs the arm's pose; a replay waits for it
            return
        s = self.reader.latest() if self.reader is not None else self._bridge
        if s is None:
            return
        out = self.mapper.step(s, *self.ee)
        stamp = now_ns(self)
        b = [int(out.engaged)] + [int(s.buttons.get(k, False)) for k in ("A", "B", "RJ")]
        self.pub_joy.publish(rm.numpy_to_joy(self.f, np.array([out.gripper, s.grip]), np.array(b), stamp))
        if out.engaged and out.pos is not None:
            self.pub_target.publish(rm.numpy_to_pose_stamped(self.f, out.pos, out.quat, stamp, "fr3_link0"))
        for ev in out.events:
            self.pub_ev.publish(rm.string_msg(self.f, ev))
            self.get_logger().info(f"episode event: {ev}")


def _stop_reader(node: TeleopNode) -> None:
    if node.reader is not None:
        node.reader.stop()  # ends adb logcat
        exit_logger(node).info("teleop stopped")


def main(args: list[str] | None = None) -> int:
    return run_node(TeleopNode, "teleop_node", on_exit=_stop_reader, args=args)
