"""scripted_teleop_node: the stand-in operator of simulated teleoperation.

A wiring diagram over class_core.deploy.scripted_teleop_core.ScriptedTeleopCore: it reads the sim
bridge's privileged state (/class/sim/state, sim_teleop_node) and publishes what teleop_node
publishes for a person on the headset: /class/teleop/target, /class/teleop/joy and
/class/episode/event (start, then stop + success for a kept demonstration or stop + discard for a
failed attempt). It holds no simulator: the task's scripted demonstrator reads the state the bridge
published.

Parameters: config (a task config such as config/lift.yaml: sections task, sim_teleop,
scripted_teleop), overrides (key=value list applied to it), min_subscribers (the first 'start' waits
until target, joy and event each have this many subscribers: the bridge, plus a recorder that must
not miss an episode's first messages), diagnostics_period (s), exit_ack_timeout (s).

With scripted_teleop.n_episodes (or max_attempts) reached, the node waits until its last messages
are acknowledged by every subscriber (at most exit_ack_timeout) and exits 0 by itself;
teleop_record.launch.py then shuts the launch down. SIGINT/SIGTERM end it at any moment (exit 0).
"""

from __future__ import annotations

import sys
from typing import Any

from rclpy.duration import Duration
from rclpy.node import Node

from class_core.deploy.scripted_teleop_core import ScriptedTeleopCore
from class_core.deploy.sim_teleop_core import STATE_TOPIC, load_sim_teleop_setup
from class_core.topics import DIAGNOSTICS_TOPIC
from class_ros.common import RELIABLE, Publishers, declare, run_node
from class_ros.msg_factory import msg_class, rclpy_factory

DEFAULT_RATE_HZ = 20.0  # the timer's rate when neither sim_teleop.rate nor the task's control_hz is set

# config: a task config (config/lift.yaml); overrides: key=value list applied to it; min_subscribers:
# subscribers each published topic needs before the first 'start'; diagnostics_period: s between
# /diagnostics messages; exit_ack_timeout: s to wait for the last messages' acknowledgements when done
DEFAULTS = {
    "config": "config/lift.yaml",
    "overrides": [""],
    "min_subscribers": 1,
    "diagnostics_period": 1.0,
    "exit_ack_timeout": 5.0,
}


class ScriptedTeleopNode(Node):
    def __init__(self) -> None:
        super().__init__("class_scripted_teleop")
        p = declare(self, DEFAULTS)
        setup = load_sim_teleop_setup(p["config"], [o for o in p["overrides"] if o])
        self.core = ScriptedTeleopCore(rclpy_factory(), setup.operator)
        self.min_subscribers = int(p["min_subscribers"])
        self.ack_timeout = float(p["exit_ack_timeout"])
        period = float(p["diagnostics_period"])
        if self.min_subscribers < 0 or not period > 0 or self.ack_timeout < 0:
            raise ValueError(
                "parameters 'min_subscribers' and 'exit_ack_timeout' must be >= 0, 'diagnostics_period' > 0"
            )
        self.out = Publishers(self, self.core.publications(), reliable=RELIABLE)
        self.commands = [pub for t, pub in self.out.pubs.items() if t != DIAGNOSTICS_TOPIC]
        for topic, typename in self.core.subscriptions().items():
            self.create_subscription(msg_class(typename), topic, self._on_state, RELIABLE)
        self.ready = False
        self._reported = 0  # attempts whose outcome was logged
        # the bridge's control rate: the timer only starts episodes, re-sends, and idles the Joy
        rate = setup.bridge.rate or float(setup.task.kwargs.get("control_hz", 0.0)) or DEFAULT_RATE_HZ
        self.create_timer(1.0 / rate, self._tick)
        self.create_timer(period, self._diag)
        c = setup.operator
        goal = f"{c.n_episodes} kept episode(s)" if c.n_episodes else "until stopped"
        self.get_logger().info(
            f"scripted operator for {c.task}: {goal}, attempts given up on purpose {c.discard_attempts}; "
            f"waiting for {STATE_TOPIC}"
        )

    def _now(self) -> int:
        return self.get_clock().now().nanoseconds

    def _gate(self) -> bool:
        """The first 'start' waits for the bridge and the recorder on every published topic."""
        if not self.ready:
            self.ready = all(pub.get_subscription_count() >= self.min_subscribers for pub in self.commands)
        return self.ready

    def _on_state(self, msg: Any) -> None:
        self.out.publish(self.core.on_message(STATE_TOPIC, msg, self._now()))
        self._after()

    def _tick(self) -> None:
        if self._gate():
            self.out.publish(self.core.tick(self._now()))
        self._after()

    def _after(self) -> None:
        for a in self.core.attempts[self._reported :]:
            if not a.outcome:
                break
            self.get_logger().info(
                f"attempt {a.index} (bridge episode {a.episode}, demonstrator seed {a.seed}): {a.outcome} "
                f"({a.reason}) after {a.steps} targets; {self.core.successes} kept"
            )
            self._reported += 1
        if self.core.finished:
            self._finish()

    def _finish(self) -> None:
        # the last events must reach the bridge and the recorder before this process goes
        acked = all(pub.wait_for_all_acked(Duration(seconds=self.ack_timeout)) for pub in self.commands)
        n = len(self.core.attempts)
        self.get_logger().info(
            f"done: {self.core.successes} kept episode(s) in {n} attempt(s)"
            + ("" if acked else f"; not every subscriber acknowledged within {self.ack_timeout} s")
        )
        raise SystemExit(0)

    def _diag(self) -> None:
        self.out.publish([(DIAGNOSTICS_TOPIC, self.core.diagnostics(self._now()))])


def main(args: list[str] | None = None) -> int:
    return run_node(ScriptedTeleopNode, "scripted_teleop_node", args=args)


if __name__ == "__main__":
    sys.exit(main())
