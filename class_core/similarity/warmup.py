"""Compile the DTW engine's numba kernels into numba's on-disk cache ahead of the first job.

A cold cache costs about 85 s of compilation on 2 cores (the parallel strip kernel most of it)
the first time any job runs, however small. ``python -m class_core.similarity.warmup`` pays it up
front: the Docker image runs it at build time, and the test runner runs it beside the first tests
so that CI does not pay it in series. The jobs below take each path the engine can choose
(quantile strips with and without the dense-block prefilter, top-k, both costs, a band), so they
compile every signature the engine uses. Results are discarded; only the cache stays
(``NUMBA_CACHE_DIR`` if set, else ``__pycache__`` beside the sources).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from class_core.similarity.engine import PairConfig, compute_pairs


def warm(log: bool = True) -> float:
    """Run the small jobs; returns the seconds it took (about 1-2 s once the cache is warm)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    # random walks favour the dense-block prefilter, smooth demonstration-like chunks the box bound
    walks = np.cumsum(rng.normal(size=(600, 16, 10)), axis=1).astype(np.float32)
    t = np.linspace(0, 1, 16, dtype=np.float32)[None, :, None]
    smooth = (rng.normal(size=(600, 1, 2)) + rng.normal(size=(600, 1, 2)) * t).astype(np.float32)
    jobs = [
        (walks, PairConfig(quantile=0.03)),
        (smooth, PairConfig(quantile=0.025)),
        (smooth, PairConfig(quantile=0.025, cost="euclidean", band=3)),
        (smooth, PairConfig(topk=4)),
    ]
    for x, cfg in jobs:
        compute_pairs(x, cfg, progress=False)
    seconds = time.perf_counter() - t0
    if log:
        print(f"numba kernels of the DTW engine compiled or loaded from the cache in {seconds:.1f} s")
    return seconds


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m class_core.similarity.warmup",
        description=__doc__.split("\n\n")[0] + " Writes to NUMBA_CACHE_DIR if set.",
    ).parse_args(argv)
    warm()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
