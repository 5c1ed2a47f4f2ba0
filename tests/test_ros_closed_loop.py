"""Closed loop without rclpy: the sim bridge core and the policy core exchange real message objects
(rosbags classes, through CDR bytes) for whole Push-T episodes, and match the direct rollout."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="rosbags (robot extra) provides the message classes")
pytest.importorskip("gym_pusht", reason="gym-pusht (sim extra) runs Push-T")

from class_core import ros_msgs as rm  # noqa: E402
from class_core.deploy import PolicyCore, PolicyCoreConfig, SimBridgeConfig, SimBridgeCore  # noqa: E402
from class_core.deploy.loopback import run_loopback  # noqa: E402
from sim_bridge.task import make_task  # noqa: E402

# The noiseless demonstrator solves seed 100 in 137 steps and seed 101 in 161: with a 140-step
# limit one episode succeeds and one ends by the limit (the 'stop' path), a rate of 0.5.
SEEDS = 2
FIRST_SEED = 100
MAX_STEPS = 140


class RecordingTask:
    """Passes everything through to a task and records the actions it executes."""

    def __init__(self, task):
        self._task = task
        self.actions: list[np.ndarray] = []
        self.agent: list[np.ndarray] = []

    def __getattr__(self, name):
        return getattr(self._task, name)

    def reset(self, seed=None):
        return self._task.reset(seed)

    def step(self, action):
        self.actions.append(np.array(action, dtype=np.float64))
        obs, success, info = self._task.step(action)
        self.agent.append(obs["agent_pos"].copy())
        return obs, success, info


class ExpertPolicy:
    """The scripted demonstrator as a policy (T_a = T_p = 1). It reads the simulator, so it also
    checks that the observation it was handed (through messages) is exactly what the task shows."""

    n_action_steps = 1

    def __init__(self, task, seed: int):
        self.task = task
        self.expert = task.make_expert(seed=seed, noise=0.0)
        self.checked = 0

    def reset(self):
        self.expert.reset()

    def predict_action_chunk(self, obs):
        truth = self.task.observe()
        np.testing.assert_array_equal(obs["image"], truth["image"])
        np.testing.assert_array_equal(obs["agent_pos"], truth["agent_pos"])
        self.checked += 1
        return np.asarray(self.expert.select_action(obs), dtype=np.float64)[None]


class CentroidPolicy:
    """Deterministic, image-driven, chunked (T_p 16, T_a 8): head for the centroid of the pixels
    that differ from the background, past the agent - so observations and chunking both matter."""

    n_action_steps = 8

    def reset(self):
        pass

    def predict_action_chunk(self, obs):
        img = obs["image"].astype(np.float64)
        bg = np.median(img.reshape(-1, 3), axis=0)
        w = np.abs(img - bg).sum(-1)
        ys, xs = np.mgrid[: img.shape[0], : img.shape[1]]
        c = np.array([(w * xs).sum(), (w * ys).sum()]) / max(w.sum(), 1e-9) * 512 / img.shape[1]
        a = np.asarray(obs["agent_pos"], np.float64)
        goal = np.clip(c + 0.3 * (c - a), 0, 512)
        return (a + (goal - a) * np.linspace(0.1, 1.0, 16)[:, None]).astype(np.float32)


def direct_rollout(policy_factory, n: int):
    task = RecordingTask(make_task("pusht", "fixed-color", max_steps=MAX_STEPS))
    policy = policy_factory(task)
    results = []
    for i in range(n):
        obs = task.reset(FIRST_SEED + i)
        policy.reset()
        queue: list[np.ndarray] = []
        for _ in range(task.max_steps):
            if not queue:  # select_action with a queue of T_a steps
                queue = list(policy.predict_action_chunk(obs)[: policy.n_action_steps])
            obs, success, info = task.step(queue.pop(0))
            if success or info["truncated"]:
                break
        results.append((FIRST_SEED + i, bool(success), int(info["step"])))
    return results, task


def loopback_rollout(policy_factory, n: int, **policy_cfg):
    f = rm.RosbagsFactory("jazzy")
    task = RecordingTask(make_task("pusht", "fixed-color", max_steps=MAX_STEPS))
    bridge = SimBridgeCore(task, f, SimBridgeConfig(task="pusht", seed=FIRST_SEED, n_episodes=n))
    core = PolicyCore(
        policy_factory(task),
        f,
        PolicyCoreConfig(
            mode="nonparametric", control_hz=10.0, obs_keys=["image", "agent_pos"], **policy_cfg
        ),
    )
    stats = run_loopback(bridge, core, f)
    results = [(r.seed, r.success, r.steps) for r in bridge.results]
    return results, task, stats, core


@pytest.mark.slow  # the demonstrator plans for about 1 s per episode; 4 episodes in all
def test_expert_success_rate_through_messages_equals_direct_rollout():
    direct, dtask = direct_rollout(lambda t: ExpertPolicy(t, seed=7), SEEDS)
    loop, ltask, stats, core = loopback_rollout(lambda t: ExpertPolicy(t, seed=7), SEEDS)
    assert loop == direct
    assert [s for _, s, _ in direct] == [True, False]  # a rate that is neither 0 nor 1
    np.testing.assert_array_equal(np.array(ltask.actions), np.array(dtask.actions))
    assert core.policy.checked == len(ltask.actions)  # one plan per step, every obs checked
    steps = sum(s for _, _, s in loop)
    assert stats.chunks == steps
    # one per reset + one per step but the last (lock-step publishes no final observation)
    assert stats.by_topic["/class/obs/image"] == steps
    assert stats.by_topic["/class/episode/event"] == 2 * SEEDS


def test_chunked_image_policy_trajectories_identical():
    direct, dtask = direct_rollout(lambda t: CentroidPolicy(), 2)
    loop, ltask, stats, core = loopback_rollout(lambda t: CentroidPolicy(), 2)
    assert loop == direct
    np.testing.assert_array_equal(np.array(ltask.actions), np.array(dtask.actions))
    np.testing.assert_array_equal(np.array(ltask.agent), np.array(dtask.agent))
    steps = sum(s for _, _, s in loop)
    assert stats.chunks == sum(-(-s // 8) for _, _, s in loop)  # one chunk per T_a = 8 steps
    assert core.stats["published"] == stats.chunks and core.stats["stale_skipped"] == 0
    assert steps == len(ltask.actions)
