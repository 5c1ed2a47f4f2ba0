"""How much of the DTW work a lower bound saves: share of pairs it removes at the q-quantile threshold,
against the DP cells it computes (float64, brute force on random pairs; not run in CI).

The engine's dense-block path (docs/similarity.md, "How it is fast", 4) computes one bound on
every pair and the whole DP only on the pairs it does not remove, so a bound is worth its cells
when it removes many pairs per cell. Steps are in the order ``dtw.dot_layout`` uses (reversed
when the chunks spread more over their second half, as random walks do), so "corner k" is the
k x k corner where the chunks differ most, "far corner k" the opposite one. Bounds compared:

- ``rows h``: the minimum of DP row h - 1 (the first h whole rows: h T cells; the path crosses
  every row);
- ``corner k``: the minimum of the DP over the k x k corner on its last row and column
  (``dtw.dot_corner``; k^2 cells: every path leaves the square through that L-shaped band);
- ``corner k + far corner k2``: both corners (disjoint when k + k2 <= T), summed;
- LB_Kim and LB_Kim + box bound (``kernels._lower_bounds``).

    python benchmarks/dtw_bounds.py                        # random walks, N = 30k, 40k pairs
    python benchmarks/dtw_bounds.py --data demo --pairs 20000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dtw_bench import make_data  # noqa: E402

from class_core.similarity.dtw import pair_distances  # noqa: E402
from class_core.similarity.engine import corner_bound  # noqa: E402


def dp_rows(cost: np.ndarray, rows: int) -> np.ndarray:
    """DP values of rows 0..rows-1 over all columns: (pairs, T) of the last one."""
    t = cost.shape[2]
    prev = np.zeros((cost.shape[0], t))
    for p in range(rows):
        cur = np.empty_like(prev)
        for q in range(t):
            if p == 0:
                best = cur[:, q - 1] if q else 0.0
            elif q == 0:
                best = prev[:, 0]
            else:
                best = np.minimum(np.minimum(prev[:, q], prev[:, q - 1]), cur[:, q - 1])
            cur[:, q] = cost[:, p, q] + best
        prev = cur
    return prev


def corner(cost: np.ndarray, k: int) -> np.ndarray:
    """Minimum of the DP over the k x k corner on its last row and last column (k < T)."""
    return corner_bound(cost[:, :k, :k], cost.shape[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", choices=("walk", "demo"), default="walk")
    ap.add_argument("--n", type=int, default=30000, help="chunks to draw the pairs from")
    ap.add_argument("--pairs", type=int, default=40000, help="random pairs (i != j) to evaluate")
    ap.add_argument("--quantile", type=float, default=0.025)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    t0 = time.perf_counter()
    x = make_data(args.data, args.n, 0).astype(np.float64)
    n, t, _ = x.shape
    spread = x.var(axis=0).sum(axis=1)
    if spread[t - t // 2 :].sum() > spread[: t // 2].sum():  # dtw.dot_layout's step order
        x = x[:, ::-1]
    rng = np.random.default_rng(args.seed)
    i = rng.integers(0, n, args.pairs)
    j = rng.integers(0, n - 1, args.pairs)
    j = j + (j >= i)
    d = pair_distances(np.ascontiguousarray(x), i, j)
    thr = float(np.quantile(d, args.quantile))
    a, b = x[i], x[j]
    cost = ((a[:, :, None, :] - b[:, None, :, :]) ** 2).sum(-1)  # (pairs, T, T)
    far = cost[:, ::-1, ::-1]
    print(f"{args.data}: N = {n}, T = {t}, {args.pairs} random pairs, q = {args.quantile}: thr {thr:.4g}")
    print("| bound | DP cells | pairs removed | removed per 100 cells |")
    print("|---|---|---|---|")

    def row(name: str, bound: np.ndarray, cells: int) -> None:
        share = float(np.mean(bound > thr))
        per = f"{100 * share / cells:.2f}" if cells else "-"
        print(f"| {name} | {cells} | {share:.3f} | {per} |")

    kim = cost[:, 0, 0] + cost[:, -1, -1]
    lo, hi = b.min(1), b.max(1)
    box1 = (np.maximum(np.maximum(lo[:, None] - a, a - hi[:, None]), 0) ** 2).sum(-1)[:, 1:-1].sum(1)
    lo, hi = a.min(1), a.max(1)
    box2 = (np.maximum(np.maximum(lo[:, None] - b, b - hi[:, None]), 0) ** 2).sum(-1)[:, 1:-1].sum(1)
    row("LB_Kim", kim, 0)
    row("LB_Kim + box", kim + np.maximum(box1, box2), 0)
    for h in range(2, t // 2 + 1, 2):
        row(f"rows {h}", dp_rows(cost, h).min(1), h * t)
    corners = {k: corner(cost, k) for k in range(2, t)}
    for k in range(4, t - 1):
        row(f"corner {k}", corners[k], k * k)
    for k in (t // 2, t // 2 + 1):
        for k2 in (2, 4, t - k):
            if 0 < k2 <= t - k:
                row(f"corner {k} + far corner {k2}", corners[k] + corner(far, k2), k * k + k2 * k2)
    print(f"({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
