"""Push-T task: interface, registry, Fixed-Color fidelity to gym-pusht, Rand-Color colours."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

pytest.importorskip("gym_pusht")

from sim_bridge import make_task, task_names, task_variants  # noqa: E402
from sim_bridge.pusht import (  # noqa: E402
    FIXED_COLORS,
    PushTColors,
    color_distance,
    is_strongly_red,
    sample_colors,
)


def test_registry_and_errors():
    assert "pusht" in task_names()
    assert task_variants("pusht") == ("fixed-color", "rand-color")
    with pytest.raises(KeyError, match="unknown task 'nope'.*pusht"):
        make_task("nope")
    with pytest.raises(ValueError, match="no variant 'blue'.*fixed-color, rand-color"):
        make_task("pusht", "blue")
    with pytest.raises(TypeError):
        make_task("pusht", "fixed-color", no_such_kwarg=1)
    with pytest.raises(ValueError, match="image_size"):
        make_task("pusht", image_size=0)
    t = make_task("pusht")
    assert t.variant == "fixed-color"
    assert (t.action_dim, t.max_steps, t.control_hz) == (2, 300, 10.0)
    assert t.image_keys == ("image",) and t.proprio_keys == ("agent_pos",)


def test_reset_step_headless_and_limits():
    t = make_task("pusht", "fixed-color", max_steps=3)
    with pytest.raises(RuntimeError, match="before reset"):
        t.step(np.zeros(2))
    obs = t.reset(seed=7)
    assert set(obs) == {"image", "agent_pos"}
    assert obs["image"].dtype == np.uint8 and obs["image"].shape == (96, 96, 3)
    assert obs["agent_pos"].dtype == np.float32 and obs["agent_pos"].shape == (2,)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        t.step(np.zeros(3))
    with pytest.raises(ValueError, match="non-finite"):
        t.step(np.array([np.nan, 1.0]))
    target = obs["agent_pos"] + np.array([20.0, 0.0], dtype=np.float32)
    for k in range(3):
        obs, success, info = t.step(target)
        assert info["step"] == k + 1 and info["truncated"] == (k == 2)
        assert 0.0 <= info["coverage"] <= 1.0 and isinstance(success, bool)
    # the agent moved towards the target (PD control)
    assert np.linalg.norm(obs["agent_pos"] - target) < 10.0
    with pytest.raises(RuntimeError, match="step limit"):
        t.step(target)
    st = t.privileged_state()
    assert st.shape == (5,) and st.dtype == np.float32
    np.testing.assert_allclose(st[:2], obs["agent_pos"], atol=1e-4)
    assert t.render().shape == (512, 512, 3)
    with pytest.raises(ValueError, match="seed"):
        t.reset(seed=-1)


def test_fixed_color_is_pixel_identical_to_gym_pusht():
    from gym_pusht.envs.pusht import PushTEnv

    t = make_task("pusht", "fixed-color")
    ref = PushTEnv(obs_type="pixels_agent_pos")
    rng = np.random.default_rng(0)
    for seed in (0, 3):
        obs = t.reset(seed)
        r, _ = ref.reset(seed=seed)
        assert np.array_equal(obs["image"], r["pixels"])
        block = np.asarray(ref.block.position)
        for k in range(40):
            # alternate random targets and pushes through the block (contact marks are drawn too)
            a = rng.uniform(0, 512, 2) if k % 2 else block + rng.normal(0, 30, 2)
            # every third observation declined (a policy between predictions): nothing rendered,
            # the same physics, coverage (cached goal geometry) and success as gym-pusht's
            obs, success, info = t.step(a, observe=k % 3 != 1)
            r, _, term, _, rinfo = ref.step(a)
            assert success == rinfo["is_success"] and info["coverage"] == rinfo["coverage"]
            if k % 3 == 1:
                assert obs == {}
                continue
            assert np.array_equal(obs["image"], r["pixels"]), (seed, k)
            np.testing.assert_array_equal(obs["agent_pos"], r["agent_pos"].astype(np.float32))
        assert np.array_equal(t.env.render_frame(680, mark_action=True), ref.render())


def test_rand_color_changes_colours_only():
    fixed = make_task("pusht", "fixed-color")
    rand = make_task("pusht", "rand-color")
    rng = np.random.default_rng(1)
    colors = []
    for seed in (11, 12, 13):
        of, orr = fixed.reset(seed), rand.reset(seed)
        colors.append(rand.colors)
        assert not np.array_equal(of["image"], orr["image"])
        for _ in range(15):
            a = rng.uniform(50, 450, 2)
            of, sf, inf_f = fixed.step(a)
            orr, sr, inf_r = rand.step(a)
            np.testing.assert_array_equal(fixed.privileged_state(), rand.privileged_state())
            np.testing.assert_array_equal(of["agent_pos"], orr["agent_pos"])
            assert sf == sr and inf_f["coverage"] == inf_r["coverage"]
        # the dominant colour of the frame is the episode's background
        frame = rand.render().reshape(-1, 3).astype(np.int64)
        packed = (frame[:, 0] << 16) | (frame[:, 1] << 8) | frame[:, 2]
        mode = int(np.bincount(packed).argmax())
        assert (mode >> 16, (mode >> 8) & 255, mode & 255) == rand.colors.background
        assert rand.episode_info()["colors"]["tee"] == list(rand.colors.tee)
    assert len({c.background for c in colors}) == 3
    rand.reset(12)
    assert rand.colors == colors[1]  # same seed, same colours
    fixed.reset(12)
    assert fixed.colors == FIXED_COLORS


def test_sampled_colours_respect_constraints():
    rng = np.random.default_rng(5)
    for _ in range(300):
        c = sample_colors(rng, min_distance=100.0, max_red_excess=60.0)
        assert not is_strongly_red(c.background, 60.0)
        parts = [c.background, c.goal, c.tee, c.agent]
        for i in range(4):
            for j in range(i + 1, 4):
                assert color_distance(parts[i], parts[j]) >= 100.0
    assert is_strongly_red((200, 40, 60), 60.0) and not is_strongly_red((200, 180, 60), 60.0)
    with pytest.raises(ValueError, match="min_distance"):
        sample_colors(rng, min_distance=500.0)
    assert PushTColors().to_dict()["goal"] == [144, 238, 144]


def test_rendered_colours_follow_the_sampled_ones():
    t = make_task("pusht", "rand-color")
    t.reset(21)
    env = t.env
    base = env._base_surface()
    # goal centre (256, 256) lies on the goal T's stem/bar junction
    gx, gy = 256 + int(45 * np.cos(np.pi / 4 + np.pi / 2)), 256 + int(45 * np.sin(np.pi / 4 + np.pi / 2))
    assert tuple(base.get_at((gx, gy)))[:3] == t.colors.goal
    assert tuple(base.get_at((30, 30)))[:3] == t.colors.background
