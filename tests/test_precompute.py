"""The class-precompute command line: --chunks and --store inputs, reuse of a matching output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from class_core.cli.precompute import main
from class_core.data.chunks import similarity_chunks
from class_core.data.store import EpisodeStoreWriter
from class_core.similarity import PairConfig, compute_pairs, load_pairs


def test_help_lists_every_option() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "class_core.cli.precompute", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for opt in (
        "--store",
        "--config",
        "--chunks",
        "--quantile",
        "--topk",
        "--weights",
        "--cost",
        "--band",
        "--horizon",
        "--backend",
        "--workdir",
        "--out",
    ):
        assert opt in out


def test_chunks_input_and_reuse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x = (np.cumsum(np.random.default_rng(0).normal(size=(90, 16, 3)), axis=1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "pairs.npz"
    args = [
        "--chunks",
        str(tmp_path / "x.npy"),
        "--out",
        str(out),
        "--quantile",
        "0.05",
        "--band",
        "3",
        "--workdir",
        str(tmp_path / "work"),
        "--no-progress",
    ]
    assert main(args) == 0
    ps = load_pairs(out)
    want = compute_pairs(x, PairConfig(quantile=0.05, band=3), progress=False)
    assert want is not None
    np.testing.assert_array_equal(ps.i, want.i)
    np.testing.assert_array_equal(ps.distance, want.distance)
    assert ps.meta["band"] == 3 and ps.meta["n"] == 90
    capsys.readouterr()
    mtime = out.stat().st_mtime_ns
    assert main(args) == 0
    assert "reusing" in capsys.readouterr().out and out.stat().st_mtime_ns == mtime
    assert main([*args[:-3], "--topk", "2", "--no-progress"]) == 0  # different job: recomputed
    assert "differs in" in capsys.readouterr().out and load_pairs(out).meta["mode"] == "topk"


def test_store_input_with_config_and_overrides(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    episodes = [np.cumsum(rng.normal(size=(length, 2)), 0).astype(np.float32) for length in (30, 25, 40)]
    store = tmp_path / "demo.zarr"
    with EpisodeStoreWriter(store) as w:
        for ep in episodes:
            w.add_episode({"action": ep})
    cfg = tmp_path / "task.yaml"
    cfg.write_text(f"data:\n  store: {store}\nsimilarity:\n  out: {tmp_path / 'p.npz'}\n  quantile: 0.1\n")
    assert main(["--config", str(cfg), "similarity.quantile=0.02", "--no-progress"]) == 0
    ps = load_pairs(tmp_path / "p.npz")
    x, _ = similarity_chunks(np.concatenate(episodes), np.array([30, 55, 95]), 16)
    want = compute_pairs(x, PairConfig(quantile=0.02), progress=False)
    assert want is not None
    np.testing.assert_array_equal(ps.j, want.j)
    assert ps.meta["quantile"] == 0.02 and ps.meta["fingerprint"].endswith("rot6d_scale=0.5")
    with pytest.raises(SystemExit, match="quantile"):
        main(["--config", str(cfg), "similarity.quantile=2", "--no-progress"])
    with pytest.raises(SystemExit, match="unknown config key"):
        main(["--config", str(cfg), "similarity.quantil=0.1"])


def test_bad_chunks_file(tmp_path: Path) -> None:
    np.save(tmp_path / "flat.npy", np.zeros((5, 3), np.float32))
    with pytest.raises(SystemExit, match=r"\(N, T, D\)"):
        main(["--chunks", str(tmp_path / "flat.npy"), "--out", str(tmp_path / "o.npz")])
    with pytest.raises(SystemExit, match="missing.npy"):
        main(["--chunks", str(tmp_path / "missing.npy")])
