"""Pre-training throughput: images/s and the share of step time spent waiting for data.

Builds a synthetic episode store (96x96 uint8 images, zarr chunks as the store writer makes them)
and its DTW pairs, then runs the real trainer (``class_core.train.pretrain.pretrain``) for a few
steps per configuration and prints one row per configuration. The first steps are dropped
(warm-up: worker start, allocator). Target: data wait under 10 % of step time.

    .venv/bin/python benchmarks/train_throughput.py                      # batch 160, 96x96, CPU
    .venv/bin/python benchmarks/train_throughput.py --workers 0 2 4 --steps 12 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def loader_only(store: Path, pairs: Path, batch: int, workers: int, steps: int) -> float:
    """Batches/s the DataLoader delivers with no compute (upper bound of what loading allows)."""
    from torch.utils.data import DataLoader

    from class_core.data.store import EpisodeStore
    from class_core.data.torch_dataset import PretrainDataset, StepBatchSampler
    from class_core.similarity import load_pairs

    n = EpisodeStore.open(store).n_steps
    csr = load_pairs(pairs).to_csr(n)
    ds = PretrainDataset(store, ["image"], csr=csr)
    sampler = StepBatchSampler(n, batch, steps + 2, seed=0, csr=csr)
    dl = DataLoader(
        ds, sampler=sampler, batch_size=None, num_workers=workers, prefetch_factor=4 if workers else None
    )
    it = iter(dl)
    next(it), next(it)  # warm-up
    t0 = time.perf_counter()
    for _ in it:
        pass
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=160, help="batch size (paper: 160)")
    ap.add_argument("--size", type=int, default=96, help="image side in pixels (crop is 0.875 of it)")
    ap.add_argument("--episodes", type=int, default=20, help="synthetic episodes of 100 steps")
    ap.add_argument("--steps", type=int, default=8, help="measured steps per configuration")
    ap.add_argument("--warmup", type=int, default=2, help="steps dropped at the start")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts to try")
    ap.add_argument("--cache", action="store_true", help="also run with all images cached in RAM")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--amp", default="auto", help="auto | bf16 | fp16 | none (CUDA)")
    ap.add_argument("--workdir", default=None, help="keep the synthetic data here (default: a temp dir)")
    args = ap.parse_args()

    from class_core.config import load_config
    from class_core.train.pretrain import pretrain
    from class_core.train.synthetic import SyntheticConfig, make_synthetic_pairs, make_synthetic_store

    work = Path(args.workdir or tempfile.mkdtemp(prefix="class_tp_"))
    store, pairs = work / f"syn{args.size}.zarr", work / f"pairs{args.size}.npz"
    if not store.exists():
        make_synthetic_store(
            store, SyntheticConfig(episodes=args.episodes, steps=100, segment=25, image_size=args.size)
        )
    if not pairs.exists():
        make_synthetic_pairs(store, pairs)
    root = Path(__file__).resolve().parents[1]
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    print(
        f"device {device}, torch threads {torch.get_num_threads()}, batch {args.batch}, "
        f"{args.size}x{args.size} images, {args.steps} measured steps after {args.warmup}"
    )
    cols = ("workers", "cache", "img/s", "ms/img", "step s", "wait %", "loader b/s")
    print(" ".join(f"{c:>{w}}" for c, w in zip(cols, (7, 5, 8, 7, 7, 7, 10), strict=True)))
    configs = [(w, False) for w in args.workers] + ([(max(args.workers), True)] if args.cache else [])
    for workers, cache in configs:
        out = work / f"run_w{workers}_c{int(cache)}_{time.time_ns()}"
        cfg = load_config(
            root / "config" / "debug.yaml",
            [
                f"data.store={store}",
                f"pretrain.data.pairs={pairs}",
                f"pretrain.train.out_dir={out}",
                f"pretrain.train.batch_size={args.batch}",
                f"pretrain.train.max_steps={args.steps + args.warmup}",
                f"pretrain.train.ckpt_every={10**9}",
                "pretrain.train.log_every=1",
                f"pretrain.train.device={device}",
                f"pretrain.train.amp={args.amp}",
                f"pretrain.data.num_workers={workers}",
                f"pretrain.data.cache_images={str(cache).lower()}",
                "pretrain.encoder.weights=random",
            ],
        )
        res = pretrain(cfg, progress=False)
        logs = [h for h in res.history if h.step > args.warmup]
        step_s = [h.step_s for h in logs]
        wait = sum(h.data_wait_s for h in logs) / sum(step_s)
        mean_step = statistics.mean(step_s)
        lo = loader_only(store, pairs, args.batch, workers, max(4, args.steps)) if not cache else float("nan")
        ips, ms = args.batch / mean_step, 1000 * mean_step / args.batch
        row = f"{workers:>7} {str(cache):>5} {ips:>8.1f} {ms:>7.2f} {mean_step:>7.3f}"
        print(f"{row} {100 * wait:>6.1f}% {lo:>10.2f}")
    print(f"(data in {work}; wait % = time blocked on the DataLoader / step time)")


if __name__ == "__main__":
    main()
