"""Decisions of the policy node core: staleness, stamp matching, events, diagnostics, mode checks."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="rosbags (robot extra) provides the message classes")

from class_core import ros_msgs as rm  # noqa: E402
from class_core.deploy import ChunkQueue, PolicyCore, PolicyCoreConfig  # noqa: E402
from class_core.topics import build_messages, parse_sources  # noqa: E402

MS = 1_000_000
F = rm.RosbagsFactory("jazzy")


class Fixed:
    n_action_steps = 4

    def __init__(self):
        self.calls = []
        self.resets = 0

    def reset(self):
        self.resets += 1

    def predict_action_chunk(self, obs):
        self.calls.append({k: np.array(v) for k, v in obs.items()})
        return np.tile(obs["agent_pos"], (16, 1)).astype(np.float32) + np.arange(16)[:, None]


def obs_msgs(stamp, pos=(1.0, 2.0)):
    sources = parse_sources({"image": {"topic": "/class/obs/image", "kind": "image"},
                             "agent_pos": {"topic": "/class/robot/ee_pose", "kind": "pose_xy"}})  # fmt: skip
    obs = {"image": np.full((8, 8, 3), 9, np.uint8), "agent_pos": np.array(pos, np.float32)}
    return {t: F.roundtrip(m) for t, m in build_messages(F, sources, obs, stamp)}


def core(**kw):
    cfg = PolicyCoreConfig(obs_keys=["image", "agent_pos"], control_hz=10.0, max_obs_age=0.2, **kw)
    return PolicyCore(Fixed(), F, cfg)


def test_plans_only_when_matched_and_fresh():
    c = core()
    m = obs_msgs(1000 * MS)
    assert c.on_message("/class/obs/image", m["/class/obs/image"], 1000 * MS) == []  # pose not yet there
    out = c.on_message("/class/robot/ee_pose", m["/class/robot/ee_pose"], 1010 * MS)
    assert [t for t, _ in out] == ["/class/policy/action_chunk"]
    tc = rm.joint_trajectory_to_chunk(F.roundtrip(out[0][1]))
    assert tc.stamp == 1000 * MS and tc.names == ("x", "y") and len(tc.actions) == 4
    np.testing.assert_array_equal(tc.offsets, np.arange(4) * 100 * MS)
    np.testing.assert_array_equal(tc.actions[:, 0], [1, 2, 3, 4])
    # the next observations are inside the executed chunk: no plan until t + T_a * dt
    for k in (1, 2, 3):
        m = obs_msgs((1000 + 100 * k) * MS)
        for t, msg in m.items():
            assert c.on_message(t, msg, (1000 + 100 * k) * MS) == []
    m = obs_msgs(1400 * MS, pos=(5.0, 6.0))
    c.on_message("/class/robot/ee_pose", m["/class/robot/ee_pose"], 1400 * MS)
    out = c.on_message("/class/obs/image", m["/class/obs/image"], 1400 * MS)
    assert len(out) == 1 and c.policy.calls[-1]["agent_pos"].tolist() == [5.0, 6.0]


def test_never_plans_from_stale_observations_and_reports_it():
    c = core()
    m = obs_msgs(1000 * MS)
    for t, msg in m.items():
        assert c.on_message(t, msg, 1300 * MS) == []  # 300 ms old > 200 ms
    assert c.stats["stale_skipped"] == 1 and not c.policy.calls
    diag = c.tick(1300 * MS)[-1][1]
    assert diag.status[0].level == 1 and "max_obs_age" in diag.status[0].message
    assert rm.diagnostic_values(F.roundtrip(diag))["stale_skipped"] == "1"


def test_unsynchronised_topics_are_skipped():
    c = core()
    img = obs_msgs(1000 * MS)["/class/obs/image"]
    pose_late = obs_msgs(1200 * MS)["/class/robot/ee_pose"]  # 200 ms apart > 50 ms tolerance
    c.on_message("/class/obs/image", img, 1200 * MS)
    assert c.on_message("/class/robot/ee_pose", pose_late, 1210 * MS) == []
    assert c.stats["unsynced_skipped"] == 1


def test_events_pause_and_reset():
    c = core()
    c.on_message("/class/episode/event", rm.string_msg(F, "stop"), 0)
    for t, msg in obs_msgs(1000 * MS).items():
        assert c.on_message(t, msg, 1000 * MS) == []
    out = c.on_message("/class/episode/event", rm.string_msg(F, "start"), 1000 * MS)
    assert c.policy.resets == 1 and len(out) == 1  # planned from the waiting observation


def test_mode_and_key_checks():
    p = Fixed()
    p.kind = "retrieval"
    with pytest.raises(ValueError, match="mode='diffusion' but the loaded artifact is a 'nonparametric'"):
        PolicyCore(p, F, PolicyCoreConfig(mode="diffusion", obs_keys=["image"]))
    with pytest.raises(ValueError, match="no observation keys"):
        PolicyCore(Fixed(), F, PolicyCoreConfig())
    with pytest.raises(ValueError, match="mode"):
        PolicyCore(Fixed(), F, PolicyCoreConfig(mode="bc", obs_keys=["image"]))


def test_chunk_queue_replaces_future_points():
    q = ChunkQueue()
    q.push(rm.TimedChunk(0, np.arange(4) * 10, np.arange(4.0)[:, None], ("a",)))
    q.push(rm.TimedChunk(20, np.arange(3) * 10, 10 + np.arange(3.0)[:, None], ("a",)))
    np.testing.assert_array_equal(q.times, [0, 10, 20, 30, 40])
    np.testing.assert_array_equal(q.actions[:, 0], [0, 1, 10, 11, 12])
    assert q.action_at(21, 5)[0] == 10 and q.action_at(25, 4) is None
    assert q.latest_before(39)[0] == 11 and q.latest_before(-1) is None


# --- lock-step start-up and lost messages (the bridge and the policy core together) ----------


def _bridge_and_policy(resend_after: float = 1.0):
    pytest.importorskip("gym_pusht", reason="gym-pusht (sim extra) runs Push-T")
    from class_core.deploy import SimBridgeConfig, SimBridgeCore
    from sim_bridge.task import make_task

    task = make_task("pusht", "fixed-color", max_steps=20)
    cfg = SimBridgeConfig(task="pusht", seed=3, n_episodes=1, resend_after=resend_after)
    bridge = SimBridgeCore(task, F, cfg)
    policy = PolicyCore(Fixed(), F, PolicyCoreConfig(obs_keys=["image", "agent_pos"], control_hz=10.0))
    return bridge, policy


def _deliver(policy: PolicyCore, out, now: int, drop: str | None = None):
    """Hand the bridge's messages to the policy (its clock is /clock); return the policy's output."""
    answers = []
    for topic, msg in out:
        if topic == drop or topic not in policy.subscriptions():
            continue
        answers += policy.on_message(topic, F.roundtrip(msg), now)
    return answers


def test_bridge_waits_for_a_policy_before_the_first_episode():
    bridge, _ = _bridge_and_policy()
    assert bridge.tick(0, peers_ready=False) == [] and bridge.episode == -1
    assert "waiting for a policy" in rm_status(bridge)
    out = bridge.tick(1, peers_ready=True)
    assert [t for t, _ in out][:2] == ["/clock", "/class/episode/event"] and bridge.episode == 0


def rm_status(bridge) -> str:  # type: ignore[no-untyped-def]
    return bridge.diagnostics(0).status[0].message


def test_lost_observation_is_published_again_and_the_episode_goes_on():
    bridge, policy = _bridge_and_policy(resend_after=1.0)
    first = bridge.tick(0)
    sim_now = bridge.sim_time
    assert _deliver(policy, first, sim_now, drop="/class/obs/image") == []  # the image was lost
    assert bridge.tick(500 * MS) == []  # not yet: 0.5 s < resend_after
    again = bridge.tick(1000 * MS)
    assert bridge.resends == 1
    assert [t for t, _ in again] == [t for t, _ in first]  # the same messages, the same stamp
    chunk = _deliver(policy, again, sim_now)
    assert [t for t, _ in chunk] == ["/class/policy/action_chunk"]
    assert policy.policy.resets == 1  # the repeated start event did not reset twice
    stepped = bridge.on_message(*chunk[0], 1000 * MS)
    assert any(t == "/class/obs/image" for t, _ in stepped)  # the episode goes on


def test_lost_chunk_is_answered_again_with_the_same_chunk():
    bridge, policy = _bridge_and_policy(resend_after=1.0)
    first = bridge.tick(0)
    lost = _deliver(policy, first, bridge.sim_time)
    assert len(lost) == 1 and policy.stats["published"] == 1  # published, then lost on the way
    again = bridge.tick(1000 * MS)
    answer = _deliver(policy, again, bridge.sim_time)
    assert [t for t, _ in answer] == ["/class/policy/action_chunk"]
    assert policy.stats["published"] == 1 and policy.stats["resent"] == 1
    assert F.serialize(answer[0][1]) == F.serialize(lost[0][1])  # the same chunk, not a new plan
    assert len(policy.policy.calls) == 1
    out = bridge.on_message(*answer[0], 1000 * MS)
    assert any(t == "/class/obs/image" for t, _ in out)  # the bridge stepped


def test_stale_repeat_of_a_superseded_chunk_is_ignored():
    bridge, policy = _bridge_and_policy(resend_after=1.0)
    c1 = _deliver(policy, bridge.tick(0), bridge.sim_time)
    out = bridge.on_message(*c1[0], 0)
    answers = _deliver(policy, out, bridge.sim_time)
    for _ in range(10):  # step through the T_a = 4 points of the first chunk
        if answers:
            break
        out = bridge.tick(0)
        answers = _deliver(policy, out, bridge.sim_time)
    assert [t for t, _ in answers] == ["/class/policy/action_chunk"], "no second chunk after T_a steps"
    bridge.on_message(*answers[0], 0)
    newer = bridge.queue.times.copy()
    assert bridge.on_message(*c1[0], 0) == [] and bridge.stale_chunks == 1  # the first chunk, late
    np.testing.assert_array_equal(bridge.queue.times, newer)  # its old points did not come back


def test_realtime_bridge_streams_observations_before_the_first_chunk():
    pytest.importorskip("gym_pusht", reason="gym-pusht (sim extra) runs Push-T")
    from class_core.deploy import SimBridgeConfig, SimBridgeCore
    from sim_bridge.task import make_task

    cfg = SimBridgeConfig(task="pusht", seed=3, n_episodes=1, clock="realtime")
    bridge = SimBridgeCore(make_task("pusht", "fixed-color", max_steps=20), F, cfg)
    first = dict(bridge.tick(1000 * MS))
    assert "/class/obs/image" in first  # the episode's first observation
    for k in (1, 2):  # no chunk came (lost, or the policy is still loading): the camera streams on
        out = dict(bridge.tick((1000 + 100 * k) * MS))
        assert rm.stamp_ns(out["/class/obs/image"]) == (1000 + 100 * k) * MS
        assert bytes(out["/class/obs/image"].data) == bytes(first["/class/obs/image"].data)


def test_chunk_spaced_for_another_rate_is_rejected_with_the_parameter_to_fix():
    """A policy at 10 Hz against a 20 Hz task: no point is ever due at a step, and lock-step would
    wait forever. The bridge rejects such chunks and names the policy's control_hz."""
    bridge, _ = _bridge_and_policy()
    first = bridge.tick(0)
    stamp = next(m for t, m in first if t == "/class/obs/image").header.stamp
    stamp_ns = stamp.sec * 1_000_000_000 + stamp.nanosec
    slow = rm.chunk_to_joint_trajectory(F, np.zeros((8, 2)), ["x", "y"], stamp_ns, 2 * bridge.dt)
    assert bridge.on_message("/class/policy/action_chunk", slow, 0) == []
    assert bridge.rejected_chunks == 1 and len(bridge.queue) == 0
    assert "set the policy's control_hz to 10" in bridge.last_error, bridge.last_error
    assert bridge.diagnostics(0).status[0].level == 2  # ERROR


def test_bridge_summary_holds_outcomes_and_latency():
    """What sim_bridge_node writes to its results file: every finished episode, and the time from
    publishing an observation that waits for a plan to that plan's arrival (caller's clock)."""
    bridge, policy = _bridge_and_policy()
    out, now = bridge.tick(0), 0
    for _ in range(200):
        answers = _deliver(policy, out, bridge.sim_time)
        if answers:
            now += 30 * MS  # the plan arrives 30 ms after the observation went out
            out = bridge.on_message(*answers[0], now)
        else:
            out = bridge.tick(now)
        if bridge.done:
            break
    s = bridge.summary()
    assert s["episodes"] == 1 and s["first_seed"] == 3
    assert s["episodes_detail"] == [{"seed": 3, "success": False, "steps": 20}]
    assert s["latency_ms"]["n"] == len(policy.policy.calls) >= 20 // 4
    assert s["latency_ms"]["p50"] == pytest.approx(30.0)
