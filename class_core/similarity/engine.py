"""The positive-pair engine: exact global-quantile (or per-anchor top-k) DTW pairs without an N x N matrix.

Definitions:

- ``quantile`` mode (default): with M = N(N-1)/2 pairs i < j, K = floor(q (M - 1)) + 1 pairs with the
  smallest DTW distance, ties broken by (i, j). That is the number of pairs with
  ``d <= numpy.quantile(d, q)`` (linear interpolation) when distances are distinct: the authors'
  "quantile over all pairs i < j, then <= threshold".
- ``topk`` mode: for each anchor i, its k nearest j != i (ties by smaller j); the pair set is the
  union of those (i, j) pairs, stored once as (min, max).

How: chunks are sorted along a projection of their (first, last) steps; rows of the upper
triangle are processed in strips (the unit of resume and of distribution), each strip in column
tiles. Lower bounds (LB_Kim + bounding-box bound, and the projection gap that ends a row) prune
pairs; float32 DTW runs in SIMD lanes with early abandoning. The threshold is estimated from a
sample of pairs, every pair within a margin above it is collected, then exactly K are taken, with
all selected distances recomputed in float64 (float32 near-ties decided in float64).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np
from tqdm import tqdm

from class_core.io import atomic_save_npz, atomic_write_text
from class_core.similarity import kernels
from class_core.similarity.dtw import (
    LANES,
    check_band,
    check_cost,
    corner_size,
    dot_layout,
    dot_threshold,
    pair_distances,
)
from class_core.similarity.pairs import FORMAT, WEIGHT_MODES, PairSet, order_by_distance, pair_weights

ENGINE_VERSION = "2"  # 2: sort direction via eigh (strip files of 1 index another order)
BACKENDS = ("numba", "torch")
# float32 DTW of T=16 steps is within ~1e-6 relative of the float64 value; 1e-4 is a wide margin
REL_MARGIN = 1e-4
# the dot-product prefilter is used while at most DOT_MAX_PASS of the pairs surviving LB_Kim are
# positives (each costs the prefilter plus an exact DTW) and the corner bound (dtw.dot_corner)
# removes at least DOT_MIN_KILL of them (engine._dot_pays)
DOT_MAX_PASS = 0.25
DOT_MIN_KILL = 0.6
DOT_MAX_BOX = 0.5  # ... and the box bound, which dense blocks skip, prunes at most this share


class Interrupted(RuntimeError):
    """Raised by the test hook ``interrupt_after`` to simulate a killed run."""


@dataclass
class PairConfig:
    """Parameters of a positive-pair job (the ``similarity`` section of a task config)."""

    quantile: float = 0.025
    topk: int | None = None  # set -> per-anchor top-k mode instead of the global quantile
    weights: str = "rank"
    cost: str = "sqeuclidean"
    band: int | None = None
    horizon: int | None = None  # None = whole chunk
    backend: str = "numba"
    sample_pairs: int = 262_144
    seed: int = 0
    strip_rows: int = 512
    tile_cols: int = 4096

    def validate(self) -> None:
        if self.topk is None:
            q = self.quantile
            if isinstance(q, bool) or not isinstance(q, int | float) or not (0.0 < q <= 1.0):
                raise ValueError(f"quantile must be in (0, 1], got {q!r}")
        elif isinstance(self.topk, bool) or not isinstance(self.topk, int | np.integer) or self.topk < 1:
            raise ValueError(f"topk must be an integer >= 1, got {self.topk!r}")
        if self.weights not in WEIGHT_MODES:
            raise ValueError(f"weights must be one of {WEIGHT_MODES}, got {self.weights!r}")
        check_cost(self.cost)
        check_band(self.band)
        if self.horizon is not None and (not isinstance(self.horizon, int | np.integer) or self.horizon < 1):
            raise ValueError(f"horizon must be None or an integer >= 1, got {self.horizon!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        for name in ("sample_pairs", "strip_rows", "tile_cols"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")

    @property
    def mode(self) -> str:
        return "quantile" if self.topk is None else "topk"


def check_chunks(chunks: np.ndarray, horizon: int | None = None) -> np.ndarray:
    """Validate (N, T, D) chunks and return float32 C-contiguous ``chunks[:, :horizon]``."""
    x = np.asarray(chunks)
    if x.ndim != 3:
        raise ValueError(f"chunks must be an (N, T, D) array, got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 chunks to form pairs, got N={x.shape[0]}")
    if x.shape[1] < 1 or x.shape[2] < 1:
        raise ValueError(f"chunks must have T >= 1 steps and D >= 1 dimensions, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise ValueError(f"chunks must be real numbers, got dtype {x.dtype}")
    if horizon is not None:
        if horizon > x.shape[1]:
            raise ValueError(f"horizon={horizon} exceeds the chunk length T={x.shape[1]}")
        x = x[:, :horizon]
    x = np.ascontiguousarray(x, dtype=np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        n, t, d = np.argwhere(bad)[0]
        raise ValueError(f"chunks contain NaN/inf (first at chunk {n}, step {t}, dim {d})")
    return x


def fingerprint_chunks(x: np.ndarray) -> str:
    """Stable hash of a float32 chunk array (shape + bytes)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    h = hashlib.sha256(json.dumps(list(x.shape)).encode())
    h.update(x.tobytes())
    return "sha256:" + h.hexdigest()[:32]


def n_positives(n: int, quantile: float) -> int:
    """K = floor(q (M - 1)) + 1 with M = n (n - 1) / 2 (see the module docstring)."""
    m = n * (n - 1) // 2
    return min(m, int(math.floor(quantile * (m - 1))) + 1)


def cache_key(cfg: PairConfig, n: int, t: int, d: int, fingerprint: str | None) -> dict[str, Any]:
    """The part of ``meta`` a cached result must match to be reused (results do not depend on backend)."""
    return {
        "format": FORMAT,
        "engine_version": ENGINE_VERSION,
        "n": n,
        "T": t,
        "D": d,
        "horizon": cfg.horizon,
        "mode": cfg.mode,
        "quantile": cfg.quantile if cfg.topk is None else None,
        "topk": cfg.topk,
        "weights": cfg.weights,
        "cost": cfg.cost,
        "band": cfg.band,
        "fingerprint": fingerprint,
    }


def meta_matches(meta: dict[str, Any], key: dict[str, Any]) -> list[str]:
    """Names of the keys whose values differ (empty = the cached result can be reused)."""
    return [k for k, v in key.items() if meta.get(k) != v]


# ----------------------------------------------------------------------------------------------------
# geometry of the search: sort order, transposed layout, boxes


@dataclass
class _Prepared:
    x: np.ndarray  # (N, T, D) float32, sorted
    xt: np.ndarray  # (T, D, N) float32
    bmin: np.ndarray  # (D, N)
    bmax: np.ndarray
    s: np.ndarray  # (N,) float64, ascending
    order: np.ndarray  # sorted position -> original index
    kb: np.ndarray  # (4, D, N / LANES) first/last-step boxes of aligned column blocks
    _dot: tuple[np.ndarray, float] | None = None  # dtw.dot_layout, made on first use (dot())
    _x64: np.ndarray | None = None  # x in float64, made on first use (x64())

    def x64(self) -> np.ndarray:
        """``x`` in float64: the exact DTW of candidates (built on first use)."""
        if self._x64 is None:
            self._x64 = self.x.astype(np.float64)
        return self._x64

    def dot(self) -> tuple[np.ndarray, float]:
        """(xb, radius): the block layout of the dense-block path (``dtw.dot_layout``) and the bound
        on a centred step's norm (``dtw.dot_threshold``); built on first use (not for top-k or
        demonstration-like data, which never take that path)."""
        if self._dot is None:
            self._dot = dot_layout(self.x)
        return self._dot


def _prepare(x: np.ndarray, seed: int) -> _Prepared:
    n, t, _ = x.shape
    f = x[:, 0, :] if t == 1 else np.concatenate([x[:, 0, :], x[:, -1, :]], axis=1)
    f = f.astype(np.float64)
    rng = np.random.default_rng(seed)
    sub = f[rng.choice(n, size=min(n, 20000), replace=False)]
    sub = sub - sub.mean(0)
    # first principal direction: spreads the chunks most, so the gap bound stops rows soonest.
    # eigh of the small (2D, 2D) scatter matrix, built with einsum (no BLAS): an SVD of the
    # (20000, 2D) sample took ~0.3 s on a loaded 2-core machine (BLAS threads vs numba's)
    cov = np.einsum("ni,nj->ij", sub, sub)
    _, vecs = np.linalg.eigh(cov)
    u = vecs[:, -1] / np.linalg.norm(vecs[:, -1])
    u = u if u[np.argmax(np.abs(u))] > 0 else -u  # a deterministic sign
    s_raw = f @ u
    order = np.argsort(s_raw, kind="stable")
    xs = np.ascontiguousarray(x[order])
    return _Prepared(
        x=xs,
        xt=np.ascontiguousarray(xs.transpose(1, 2, 0)),
        bmin=np.ascontiguousarray(xs.min(axis=1).T),
        bmax=np.ascontiguousarray(xs.max(axis=1).T),
        s=s_raw[order],
        order=order,
        kb=kernels.block_boxes(xs),
    )


def _gap_limit(thr: float, euclid: bool) -> float:
    """Largest projection gap |s_j - s_i| a pair with distance <= thr can have."""
    if not math.isfinite(thr):
        return math.inf
    g = thr if euclid else math.sqrt(thr)
    return g * (1 + 1e-6) + 1e-12


# ----------------------------------------------------------------------------------------------------
# the work directory: manifest + one file per finished strip


class _Workdir:
    def __init__(self, path: Path | None, manifest: dict[str, Any]):
        self.path = path
        self.manifest = manifest
        if path is None:
            return
        path.mkdir(parents=True, exist_ok=True)
        mpath = path / "manifest.json"
        if mpath.exists():
            old = json.loads(mpath.read_text())
            diff = [k for k in manifest if old.get(k) != manifest[k]]
            if diff:
                raise ValueError(
                    f"work directory {path} belongs to a different job (differs in {diff}: "
                    f"{ {k: old.get(k) for k in diff} } vs { {k: manifest[k] for k in diff} }); "
                    "use another --workdir or delete it"
                )
        else:
            atomic_write_text(mpath, json.dumps(manifest, indent=1, sort_keys=True))

    def strip_path(self, tag: str, k: int) -> Path | None:
        return None if self.path is None else self.path / tag / f"strip_{k:06d}.npz"

    def load(self, tag: str, k: int) -> dict[str, np.ndarray] | None:
        p = self.strip_path(tag, k)
        if p is None or not p.exists():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                return {name: z[name] for name in z.files}
        except (OSError, ValueError):
            return None  # unreadable: recompute it

    def save(self, tag: str, k: int, arrays: dict[str, np.ndarray]) -> None:
        p = self.strip_path(tag, k)
        if p is not None:
            atomic_save_npz(p, False, **arrays)


# ----------------------------------------------------------------------------------------------------
# strip computation (numba and torch)


def _strip_numba(
    prep: _Prepared,
    r0: int,
    r1: int,
    jmax: np.ndarray,
    band: int,
    euclid: bool,
    thr: float,
    tile_cols: int,
    dot: bool = False,
) -> dict[str, np.ndarray]:
    n = prep.x.shape[0]
    thr32 = np.float32(thr) if math.isfinite(thr) else np.float32(np.inf)
    prune = np.float32(thr * (1 + REL_MARGIN)) if math.isfinite(thr) else np.float32(np.inf)
    # the dot-product prefilter for dense blocks: squared cost and a finite threshold only
    t_len = prep.x.shape[1]
    use_dot = dot and not euclid and math.isfinite(thr)
    if use_dot:
        xb, radius = prep.dot()
        thr_dot = np.float32(dot_threshold(float(prune), t_len, xb.shape[1] - 1, radius))
    else:
        xb = np.zeros((0, 1, t_len * LANES), dtype=np.float32)  # unused
        thr_dot = np.float32(np.inf)
    c_end = int(jmax[r0:r1].max()) if r1 > r0 else r0
    parts_i, parts_j, parts_d = [], [], []
    stats = np.zeros(3, dtype=np.int64)
    rows = r1 - r0
    for c0 in range(r0, max(c_end, r0 + 1), tile_cols):
        c1 = min(n, c0 + tile_cols)
        out_j = np.empty((rows, c1 - c0), dtype=np.int64)
        out_d = np.empty((rows, c1 - c0), dtype=np.float64)
        out_n = np.zeros(rows, dtype=np.int64)
        st = np.zeros((rows, 3), dtype=np.int64)
        # rows differ in work (row length, pruning): hand them to the threads in small chunks
        # (of kernels.GROUP rows each)
        with numba.parallel_chunksize(2):
            kernels.strip_candidates(
                prep.x,
                prep.x64(),
                prep.xt,
                prep.bmin,
                prep.bmax,
                prep.kb,
                xb,
                jmax,
                r0,
                r1,
                c0,
                c1,
                band,
                euclid,
                thr32,
                prune,
                thr_dot,
                out_j,
                out_d,
                out_n,
                st,
            )
        ii, jj, dd = kernels.gather_rows(out_j, out_d, out_n, r0)
        parts_i.append(ii)
        parts_j.append(jj)
        parts_d.append(dd)
        stats += st.sum(0)
    return {
        "i": np.concatenate(parts_i) if parts_i else np.empty(0, np.int64),
        "j": np.concatenate(parts_j) if parts_j else np.empty(0, np.int64),
        "d": np.concatenate(parts_d) if parts_d else np.empty(0, np.float64),
        "stats": stats,
    }


def _strip_torch(
    prep: _Prepared, r0: int, r1: int, jmax: np.ndarray, band: int, euclid: bool, thr: float, device: Any
) -> dict[str, np.ndarray]:
    import torch

    from class_core.similarity.torch_dtw import pair_distances_torch

    ii = [np.full(max(0, int(jmax[i]) - i - 1), i, dtype=np.int64) for i in range(r0, r1)]
    jj = [np.arange(i + 1, max(i + 1, int(jmax[i])), dtype=np.int64) for i in range(r0, r1)]
    i_all = np.concatenate(ii) if ii else np.empty(0, np.int64)
    j_all = np.concatenate(jj) if jj else np.empty(0, np.int64)
    xt = _torch_x(prep, device)
    d = (
        pair_distances_torch(
            xt, torch.from_numpy(i_all).to(device), torch.from_numpy(j_all).to(device), band, euclid
        )
        .cpu()
        .numpy()
    )
    keep = d <= np.float32(thr) if math.isfinite(thr) else np.ones(d.shape, bool)
    return {
        "i": i_all[keep],
        "j": j_all[keep],
        "d": d[keep].astype(np.float32),
        "stats": np.array([i_all.size, i_all.size, i_all.size], dtype=np.int64),
    }


_TORCH_CACHE: dict[tuple[int, str], Any] = {}


def _torch_x(prep: _Prepared, device: Any) -> Any:
    import torch

    key = (id(prep.x), str(device))
    if key not in _TORCH_CACHE:
        _TORCH_CACHE.clear()
        _TORCH_CACHE[key] = torch.from_numpy(prep.x).to(device)
    return _TORCH_CACHE[key]


def _topk_numba(prep: _Prepared, r0: int, r1: int, k: int, band: int, euclid: bool) -> dict[str, np.ndarray]:
    rows = r1 - r0
    cap = max(4 * k, k + 2 * LANES)
    out_j = np.empty((rows, cap), dtype=np.int64)
    out_d = np.empty((rows, cap), dtype=np.float32)
    out_n = np.zeros(rows, dtype=np.int64)
    st = np.zeros((rows, 3), dtype=np.int64)
    with numba.parallel_chunksize(8):
        kernels.topk_candidates(
            prep.x,
            prep.xt,
            prep.bmin,
            prep.bmax,
            prep.s,
            r0,
            r1,
            k,
            band,
            euclid,
            np.float32(REL_MARGIN),
            not euclid,
            out_j,
            out_d,
            out_n,
            st,
        )
    mask = np.arange(cap)[None, :] < out_n[:, None]
    rr, _ = np.nonzero(mask)
    return {"i": (rr + r0).astype(np.int64), "j": out_j[mask], "d": out_d[mask], "stats": st.sum(0)}


def _topk_torch(
    prep: _Prepared, r0: int, r1: int, k: int, band: int, euclid: bool, device: Any
) -> dict[str, np.ndarray]:
    import torch

    from class_core.similarity.torch_dtw import pair_distances_torch

    n = prep.x.shape[0]
    xt = _torch_x(prep, device)
    parts_i, parts_j, parts_d = [], [], []
    rows_per_call = max(1, 65536 // n)
    for b0 in range(r0, r1, rows_per_call):
        b1 = min(r1, b0 + rows_per_call)
        ii = np.repeat(np.arange(b0, b1, dtype=np.int64), n)
        jj = np.tile(np.arange(n, dtype=np.int64), b1 - b0)
        d = (
            pair_distances_torch(
                xt, torch.from_numpy(ii).to(device), torch.from_numpy(jj).to(device), band, euclid
            )
            .cpu()
            .numpy()
            .reshape(b1 - b0, n)
        )
        d[np.arange(b1 - b0), np.arange(b0, b1)] = np.inf  # not its own neighbour
        kth = np.partition(d, k - 1, axis=1)[:, k - 1 : k]
        keep = d <= kth * np.float32(1 + REL_MARGIN)
        rr, cc = np.nonzero(keep)
        parts_i.append(rr + b0)
        parts_j.append(cc.astype(np.int64))
        parts_d.append(d[rr, cc])
    m = (r1 - r0) * (n - 1)
    return {
        "i": np.concatenate(parts_i),
        "j": np.concatenate(parts_j),
        "d": np.concatenate(parts_d),
        "stats": np.array([m, m, m], dtype=np.int64),
    }


# ----------------------------------------------------------------------------------------------------
# distribution helpers (torch.distributed when initialised with world size > 1)


def _dist_info() -> tuple[int, int]:
    # a process group can only exist if torch was imported: don't import it (~1 GB RSS, seconds)
    if "torch" not in sys.modules:
        return 0, 1
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _broadcast(obj: Any) -> Any:
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _gather(obj: Any, rank: int, world: int) -> list[Any] | None:
    import torch.distributed as dist

    out: list[Any] | None = [None] * world if rank == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


# ----------------------------------------------------------------------------------------------------
# the job


def _sample_threshold(prep: _Prepared, cfg: PairConfig, band: int, euclid: bool) -> float:
    """A distance a little above the q-quantile, from a sample of pairs (inf when M is small)."""
    n = prep.x.shape[0]
    m = n * (n - 1) // 2
    if m <= 4 * cfg.sample_pairs:
        return math.inf  # small job: collect every pair
    rng = np.random.default_rng(cfg.seed + 1)
    # the sample costs full (unpruned) DTWs: keep it under ~1.5 % of M (at N = 3000 the full
    # 262k sample was more DTW work than the pruned pass itself); a smaller sample only widens
    # the margin q_hi - q below, never the exactness
    size = min(cfg.sample_pairs, max(m // 64, 16 * 1024))
    anchors = rng.integers(0, n, size=max(1, size // LANES))
    i = np.repeat(anchors, LANES)
    j = rng.integers(0, n - 1, size=i.size)
    j = j + (j >= i)  # uniform over j != i
    d = pair_distances(prep.x, i, j, cfg.cost, cfg.band)
    q = cfg.quantile
    s = d.size
    q_hi = q + 6.0 * math.sqrt(q * (1 - q) / s) + 20.0 / s
    if q_hi >= 1.0:
        return math.inf
    return float(np.quantile(d.astype(np.float64), q_hi)) * (1 + 1e-3)


def corner_bound(cost: np.ndarray, t: int, band: int | None = None) -> np.ndarray:
    """``dtw.dot_corner`` in float64 for many pairs: ``cost`` (pairs, k, k) = the local costs of
    the k x k corner of chunks of T = ``t`` steps. The minimum of the corner's DP on its last row
    and last column (the last cell when k == t, the whole DP)."""
    k = cost.shape[1]
    q_idx = np.arange(k)
    prev = np.zeros((cost.shape[0], k))
    exit_min = np.full(cost.shape[0], np.inf)  # column k - 1 over the rows
    for p in range(k):
        c = cost[:, p].copy()
        if band is not None:
            c[:, np.abs(q_idx - p) > band] = np.inf
        cur = np.empty_like(c)
        for q in range(k):
            if p == 0:
                best = cur[:, q - 1] if q > 0 else 0.0
            elif q == 0:
                best = prev[:, 0]
            else:
                best = np.minimum(np.minimum(prev[:, q], prev[:, q - 1]), cur[:, q - 1])
            cur[:, q] = c[:, q] + best
        exit_min = np.minimum(exit_min, cur[:, k - 1])
        prev = cur
    return prev[:, k - 1] if k == t else np.minimum(prev.min(axis=1), exit_min)


def _dot_pays(prep: _Prepared, cfg: PairConfig, thr: float, euclid: bool) -> bool:
    """Whether the dot-product prefilter (``dtw.dot_rows``) should run on dense blocks.

    A dense block skips the box bound and computes the corner bound of all its lanes
    (``dtw.dot_corner``, the DP's first k x k cells with half the flops); lanes under the threshold
    then get their whole DP (gathered), and those under it at the end are computed again exactly.
    That pays where the corner removes most pairs surviving LB_Kim and few are positives: random
    walks (~83 % removed, ~3 % positives), not
    demonstration chunks (the box bound prunes them better). Estimated on a few thousand random
    pairs that survive LB_Kim. Results never depend on the choice, only the speed.
    """
    if euclid or not math.isfinite(thr):
        return False
    n, t, _ = prep.x.shape
    rng = np.random.default_rng(cfg.seed + 2)
    # LANES candidates per anchor: pair_distances runs one SIMD block per anchor (2048 anchors
    # with one pair each cost as much DTW as the whole strip pass of a small job)
    i = np.repeat(rng.integers(0, n, size=8192 // LANES), LANES)
    j = rng.integers(0, n - 1, size=i.size)
    j = j + (j >= i)
    x = prep.x
    kim = ((x[i, 0] - x[j, 0]) ** 2).sum(1) + ((x[i, -1] - x[j, -1]) ** 2).sum(1) * (t > 1)
    alive = np.flatnonzero(kim <= thr)[:2048]
    if alive.size < 64:
        return False
    i, j = i[alive], j[alive]
    # the box bound (kernels._lower_bounds), which dense blocks skip: it must not prune much
    if t > 2:
        mi, mj = x[i, 1:-1].astype(np.float64), x[j, 1:-1].astype(np.float64)
        lo, hi = prep.bmin.T.astype(np.float64), prep.bmax.T.astype(np.float64)
        b1 = (np.maximum(np.maximum(lo[j, None] - mi, mi - hi[j, None]), 0) ** 2).sum((1, 2))
        b2 = (np.maximum(np.maximum(lo[i, None] - mj, mj - hi[i, None]), 0) ** 2).sum((1, 2))
        if float(np.mean(kim[alive] + np.maximum(b1, b2) > thr)) > DOT_MAX_BOX:
            return False
    d = pair_distances(x, i, j, cfg.cost, cfg.band)
    if float(np.mean(d <= thr)) > DOT_MAX_PASS:
        return False
    # share of them whose corner bound exceeds thr, in the step order of the layout
    # (dtw.dot_layout may reverse it)
    blocks = prep.dot()[0]
    xb = blocks.reshape(blocks.shape[0], blocks.shape[1], t, LANES)[:, :-1]  # (blocks, D', T, L)
    a = xb[i // LANES, :, :, i % LANES].transpose(0, 2, 1).astype(np.float64)  # (pairs, T, D')
    b = xb[j // LANES, :, :, j % LANES].transpose(0, 2, 1).astype(np.float64)
    k = corner_size(t)
    # local costs of the k x k corner at once (|a|^2 + |b|^2 - 2 a.b; einsum, no BLAS threads)
    cost = (
        np.einsum("npd,npd->np", a[:, :k], a[:, :k])[:, :, None]
        + np.einsum("nqd,nqd->nq", b[:, :k], b[:, :k])[:, None]
    )
    cost = np.maximum(cost - 2.0 * np.einsum("npd,nqd->npq", a[:, :k], b[:, :k]), 0.0)
    bound = corner_bound(cost, t, cfg.band)
    return float(np.mean(bound > thr)) >= DOT_MIN_KILL


def compute_pairs(
    chunks: np.ndarray,
    cfg: PairConfig | None = None,
    *,
    workdir: str | os.PathLike[str] | None = None,
    fingerprint: str | None = None,
    progress: bool = True,
    device: Any = None,
    interrupt_after: int | None = None,
    log: Callable[[str], None] | None = None,
) -> PairSet | None:
    """Positive pairs of ``chunks`` (N, T, D) under ``cfg``.

    ``workdir``: finished strips are kept there and reused by a rerun with the same job.
    ``fingerprint``: dataset identity stored in ``meta`` (default: a hash of the chunks).
    Under ``torch.distributed`` (world size > 1) strips are shared round-robin between ranks;
    rank 0 returns the result, the other ranks ``None``.
    ``interrupt_after``: test hook, raise ``Interrupted`` after that many strips were computed.
    """
    cfg = cfg or PairConfig()
    cfg.validate()
    x = check_chunks(chunks, cfg.horizon)
    n, t, dim = x.shape
    if cfg.topk is not None and cfg.topk > n - 1:
        raise ValueError(f"topk={cfg.topk} exceeds N-1={n - 1}")
    euclid = check_cost(cfg.cost)
    band = check_band(cfg.band)
    fp = fingerprint or fingerprint_chunks(x)
    rank, world = _dist_info()
    say = log or (lambda msg: None)
    t0 = time.perf_counter()
    dev = None
    if cfg.backend == "torch":
        from class_core.similarity.torch_dtw import default_device

        dev = device or default_device()

    prep = _prepare(x, cfg.seed)
    key = cache_key(cfg, n, t, dim, fp)
    strips = [(r0, min(n, r0 + cfg.strip_rows)) for r0 in range(0, n, cfg.strip_rows)]
    mine = [k for k in range(len(strips)) if k % world == rank]
    stats = np.zeros(3, dtype=np.int64)
    computed = 0

    def run_strips(tag: str, wd: _Workdir, fn: Callable[[int, int], dict[str, np.ndarray]]) -> list[Any]:
        nonlocal computed
        results = []
        bar = tqdm(
            total=len(mine),
            desc=f"DTW {tag}",
            unit="strip",
            disable=not progress or rank != 0,
            dynamic_ncols=True,
        )
        for k in mine:
            res = wd.load(tag, k)
            if res is None:
                if interrupt_after is not None and computed >= interrupt_after:
                    bar.close()
                    raise Interrupted(f"interrupted after {computed} strips (test hook)")
                res = fn(*strips[k])
                wd.save(tag, k, res)
                computed += 1
            results.append(res)
            bar.update(1)
        bar.close()
        return results

    def gather_all(results: list[Any]) -> list[Any] | None:
        if world == 1:
            return results
        got = _gather(results, rank, world)
        return None if got is None else [r for part in got for r in part]

    wdir = Path(workdir) if workdir is not None else None
    if cfg.topk is None:
        k_pos = n_positives(n, cfg.quantile)
        thr = _sample_threshold(prep, cfg, band, euclid) if rank == 0 else 0.0
        if world > 1:
            thr = _broadcast(thr)
        manifest = {**key, "strip_rows": cfg.strip_rows, "seed": cfg.seed, "sample_pairs": cfg.sample_pairs}
        wd = _Workdir(wdir, manifest)
        dot: bool | None = None
        for attempt in range(8):
            tag = "all" if not math.isfinite(thr) else f"thr_{thr:.9g}"
            if dot is None and math.isfinite(thr) and cfg.backend == "numba":
                dot = _dot_pays(prep, cfg, thr, euclid)
            say(f"pass {attempt}: collecting pairs with float32 DTW <= {thr:.6g}")
            jmax = np.searchsorted(prep.s, prep.s + _gap_limit(thr * (1 + REL_MARGIN), euclid), side="right")
            jmax = np.minimum(jmax, n).astype(np.int64)

            def fn(
                r0: int, r1: int, jmax: np.ndarray = jmax, thr: float = thr, dot: bool = bool(dot)
            ) -> dict[str, np.ndarray]:
                if cfg.backend == "torch":
                    return _strip_torch(prep, r0, r1, jmax, band, euclid, thr, dev)
                return _strip_numba(prep, r0, r1, jmax, band, euclid, thr, cfg.tile_cols, dot)

            res_all = gather_all(run_strips(tag, wd, fn))
            verdict: Any = None
            if rank == 0:
                assert res_all is not None
                ci = np.concatenate([r["i"] for r in res_all])
                cj = np.concatenate([r["j"] for r in res_all])
                # numba strips hold exact float64 distances; torch strips (and strips a workdir
                # kept from before that change) float32 ones, recomputed below
                exact = np.concatenate([np.full(r["d"].size, r["d"].dtype == np.float64) for r in res_all])
                cd = np.concatenate([r["d"].astype(np.float64, copy=False) for r in res_all])
                stats = np.sum([r["stats"] for r in res_all], axis=0)
                if ci.size < k_pos:
                    verdict = thr * 1.5 + 1e-12  # estimate too low (unlikely): widen and rerun
                else:
                    v = float(np.partition(cd, k_pos - 1)[k_pos - 1])
                    need = v * (1 + 2 * REL_MARGIN)
                    verdict = need * 1.05 if (math.isfinite(thr) and need > thr) else "ok"
            if world > 1:
                verdict = _broadcast(verdict)
            if verdict == "ok":
                break
            thr = float(verdict)
        else:
            raise RuntimeError("threshold search did not converge")  # pragma: no cover
        if rank != 0:
            return None
        sel = cd <= v * (1 + REL_MARGIN)
        ci, cj, d64, exact = ci[sel], cj[sel], cd[sel], exact[sel]
        del res_all, cd, sel  # the candidate lists: keep the peak RSS down (N = 30k: ~12M pairs)
        if not exact.all():
            redo = np.flatnonzero(~exact)
            d64[redo] = pair_distances(prep.x64(), ci[redo], cj[redo], cfg.cost, cfg.band)
        del exact
        oi, oj = prep.order[ci], prep.order[cj]
        del ci, cj
        lo, hi = np.minimum(oi, oj), np.maximum(oi, oj)
        del oi, oj
        take = order_by_distance(d64, lo, hi)[:k_pos]
        pi, pj, pd = lo[take], hi[take], d64[take]
        del lo, hi, d64, take
        threshold = float(pd[-1])
        by_distance: np.ndarray | None = np.arange(k_pos)  # pi, pj, pd are in (distance, i, j) order
    else:
        k = int(cfg.topk)
        manifest = {**key, "strip_rows": cfg.strip_rows, "seed": cfg.seed}
        wd = _Workdir(wdir, manifest)

        def fn_k(r0: int, r1: int) -> dict[str, np.ndarray]:
            if cfg.backend == "torch":
                return _topk_torch(prep, r0, r1, k, band, euclid, dev)
            return _topk_numba(prep, r0, r1, k, band, euclid)

        res_all = gather_all(run_strips(f"topk_{k}", wd, fn_k))
        if rank != 0:
            return None
        assert res_all is not None
        ci = np.concatenate([r["i"] for r in res_all])
        cj = np.concatenate([r["j"] for r in res_all])
        stats = np.sum([r["stats"] for r in res_all], axis=0)
        d64 = pair_distances(prep.x64(), ci, cj, cfg.cost, cfg.band)
        oi, oj = prep.order[ci], prep.order[cj]
        order = np.lexsort((oj, d64, oi))  # per anchor: by distance, ties by smaller j
        oi, oj, d64 = oi[order], oj[order], d64[order]
        starts = np.flatnonzero(np.r_[True, oi[1:] != oi[:-1]])
        rank_in_row = np.arange(oi.size) - np.repeat(starts, np.diff(np.r_[starts, oi.size]))
        keep = rank_in_row < k
        lo = np.minimum(oi[keep], oj[keep])
        hi = np.maximum(oi[keep], oj[keep])
        pd_all = d64[keep]
        code = lo * n + hi
        _, first = np.unique(code, return_index=True)
        pi, pj, pd = lo[first], hi[first], pd_all[first]
        threshold = float(pd.max()) if pd.size else 0.0
        by_distance = None

    w = pair_weights(pd, pi, pj, cfg.weights, order=by_distance)
    order = np.argsort(pi.astype(np.int64) * n + pj)  # (i, j) codes are unique: any sort kind
    pi, pj, pd, w = pi[order].astype(np.int64), pj[order].astype(np.int64), pd[order], w[order]
    m_pairs = n * (n - 1) // 2
    meta = {
        **key,
        "threshold": threshold,
        "k_pairs": int(pi.size),
        "config": asdict(cfg),
        "stats": {
            "pairs_total": int(m_pairs) if cfg.topk is None else int(n * (n - 1)),
            "pairs_in_range": int(stats[0]),
            "pairs_after_lower_bounds": int(stats[1]),
            "dtw_lanes": int(stats[2]),
            "seconds": round(time.perf_counter() - t0, 3),
            "threads": numba.get_num_threads(),
            "world_size": world,
        },
    }
    return PairSet(pi, pj, pd, w, meta)
