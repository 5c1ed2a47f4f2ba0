"""Markovian Push-T demonstrator (PushTServoExpert): succeeds, same state -> same action, smooth,
DART-style noise executed but not recorded."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

pytest.importorskip("gym_pusht")

from sim_bridge import make_task  # noqa: E402
from sim_bridge.collect import run_expert_episode  # noqa: E402
from sim_bridge.pusht_servo import PushTServoExpert  # noqa: E402


@pytest.fixture(scope="module")
def task():
    t = make_task("pusht", "fixed-color")
    yield t
    t.close()


def _state(t) -> np.ndarray:
    e = t.env
    return np.array([*e.agent.position, *e.block.position, e.block.angle], dtype=np.float64)


@pytest.mark.parametrize("noise", [0.0, 5.0])
def test_servo_succeeds_on_fixed_seeds(task, noise):
    for seed in (0, 1, 2):
        att = run_expert_episode(task, seed, {"kind": "servo", "noise": noise})
        assert att.success, f"seed {seed} noise {noise}: failed after {att.steps} steps"
        assert att.steps < 300


def test_servo_is_markovian(task):
    """The action depends on the state only: not on the history, the instance or its RNG."""
    task.reset(5)
    a = task.make_expert(seed=1, kind="servo")
    b = task.make_expert(seed=99, kind="servo", noise=0.0)
    states, actions = [], []
    for _ in range(60):
        s = _state(task)
        act = a.select_action(None)
        states.append(s)
        actions.append(act)
        task.step(a.perturb_action(act))
    # a fresh instance, queried in reverse order, gives the same actions for the same states
    for s, act in reversed(list(zip(states, actions, strict=True))):
        np.testing.assert_array_equal(b.action(s), act)
    # and so does the env put back in a recorded state
    task.reset(5)
    for s, act in list(zip(states, actions, strict=True))[::7]:
        task.env.agent.position = tuple(s[:2])
        task.env.agent.velocity = (0.0, 0.0)
        task.env.block.angle = s[4]
        task.env.block.position = tuple(s[2:4])
        np.testing.assert_allclose(b.select_action(None), act, atol=1e-9)


def test_servo_action_is_continuous_almost_everywhere(task):
    task.reset(0)
    ex = PushTServoExpert(task, noise=0.0)
    rng = np.random.default_rng(0)
    jumps = 0
    n = 200
    for _ in range(n):
        s = np.array([*rng.uniform(60, 450, 2), *rng.uniform(120, 390, 2), rng.uniform(-np.pi, np.pi)])
        d = np.concatenate([rng.normal(0, 0.05, 4), rng.normal(0, 0.0005, 1)])
        jumps += np.linalg.norm(ex.action(s + d) - ex.action(s)) > 2.0
    assert jumps <= 0.1 * n


def test_servo_noise_is_executed_not_recorded(task, monkeypatch):
    executed = []
    step = task.step

    def spy(action):
        executed.append(np.array(action, dtype=np.float64))
        return step(action)

    monkeypatch.setattr(task, "step", spy)
    att = run_expert_episode(task, 3, {"kind": "servo", "noise": 5.0})
    assert att.episode is not None
    recorded = att.episode["action"].astype(np.float64)
    diff = np.linalg.norm(np.array(executed) - recorded, axis=1)
    assert len(executed) == len(recorded)
    assert 2.0 < float(np.median(diff)) < 12.0  # about 5 px * sqrt(pi / 2)


def test_make_expert_kinds():
    t = make_task("pusht")
    t.reset(0)
    from sim_bridge.pusht_expert import PushTExpert

    assert isinstance(t.make_expert(seed=0), PushTExpert)
    assert isinstance(t.make_expert(seed=0, kind="servo"), PushTServoExpert)
    with pytest.raises(ValueError, match="expert kind"):
        t.make_expert(kind="nope")
    with pytest.raises(ValueError, match="orbit"):
        t.make_expert(kind="servo", orbit=2)
    t.close()
