"""k-NN latency and recall: torch matmul + topk, faiss IndexFlatIP and this project's index kinds.

Data (synthetic, stated in the output): latents shaped like CLASS retrieval latents -- episodes of
smooth random walks in a 12-D hidden state, lifted to 1024 "keypoint" dims by a fixed random tanh
layer (values in [-1, 1], like spatial-softmax coordinates), plus 16 proprio dims and noise, then
L2-normalised (d = 1040). Queries are held-out episodes from the same process, so they fall near
but not on bank points, as at rollout time. Recall@k is against exact search.

    python benchmarks/retrieval_bench.py                      # N = 30k and 254k
    python benchmarks/retrieval_bench.py --sizes 30000 --kinds faiss_flat flat pca_flat
    python benchmarks/retrieval_bench.py --sizes 30000 --kinds faiss_flat flat --batch 50

``flat`` is this project's exact search (one BLAS product per batch of queries), ``faiss_flat`` the
FAISS ``IndexFlatIP`` it replaced. One thread for every library (threadpoolctl limits BLAS).
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np
import torch
from threadpoolctl import threadpool_limits

from class_core.policy.retrieval import IndexConfig, KNNIndex, exact_topk, l2_normalize, recall_at_k


def trajectory_latents(n: int, rng: np.random.Generator, lift: np.ndarray, ep_len: int = 200) -> np.ndarray:
    hidden = lift.shape[0]
    n_ep = -(-n // ep_len)
    steps = rng.normal(scale=0.08, size=(n_ep, ep_len, hidden))
    state = rng.normal(size=(n_ep, 1, hidden)) + np.cumsum(steps, axis=1)
    state = state.reshape(-1, hidden)[:n]
    out = np.empty((n, lift.shape[1]), dtype=np.float32)
    for lo in range(0, n, 20000):  # bounded memory
        s = state[lo : lo + 20000]
        kp = np.tanh(s @ lift[:, :1024])
        prop = np.tanh(0.5 * s @ lift[:, 1024:])
        x = np.concatenate([kp, prop], axis=1) + 0.03 * rng.normal(size=(len(s), 1040))
        out[lo : lo + 20000] = l2_normalize(x)
    return out


def timeit(fn, queries: np.ndarray, reps: int, batch: int) -> tuple[float, float, np.ndarray]:  # type: ignore[no-untyped-def]
    """Times of ``reps`` calls of ``batch`` queries each -> (p50 ms, p99 ms, found (reps * batch, k))."""
    times, found = [], []
    for i in range(reps):
        q = queries[(i * batch + np.arange(batch)) % len(queries)]
        t0 = time.perf_counter()
        idx = fn(q)
        times.append(time.perf_counter() - t0)
        found.append(idx)
    t = np.array(times[3:] if reps > 10 else times) * 1e3
    return float(np.percentile(t, 50)), float(np.percentile(t, 99)), np.concatenate(found)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[30_000, 254_000])
    p.add_argument("--kinds", nargs="+", default=["torch", "faiss_flat", "flat", "pca_flat", "hnsw", "ivf"])
    p.add_argument("--batch", type=int, default=1, help="queries per call (lockstep rollouts batch them)")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--pca-dim", type=int, default=64)
    p.add_argument("--candidates", type=int, default=256)
    p.add_argument("--nprobe", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    threadpool_limits(1)
    rng = np.random.default_rng(args.seed)
    lift = rng.normal(scale=0.6, size=(12, 1040))
    print("data: synthetic trajectory latents (12-D random walks -> tanh lift to 1024 + 16 proprio, d=1040)")
    per_call = "1 query" if args.batch == 1 else f"{args.batch} queries"
    print(f"{per_call} per call, k={args.k}, 1 thread; times in ms per call\n")
    print(f"{'N':>8} {'method':<28} {'build s':>8} {'p50':>8} {'p99':>8} {'recall@k':>9}")
    for n in args.sizes:
        bank = trajectory_latents(n, rng, lift)
        queries = trajectory_latents(args.queries, rng, lift)
        truth = exact_topk(bank, queries, args.k)
        reps = max(10, args.queries // args.batch)
        for kind in args.kinds:
            t0 = time.perf_counter()
            if kind == "torch":
                tb = torch.from_numpy(bank)

                def fn(q: np.ndarray, tb: torch.Tensor = tb) -> np.ndarray:
                    return torch.topk(torch.from_numpy(q) @ tb.T, args.k, dim=1).indices.numpy()

                label = "torch matmul + topk"
            elif kind == "faiss_flat":
                fi = faiss.IndexFlatIP(bank.shape[1])
                fi.add(bank)

                def fn(q: np.ndarray, fi: faiss.Index = fi) -> np.ndarray:
                    return fi.search(q, args.k)[1]

                label = "faiss IndexFlatIP (exact)"
            else:
                cfg = IndexConfig(kind=kind, pca_dim=args.pca_dim, candidates=args.candidates,
                                  nlist=int(4 * np.sqrt(n)), nprobe=args.nprobe)  # fmt: skip
                index = KNNIndex.build(bank, cfg)

                def fn(q: np.ndarray, index: KNNIndex = index) -> np.ndarray:
                    return index.search(q, args.k)[1]

                label = {"flat": "flat: BLAS product (exact)", "pca_flat": f"PCA{args.pca_dim} flat + rerank",
                         "hnsw": f"PCA{args.pca_dim} HNSW32 + rerank",
                         "ivf": f"PCA{args.pca_dim} IVF nprobe={args.nprobe} + rerank"}[kind]  # fmt: skip
            build = time.perf_counter() - t0
            p50, p99, found = timeit(fn, queries, reps, args.batch)
            used = (np.arange(reps * args.batch)) % len(queries)
            rec = recall_at_k(found, truth[used])
            print(f"{n:>8} {label:<28} {build:>8.1f} {p50:>8.2f} {p99:>8.2f} {rec:>9.4f}", flush=True)


if __name__ == "__main__":
    main()
