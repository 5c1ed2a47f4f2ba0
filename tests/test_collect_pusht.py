"""class-collect: scripted Push-T demonstrations -> episode store -> reload and replay."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

pytest.importorskip("gym_pusht")

from class_core.data.store import EpisodeStore  # noqa: E402
from sim_bridge import make_task  # noqa: E402
from sim_bridge.cli_collect import main as collect_main  # noqa: E402
from sim_bridge.collect import collect, run_expert_episode  # noqa: E402


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("collect") / "pusht_rand.zarr"
    res = collect("pusht", "rand-color", 2, out, seed=0, workers=2, progress=False)
    assert res.episodes == 2 and res.raw_success_rate > 0 and res.attempts >= 2
    return out, res


def test_store_layout_and_keys(store):
    out, res = store
    s = EpisodeStore.open(out)
    assert s.n_episodes == 2 and s.n_steps == res.steps
    assert sorted(s.keys()) == ["action", "agent_pos", "image", "state"]
    assert s.array("image").dtype == np.uint8 and s.array("image").shape[1:] == (96, 96, 3)
    for key, dim in (("agent_pos", 2), ("state", 5), ("action", 2)):
        assert s.array(key).dtype == np.float32 and s.array(key).shape[1:] == (dim,)
    meta = s.root.attrs["collect"]
    assert meta["task"] == "pusht" and meta["variant"] == "rand-color"
    assert [e["seed"] for e in meta["episodes"]] == res.kept_seeds
    ep = s.episode(0)
    np.testing.assert_allclose(ep["state"][:, :2], ep["agent_pos"])
    assert not out.with_name(out.name + ".tmp").exists()


def test_workers_give_the_same_episodes_and_replay_reproduces(store):
    out, res = store
    s = EpisodeStore.open(out)
    seed = res.kept_seeds[0]
    task = make_task("pusht", "rand-color")
    att = run_expert_episode(task, seed)  # in-process, as with workers=1
    assert att.success and att.episode is not None
    ep = s.episode(0)
    for k in ("image", "agent_pos", "state", "action"):
        np.testing.assert_array_equal(ep[k], att.episode[k])
    # replaying the stored (float32) actions from the same seed reproduces a successful episode
    obs = task.reset(seed)
    assert np.array_equal(obs["image"], ep["image"][0])
    success = False
    for a in ep["action"]:
        obs, success, info = task.step(a)
    assert success, f"replay coverage {info['coverage']:.3f}"


def test_cli_help_and_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        collect_main(["--help"])
    assert e.value.code == 0
    assert "--variant" in capsys.readouterr().out
    existing = tmp_path / "x.zarr"
    existing.mkdir()
    rc = collect_main(["--task", "pusht", "--episodes", "1", "--out", str(existing), "--no-progress"])
    assert rc == 2 and "already exists" in capsys.readouterr().err
    rc = collect_main(["--task", "nope", "--episodes", "1", "--out", str(tmp_path / "y.zarr")])
    assert rc == 2 and "unknown task" in capsys.readouterr().err
    rc = collect_main(
        ["--task", "pusht", "--episodes", "1", "--out", str(tmp_path / "z.zarr"), "--expert-arg", "noise=3"]
    )
    assert rc == 2 and "noise" in capsys.readouterr().err
    assert not (tmp_path / "z.zarr").exists()
    assert collect_main(["--list-tasks"]) == 0
    assert "pusht" in capsys.readouterr().out
