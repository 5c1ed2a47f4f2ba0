"""ROS-free core of ``sim_bridge_node``: a simulated task behind the robot's topics.

It publishes the task's observations on the topics of the topic table (``/class/obs/image``,
``/class/robot/ee_pose`` ...), episode events on ``/class/episode/event``, and executes the
action chunks it receives on ``/class/policy/action_chunk``, so a policy node cannot tell it
from the robot.

Two clocks:
- ``lockstep`` (default): simulation time is the ROS time (the node publishes ``/clock`` and
  both nodes run with ``use_sim_time``). The task steps only when the chunk holds the action
  planned for the current stamp, so results do not depend on the policy's latency and equal a
  direct rollout with ``select_action``. A lost message must never stall an episode: an episode
  starts only once a policy publishes on the chunk topic (``peers_ready``), and the pending
  observation is published again (same stamp) when no chunk answers within ``resend_after``
  seconds of the node's own clock; the policy core answers a repeated observation that it has
  already planned from with the same chunk.
- ``realtime``: stamps are the wall clock; each tick executes the latest point due (holding the
  last target when the chunk runs out), as a robot would. Before the first chunk, each tick
  publishes the unchanged observation with a fresh stamp, as a robot's sensors stream.
  Missed deadlines (real time only; counters on /diagnostics): a tick of a running episode is
  *late* when it comes more than 1.5 periods after the previous tick (the control loop lost a
  period), *starved* when no received point is due within 1.5 periods of it (the chunk that
  should cover it has not arrived: the policy answered later than one period after the
  observation). ``missed_deadlines`` counts the ticks that were either. By the planning rule the
  tick whose observation the next chunk is planned from holds the previous chunk's last point,
  one period old; that is not counted.

This module knows nothing of CLASS policies; it takes any ``sim_bridge`` task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from class_core import ros_msgs as rm
from class_core.deploy.chunk_queue import ChunkQueue
from class_core.deploy.policy_core import action_names_for
from class_core.topics import (
    ACTION_CHUNK_TOPIC,
    CLOCK_TOPIC,
    DEFAULT_OBS_SOURCES,
    DIAGNOSTICS_TOPIC,
    EVENT_TOPIC,
    ObsSources,
    build_messages,
    parse_sources,
)

NS = rm.NS
CLOCKS = ("lockstep", "realtime")
WAITING_FOR_POLICY = "waiting for a policy on " + ACTION_CHUNK_TOPIC


@dataclass
class SimBridgeConfig:
    task: str = "pusht"
    variant: str = ""  # empty = the task's default
    seed: int = 0  # episode i uses seed + i
    rate: float = 0.0  # Hz; 0 = the task's control_hz
    clock: str = "lockstep"
    n_episodes: int = 0  # 0 = run forever
    start_time: float = 1.0  # s, simulation time of the first stamp (stamps must be > 0)
    action_names: list[str] = field(default_factory=list)  # empty = action_names_for(action_dim)
    obs_sources: dict[str, Any] = field(default_factory=dict)  # merged over DEFAULT_OBS_SOURCES
    frame_id: str = "sim"
    resend_after: float = 2.0  # s of the caller's clock (lockstep); 0 = never publish again

    def validate(self) -> None:
        if self.clock not in CLOCKS:
            raise ValueError(f"sim bridge parameter 'clock' must be one of {CLOCKS}, got {self.clock!r}")
        if (
            self.seed < 0
            or self.n_episodes < 0
            or self.rate < 0
            or self.start_time <= 0
            or self.resend_after < 0
        ):
            raise ValueError(
                "sim bridge parameters seed, n_episodes, rate, resend_after must be >= 0 and start_time > 0"
            )


@dataclass
class EpisodeResult:
    seed: int
    success: bool
    steps: int


class SimBridgeCore:
    def __init__(self, task: Any, factory: rm.MsgFactory, cfg: SimBridgeConfig):
        cfg.validate()
        self.task, self.f, self.cfg = task, factory, cfg
        keys = [*task.image_keys, *task.proprio_keys]
        self.sources: ObsSources = parse_sources({**DEFAULT_OBS_SOURCES, **cfg.obs_sources}, keys)
        rate = cfg.rate or float(task.control_hz)
        if rate <= 0:
            raise ValueError(f"task {task.name!r} has no control_hz; set the 'rate' parameter")
        self.dt = round(NS / rate)
        self.action_names = action_names_for(int(task.action_dim), cfg.action_names)
        self.queue = ChunkQueue()
        self.results: list[EpisodeResult] = []
        self.sim_time = round(cfg.start_time * NS)
        self.stamp = 0  # stamp of the current observation
        self.episode = -1
        self.episode_start = 0
        self.running = False
        self.rejected_chunks = 0
        self.stale_chunks = 0  # repeats of chunks already superseded (answers to a re-publication)
        self.resends = 0
        self.missed_deadlines = 0  # real time: late or starved ticks (module docstring)
        self.late_ticks = 0
        self.starved_ticks = 0
        self._last_tick: int | None = None
        self.last_error = ""
        self.waiting = WAITING_FOR_POLICY
        self._pending: list[tuple[str, Any]] = []  # what the policy must answer, to publish again
        self._pending_since = 0  # caller's clock when it was last published
        self._pending_first = 0  # caller's clock when it was first published
        # observation -> its chunk through the middleware, ms of the caller's clock: in lock-step
        # from the first publication of an observation that waits for an answer to that answer's
        # arrival; in real time from the observation's stamp to the chunk's arrival
        self.latencies_ms: list[float] = []
        self._last_chunk_stamp = -(1 << 62)
        self._last_obs: dict[str, np.ndarray] = {}

    @property
    def done(self) -> bool:
        return self.cfg.n_episodes > 0 and len(self.results) >= self.cfg.n_episodes

    def publications(self) -> dict[str, str]:
        """topic -> message type the node must advertise."""
        out = {s[0].topic: s[0].msgtype for s in self.sources.values()}
        out.update(
            {EVENT_TOPIC: "std_msgs/msg/String", DIAGNOSTICS_TOPIC: "diagnostic_msgs/msg/DiagnosticArray"}
        )
        if self.cfg.clock == "lockstep":
            out[CLOCK_TOPIC] = "rosgraph_msgs/msg/Clock"
        return out

    def _now(self, now: int) -> int:
        return self.sim_time if self.cfg.clock == "lockstep" else now

    def _obs_messages(self, obs: dict[str, np.ndarray], stamp: int) -> list[tuple[str, Any]]:
        self.stamp = stamp
        self._last_obs = obs
        out: list[tuple[str, Any]] = []
        if self.cfg.clock == "lockstep":
            out.append((CLOCK_TOPIC, rm.clock_msg(self.f, stamp)))
        return out + build_messages(self.f, self.sources, obs, stamp, self.cfg.frame_id)

    def start_episode(self, now: int = 0) -> list[tuple[str, Any]]:
        """Reset the task with the next seed; publish ``start`` and the first observation."""
        if self.done:
            self.running = False
            return []
        self.episode += 1
        self.queue.clear()
        self._last_chunk_stamp = -(1 << 62)
        obs = self.task.reset(self.cfg.seed + self.episode)
        stamp = self._now(now)
        self.episode_start = stamp
        self.running = True
        # The clock first, so that the event and observations are not in the future.
        msgs = self._obs_messages(obs, stamp)
        clock = [m for m in msgs if m[0] == CLOCK_TOPIC]
        rest = [m for m in msgs if m[0] != CLOCK_TOPIC]
        return self._wait_for_answer(clock + [(EVENT_TOPIC, rm.string_msg(self.f, "start"))] + rest, now)

    def _wait_for_answer(self, out: list[tuple[str, Any]], now: int) -> list[tuple[str, Any]]:
        if self.cfg.clock == "lockstep":
            self._pending, self._pending_since, self._pending_first = out, now, now
        return out

    def on_message(self, topic: str, msg: Any, now: int = 0) -> list[tuple[str, Any]]:
        if topic != ACTION_CHUNK_TOPIC:
            raise ValueError(f"sim bridge does not read topic {topic}")
        try:
            chunk = rm.joint_trajectory_to_chunk(msg, self.action_names)
        except rm.MessageError as e:
            self.rejected_chunks += 1
            self.last_error = f"{ACTION_CHUNK_TOPIC}: {e}"
            return []
        spacing = np.diff(chunk.offsets)
        if len(spacing) and np.any(np.abs(spacing - self.dt) > self.dt // 10):
            # points meant for other times than the task's steps: lock-step would wait forever
            self.rejected_chunks += 1
            self.last_error = (
                f"{ACTION_CHUNK_TOPIC}: chunk points {int(spacing[0]) / 1e6:g} ms apart, but the task "
                f"steps every {self.dt / 1e6:g} ms: set the policy's control_hz to {NS / self.dt:g}"
            )
            return []
        if chunk.stamp < self.episode_start or not self.running:
            self.rejected_chunks += 1  # planned from the previous episode
            return []
        if chunk.stamp < self._last_chunk_stamp:
            # a repeat of a superseded chunk (answer to a re-published observation): pushing it
            # would replace the newer chunk's points with older plans
            self.stale_chunks += 1
            return []
        self._last_chunk_stamp = chunk.stamp
        if self.cfg.clock == "lockstep":
            if self._pending and chunk.stamp == self.stamp:
                self.latencies_ms.append((now - self._pending_first) / 1e6)
        else:
            self.latencies_ms.append((now - chunk.stamp) / 1e6)
        self.queue.push(chunk)
        return self.tick(now) if self.cfg.clock == "lockstep" else []

    def tick(self, now: int = 0, peers_ready: bool = True) -> list[tuple[str, Any]]:
        """Timer callback: step once if an action is due; handle the episode's end.

        ``peers_ready``: whether a policy publishes on the chunk topic (the node asks DDS); an
        episode starts only then, so that its first observation is not published to no one.
        ``now`` is the caller's clock; in lock-step it only times re-publications."""
        prev_tick, self._last_tick = self._last_tick, now
        if not self.running:
            if self.done:
                return []
            if not peers_ready:
                self.waiting = WAITING_FOR_POLICY
                return []
            self.waiting = ""
            return self.start_episode(now)
        if self.cfg.clock == "lockstep":
            action = self.queue.action_at(self.stamp, self.dt // 2)
            stamp = self.stamp + self.dt
        else:
            self._count_deadline(now, prev_tick)
            action = self.queue.latest_before(now + self.dt // 2)
            self.queue.drop_before(now)
            stamp = now
        if action is None and self.cfg.clock == "realtime":
            # a robot's sensors stream whether or not it moves: the unchanged world, stamped now
            return build_messages(self.f, self.sources, self._last_obs, now, self.cfg.frame_id)
        if action is None:
            if (
                self._pending
                and self.cfg.resend_after > 0
                and now - self._pending_since >= round(self.cfg.resend_after * NS)
            ):
                self.resends += 1
                self._pending_since = now
                return list(self._pending)
            return []
        # float64 as received: a float32 policy output survives the float64 message exactly
        obs, success, info = self.task.step(action)
        if self.cfg.clock == "lockstep":
            self.sim_time = stamp
        out = self._obs_messages(obs, stamp)
        if success or info.get("truncated", False):
            self.results.append(EpisodeResult(self.cfg.seed + self.episode, bool(success), int(info["step"])))
            event = (EVENT_TOPIC, rm.string_msg(self.f, "success" if success else "stop"))
            if self.cfg.clock == "lockstep":
                # No final observation: DDS does not order messages across topics, so a policy
                # could get it before the event and plan from it (and a diffusion policy would
                # draw noise for that plan, changing every later episode).
                out = [m for m in out if m[0] == CLOCK_TOPIC] + [event]
            else:
                # the event before the final observation, so that no one plans from it
                k = 1 if out and out[0][0] == CLOCK_TOPIC else 0
                out.insert(k, event)
            self.running = False
            self.queue.clear()
            self._pending = []
            if self.cfg.clock == "lockstep":
                self.sim_time += self.dt  # a fresh stamp for the next episode's first observation
            return out
        return self._wait_for_answer(out, now)

    def _count_deadline(self, now: int, prev_tick: int | None) -> None:
        """Real time, a tick of a running episode: late, starved, missed (module docstring)."""
        limit = self.dt * 3 // 2
        late = prev_tick is not None and now - prev_tick > limit
        i = int(np.searchsorted(self.queue.times, now + self.dt // 2, side="right")) - 1
        starved = i < 0 or now - int(self.queue.times[i]) > limit
        self.late_ticks += late
        self.starved_ticks += starved
        self.missed_deadlines += late or starved

    def success_rate(self) -> float:
        return float(np.mean([r.success for r in self.results])) if self.results else float("nan")

    def summary(self) -> dict[str, Any]:
        """The run so far as JSON-ready data: every finished episode and the latency through the
        middleware (``latencies_ms``), what the node writes to its ``results`` file."""
        lat = np.asarray(self.latencies_ms, dtype=np.float64)
        pct = {f"p{q}": float(np.percentile(lat, q)) for q in (50, 95, 99)} if lat.size else {}
        return {
            "task": self.task.name,
            "variant": getattr(self.task, "variant", ""),
            "clock": self.cfg.clock,
            "first_seed": self.cfg.seed,
            "episodes": len(self.results),
            "successes": sum(r.success for r in self.results),
            "episodes_detail": [
                {"seed": r.seed, "success": r.success, "steps": r.steps} for r in self.results
            ],
            "latency_ms": {"n": int(lat.size), "mean": float(lat.mean()) if lat.size else None, **pct},
            "rejected_chunks": self.rejected_chunks,
            "stale_chunks": self.stale_chunks,
            "resends": self.resends,
        }

    def diagnostics(self, now: int) -> Any:
        n = len(self.results)
        values = {
            "task": self.task.name,
            "variant": getattr(self.task, "variant", ""),
            "clock": self.cfg.clock,
            "episode": self.episode,
            "episodes_done": n,
            "successes": sum(r.success for r in self.results),
            "success_rate": f"{self.success_rate():.3f}" if n else "nan",
            "rejected_chunks": self.rejected_chunks,
            "stale_chunks": self.stale_chunks,
            "resends": self.resends,
            "queued_points": len(self.queue),
            "missed_deadlines": self.missed_deadlines,
            "late_ticks": self.late_ticks,
            "starved_ticks": self.starved_ticks,
        }
        level = "error" if self.last_error else "warn" if self.waiting else "ok"
        message = self.last_error or self.waiting or ("done" if self.done else "running")
        return rm.diagnostic_array(self.f, max(self._now(now), 0), "class_sim_bridge", level, message, values)
