"""ROS-free core of a scripted teleoperator: the task's scripted demonstrator at the VR node's topics.

It plays the person on the headset for the teleoperation bridge (``sim_teleop_core``): it publishes
what ``teleop_node`` publishes - end-effector targets on ``/class/teleop/target`` (PoseStamped),
the gripper command on ``/class/teleop/joy`` (``axes [gripper, grip=1]``, ``buttons [engaged, A,
B, RJ]``) and episode events on ``/class/episode/event`` - and nothing else:

- ``start`` (button A) once the bridge is seen and ``pause`` seconds after the previous episode
  (at least the importer's ``max_gap``, so that the previous episode's last target is not taken
  as the next one's first action); sent again if the bridge shows no new episode within
  ``resend_after`` seconds;
- one target per new observation of the running episode: the demonstrator's next absolute action
  (position + rot6d -> PoseStamped, gripper -> ``axes[0]`` through the bridge's ``GripperMapping``),
  stamped with that observation's stamp (as an action chunk is), so that a recording pairs every
  observation with the target computed from it whatever the latency and timer jitter;
- a success (the task's success held for ``settle_steps`` + 1 consecutive observations): the
  target for that observation, then ``stop``, ``success`` (button B), as ``TeleopMapper`` orders
  them and the importer reads them ("success right after stop labels the episode");
- a failed attempt - the operator's step limit ``max_steps``, the bridge's step limit, or an attempt
  listed in ``discard_attempts`` (given up after ``abandon_after`` steps: a deterministic failure for
  tests) - ends with ``stop``, ``discard`` (button RJ), which drops the episode in the importer.

How the operator sees the simulator: a person looks at the scene; a scripted demonstrator reads
privileged state (object poses). The bridge publishes that state on ``/class/sim/state`` (one
stamped JointState of named values per tick) and the operator rebuilds, in ``SimTaskView``, the
read-only task interface its demonstrator uses (``ee_pose``, ``object_state``, ``gripper_width``,
``table_top``). So the operator is a separate process holding no simulator of its own (a shadow copy
would drift from the bridge's the first time a target arrives late), the one simulator stays the
bridge's, and the demonstrator acts on exactly the state the bridge published with that stamp.

``tick(now)`` runs on a timer (starts, re-sends, idle Joy); ``on_message`` acts as soon as a new
state arrives, so a target is out well before the bridge's next step.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from class_core import ros_msgs as rm
from class_core.deploy.sim_teleop_core import (
    JOY_TOPIC,
    STATE_TOPIC,
    TARGET_TOPIC,
    GripperMapping,
    SimTeleopCore,
    decode_state,
)
from class_core.geometry import matrix_to_quat, rot6d_to_matrix
from class_core.topics import DIAGNOSTICS_TOPIC, EVENT_TOPIC

NS = rm.NS
PHASES = ("idle", "starting", "acting")


@dataclass
class ScriptedTeleopConfig:
    """The ``scripted_teleop`` section of a task config (``task``, ``gripper`` and ``frame_id`` come
    from the ``task`` and ``sim_teleop`` sections, see ``load_sim_teleop_setup``)."""

    task: str = ""  # the demonstrator's task name
    expert_kind: str = ""  # empty: the task's default demonstrator
    expert_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0  # attempt i's demonstrator draws its random parameters from seed + i
    n_episodes: int = 0  # successful demonstrations to record, then stop; 0 = forever
    max_attempts: int = 0  # 0 = no limit
    max_steps: int = 0  # steps per attempt before giving up (discard); 0 = the bridge's step limit
    settle_steps: int = 5  # success must hold this many further observations before 'success'
    discard_attempts: list[int] = field(default_factory=list)  # attempts given up on purpose
    abandon_after: int = 10  # steps into such an attempt
    pause: float = 1.0  # s between an episode's end and the next 'start'
    resend_after: float = 2.0  # s without a new episode after 'start' before sending it again
    frame_id: str = "sim"
    gripper: GripperMapping = field(default_factory=GripperMapping)

    def validate(self) -> None:
        if not self.task:
            raise ValueError("scripted_teleop: the task name is not set")
        ints = ("seed", "n_episodes", "max_attempts", "max_steps", "settle_steps", "abandon_after")
        if any(getattr(self, k) < 0 for k in ints) or any(i < 0 for i in self.discard_attempts):
            raise ValueError(f"scripted_teleop: {', '.join(ints)} and discard_attempts must be >= 0")
        if self.pause < 0 or not self.resend_after > 0:
            raise ValueError("scripted_teleop: pause must be >= 0 and resend_after > 0")
        self.gripper.validate()


class SimTaskView:
    """The read-only task interface a robosuite demonstrator uses, rebuilt from ``/class/sim/state``."""

    def __init__(self, name: str):
        self.name = name
        self.values: dict[str, np.ndarray] = {}

    def update(self, values: dict[str, np.ndarray]) -> None:
        self.values = values

    def _get(self, key: str) -> np.ndarray:
        if key not in self.values:
            raise KeyError(f"{STATE_TOPIC} has no {key!r} (it has {sorted(self.values)})")
        return self.values[key]

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        return self._get("ee_pos").copy(), self._get("ee_mat").reshape(3, 3).copy()

    def gripper_width(self) -> float:
        return float(self._get("gripper_width"))

    def object_state(self) -> dict[str, np.ndarray]:
        out = {}
        for key, v in self.values.items():
            if key.startswith("object."):
                name = key[len("object.") :]
                out[name] = v.reshape(3, 3).copy() if name.endswith("_mat") else v.copy()
        return out

    @property
    def table_top(self) -> np.ndarray:
        return self._get("table_top").copy()


def registry_expert(view: SimTaskView, cfg: ScriptedTeleopConfig, seed: int) -> Any:
    """The task's registered demonstrator, bound to the view (``Task.make_expert`` reads only the
    task's name; the demonstrator then reads the view as it would read the task)."""
    from sim_bridge.task import Task

    kind = cfg.expert_kind or None
    return Task.make_expert(cast(Task, view), seed=seed, kind=kind, **cfg.expert_kwargs)


@dataclass
class Attempt:
    index: int
    seed: int  # the demonstrator's
    episode: int  # the bridge's episode index
    start_ns: int
    steps: int = 0  # targets sent
    outcome: str = ""  # "" (running) | success | discard
    reason: str = ""  # success | step_limit | forced | bridge


class ScriptedTeleopCore:
    """See the module docstring. ``make_expert(view, cfg, seed) -> PolicyLike`` builds attempt i's
    demonstrator (default: the task's registered one)."""

    def __init__(
        self,
        factory: rm.MsgFactory,
        cfg: ScriptedTeleopConfig,
        make_expert: Callable[[SimTaskView, ScriptedTeleopConfig, int], Any] = registry_expert,
    ):
        cfg.validate()
        self.f, self.cfg = factory, cfg
        self.view = SimTaskView(cfg.task)
        self._make_expert = make_expert
        self.expert: Any = None
        self.attempts: list[Attempt] = []
        self.phase = "idle"
        self.resends = 0
        self.bad_messages = 0
        self.last_error = ""
        self._state: dict[str, np.ndarray] | None = None
        self._state_stamp = -1
        self._ended_at: int | None = None
        self._start_sent_at = 0
        self._episode_before = -1
        self._held = 0
        self._joy_stamp = -1  # one Joy per stamp, so that a target's gripper command is not shadowed

    @property
    def successes(self) -> int:
        return sum(a.outcome == "success" for a in self.attempts)

    @property
    def done(self) -> bool:
        """No further attempt will start (the current one, if any, still finishes)."""
        c = self.cfg
        return (c.n_episodes > 0 and self.successes >= c.n_episodes) or (
            c.max_attempts > 0 and len(self.attempts) >= c.max_attempts
        )

    @property
    def finished(self) -> bool:
        return self.done and self.phase == "idle"

    @staticmethod
    def subscriptions() -> dict[str, str]:
        return {STATE_TOPIC: "sensor_msgs/msg/JointState"}

    @staticmethod
    def publications() -> dict[str, str]:
        return {
            TARGET_TOPIC: "geometry_msgs/msg/PoseStamped",
            JOY_TOPIC: "sensor_msgs/msg/Joy",
            EVENT_TOPIC: "std_msgs/msg/String",
            DIAGNOSTICS_TOPIC: "diagnostic_msgs/msg/DiagnosticArray",
        }

    # --- messages out ------------------------------------------------------------------------
    def _joy(self, command: float, now: int, engaged: bool, button: str = "") -> tuple[str, Any]:
        self._joy_stamp = max(self._joy_stamp, now)
        axes = np.array([self.cfg.gripper.to_axis(command), 1.0 if engaged else 0.0])
        buttons = np.array([int(engaged)] + [int(button == b) for b in ("A", "B", "RJ")])
        return JOY_TOPIC, rm.numpy_to_joy(self.f, axes, buttons, now)

    def _events(self, *events: str) -> list[tuple[str, Any]]:
        return [(EVENT_TOPIC, rm.string_msg(self.f, e)) for e in events]

    # --- timer -------------------------------------------------------------------------------
    def tick(self, now: int) -> list[tuple[str, Any]]:
        if self.phase == "starting":
            if now - self._start_sent_at >= round(self.cfg.resend_after * NS):
                self.resends += 1
                self._start_sent_at = now
                return [self._joy(self.cfg.gripper.open, now, False, "A"), *self._events("start")]
            return []
        if self.phase == "acting":
            return []  # targets go out as observations arrive
        rested = self._ended_at is None or now - self._ended_at >= round(self.cfg.pause * NS)
        if self._state is not None and not self.done and rested:
            self.phase = "starting"
            self._start_sent_at = now
            self._episode_before = int(self._state["episode"])
            return [self._joy(self.cfg.gripper.open, now, False, "A"), *self._events("start")]
        return [] if now <= self._joy_stamp else [self._joy(self.cfg.gripper.open, now, False)]

    # --- observations in ---------------------------------------------------------------------
    def on_message(self, topic: str, msg: Any, now: int) -> list[tuple[str, Any]]:
        if topic != STATE_TOPIC:
            raise ValueError(f"scripted teleop does not read topic {topic}")
        try:
            values = decode_state(msg)
            stamp = rm.stamp_ns(msg)
            missing = {"episode", "running", "success", "truncated"} - set(values)
            if missing:
                raise rm.MessageError(f"{STATE_TOPIC} lacks {sorted(missing)}")
        except rm.MessageError as e:
            self.bad_messages += 1
            self.last_error = str(e)
            return []
        if stamp <= self._state_stamp:
            return []  # a repeat or out of order
        self._state, self._state_stamp = values, stamp
        if self.phase == "idle":
            return []
        return self._act(values, stamp, now)

    def _end(self, outcome: str, reason: str, now: int) -> None:
        att = self.attempts[-1]
        att.outcome, att.reason = outcome, reason
        self.phase = "idle"
        self._ended_at = now
        self.expert = None

    def _act(self, s: dict[str, np.ndarray], stamp: int, now: int) -> list[tuple[str, Any]]:
        """Answer the state of ``stamp``; what is sent carries that stamp (as an action chunk carries
        its observation's), so a recording pairs each observation with the target computed from it
        whatever the latency."""
        episode = int(s["episode"])
        if self.phase == "starting":
            if episode <= self._episode_before or not s["running"]:
                return []  # the bridge has not reset yet
            seed = self.cfg.seed + len(self.attempts)
            self.attempts.append(Attempt(len(self.attempts), seed, episode, now))
            self.view.update(s)
            self.expert = self._make_expert(self.view, self.cfg, seed)
            self.expert.reset()
            self._held = 0
            self.phase = "acting"
        att = self.attempts[-1]
        if episode != att.episode or not s["running"]:
            self._end("discard", "bridge", now)  # someone else ended or restarted the episode
            return []
        self.view.update(s)
        self._held = self._held + 1 if s["success"] else 0
        c = self.cfg
        if self._held > c.settle_steps:
            # this observation's target too, so that the episode's last sample has its action; one
            # Joy per stamp (B pressed), or the importer could pair the target with another's gripper
            out = self._target(stamp, button="B")
            self._end("success", "success", now)
            return out + self._events("stop", "success")
        reason = ""
        if s["truncated"] or (c.max_steps and att.steps >= c.max_steps):
            reason = "step_limit"
        elif att.index in c.discard_attempts and att.steps >= c.abandon_after:
            reason = "forced"
        if reason:
            self._end("discard", reason, now)
            return [self._joy(c.gripper.open, stamp, False, "RJ"), *self._events("stop", "discard")]
        att.steps += 1
        return self._target(stamp)

    def _target(self, stamp: int, button: str = "") -> list[tuple[str, Any]]:
        a = np.asarray(self.expert.select_action({}), dtype=np.float64)
        quat = matrix_to_quat(rot6d_to_matrix(a[3:9]))
        target = rm.numpy_to_pose_stamped(self.f, a[:3], quat, stamp, self.cfg.frame_id)
        return [(TARGET_TOPIC, target), self._joy(float(a[9]), stamp, True, button)]

    def diagnostics(self, now: int) -> Any:
        values = {
            "task": self.cfg.task,
            "phase": self.phase,
            "attempts": len(self.attempts),
            "successes": self.successes,
            "discarded": sum(a.outcome == "discard" for a in self.attempts),
            "attempt_steps": self.attempts[-1].steps if self.attempts else 0,
            "resends": self.resends,
            "bad_messages": self.bad_messages,
        }
        level = "warn" if self.last_error else "ok"
        message = self.last_error or ("done" if self.finished else self.phase)
        return rm.diagnostic_array(self.f, now, "class_scripted_teleop", level, message, values)


def run_teleop_loopback(
    bridge: SimTeleopCore,
    operator: ScriptedTeleopCore,
    f: rm.RosbagsFactory,
    start_ns: int,
    max_ticks: int,
    serialize: bool = True,
    on_message: Callable[[str, Any, int], None] | None = None,
) -> int:
    """Run the bridge and the operator against each other without ROS, one control period per tick
    (``now`` advances by ``bridge.dt`` from ``start_ns``), until the operator is finished or
    ``max_ticks`` have passed; returns the ticks run. Every message crosses as CDR bytes (with
    ``serialize``) and is handed to ``on_message(topic, msg, now)``: a recorder's view, e.g. for
    ``rosbag_import.write_bag``. Within a tick: the bridge steps and publishes, the operator answers
    what it receives, then the operator's timer runs."""
    routes = [(operator.subscriptions(), operator.on_message), (bridge.subscriptions(), bridge.on_message)]

    def deliver(msgs: list[tuple[str, Any]], now: int) -> None:
        queue = deque(msgs)
        while queue:
            topic, msg = queue.popleft()
            if serialize:
                msg = f.roundtrip(msg)
            if on_message is not None:
                on_message(topic, msg, now)
            for subs, handler in routes:
                if topic in subs:
                    queue.extend(handler(topic, msg, now))

    now = start_ns
    for k in range(max_ticks):
        if operator.finished:
            return k
        deliver(bridge.tick(now), now)
        deliver(operator.tick(now), now)
        now += bridge.dt
    return max_ticks
