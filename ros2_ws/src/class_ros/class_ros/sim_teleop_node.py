"""sim_teleop_node: a simulated arm that an operator teleoperates, behind the robot's topics.

A wiring diagram over class_core.deploy.sim_teleop_core.SimTeleopCore (robosuite Lift / Stack):
it executes /class/teleop/target and /class/teleop/joy in real time, follows
/class/episode/event, and publishes what the robot's drivers publish (the camera under
realsense-ros names, /class/obs/image, /joint_states, /class/robot/ee_pose,
/class/gripper/state) plus /class/sim/state, the simulator's privileged state for a scripted
operator (scripted_teleop_node). teleop_record.launch.py sim:=true starts it.

Parameters: config (a task config such as config/lift.yaml: sections task, arm.limits, sim_teleop),
overrides (key=value list applied to it), diagnostics_period (s).

QoS as the drivers': images and CameraInfo reliable (camera_node), /joint_states,
/class/robot/ee_pose and /class/gripper/state best effort (arm_node, gripper_node);
/class/sim/state, /diagnostics and the three subscriptions reliable. Stamps are the wall clock
(no /clock, no use_sim_time). The core is not thread-safe: one single-threaded executor
(common.run_node) runs the control timer and every callback.

A separate node, not a mode of sim_bridge_node: that one is the policy's lock-step bridge with its
own parameters (task, clock, lockstep_period, obs_sources, action_names ...), none of which apply
here, and its own core; this one reads everything from the task config, as the drivers read
robot.yaml.
"""

from __future__ import annotations

import sys
from typing import Any

from rclpy.node import Node

from class_core.deploy.sim_teleop_core import (
    JOINT_STATES_TOPIC,
    SimTeleopCore,
    load_sim_teleop_setup,
)
from class_core.topics import DIAGNOSTICS_TOPIC, EVENT_TOPIC
from class_ros.common import RELIABLE, Publishers, declare, run_node
from class_ros.msg_factory import msg_class, rclpy_factory

EE_TOPIC = "/class/robot/ee_pose"
GRIPPER_TOPIC = "/class/gripper/state"
# the arm's and the gripper's streams are best effort, as arm_node and gripper_node publish them
SENSOR_TOPICS = {JOINT_STATES_TOPIC, EE_TOPIC, GRIPPER_TOPIC}

# config: a task config (config/lift.yaml); overrides: key=value list applied to it;
# diagnostics_period: s between /diagnostics messages
DEFAULTS = {"config": "config/lift.yaml", "overrides": [""], "diagnostics_period": 1.0}


class SimTeleopNode(Node):
    def __init__(self) -> None:
        super().__init__("class_sim_teleop")
        p = declare(self, DEFAULTS)
        setup = load_sim_teleop_setup(p["config"], [o for o in p["overrides"] if o])
        self.core = SimTeleopCore(setup.make_task(), rclpy_factory(), setup.bridge, setup.limits)
        self.out = Publishers(self, self.core.publications(), sensor_topics=SENSOR_TOPICS, reliable=RELIABLE)
        for topic, typename in self.core.subscriptions().items():
            self.create_subscription(msg_class(typename), topic, self._on_message(topic), RELIABLE)
        self.create_timer(self.core.dt / 1e9, self._tick)
        period = float(p["diagnostics_period"])
        if not period > 0:
            raise ValueError(f"parameter 'diagnostics_period' must be positive, got {period}")
        self.create_timer(period, self._diag)
        task = self.core.task
        self.get_logger().info(
            f"teleoperated {task.name} ({getattr(task, 'variant', '')}) at {1e9 / self.core.dt:.1f} Hz, "
            f"seeds from {setup.bridge.seed}; publishing {sorted(self.core.publications())}"
        )

    def _now(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_message(self, topic: str) -> Any:
        def callback(msg: Any) -> None:
            self.out.publish(self.core.on_message(topic, msg, self._now()))
            if topic == EVENT_TOPIC:
                self._report(str(msg.data))

        return callback

    def _tick(self) -> None:
        self.out.publish(self.core.tick(self._now()))

    def _report(self, event: str) -> None:
        if not self.core.episodes:
            return
        e = self.core.episodes[-1]
        state = "running" if self.core.running else f"{e.outcome} after {e.steps} steps"
        self.get_logger().info(f"event {event!r}: episode {self.core.episode} (seed {e.seed}) {state}")

    def _diag(self) -> None:
        self.out.publish([(DIAGNOSTICS_TOPIC, self.core.diagnostics(self._now()))])


def _close(node: SimTeleopNode) -> None:
    close = getattr(node.core.task, "close", None)
    if close is not None:
        close()


def main(args: list[str] | None = None) -> int:
    return run_node(SimTeleopNode, "sim_teleop_node", on_exit=_close, args=args)


if __name__ == "__main__":
    sys.exit(main())
