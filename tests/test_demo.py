"""class-demo (the README's main job) end to end at a tiny scale: every stage runs, the report
names both policies, and a second run skips the stages whose outputs exist."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

pytest.importorskip("gym_pusht")

from class_core.cli.demo import main as demo_main  # noqa: E402

TINY = [
    "demo.episodes=3",
    "demo.workers=1",
    "demo.eval_episodes=1",
    "pretrain.train.max_steps=2",
    "pretrain.train.batch_size=8",
    "pretrain.optim.warmup_steps=1",
]


@pytest.mark.timeout(600)
def test_class_demo_end_to_end_tiny(tmp_path, capsys):
    out = tmp_path / "demo"
    # demonstrations with the task's full step limit, rollouts cut to 10 steps to stay fast
    assert demo_main(["--out", str(out), "--stages", "collect", *TINY]) == 0
    assert demo_main(["--out", str(out), *TINY, "task.kwargs.max_steps=10"]) == 0
    for name in ("pusht.zarr", "pairs.npz", "report.md", "loss.png", "neighbours.png", "timings.json"):
        assert (out / name).exists(), name
    report = (out / "report.md").read_text()
    assert "| CLASS retrieval | 0/1 |" in report or "| CLASS retrieval | 1/1 |" in report
    assert "random-init retrieval" in report and "mean max coverage" in report
    assert "held-out chunk error" in report
    assert "CLASS against random-init on the same 1 seeds" in report and "McNemar p = " in report
    for policy in ("class_knn", "random_knn"):
        r = json.loads((out / f"eval_{policy}" / "results.json").read_text())
        assert r["task_kwargs"] == {"success_threshold": 0.9, "max_steps": 10}
        assert r["episodes"] == 1 and r["episodes_detail"][0]["steps"] <= 10
        assert 0.0 <= r["mean_final_progress"] <= r["mean_max_progress"] <= 1.0
    timings = json.loads((out / "timings.json").read_text())
    assert {"precompute", "pretrain", "export", "eval", "report"} <= set(timings)
    capsys.readouterr()
    # a second run continues: finished stages are skipped
    assert demo_main(["--out", str(out), "--stages", "collect,export,eval", *TINY]) == 0
    text = capsys.readouterr().out
    assert "[collect]" in text and "exists, skipped" in text
    assert "[eval]" in text and "class-eval" not in text
