"""Aloha transfer-cube task: headless reset/step and the rotating-view variant."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
pytest.importorskip("gym_aloha")

from sim_bridge.task import make_task  # noqa: E402


@pytest.fixture(scope="module")
def aloha_rot():
    task = make_task("aloha-transfer", "rot-view", image_size=32)
    yield task
    task.close()


def test_reset_step_layout_and_rotating_view(aloha_rot):
    obs = aloha_rot.reset(0)
    assert set(obs) == {"image", "joint_pos"}
    assert obs["image"].shape == (32, 32, 3) and obs["image"].dtype == np.uint8
    assert obs["joint_pos"].shape == (14,) and obs["joint_pos"].dtype == np.float32
    a0 = aloha_rot.view.angle
    hold = obs["joint_pos"].astype(np.float64)
    raw0 = aloha_rot._render_raw()
    for _ in range(10):
        obs, success, info = aloha_rot.step(hold)
    assert not success and info["reward"] == 0
    # the view turned by 10 x 0.5 degrees in the episode's direction while the scene held still
    turned = (info["view_angle"] - a0 + 180) % 360 - 180
    assert np.isclose(abs(turned), 5.0)
    assert np.abs(aloha_rot._render_raw().astype(int) - raw0.astype(int)).mean() < 2.0
    np.testing.assert_allclose(obs["joint_pos"], hold, atol=0.05)
    with pytest.raises(ValueError, match=r"shape \(14,\)"):
        aloha_rot.step(np.zeros(10))


def test_seeds_set_cube_and_view(aloha_rot):
    aloha_rot.reset(3)
    box3, ang3 = aloha_rot.box_pose()[:2], aloha_rot.view.angle
    aloha_rot.reset(3)
    np.testing.assert_array_equal(aloha_rot.box_pose()[:2], box3)
    assert aloha_rot.view.angle == ang3
    aloha_rot.reset(4)
    assert not np.allclose(aloha_rot.box_pose()[:2], box3) and aloha_rot.view.angle != ang3
    x, y = aloha_rot.box_pose()[:2]
    assert 0.0 <= x <= 0.2 and 0.4 <= y <= 0.6  # gym-aloha's sampling ranges


def test_fixed_view_is_not_rotated():
    task = make_task("aloha-transfer", "fixed-view", image_size=32)
    try:
        obs = task.reset(0)
        np.testing.assert_array_equal(obs["image"], task._render_raw())
    finally:
        task.close()


@pytest.fixture(scope="module")
def aloha_fast():
    task = make_task("aloha-transfer", "fixed-view", render=False)
    yield task
    task.close()


def test_arm_ik_reaches_a_pose(aloha_fast):
    import mujoco

    from sim_bridge.aloha import _ArmIK, _pick_rotation

    aloha_fast.reset(0)
    model = aloha_fast.physics.model.ptr
    arm = _ArmIK(model, "right")
    data = mujoco.MjData(model)
    data.qpos[:] = aloha_fast.physics.data.qpos
    goal, rot = np.array([0.1, 0.45, 0.1]), _pick_rotation(60.0)
    q = arm.solve(data, data.qpos[arm.qadr].copy(), goal, rot, iters=50)
    data.qpos[arm.qadr] = q
    mujoco.mj_kinematics(model, data)
    pos, r = arm.pose(data)
    assert np.linalg.norm(pos - goal) < 1e-3 and np.abs(r - rot).max() < 1e-2


def test_transfer_expert_succeeds(aloha_fast):
    for seed in (0, 1):
        aloha_fast.reset(seed)
        expert = aloha_fast.make_expert(seed=seed)
        expert.reset()
        rewards, success = [], False
        for _ in range(aloha_fast.max_steps):
            _, success, info = aloha_fast.step(expert.select_action())
            rewards.append(info["reward"])
            if success and expert.done:  # the stopping rule of sim_bridge.collect
                break
        assert success and expert.done, (seed, max(rewards), aloha_fast.steps)
        assert 1 in rewards or 2 in rewards  # the right gripper picked it up first
