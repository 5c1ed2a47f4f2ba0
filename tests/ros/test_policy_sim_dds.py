"""policy_node and sim_bridge_node as separate processes, talking over DDS (Fast DDS, loopback).

Lock-step: whole Push-T episodes for fixed seeds equal the direct rollout of the same artifact,
step for step: the same chunks, the same agent trajectory, the same outcome. The policy node
takes seconds to load while the bridge is up at once, so these runs also cover the start-up race
(the bridge waits for a policy, and publishes an unanswered observation again).
Realtime: an episode runs on the wall clock and the policy reports its latency on /diagnostics.
"""

from __future__ import annotations

import re
import signal

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 unavailable: rclpy does not import")
from ros_helpers import NodeProcess  # noqa: E402

from class_core import ros_msgs as rm

FIRST_SEED = 100
EPISODES = 2
MAX_STEPS = 40
DEPTH = 2000  # keep every message of the run: nothing may be dropped by the probe's queue


def direct_rollout(model, n: int = EPISODES, max_steps: int = MAX_STEPS):
    """select_action with a queue of T_a steps, in this process: chunks, agent positions, outcomes."""
    from class_core.policy import load
    from sim_bridge.task import make_task

    policy = load(model)
    task = make_task("pusht", "fixed-color", max_steps=max_steps)
    chunks, agent, results = [], [], []
    for i in range(n):
        obs = task.reset(FIRST_SEED + i)
        policy.reset()
        agent.append(obs["agent_pos"].copy())
        queue: list[np.ndarray] = []
        while True:
            if not queue:
                chunk = policy.predict_action_chunk(obs)[: policy.n_action_steps]
                chunks.append(np.asarray(chunk, np.float64))
                queue = list(chunk)
            obs, success, info = task.step(queue.pop(0))
            if success or info["truncated"]:
                break  # lock-step publishes no final observation
            agent.append(obs["agent_pos"].copy())
        results.append((FIRST_SEED + i, bool(success), int(info["step"])))
    task.close()
    return chunks, np.array(agent), results


def episode_results(log: str) -> list[tuple[int, bool, int]]:
    found = re.findall(r"episode seed=(\d+): (success|failure) after (\d+) steps", log)
    return [(int(s), r == "success", int(n)) for s, r, n in found]


def unique_chunks(received) -> list:  # type: ignore[no-untyped-def]
    """The chunks in order, one per stamp: a chunk sent again (answer to an observation the bridge
    published again because the first answer was slow) must repeat the first exactly."""
    by_stamp: dict[int, rm.TimedChunk] = {}
    for _, m in received:
        c = rm.joint_trajectory_to_chunk(m, ["x", "y"])
        if c.stamp in by_stamp:
            np.testing.assert_array_equal(
                c.actions, by_stamp[c.stamp].actions, err_msg="a resent chunk differs"
            )
        else:
            by_stamp[c.stamp] = c
    return list(by_stamp.values())


# retrieval, and diffusion (stochastic: its noise must follow the same draws); the launch test
# covers mlp as well
@pytest.mark.parametrize("mode", ["nonparametric", "diffusion"])
def test_lockstep_episodes_over_dds_equal_the_direct_rollout(
    mode, demo_models, probe, node_processes, tmp_path
):
    model = demo_models[mode]
    chunks = probe.subscribe("/class/policy/action_chunk", "trajectory_msgs/msg/JointTrajectory", DEPTH)
    poses = probe.subscribe("/class/robot/ee_pose", "geometry_msgs/msg/PoseStamped", DEPTH)
    bridge = NodeProcess.node(
        "class_ros", "sim_bridge_node", tmp_path,
        params={"task": "pusht", "seed": FIRST_SEED, "n_episodes": EPISODES, "max_steps": MAX_STEPS},
    )  # fmt: skip
    node_processes.append(bridge)
    # the probe hears the bridge before the policy exists, so it misses none of the episode
    probe.spin_until(
        lambda: probe.node.count_publishers("/class/robot/ee_pose") > 0,
        60,
        "the bridge's publishers",
        [bridge],
    )
    policy = NodeProcess.node(
        "class_ros", "policy_node", tmp_path,
        params={"mode": mode, "model": str(model), "use_sim_time": True},
    )  # fmt: skip
    node_processes.append(policy)
    probe.spin_until(lambda: bridge.poll() is not None, 240, f"{EPISODES} episodes through ROS", [policy])
    assert bridge.poll() == 0, bridge.output()

    want_chunks, want_agent, want_results = direct_rollout(model)
    # the bridge waited for acknowledgement before it ended; a loaded probe may still be behind
    probe.spin_until(
        lambda: len({rm.stamp_ns(m) for _, m in poses}) >= len(want_agent), 10, "every pose", [policy]
    )
    assert episode_results(bridge.output()) == want_results
    got = unique_chunks(chunks)
    assert len(got) == len(want_chunks), f"{len(got)} chunks over ROS, {len(want_chunks)} direct"
    for k, (g, w) in enumerate(zip(got, want_chunks, strict=True)):
        np.testing.assert_array_equal(g.actions, w, err_msg=f"chunk {k}")
    # one pose per stamp (an observation published again repeats its stamp and values)
    by_stamp = {rm.stamp_ns(m): (m.pose.position.x, m.pose.position.y) for _, m in poses}
    agent = np.array(list(by_stamp.values()))
    np.testing.assert_array_equal(agent, want_agent)
    assert policy.poll() is None, "the policy node must keep running between episodes"
    assert policy.stop(signal.SIGINT) == 0, policy.output()
    assert "Traceback" not in policy.output() + bridge.output()


def test_realtime_episode_reports_latency_on_diagnostics(demo_models, probe, node_processes, tmp_path):
    diags = probe.subscribe("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", DEPTH)
    chunks = probe.subscribe("/class/policy/action_chunk", "trajectory_msgs/msg/JointTrajectory", DEPTH)
    policy = NodeProcess.node(
        "class_ros", "policy_node", tmp_path,
        params={"mode": "nonparametric", "model": str(demo_models["nonparametric"]),
                "diagnostics_period": 0.5},
    )  # fmt: skip
    node_processes.append(policy)
    probe.spin_until(
        lambda: probe.node.count_publishers("/class/policy/action_chunk") > 0, 90, "the policy node", [policy]
    )
    bridge = NodeProcess.node(
        "class_ros", "sim_bridge_node", tmp_path,
        params={"task": "pusht", "seed": FIRST_SEED, "n_episodes": 1, "max_steps": 30, "clock": "realtime"},
    )  # fmt: skip
    node_processes.append(bridge)
    probe.spin_until(lambda: bridge.poll() is not None, 120, "a realtime episode of 30 steps", [policy])
    assert bridge.poll() == 0, bridge.output()
    assert episode_results(bridge.output()) == [(FIRST_SEED, False, 30)]
    assert len(chunks) >= 30 // 8, f"{len(chunks)} chunks for 30 steps at T_a = 8"
    probe.spin_for(1.0)
    latency = [
        float(v.value)
        for _, arr in diags
        for st in arr.status
        if st.name.startswith("class_policy")
        for v in st.values
        if v.key == "latency_ms_last" and v.value != "nan"
    ]
    assert latency, "no latency_ms_last on /diagnostics from class_policy"
    # observation stamp -> chunk publish; its size depends on the machine's load, not asserted
    assert all(0 < x < float("inf") for x in latency), latency
    assert policy.stop(signal.SIGTERM) == 0, policy.output()  # what launch escalates to
    assert "Traceback" not in policy.output() + bridge.output()
