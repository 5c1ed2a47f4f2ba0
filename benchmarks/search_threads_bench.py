"""Two rollout workers searching at once: FAISS on every core each, or capped at one each.

``class-eval --workers W`` runs W processes; each batched search used to set FAISS's OpenMP
threads to all cores, so two workers on 2 cores ran 4 threads. ``retrieval.limit_search_threads``
(set by ``class_core.cli.eval.load_policy``) caps them. This runs ``--workers`` processes at the
same time, each doing ``--calls`` searches of ``--batch`` queries, with and without the cap, and
prints the wall time of each round (the slowest process). Latents as in retrieval_bench.py.

    python benchmarks/search_threads_bench.py                     # ivf and hnsw, N = 28k
    python benchmarks/search_threads_bench.py --kinds ivf --size 100000
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

import numpy as np


def _worker(kind: str, size: int, batch: int, calls: int, cap: bool, seed: int, start, out) -> None:  # type: ignore[no-untyped-def]
    from retrieval_bench import trajectory_latents
    from threadpoolctl import threadpool_limits

    from class_core.policy.retrieval import IndexConfig, KNNIndex, limit_search_threads

    rng = np.random.default_rng(0)
    lift = rng.normal(size=(12, 1040)) / np.sqrt(12)
    bank = trajectory_latents(size, rng, lift)
    queries = trajectory_latents(batch * 4, np.random.default_rng(seed + 1), lift)
    index = KNNIndex.build(bank, IndexConfig(kind=kind))  # type: ignore[arg-type]
    limit_search_threads(1 if cap else None)
    with threadpool_limits(1, user_api="blas"):  # as in a worker: BLAS on one thread
        index.search(queries[:batch], 16)
        start.wait()
        t = time.perf_counter()
        for c in range(calls):
            lo = (c % 4) * batch
            index.search(queries[lo : lo + batch], 16)
        out.put(time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kinds", nargs="+", default=["ivf", "hnsw"], choices=["pca_flat", "hnsw", "ivf"])
    p.add_argument("--size", type=int, default=28_000, help="bank entries (the Push-T demo: 28,040)")
    p.add_argument("--batch", type=int, default=50, help="queries per call (class-eval --batch)")
    p.add_argument("--calls", type=int, default=60)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()}")
    ctx = mp.get_context("spawn")
    print("| index | FAISS threads per worker | workers | wall s (slowest worker) |")
    print("|---|---|---|---|")
    for kind in args.kinds:
        for cap in (False, True):
            start = ctx.Barrier(args.workers)
            out = ctx.Queue()
            job = (kind, args.size, args.batch, args.calls, cap)
            procs = [ctx.Process(target=_worker, args=(*job, w, start, out)) for w in range(args.workers)]
            for pr in procs:
                pr.start()
            times = [out.get() for _ in procs]
            for pr in procs:
                pr.join()
            threads = "1 (capped)" if cap else f"{os.cpu_count()} (all cores)"
            print(f"| {kind} | {threads} | {args.workers} | {max(times):.2f} |", flush=True)


if __name__ == "__main__":
    main()
