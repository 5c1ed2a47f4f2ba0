"""Positive pairs: the on-disk format, weights, and the sparse view the trainer slices batches from.

File format (one ``.npz``, written atomically, loadable without pickle):

| array      | dtype          | meaning                                                   |
|------------|----------------|-----------------------------------------------------------|
| ``i``, ``j`` | int64 (K,)   | sample indices, ``i < j``, sorted by (i, j)                |
| ``distance`` | float64 (K,) | DTW distance of the two action chunks                      |
| ``weight``   | float32 (K,) | soft weight in [0, 1]                                      |
| ``meta``     | 0-d unicode  | JSON: parameters, N, horizon, threshold, fingerprint, version |
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from class_core.io import atomic_save_npz

WEIGHT_MODES = ("rank", "cdf")
FORMAT = "class-pairs/1"


def order_by_distance(distance: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """The permutation that sorts pairs by (distance, i, j): equal to ``np.lexsort((j, i, distance))``.

    One unstable argsort of the distances (numpy's SIMD quicksort: several x faster than
    ``lexsort`` on millions of pairs), then only the runs of exactly tied distances are re-sorted
    by (i, j).
    """
    d = np.asarray(distance, dtype=np.float64)
    order = np.argsort(d)
    if d.size < 2:
        return order
    ds = d[order]
    t = np.flatnonzero(ds[1:] == ds[:-1])
    if t.size:
        pos = np.unique(np.concatenate([t, t + 1]))  # every position inside a run of ties
        sub = np.sort(order[pos])  # by index: full ties keep lexsort's (stable) order
        order[pos] = sub[np.lexsort((np.asarray(j)[sub], np.asarray(i)[sub], d[sub]))]
    return order


def pair_weights(
    distance: np.ndarray, i: np.ndarray, j: np.ndarray, mode: str = "rank", order: np.ndarray | None = None
) -> np.ndarray:
    """Soft weights of K positive pairs from their distances.

    ``rank``: order the pairs by (distance, i, j) and give rank r = 0..K-1 the weight
    ``1 - r / (K - 1)`` (1 for the closest, 0 for the farthest; 1 if K == 1), as the authors do.
    ``cdf``: ``1 - F(d)`` with F the empirical CDF of the positive distances,
    ``F(d) = #{positives with distance <= d} / K``; tied distances share a weight, the farthest gets 0.
    ``order``: ``order_by_distance(distance, i, j)`` when the caller has it already (the engine
    does: it sorts the candidates to select them), so the K pairs are not sorted a second time.
    """
    if mode not in WEIGHT_MODES:
        raise ValueError(f"weights must be one of {WEIGHT_MODES}, got {mode!r}")
    d = np.asarray(distance, dtype=np.float64)
    k = d.shape[0]
    w = np.empty(k, dtype=np.float64)
    if k == 0:
        return w.astype(np.float32)
    if order is None:
        order = order_by_distance(d, i, j) if mode == "rank" else np.argsort(d)
    if mode == "rank":
        w[order] = 1.0 - np.arange(k) / (k - 1) if k > 1 else 1.0
    else:
        srt = d[order]
        w[order] = 1.0 - np.searchsorted(srt, srt, side="right") / k
    return w.astype(np.float32)


class CSR(NamedTuple):
    """Symmetric sparse weight matrix: row r's neighbours are ``indices[indptr[r]:indptr[r+1]]``."""

    indptr: np.ndarray  # int64 (n + 1,)
    indices: np.ndarray  # int64 (2K,), sorted within each row
    weights: np.ndarray  # float32 (2K,)


@dataclass
class PairSet:
    """K positive pairs (``i < j``) with their DTW distances and soft weights."""

    i: np.ndarray
    j: np.ndarray
    distance: np.ndarray
    weight: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.i.shape[0])

    def to_csr(self, n: int) -> CSR:
        """Symmetric CSR of the weights for ``n`` samples (each pair appears as (i, j) and (j, i))."""
        if len(self) and int(max(self.i.max(), self.j.max())) >= n:
            raise ValueError(f"to_csr: n={n} but pairs index sample {int(max(self.i.max(), self.j.max()))}")
        rows = np.concatenate([self.i, self.j]).astype(np.int64)
        cols = np.concatenate([self.j, self.i]).astype(np.int64)
        w = np.concatenate([self.weight, self.weight]).astype(np.float32)
        order = np.lexsort((cols, rows))
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        return CSR(indptr, cols[order], w[order])

    def save(self, path: str | os.PathLike[str]) -> Path:
        return save_pairs(path, self)


def save_pairs(path: str | os.PathLike[str], pairs: PairSet) -> Path:
    """Write ``pairs`` to ``path`` (the name is kept as given) atomically."""
    return atomic_save_npz(
        path,
        i=np.asarray(pairs.i, dtype=np.int64),
        j=np.asarray(pairs.j, dtype=np.int64),
        distance=np.asarray(pairs.distance, dtype=np.float64),
        weight=np.asarray(pairs.weight, dtype=np.float32),
        meta=np.array(json.dumps(pairs.meta, sort_keys=True)),
    )


def load_pairs(path: str | os.PathLike[str]) -> PairSet:
    """Read a pair file written by ``save_pairs`` / ``class-precompute`` (no pickle)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pair file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("i", "j", "distance", "weight", "meta") if k not in z.files]
            if missing:
                raise ValueError(f"{path}: not a pair file, missing arrays {missing}")
            arrays = {k: z[k] for k in ("i", "j", "distance", "weight")}
            meta = json.loads(str(z["meta"]))
    except (OSError, ValueError, json.JSONDecodeError) as e:
        if str(path) in str(e):
            raise
        raise ValueError(f"{path}: cannot read pair file ({e})") from e
    k = arrays["i"].shape[0]
    for name, a in arrays.items():
        if a.shape != (k,):
            raise ValueError(f"{path}: array {name!r} has shape {a.shape}, expected ({k},)")
    if k and not np.all(arrays["i"] < arrays["j"]):
        raise ValueError(f"{path}: pairs must have i < j")
    return PairSet(
        arrays["i"].astype(np.int64),
        arrays["j"].astype(np.int64),
        arrays["distance"].astype(np.float64),
        arrays["weight"].astype(np.float32),
        meta,
    )


def batch_weights(csr: CSR, idx: np.ndarray) -> np.ndarray:
    """Weight matrix ``(B, B)`` float32 of a batch of sample indices ``idx`` (B,).

    Entry (a, b) is the weight of the pair (idx[a], idx[b]). The diagonal is zero, and so is any
    entry between two copies of the same sample drawn with replacement: a sample is not its own
    positive, exactly as slicing the authors' dense matrix (zero diagonal) with ``W[idx][:, idx]``.
    """
    idx = np.asarray(idx, dtype=np.int64)
    if idx.ndim != 1:
        raise ValueError(f"idx must be 1-D, got shape {idx.shape}")
    n = csr.indptr.shape[0] - 1
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        bad = int(idx[(idx < 0) | (idx >= n)][0])
        raise IndexError(f"batch index {bad} out of range for {n} samples")
    b = idx.shape[0]
    out = np.zeros((b, b), dtype=np.float32)
    for a in range(b):
        s, e = csr.indptr[idx[a]], csr.indptr[idx[a] + 1]
        if s == e:
            continue
        row = csr.indices[s:e]
        pos = np.searchsorted(row, idx)
        pos_c = np.minimum(pos, e - s - 1)
        hit = row[pos_c] == idx
        out[a, hit] = csr.weights[s + pos_c[hit]]
    return out
