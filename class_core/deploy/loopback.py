"""Run a simulation bridge core and a policy core against each other without ROS.

Every message crosses as CDR bytes (serialised and parsed with the rosbags message classes), as
it would through DDS, and ``now`` is the simulation clock carried by ``/clock`` - the same
wiring as ``policy.launch.py sim:=true`` with ``use_sim_time``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from class_core import ros_msgs as rm
from class_core.deploy.policy_core import PolicyCore
from class_core.deploy.sim_bridge_core import SimBridgeCore
from class_core.topics import ACTION_CHUNK_TOPIC, CLOCK_TOPIC, DIAGNOSTICS_TOPIC


@dataclass
class LoopbackStats:
    messages: int = 0
    bytes: int = 0
    chunks: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)
    diagnostics: list[Any] = field(default_factory=list)


def run_loopback(
    bridge: SimBridgeCore,
    policy: PolicyCore,
    f: rm.RosbagsFactory,
    serialize: bool = True,
    max_idle: int = 3,
    on_message: Callable[[str, Any], None] | None = None,
) -> LoopbackStats:
    """Run until the bridge has finished ``n_episodes`` (which must be > 0)."""
    if bridge.cfg.n_episodes <= 0:
        raise ValueError("run_loopback needs a bridge with n_episodes > 0")
    if bridge.cfg.clock != "lockstep":
        raise ValueError("run_loopback drives the simulation clock: use clock=lockstep")
    stats = LoopbackStats()
    subscribed = policy.subscriptions()
    queue: deque[tuple[str, Any]] = deque(bridge.start_episode(0))
    now = 0
    idle = 0
    while queue or not bridge.done:  # deliver what the last step published, too
        if not queue:
            out = bridge.tick(now) or policy.tick(now)
            if not any(t in (ACTION_CHUNK_TOPIC, CLOCK_TOPIC) for t, _ in out):
                idle += 1
                if idle > max_idle:
                    raise RuntimeError(
                        f"loopback stalled at t={now / rm.NS:.3f} s: policy status {policy.status}"
                    )
            else:
                idle = 0
            queue.extend(out)
            continue
        topic, msg = queue.popleft()
        if serialize:
            data = f.serialize(msg)
            stats.bytes += len(data)
            msg = f.deserialize(data, msg.__msgtype__)
        stats.messages += 1
        stats.by_topic[topic] = stats.by_topic.get(topic, 0) + 1
        if on_message is not None:
            on_message(topic, msg)
        if topic == CLOCK_TOPIC:
            now = rm.stamp_ns(msg.clock)
        elif topic == DIAGNOSTICS_TOPIC:
            stats.diagnostics.append(msg)
        if topic in subscribed:
            queue.extend(policy.on_message(topic, msg, now))
        if topic == ACTION_CHUNK_TOPIC:
            stats.chunks += 1
            queue.extend(bridge.on_message(topic, msg, now))
    return stats
