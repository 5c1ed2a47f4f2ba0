"""Records the topic table into one rosbag2 per session where ``ros2 bag record`` is missing
(teleop_record.launch.py picks it). Raw (serialized) subscriptions, stamped with the receive
time, written by class_core.hardware.bag_recorder.RecorderCore, which takes every decision:
topics, QoS, episode-event bookkeeping, storage; SIGINT/SIGTERM close the bag (metadata.yaml)."""

from __future__ import annotations

import os
import sys
from typing import Any

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from class_core.hardware.bag_recorder import RecorderCore, Subscribe, receive_stamp
from class_core.hardware.recording import bag_dir
from class_ros.common import run_node
from class_ros.hw_common import robot_config
from class_ros.msg_factory import msg_class

# config: path to robot.yaml (its recording section); overrides: key=value list applied to it;
# output: the bag folder (empty: <recording.data_root>/<date>/<prefix>_<time>); depth: queue depth
# of each subscription; max_backlog_mb: messages waiting for the disk beyond this are dropped
DEFAULTS = {
    "config": "config/robot.yaml",
    "overrides": [""],
    "output": "",
    "depth": 100,
    "max_backlog_mb": 1024,
}
DISCOVERY_PERIOD_S = 0.2


def _qos(q) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=q.depth,
        reliability=ReliabilityPolicy.RELIABLE
        if q.reliability == "reliable"
        else ReliabilityPolicy.BEST_EFFORT,
        durability=(
            DurabilityPolicy.TRANSIENT_LOCAL
            if q.durability == "transient_local"
            else DurabilityPolicy.VOLATILE
        ),
    )


class RecorderNode(Node):
    def __init__(self) -> None:
        super().__init__("class_recorder")
        params, cfg = robot_config(self, DEFAULTS)
        rec = cfg["recording"]
        out = params["output"] or str(bag_dir(rec))
        self.core = RecorderCore(
            rec,
            out,
            distro=os.environ.get("ROS_DISTRO", "jazzy"),
            depth=params["depth"],
            max_backlog_bytes=int(params["max_backlog_mb"]) << 20,
            log=self.log,
        )
        self.core.open()
        self.sim_time = bool(self.get_parameter("use_sim_time").value)
        self.subs: dict[str, Any] = {}
        self.discover()
        self.create_timer(DISCOVERY_PERIOD_S, self.discover)

    def log(self, level: str, text: str) -> None:
        # one call site per severity: rclpy refuses a call site whose severity changes
        if level == "error":
            self.get_logger().error(text)
        elif level == "warn":
            self.get_logger().warning(text)
        else:
            self.get_logger().info(text)

    def discover(self) -> None:
        seen = {
            t: [
                (i.topic_type, i.qos_profile.reliability.name, i.qos_profile.durability.name)
                for i in self.get_publishers_info_by_topic(t)
            ]
            for t in self.core.topics
        }
        for s in self.core.discover(seen):
            self.subscribe(s)

    def subscribe(self, s: Subscribe) -> None:
        old = self.subs.pop(s.topic, None)
        if old is not None:
            self.destroy_subscription(old)

        def on_raw(raw: bytes, info: dict) -> None:  # two arguments: rclpy passes the message info
            t = receive_stamp(
                info.get("received_timestamp", 0), self.get_clock().now().nanoseconds, self.sim_time
            )
            self.core.on_message(s.topic, t, raw)

        self.subs[s.topic] = self.create_subscription(
            msg_class(s.msgtype), s.topic, on_raw, _qos(s.qos), raw=True
        )
        self.get_logger().info(f"recording {s.topic} ({s.qos.reliability}, {s.qos.durability})")


def _close(node: RecorderNode) -> None:
    # the context is shut down by now: the node's logger could no longer reach /rosout
    def log(level: str, text: str) -> None:
        print(f"[{level.upper()}] [class_recorder]: {text}", file=sys.stderr, flush=True)

    node.core.log = node.core.writer.log = log
    node.core.close()


def main(args: list[str] | None = None) -> int:
    return run_node(RecorderNode, "recorder_node", on_exit=_close, args=args)
