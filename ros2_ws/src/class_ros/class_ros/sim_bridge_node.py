"""sim_bridge_node: a sim_bridge task behind the robot's topics.

A wiring diagram over class_core.deploy.SimBridgeCore. Parameters (config/ros/sim_bridge.yaml):
  task, variant, seed (episode i uses seed + i), rate (Hz, 0 = the task's), clock
  (lockstep: publishes /clock, run every node with use_sim_time:=true | realtime), n_episodes
  (0 = forever; the node exits when done), max_steps (episode step limit, 0 = the task's),
  task_kwargs (YAML mapping string: the task's options, as class-eval --task-arg; e.g.
  "{image_size: 84, control_hz: 20}"), obs_sources (YAML string), action_names,
  resend_after (s, lockstep: publish the pending observation again when no chunk answers),
  lockstep_period (s of wall time between lock-step ticks; the simulation advances only as fast as
  the policy answers), results (a JSON file, rewritten atomically after every episode: each
  episode's seed, success and steps, the success rate with its 95 % Wilson interval, and the
  latency observation -> chunk through ROS; empty = none).

An episode starts only once a policy publishes on /class/policy/action_chunk and listens on
/class/episode/event (DDS has matched both), so the first observation is not published to no one
while the policy is still loading; in lock-step an unanswered observation is published again.
"""

from __future__ import annotations

import json
import sys

from rclpy.node import Node

from class_core.deploy import SimBridgeConfig, SimBridgeCore
from class_core.io import atomic_write_text
from class_core.topics import EVENT_TOPIC
from class_ros.common import RELIABLE, RELIABLE_DEEP, Publishers, declare, run_node, yaml_param
from class_ros.msg_factory import msg_class, rclpy_factory

DEFAULTS = {
    "task": "pusht",
    "variant": "",
    "seed": 0,
    "rate": 0.0,
    "clock": "lockstep",
    "n_episodes": 0,
    "max_steps": 0,
    "task_kwargs": "",
    "obs_sources": "",
    "action_names": [""],
    "diagnostics_period": 1.0,
    "resend_after": 2.0,
    "lockstep_period": 0.005,
    "results": "",
}


class SimBridgeNode(Node):
    def __init__(self) -> None:
        # lock-step: this node is the clock, so it must not follow /clock itself
        super().__init__("class_sim_bridge")
        p = declare(self, DEFAULTS)
        from sim_bridge.task import make_task

        if int(p["max_steps"]) < 0:
            raise ValueError(f"parameter 'max_steps' must be >= 0, got {p['max_steps']}")
        kwargs = yaml_param(self, "task_kwargs", p["task_kwargs"])
        if int(p["max_steps"]) > 0:
            kwargs["max_steps"] = int(p["max_steps"])
        task = make_task(p["task"], p["variant"] or None, **kwargs)
        cfg = SimBridgeConfig(
            task=p["task"],
            variant=p["variant"],
            seed=int(p["seed"]),
            rate=float(p["rate"]),
            clock=p["clock"],
            n_episodes=int(p["n_episodes"]),
            action_names=[k for k in p["action_names"] if k],
            obs_sources=yaml_param(self, "obs_sources", p["obs_sources"]),
            resend_after=float(p["resend_after"]),
        )
        self.core = SimBridgeCore(task, rclpy_factory(), cfg)
        self.results_path = str(p["results"])
        self._reported = 0  # episodes logged so far
        self.out = Publishers(self, self.core.publications(), reliable=RELIABLE_DEEP)
        self.chunk_sub = self.create_subscription(
            msg_class("trajectory_msgs/msg/JointTrajectory"),
            "/class/policy/action_chunk",
            self._on_chunk,
            RELIABLE,
        )
        # lock-step: tick often (steps wait for chunks, not for the wall clock); realtime: every dt
        period = float(p["lockstep_period"]) if cfg.clock == "lockstep" else self.core.dt / 1e9
        if not period > 0:
            raise ValueError(f"parameter 'lockstep_period' must be positive, got {period}")
        self.create_timer(period, self._tick)
        self.create_timer(float(p["diagnostics_period"]), self._diag)
        self.get_logger().info(
            f"{task!r} at {1e9 / self.core.dt:.1f} Hz, clock={cfg.clock}, "
            f"publishing {sorted(self.core.publications())}"
        )

    def _now(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_chunk(self, msg) -> None:
        error = self.core.last_error
        self.out.publish(self.core.on_message("/class/policy/action_chunk", msg, self._now()))
        if self.core.last_error != error:
            self.get_logger().error(self.core.last_error)
        self._report()  # in lock-step a chunk steps the task at once, and may end an episode

    def _tick(self) -> None:
        # a policy publishes chunks and listens to episode events (it subscribes to those last)
        ready = (
            self.chunk_sub.get_publisher_count() > 0
            and self.out.pubs[EVENT_TOPIC].get_subscription_count() > 0
        )
        self.out.publish(self.core.tick(self._now(), peers_ready=ready))
        self._report()
        if self.core.done:
            self.get_logger().info("all episodes done")
            if not self.out.flush():
                self.get_logger().warning("some subscribers did not acknowledge the last messages")
            raise SystemExit(0)

    def _report(self) -> None:
        """Log (and write to ``results``) the episodes finished since the last call."""
        if len(self.core.results) == self._reported:
            return
        for r in self.core.results[self._reported :]:
            self.get_logger().info(
                f"episode seed={r.seed}: {'success' if r.success else 'failure'} after "
                f"{r.steps} steps; success rate {self.core.success_rate():.3f} over "
                f"{len(self.core.results)}"
            )
        self._reported = len(self.core.results)
        if self.results_path:
            self._write_results()

    def _write_results(self) -> None:
        from sim_bridge.rollout import wilson_interval

        out = self.core.summary()
        out["success_rate"] = out["successes"] / out["episodes"]
        out["ci95"] = list(wilson_interval(out["successes"], out["episodes"]))
        atomic_write_text(self.results_path, json.dumps(out, indent=2))

    def _diag(self) -> None:
        self.out.publish([("/diagnostics", self.core.diagnostics(self._now()))])


def main(args: list[str] | None = None) -> int:
    return run_node(SimBridgeNode, "sim_bridge_node", args=args)


if __name__ == "__main__":
    sys.exit(main())
