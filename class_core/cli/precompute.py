"""class-precompute: DTW positive pairs of a data set's action chunks (docs/similarity.md).

Either from an episode store (chunks made by ``class_core.data.chunks.similarity_chunks``:
normalised to [-1, 1], rot6d scaled) or from a ready ``(N, T, D)`` ``.npy`` used as given.
Settings come from the config's ``similarity:`` section, then ``key=value`` overrides, then flags.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from class_core.similarity.engine import BACKENDS, PairConfig, cache_key, compute_pairs, meta_matches
from class_core.similarity.pairs import WEIGHT_MODES, load_pairs

EPILOG = """\
examples:
  class-precompute --store data/square.zarr --config config/square.yaml
  class-precompute --store data/pusht.zarr --config config/pusht.yaml similarity.quantile=0.015
  class-precompute --chunks chunks.npy --quantile 0.025 --out pairs.npz --workdir runs/dtw_work
  torchrun --nproc-per-node 2 -m class_core.cli.precompute --chunks chunks.npy --out pairs.npz

Quantile mode keeps the K = floor(q (M-1)) + 1 closest of the M = N(N-1)/2 pairs (the pairs at or
below numpy.quantile(d, q)); --topk keeps each sample's k nearest instead. An --out file whose
metadata matches the job is reused; an interrupted job resumes from --workdir.
"""


@dataclass
class SimilaritySection:
    """The ``similarity:`` section of a task config."""

    out: str | None = None
    workdir: str | None = None
    chunk_length: int = 16  # T_p of the chunks built from a store
    rot6d_scale: float = 0.5
    quantile: float = 0.025
    topk: int | None = None
    weights: str = "rank"
    cost: str = "sqeuclidean"
    band: int | None = None
    horizon: int | None = None
    backend: str = "numba"
    sample_pairs: int = 262_144
    seed: int = 0
    strip_rows: int = 512


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="class-precompute",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = ap.add_argument_group("input (one of)")
    src.add_argument("--store", type=Path, help="episode store (zarr); chunks from its action array")
    src.add_argument("--chunks", type=Path, help="(N, T, D) .npy of chunks, used as given (no normalisation)")
    ap.add_argument("--config", type=Path, help="task config YAML (sections data: and similarity:)")
    ap.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, e.g. similarity.band=2"
    )
    ap.add_argument("--out", type=Path, help="output .npz (default: similarity.out, or pairs.npz)")
    ap.add_argument("--quantile", type=float, help="global quantile q in (0, 1] (default 0.025)")
    ap.add_argument("--topk", type=int, help="per-anchor top-k mode with this k instead of the quantile")
    ap.add_argument(
        "--weights",
        choices=WEIGHT_MODES,
        help="rank: linear 1 -> 0 by rank (default); cdf: 1 - empirical CDF of the positive distances",
    )
    ap.add_argument(
        "--cost",
        choices=("sqeuclidean", "euclidean"),
        help="local cost: squared Euclidean as aeon (default) or Euclidean",
    )
    ap.add_argument("--band", type=int, help="Sakoe-Chiba radius in steps (default: none)")
    ap.add_argument("--horizon", type=int, help="use only the first h steps of each chunk")
    ap.add_argument(
        "--backend", choices=BACKENDS, help="numba (CPU, pruned; default) or torch (CUDA if present)"
    )
    ap.add_argument("--workdir", type=Path, help="keep finished strips here; a rerun resumes from them")
    ap.add_argument("--force", action="store_true", help="recompute even if --out matches")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


def _load_section(args: argparse.Namespace) -> tuple[SimilaritySection, dict[str, Any]]:
    cfg: dict[str, Any] = {}
    if args.config is not None or args.overrides:
        from class_core.config import load_config

        try:
            cfg = load_config(args.config, args.overrides)
        except (OSError, ValueError) as e:
            raise SystemExit(f"class-precompute: {e}") from e
    from class_core.config import from_dict

    try:
        sec = from_dict(SimilaritySection, cfg.get("similarity") or {}, where="similarity")
    except ValueError as e:
        raise SystemExit(f"class-precompute: {e}") from e
    for name in ("quantile", "topk", "weights", "cost", "band", "horizon", "backend"):
        v = getattr(args, name)
        if v is not None:
            setattr(sec, name, v)
    if args.topk is None and args.quantile is not None:
        sec.topk = None
    if args.out is not None:
        sec.out = str(args.out)
    if args.workdir is not None:
        sec.workdir = str(args.workdir)
    return sec, cfg


def _chunks(args: argparse.Namespace, sec: SimilaritySection, cfg: dict[str, Any]) -> tuple[np.ndarray, str]:
    store_path = args.store or (cfg.get("data") or {}).get("store")
    if (store_path is None) == (args.chunks is None):
        raise SystemExit(
            "class-precompute: give exactly one of --store (or data.store in the config) and --chunks"
        )
    if args.chunks is not None:
        if not args.chunks.is_file():
            raise SystemExit(f"class-precompute: --chunks {args.chunks} does not exist")
        x = np.load(args.chunks, allow_pickle=False)
        if x.ndim != 3:
            raise SystemExit(
                f"class-precompute: --chunks {args.chunks} must be (N, T, D), got shape {x.shape}"
            )
        from class_core.similarity.engine import fingerprint_chunks

        return x, fingerprint_chunks(x)
    from class_core.data.chunks import similarity_chunks
    from class_core.data.store import EpisodeStore

    store = EpisodeStore.open(str(store_path), (cfg.get("data") or {}).get("keys") or None)
    actions = np.asarray(store.array("action")[:])
    x, _ = similarity_chunks(actions, store.episode_ends, sec.chunk_length, sec.rot6d_scale)
    fp = f"{store.fingerprint()}|T_p={sec.chunk_length}|rot6d_scale={sec.rot6d_scale}"
    return x, fp


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sec, cfg = _load_section(args)
    pc = PairConfig(**{f.name: getattr(sec, f.name) for f in fields(PairConfig) if hasattr(sec, f.name)})
    try:
        pc.validate()
    except ValueError as e:
        raise SystemExit(f"class-precompute: {e}") from e
    x, fp = _chunks(args, sec, cfg)
    out = Path(sec.out or "pairs.npz")
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))

    if out.exists() and not args.force:
        n, t, d = x.shape
        key = cache_key(pc, n, min(t, pc.horizon or t), d, fp)
        try:
            diff = meta_matches(load_pairs(out).meta, key)
        except ValueError as e:
            diff = [f"unreadable ({e})"]
        if not diff:
            if rank == 0:
                print(f"{out}: already holds these pairs (metadata matches); reusing it")
            return 0
        if rank == 0:
            print(f"{out}: exists but differs in {diff}; recomputing")

    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("nccl" if pc.backend == "torch" and _cuda() else "gloo")
    try:
        ps = compute_pairs(
            x,
            pc,
            workdir=sec.workdir,
            fingerprint=fp,
            progress=not args.no_progress,
            log=(lambda m: print(m, file=sys.stderr)) if rank == 0 else None,
        )
    except ValueError as e:
        raise SystemExit(f"class-precompute: {e}") from e
    finally:
        if world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
    if ps is not None:
        ps.meta["source"] = str(args.chunks or args.store or (cfg.get("data") or {}).get("store"))
        ps.meta["similarity"] = asdict(sec)
        ps.save(out)
        st = ps.meta["stats"]
        print(
            f"{out}: {len(ps)} pairs of N={x.shape[0]} (threshold {ps.meta['threshold']:.6g}) "
            f"in {st['seconds']:.1f} s; DTW on {st['pairs_after_lower_bounds']} of {st['pairs_total']} pairs"
        )
        print(json.dumps({k: ps.meta[k] for k in ("n", "k_pairs", "threshold", "mode")}))
    return 0


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


if __name__ == "__main__":
    sys.exit(main())
