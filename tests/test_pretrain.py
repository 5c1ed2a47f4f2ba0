"""Pre-training: sampling, batches, checkpoints, exact resume after a kill, DDP (2 gloo ranks), CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from policy_fixtures import one_torch_thread  # noqa: F401
from safetensors.torch import load_file

from class_core.config import ConfigError, load_config
from class_core.data.store import EpisodeStore
from class_core.data.torch_dataset import PretrainDataset, StepBatchSampler, positive_graph, sample_batch
from class_core.similarity import batch_weights, load_pairs
from class_core.train.pretrain import pretrain
from class_core.train.synthetic import SyntheticConfig, make_synthetic_pairs, make_synthetic_store

ROOT = Path(__file__).resolve().parents[1]
DEBUG = ROOT / "config" / "debug.yaml"


def one_thread_env() -> dict[str, str]:
    """The CLI runs' environment: one intra-op thread, as the in-process runs (one_torch_thread),
    for the same arithmetic; on a busy 2-core machine several times faster than two threads."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("pretrain_data")
    # 40 px: 35 px crops give 2x2 ResNet-18 maps; at 32 px (1x1 maps) the spatial softmax's output
    # is the same for every image, every gradient zero, and training steps were weight decay alone
    cfg = SyntheticConfig(episodes=4, steps=24, segment=12, image_size=40)
    store = make_synthetic_store(d / "syn.zarr", cfg)
    pairs = make_synthetic_pairs(store, d / "pairs.npz", quantile=0.01)
    assert pairs is not None
    return store, pairs


def tiny_cfg(data: tuple[Path, Path], out: Path, *extra: str) -> dict:
    store, pairs = data
    return load_config(
        DEBUG,
        [
            f"data.store={store}",
            f"pretrain.data.pairs={pairs}",
            f"pretrain.train.out_dir={out}",
            "pretrain.train.batch_size=8",
            "pretrain.encoder.num_keypoints=16",
            "pretrain.data.num_workers=0",
            *extra,
        ],
    )


def test_sampler_is_a_function_of_seed_and_step(data: tuple[Path, Path]) -> None:
    n = 96
    a = StepBatchSampler(n, 16, total_steps=6, seed=3)
    b = StepBatchSampler(n, 16, total_steps=6, seed=3, start_step=4)
    plans_a, plans_b = list(a), list(b)
    assert len(plans_a) == 6 and len(plans_b) == 2
    for pa, pb in zip(plans_a[4:], plans_b, strict=True):
        assert pa.step == pb.step and np.array_equal(pa.index, pb.index)
    assert not np.array_equal(plans_a[0].index, plans_a[1].index)
    assert not np.array_equal(plans_a[0].index, StepBatchSampler(n, 16, 6, seed=4).plan(0).index)
    # uniform with replacement over all samples
    draws = np.concatenate([sample_batch(n, 160, 0, s) for s in range(200)])
    counts = np.bincount(draws, minlength=n)
    assert counts.min() > 0 and abs(counts.mean() - 160 * 200 / n) < 1e-9
    assert counts.std() / counts.mean() < 0.1
    # DDP: ranks share the global batch and split it
    r1 = StepBatchSampler(n, 16, 6, seed=3, rank=1, world_size=2).plan(2)
    assert np.array_equal(r1.index, plans_a[2].index) and (r1.lo, r1.hi) == (8, 16)
    with pytest.raises(ValueError, match="divisible by the world size"):
        StepBatchSampler(n, 15, 6, world_size=2)


@pytest.mark.parametrize("batch_size", [16, 17])
def test_positive_sampler_gives_every_anchor_a_positive(data: tuple[Path, Path], batch_size: int) -> None:
    store, pairs_path = data
    n = EpisodeStore.open(store).n_steps
    csr = load_pairs(pairs_path).to_csr(n)
    graph = positive_graph(csr)
    has_pos = np.diff(graph[0]) > 0
    assert 0 < has_pos.sum() < n
    for step in range(20):
        idx = sample_batch(n, batch_size, 0, step, "positive", graph)
        assert len(idx) == batch_size and has_pos[idx].all()
        w = batch_weights(csr, idx)
        assert (w.sum(1) > 0).all()
    # uniform batches of the same size usually leave anchors without a positive
    w = batch_weights(csr, sample_batch(n, batch_size, 0, 0))
    assert (w.sum(1) == 0).any()


def test_positive_graph_drops_zero_weights() -> None:
    from class_core.similarity import CSR

    csr = CSR(np.array([0, 2, 3, 4, 4]), np.array([1, 2, 0, 0]), np.array([0.5, 0.0, 0.5, 0.0], np.float32))
    indptr, indices = positive_graph(csr)
    assert indptr.tolist() == [0, 1, 2, 2, 2] and indices.tolist() == [1, 0]


def test_dataset_batch(data: tuple[Path, Path]) -> None:
    store, pairs_path = data
    st = EpisodeStore.open(store)
    csr = load_pairs(pairs_path).to_csr(st.n_steps)
    sampler = StepBatchSampler(st.n_steps, 8, 3, seed=1, csr=csr, rank=1, world_size=2)
    plan = sampler.plan(2)
    plan.index[5] = plan.index[4]  # a repeated sample (drawn with replacement)
    for cache in (False, True):
        ds = PretrainDataset(store, ["image"], csr=csr, cache_images=cache)
        batch = ds[plan]
        assert batch["step"] == 2
        imgs = batch["images"]["image"]
        assert imgs.dtype == torch.uint8 and imgs.shape == (4, 40, 40, 3)
        np.testing.assert_array_equal(imgs.numpy(), st.get("image")[plan.index[4:8]])
        np.testing.assert_array_equal(batch["weights"].numpy(), batch_weights(csr, plan.index))
    with pytest.raises(Exception, match="missing key 'data/wrist_image'"):
        PretrainDataset(store, ["image", "wrist_image"])


def _weights(run: Path, step: int, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / f"step_{step:08d}" / name))


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted(data: tuple[Path, Path], tmp_path: Path) -> None:
    steps = 6  # checkpoints at 3 and 6 (each holds ~135 MB: model, EMA, optimizer)
    extra = [
        f"pretrain.train.max_steps={steps}",
        "pretrain.train.ckpt_every=3",
        "pretrain.optim.warmup_steps=2",
    ]
    ref = pretrain(tiny_cfg(data, tmp_path / "ref", *extra), progress=False)
    assert ref.steps == steps and ref.checkpoint is not None

    run = tmp_path / "killed"
    store, pairs = data
    cmd = [
        sys.executable,
        "-m",
        "class_core.cli.pretrain",
        "--config",
        str(DEBUG),
        "--no-progress",
        f"data.store={store}",
        f"pretrain.data.pairs={pairs}",
        f"pretrain.train.out_dir={run}",
        "pretrain.train.batch_size=8",
        "pretrain.encoder.num_keypoints=16",
        "pretrain.data.num_workers=1",
        *extra,
    ]  # a worker process here: loading must not matter
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=one_thread_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    first = run / "checkpoints" / "step_00000003" / "state.json"
    deadline = time.monotonic() + 240
    while not first.exists():
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "no checkpoint written"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in (run / "checkpoints").glob("step_*") if (p / "state.json").exists())
    assert done and done[-1] < f"step_{steps:08d}", f"run finished before it was killed: {done}"

    with pytest.raises(FileExistsError, match="--resume"):
        pretrain(tiny_cfg(data, run, *extra), progress=False)
    with pytest.raises(ConfigError, match="pretrain.loss.tau"):
        pretrain(tiny_cfg(data, run, *extra, "pretrain.loss.tau=0.1"), resume=True, progress=False)
    res = pretrain(tiny_cfg(data, run, *extra), resume=True, progress=False)
    assert res.steps == steps
    for name in ("model.safetensors", "ema.safetensors"):
        _assert_same(_weights(run, steps, name), _weights(tmp_path / "ref", steps, name))
    last = f"checkpoints/step_{steps:08d}/optimizer.pt"
    opt_a = torch.load(run / last, weights_only=True)
    opt_b = torch.load(tmp_path / "ref" / last, weights_only=True)
    for k, st in opt_b["state"].items():
        mom_a, mom_b = opt_a["state"][k]["momentum_buffer"], st["momentum_buffer"]
        torch.testing.assert_close(mom_a, mom_b, rtol=1e-5, atol=1e-7)
    # the resolved config and TensorBoard logs are there
    assert (run / "config.yaml").is_file() and any((run / "tb").iterdir())


@pytest.mark.slow
def test_ddp_two_gloo_ranks_match_single_process(data: tuple[Path, Path], tmp_path: Path) -> None:
    extra = [
        "pretrain.train.max_steps=1",
        "pretrain.train.ckpt_every=1",
        "pretrain.optim.warmup_steps=0",
        "pretrain.train.amp=none",  # bf16 rounding would differ with the per-rank batch split
        # a step with a gradient to all-reduce: every anchor has a positive (a uniform batch of 8
        # here has none: loss 0, an update of weight decay alone, the same without the all-reduce),
        # and no augmentation (drawn per rank, so 2 ranks would see other crops than 1 process)
        "pretrain.train.sampling=positive",
        "pretrain.encoder.crop_ratio=1.0",
        "pretrain.encoder.noise_std=0.0",
    ]
    pretrain(tiny_cfg(data, tmp_path / "single", *extra), progress=False)
    store, pairs = data
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "class_core.cli.pretrain",
        "--config",
        str(DEBUG),
        "--no-progress",
        f"data.store={store}",
        f"pretrain.data.pairs={pairs}",
        f"pretrain.train.out_dir={tmp_path / 'ddp'}",
        "pretrain.train.batch_size=8",
        "pretrain.encoder.num_keypoints=16",
        "pretrain.data.num_workers=0",
        *extra,
    ]
    r = subprocess.run(cmd, cwd=ROOT, env=one_thread_env(), capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("model.safetensors", "ema.safetensors"):
        _assert_same(_weights(tmp_path / "ddp", 1, name), _weights(tmp_path / "single", 1, name))


def test_amp_choice_and_cpu_bf16_step(data: tuple[Path, Path], tmp_path: Path) -> None:
    from class_core.nn.amp import autocast_dtype, cpu_has_amx_bf16

    cpu = torch.device("cpu")

    def amp(pref: str) -> torch.dtype | None:
        return autocast_dtype(pref, cpu, "pretrain.train.amp")

    assert amp("none") is None and amp("bf16") is torch.bfloat16
    assert amp("auto") is (torch.bfloat16 if cpu_has_amx_bf16() else None)
    with pytest.raises(ConfigError, match="pretrain.train.amp=fp16"):
        amp("fp16")
    with pytest.raises(ConfigError, match="pretrain.train.amp='half'"):
        amp("half")
    extra = ["pretrain.train.max_steps=2", "pretrain.train.amp=bf16", "pretrain.optim.warmup_steps=0"]
    res = pretrain(tiny_cfg(data, tmp_path / "bf16", *extra), progress=False)
    assert res.steps == 2 and all(np.isfinite(r.loss) for r in res.history)
    for w in _weights(tmp_path / "bf16", 2, "model.safetensors").values():
        assert w.dtype == torch.float32 and torch.isfinite(w).all()  # master weights stay float32


def test_cli_help_and_config_errors(
    data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from class_core.cli.pretrain import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "--resume" in capsys.readouterr().out
    assert main(["--config", str(DEBUG), "pretrain.train.batchsize=3"]) == 2
    assert "pretrain.train.batchsize" in capsys.readouterr().err
    store, _ = data
    rc = main(
        [
            "--config",
            str(DEBUG),
            f"data.store={store}",
            f"pretrain.data.pairs={tmp_path / 'none.npz'}",
            "pretrain.synthetic=null",
            f"--out={tmp_path / 'o'}",
        ]
    )
    assert rc == 2 and "class-precompute" in capsys.readouterr().err
