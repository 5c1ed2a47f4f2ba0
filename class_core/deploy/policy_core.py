"""ROS-free core of ``policy_node``: observations in, action chunks and diagnostics out.

Planning rule: when an observation arrives whose stamp reaches the end of the chunk being
executed (``last stamp + T_a * dt``, minus half a period), predict a chunk from it and publish
its first ``T_a`` steps as a JointTrajectory stamped with the observation stamp, point k at
``k * dt``. This equals ``select_action`` with a queue of ``T_a`` steps when the executor runs in
lock-step (simulation), and gives the executor time-stamped targets on a real robot, where the
arm driver skips points already in the past. An observation older than ``max_obs_age`` is never
planned from.

An executor that got no answer publishes its observation again with the same stamp (the
simulation bridge in lock-step does): a repeated reference observation that was already planned
from is answered with the same chunk, and a repeated ``start`` with no plan since the last one
does not reset the policy twice.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from class_core import ros_msgs as rm
from class_core.topics import (
    ACTION_CHUNK_TOPIC,
    DEFAULT_OBS_SOURCES,
    DIAGNOSTICS_TOPIC,
    EVENT_TOPIC,
    ObsSources,
    SourceError,
    extract,
    parse_sources,
    sources_topics,
)

NS = rm.NS
MODES = ("nonparametric", "mlp", "diffusion")
# class_core.policy's ``kind`` attribute -> node mode
_KIND_TO_MODE = {
    "retrieval": "nonparametric",
    "nonparametric": "nonparametric",
    "mlp": "mlp",
    "diffusion": "diffusion",
}


class ChunkPolicy(Protocol):
    """The inference API of docs/interfaces.md (``select_action`` is not needed here)."""

    def reset(self) -> None: ...

    def predict_action_chunk(self, obs: Mapping[str, np.ndarray]) -> np.ndarray: ...


@dataclass
class PolicyCoreConfig:
    mode: str = "nonparametric"
    control_hz: float = 10.0
    n_action_steps: int = 0  # T_a; 0 = the policy's own (attribute n_action_steps), else T_p
    obs_keys: list[str] = field(default_factory=list)  # empty = the policy's (spec.image_keys + proprio_keys)
    action_names: list[str] = field(default_factory=list)  # empty = action_names_for(D)
    max_obs_age: float = 0.25  # s
    sync_tolerance: float = 0.0  # s; 0 = half a control period
    diagnostics_period: float = 1.0  # s
    obs_sources: dict[str, Any] = field(default_factory=dict)  # merged over DEFAULT_OBS_SOURCES
    history: int = 256  # messages kept per topic to match stamps

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"policy parameter 'mode' must be one of {MODES}, got {self.mode!r}")
        for name in ("control_hz", "max_obs_age", "diagnostics_period"):
            if not getattr(self, name) > 0:
                raise ValueError(f"policy parameter {name!r} must be positive, got {getattr(self, name)}")
        if self.n_action_steps < 0 or self.sync_tolerance < 0 or self.history < 1:
            raise ValueError("policy parameters n_action_steps, sync_tolerance must be >= 0 and history >= 1")


class PolicyCore:
    def __init__(
        self, policy: ChunkPolicy, factory: rm.MsgFactory, cfg: PolicyCoreConfig, name: str = "class_policy"
    ):
        cfg.validate()
        self.policy, self.f, self.cfg, self.name = policy, factory, cfg, name
        kind = _KIND_TO_MODE.get(str(getattr(policy, "kind", "")), None)
        if kind is not None and kind != cfg.mode:
            raise ValueError(
                f"policy parameter mode={cfg.mode!r} but the loaded artifact is a {kind!r} policy"
            )
        spec = getattr(policy, "spec", None)
        declared = [*getattr(spec, "image_keys", []), *getattr(spec, "proprio_keys", [])] if spec else []
        keys = list(cfg.obs_keys) or declared
        if cfg.obs_keys and declared and sorted(cfg.obs_keys) != sorted(declared):
            raise ValueError(f"policy parameter obs_keys={cfg.obs_keys} but the artifact reads {declared}")
        if not keys:
            raise ValueError(
                "no observation keys: set the 'obs_keys' parameter (the policy does not declare them)"
            )
        self.obs_keys = keys
        self.sources: ObsSources = parse_sources({**DEFAULT_OBS_SOURCES, **cfg.obs_sources}, keys)
        self.topics = sources_topics(self.sources)
        # The reference topic's stamp is the observation stamp: the first image, else the first key.
        images = [p[0].topic for p in self.sources.values() if p[0].kind == "image"]
        self.ref_topic = images[0] if images else self.sources[keys[0]][0].topic
        self.dt = round(NS / cfg.control_hz)
        self.tol = round(cfg.sync_tolerance * NS) if cfg.sync_tolerance > 0 else self.dt // 2
        self.max_age = round(cfg.max_obs_age * NS)
        self.n_action_steps = cfg.n_action_steps or int(getattr(policy, "n_action_steps", 0) or 0)
        self.action_names: list[str] = list(cfg.action_names)
        self._hist: dict[str, collections.deque[tuple[int, Any]]] = {
            t: collections.deque(maxlen=cfg.history) for t in self.topics
        }
        self.next_plan = -(1 << 62)
        self.last_plan_stamp = -(1 << 62)
        self._rejected_stamp = -(1 << 62)
        self._next_diag = -(1 << 62)
        self.stats: dict[str, Any] = {
            "published": 0, "resent": 0, "stale_skipped": 0, "unsynced_skipped": 0, "errors": 0, "resets": 0,
            "inference_ms_last": float("nan"), "inference_ms_max": 0.0, "inference_ms_sum": 0.0,
            "latency_ms_last": float("nan"), "latency_ms_max": 0.0, "obs_age_ms_last": float("nan"),
        }  # fmt: skip
        self.status = ("warn", "waiting for observations")
        self.active = True  # until an episode event says stop; a robot without events runs always
        self._started = False  # a start event was handled
        self._published_at_start = 0
        self._last_chunk: Any = None  # the last published chunk message, for repeated observations
        self._repeated = False  # the newest reference message repeats a stamp already received

    # --- inputs ------------------------------------------------------------------------------
    def subscriptions(self) -> dict[str, str]:
        """topic -> message type the node must subscribe to."""
        return {**self.topics, EVENT_TOPIC: "std_msgs/msg/String"}

    def on_message(self, topic: str, msg: Any, now: int) -> list[tuple[str, Any]]:
        if topic == EVENT_TOPIC:
            self.on_event(str(msg.data), now)
            return self.try_plan(now)
        if topic not in self._hist:
            raise SourceError(f"policy core does not read topic {topic}")
        try:
            stamp = rm.stamp_ns(msg)
        except rm.MessageError as e:
            self._error(f"{topic}: {e}")
            return []
        hist = self._hist[topic]
        seen = any(s == stamp for s, _ in hist)
        if topic == self.ref_topic:
            self._repeated = seen
        if not seen:
            hist.append((stamp, msg))
        return self.try_plan(now)

    def on_event(self, event: str, now: int) -> None:
        if event in ("stop", "success", "discard"):
            self.active = False  # no plans from the final observation of an episode
            return
        if event != "start":
            return
        if self._started and self.active and self.stats["published"] == self._published_at_start:
            return  # a repeat of the start just handled (the executor published it again)
        self._started = True
        self._published_at_start = self.stats["published"]
        self.active = True
        self.policy.reset()
        self.stats["resets"] += 1
        # If the new episode's first observation came before the event and was planned from,
        # keep that plan; otherwise plan from the next observation.
        if self.last_plan_stamp < now - self.tol:
            self.next_plan = now - self.tol

    def tick(self, now: int) -> list[tuple[str, Any]]:
        """Timer callback: retry planning and publish diagnostics when due."""
        out = self.try_plan(now)
        if now >= self._next_diag:
            self._next_diag = now + round(self.cfg.diagnostics_period * NS)
            out.append((DIAGNOSTICS_TOPIC, self.diagnostics(now)))
        return out

    # --- planning ----------------------------------------------------------------------------
    def _match(self, topic: str, ref: int) -> tuple[Any, bool]:
        """(message nearest ``ref`` within tolerance or None, whether a later one may still come)."""
        best, best_d = None, self.tol + 1
        hist = self._hist[topic]
        for stamp, msg in hist:
            d = abs(stamp - ref)
            if d < best_d:
                best, best_d = msg, d
        return best, not hist or hist[-1][0] < ref + self.tol

    def try_plan(self, now: int) -> list[tuple[str, Any]]:
        ref_hist = self._hist[self.ref_topic]
        if not ref_hist or not self.active:
            return []
        ref, _ = ref_hist[-1]
        if ref == self.last_plan_stamp and self._repeated and self._last_chunk is not None:
            self._repeated = False  # the executor did not get the chunk: the same one again
            self.stats["resent"] += 1
            return [(ACTION_CHUNK_TOPIC, self._last_chunk)]
        if ref < self.next_plan or ref <= self._rejected_stamp or ref == self.last_plan_stamp:
            return []
        msgs: dict[str, Any] = {}
        for topic in self.topics:
            msg, pending = self._match(topic, ref)
            if msg is None:
                if not pending:
                    self._reject(ref, "unsynced_skipped", f"no message on {topic} within the sync tolerance")
                return []  # wait for it
            msgs[topic] = msg
        age = now - ref
        self.stats["obs_age_ms_last"] = age / 1e6
        if age > self.max_age:
            self._reject(ref, "stale_skipped", f"observation {age / 1e6:.1f} ms old > max_obs_age")
            return []
        try:
            obs = {k: extract(k, parts, msgs) for k, parts in self.sources.items()}
            t0 = time.perf_counter()
            chunk = np.asarray(self.policy.predict_action_chunk(obs))
            infer = time.perf_counter() - t0
            if chunk.ndim != 2:
                raise ValueError(f"predict_action_chunk returned shape {chunk.shape}, expected (T_p, D)")
            t_a = self.n_action_steps or chunk.shape[0]
            if t_a > chunk.shape[0]:
                raise ValueError(f"n_action_steps {t_a} exceeds the chunk length T_p = {chunk.shape[0]}")
            if len(self.action_names) != chunk.shape[1]:
                self.action_names = action_names_for(chunk.shape[1], self.cfg.action_names)
            msg = rm.chunk_to_joint_trajectory(self.f, chunk[:t_a], self.action_names, ref, self.dt)
        except (rm.MessageError, SourceError, ValueError) as e:
            self._rejected_stamp = ref
            self._error(str(e))
            return []
        self.last_plan_stamp = ref
        self._last_chunk = msg
        self._repeated = False
        self.next_plan = ref + t_a * self.dt - self.tol
        s = self.stats
        s["published"] += 1
        s["inference_ms_last"] = infer * 1e3
        s["inference_ms_max"] = max(s["inference_ms_max"], infer * 1e3)
        s["inference_ms_sum"] += infer * 1e3
        s["latency_ms_last"] = age / 1e6 + infer * 1e3
        s["latency_ms_max"] = max(s["latency_ms_max"], s["latency_ms_last"])
        self.status = ("ok", "publishing action chunks")
        return [(ACTION_CHUNK_TOPIC, msg)]

    def _reject(self, ref: int, counter: str, why: str) -> None:
        self._rejected_stamp = ref
        self.stats[counter] += 1
        self.status = ("warn", why)

    def _error(self, why: str) -> None:
        self.stats["errors"] += 1
        self.status = ("error", why)

    # --- outputs -----------------------------------------------------------------------------
    def diagnostics(self, now: int) -> Any:
        s = self.stats
        values = {
            "mode": self.cfg.mode,
            "obs_keys": ",".join(self.obs_keys),
            "n_action_steps": self.n_action_steps or "T_p",
            "control_hz": self.cfg.control_hz,
            **{
                k: (f"{v:.3f}" if isinstance(v, float) else v)
                for k, v in s.items()
                if k != "inference_ms_sum"
            },
            "inference_ms_mean": f"{s['inference_ms_sum'] / max(1, s['published']):.3f}",
        }
        level, message = self.status
        return rm.diagnostic_array(self.f, max(now, 0), f"{self.name}: policy", level, message, values)


def action_names_for(dim: int, names: Sequence[str] | None = None) -> list[str]:
    """Action dimension names: given ones (checked) or the defaults for Push-T / end-effector actions."""
    if names:
        if len(names) != dim:
            raise ValueError(f"{len(names)} action names for action dimension {dim}")
        return list(names)
    if dim == 2:
        return ["x", "y"]
    if dim == 10:
        return ["x", "y", "z", "r0", "r1", "r2", "r3", "r4", "r5", "gripper"]
    return [f"a{i}" for i in range(dim)]
