"""Rollouts and class-eval on Push-T with the scripted demonstrator as the policy."""

from __future__ import annotations

import functools
import json
import os

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

pytest.importorskip("gym_pusht")

from class_core.cli.eval import main as eval_main  # noqa: E402
from sim_bridge.rollout import evaluate, scripted_policy, wilson_interval  # noqa: E402


def test_wilson_interval_reference_values():
    # reference values of the Wilson score interval (z = 1.96)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(81, 100) == pytest.approx((0.7222, 0.8749), abs=1e-4)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


class HoldStill:
    """Any object with reset/select_action is a policy for the rollout engine."""

    def __init__(self, task):
        self.task = task
        self.calls = 0

    def reset(self):
        self.calls = 0

    def select_action(self, obs):
        self.calls += 1
        return np.asarray(obs["agent_pos"], dtype=np.float32)


def test_generic_policy_runs_to_the_step_limit(tmp_path):
    s = evaluate(
        "pusht",
        "fixed-color",
        HoldStill,
        2,
        seed=5,
        task_kwargs={"max_steps": 4},
        out_dir=tmp_path,
        progress=False,
    )
    assert s.successes == 0 and [r.steps for r in s.results] == [4, 4]
    assert s.ci95 == pytest.approx(wilson_interval(0, 2))
    d = json.loads((tmp_path / "results.json").read_text())
    assert d["episodes"] == 2 and d["task_kwargs"] == {"max_steps": 4}
    assert [e["seed"] for e in d["episodes_detail"]] == [5, 6]
    # coverage is graded beside success: the episode maximum and the final value
    assert d["progress_key"] == "coverage"
    for r in s.results:
        assert 0.0 <= r.final_info["coverage"] <= r.max_progress <= 1.0
    assert d["mean_max_progress"] == pytest.approx(np.mean([r.max_progress for r in s.results]))
    assert "Mean coverage: episode maximum" in (tmp_path / "results.md").read_text()


def test_pusht_success_threshold_option():
    """The CLASS paper counts IoU > 0.90 as success; gym-pusht's default is 0.95."""
    from sim_bridge import make_task

    def step_at_goal_shifted(task, dx):
        task.reset(seed=0)
        task.env.block.angle = np.pi / 4
        task.env.block.position = (256.0 + dx, 256.0)
        task.env.agent.position = (50.0, 50.0)
        return task.step(np.array([50.0, 50.0]))

    # 3 px off the goal: coverage ~0.92, a success only under the paper's threshold
    for threshold, expected in ((None, False), (0.9, True)):
        with make_task("pusht", "fixed-color", success_threshold=threshold) as task:
            assert task.success_threshold == (threshold or 0.95)
            _, success, info = step_at_goal_shifted(task, 3.0)
            assert 0.9 < info["coverage"] < 0.95 and success is expected
    for bad in (0.0, 1.5, True):
        with pytest.raises(ValueError, match="success_threshold"):
            make_task("pusht", "fixed-color", success_threshold=bad)


def test_class_eval_scripted_parallel_with_video(tmp_path, capsys):
    out = tmp_path / "res"
    rc = eval_main(
        [
            "--policy",
            "scripted",
            "--task",
            "pusht",
            "--variant",
            "fixed-color",
            "--episodes",
            "2",
            "--workers",
            "2",
            "--video-episodes",
            "0",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    d = json.loads((out / "results.json").read_text())
    assert d["success_rate"] == 1.0 and d["workers"] == 2
    assert d["ci95"] == pytest.approx(list(wilson_interval(2, 2)))
    assert d["latency_ms"]["max"] >= d["latency_ms"]["p50"] > 0
    assert "| 2 | 1.000 (2/2)" in (out / "results.md").read_text()
    ep0 = d["episodes_detail"][0]
    assert ep0["seed"] == 100_000 and ep0["video"] and d["episodes_detail"][1]["video"] is None
    from sim_bridge.video import read_mp4

    frames = read_mp4(ep0["video"])
    assert frames.shape == (ep0["steps"] + 1, 512, 512, 3)
    # same seed in-process (workers=1): the same episode
    s = evaluate("pusht", "fixed-color", scripted_policy, 1, seed=100_000, progress=False)
    assert s.results[0].steps == ep0["steps"] and s.results[0].success
    assert "success" in capsys.readouterr().out


def test_class_eval_errors(tmp_path, capsys):
    assert eval_main(["--policy", str(tmp_path / "missing"), "--task", "pusht"]) == 2
    assert "no such artifact" in capsys.readouterr().err
    assert (
        eval_main(
            [
                "--policy",
                "scripted",
                "--task",
                "pusht",
                "--episodes",
                "2",
                "--video-episodes",
                "5",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "video episode index 5" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        eval_main(["--help"])
    assert e.value.code == 0


def test_class_eval_loads_a_real_artifact(tmp_path):
    """class-eval -> class_core.policy.load -> rollouts (a small random-encoder retrieval policy)."""
    pytest.importorskip("torch")
    from demo_artifacts import make_demo_artifact

    art = make_demo_artifact(tmp_path / "demo_policy", n_episodes=1, steps=20)
    out = tmp_path / "res"
    rc = eval_main(["--policy", str(art), "--task", "pusht", "--episodes", "1", "--task-arg", "max_steps=12",
                    "--out", str(out), "--no-progress"])  # fmt: skip
    assert rc == 0
    d = json.loads((out / "results.json").read_text())
    assert d["policy"] == "demo_policy" and d["episodes_detail"][0]["steps"] == 12
    assert d["latency_ms"]["max"] > 0
    assert json.loads((out / "eval_args.json").read_text())["policy"] == str(art)


def test_comparison_tests_match_scipy():
    from scipy import stats

    from sim_bridge.rollout import binomial_upper_tail, fisher_greater

    for a, na, b, nb in [(7, 50, 3, 50), (0, 10, 0, 10), (10, 10, 0, 10), (5, 30, 9, 40), (50, 50, 49, 50)]:
        ref = stats.fisher_exact([[a, na - a], [b, nb - b]], alternative="greater").pvalue
        assert fisher_greater(a, na, b, nb) == pytest.approx(ref, rel=1e-9, abs=1e-12)
    for k, n in [(0, 0), (0, 5), (3, 5), (5, 5), (9, 12), (30, 40)]:
        ref = stats.binomtest(k, n, 0.5, alternative="greater").pvalue if n else 1.0
        assert binomial_upper_tail(k, n) == pytest.approx(ref, rel=1e-9)
    with pytest.raises(ValueError, match="successes_b"):
        fisher_greater(1, 5, 6, 5)


def test_paired_comparison_counts_discordant_seeds():
    from sim_bridge.rollout import paired_comparison

    def ep(seed, ok, prog):
        return {"seed": seed, "success": ok, "max_progress": prog}

    a = [ep(1, True, 0.95), ep(2, True, 0.93), ep(3, False, 0.5), ep(4, False, 0.4), ep(9, True, 1.0)]
    b = [ep(4, False, 0.4), ep(3, True, 0.92), ep(2, False, 0.3), ep(1, False, 0.2)]  # other order, no seed 9
    c = paired_comparison(a, b)
    assert c["episodes"] == 4 and c["successes"] == [2, 1]
    assert (c["success_only_a"], c["success_only_b"]) == (2, 1)
    assert c["mcnemar_p"] == pytest.approx(0.5)  # P(Bin(3, .5) >= 2)
    assert (c["progress_wins"], c["progress_losses"], c["progress_ties"]) == (2, 1, 1)
    with pytest.raises(ValueError, match="share no episode seed"):
        paired_comparison(a[:1], b[:1] and [ep(7, True, 1.0)])


def test_lockstep_batches(tmp_path):
    """evaluate(batch=3): episodes side by side with one batched policy call per step. The
    batched actions equal one-at-a-time actions to float tolerance (a batched encoder call may
    differ in the last bits, which can flip a near-tie retrieval later in a long rollout), and
    the blocks are fixed by index, so the results do not depend on the workers."""
    pytest.importorskip("torch")
    from demo_artifacts import make_demo_artifact

    from class_core.cli.eval import load_policy
    from sim_bridge.task import make_task

    art = make_demo_artifact(tmp_path / "demo_policy", n_episodes=2, steps=30)
    with make_task("pusht", "fixed-color") as task:
        policy = load_policy(task, str(art))
        alone = load_policy(task, str(art))
        observations = [task.reset(s) for s in (1, 2, 3)]
        forks = [policy.fork() for _ in observations]
        batched = policy.select_actions(forks, observations)
        for obs, action in zip(observations, batched, strict=True):
            alone.reset()
            np.testing.assert_allclose(action, alone.select_action(obs), rtol=2e-3)  # px of 512
        assert all(len(f._queue) == policy.n_action_steps - 1 for f in forks)
        assert not policy._queue  # the parent's own queue is untouched

    factory = functools.partial(load_policy, path=str(art))
    kw = {"max_steps": 40}
    lock = evaluate("pusht", "fixed-color", factory, 5, seed=7, task_kwargs=kw, progress=False, batch=3)
    par = evaluate(
        "pusht", "fixed-color", factory, 5, seed=7, task_kwargs=kw, progress=False, batch=3, workers=2
    )
    assert lock.batch == 3 and "lockstep blocks of 3" in lock.to_markdown()

    def rollouts(s):
        return [(r.index, r.seed, r.steps, r.final_info["coverage"]) for r in s.results]

    assert rollouts(lock) == rollouts(par) and [r.seed for r in lock.results] == list(range(7, 12))
    with pytest.raises(ValueError, match="cannot run episodes in lockstep"):
        evaluate("pusht", "fixed-color", scripted_policy, 2, task_kwargs=kw, progress=False, batch=2)
    with pytest.raises(ValueError, match="batch must be >= 1"):
        evaluate("pusht", "fixed-color", factory, 2, progress=False, batch=0)


def test_rollouts_render_only_the_observations_a_policy_reads(tmp_path):
    """A chunking policy with one observation step reads an observation only when it predicts
    (every T_a steps), so rollouts let Push-T skip rendering the others: the same episode, with
    one render per prediction instead of one per step."""
    pytest.importorskip("torch")
    import copy

    from demo_artifacts import make_demo_artifact

    from class_core.cli.eval import load_policy
    from sim_bridge.rollout import run_episode, run_lockstep
    from sim_bridge.task import make_task

    art = make_demo_artifact(tmp_path / "demo_policy", n_episodes=2, steps=30)
    with make_task("pusht", "fixed-color", max_steps=30) as task:
        policy = load_policy(task, str(art))
        t_a = policy.n_action_steps
        assert policy.spec.n_obs_steps == 1 and 1 < t_a < 30
        obs = task.reset(3)
        reads = []
        for _ in range(2 * t_a):
            reads.append(policy.reads_observation())
            policy.select_action(obs if reads[-1] else {})
        assert reads == ([True] + [False] * (t_a - 1)) * 2
        policy.reset()
        with pytest.raises((KeyError, ValueError), match="image"):
            policy.select_action({})  # a prediction needs its observation

        class ReadsAll(type(policy)):  # type: ignore[misc]
            def reads_observation(self) -> bool:
                return True

        every = copy.copy(policy)
        every.__class__ = ReadsAll
        renders = {"n": 0}
        render_obs = task.env.render_obs

        def counted():  # type: ignore[no-untyped-def]
            renders["n"] += 1
            return render_obs()

        task.env.render_obs = counted
        results = []
        for pol in (every, policy):
            renders["n"] = 0
            r = run_episode(task, pol, seed=5)
            results.append((r.steps, r.success, r.max_progress, r.final_info["coverage"], renders["n"]))
        (steps, *same, n_all), (steps2, *same2, n_read) = results
        assert (steps, same) == (steps2, same2) and steps == 30
        assert n_all == steps + 1 and n_read == -(-steps // t_a)  # reset + one per step / prediction
        renders["n"] = 0
        lock = run_lockstep([task], policy, [5], [0])
        assert (lock[0].steps, lock[0].max_progress) == (steps, same[1]) and renders["n"] == n_read
