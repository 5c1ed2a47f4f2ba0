"""Dynamic time warping between action chunks.

Definitions (the engine and every backend agree on them):

- a chunk is a ``(T, D)`` array, one row per time step;
- local cost of steps ``p`` and ``q``: ``sqeuclidean`` = ``sum_d (x[p,d] - y[q,d])**2`` (aeon's
  ``dtw``, the default, what the CLASS authors use) or ``euclidean`` = its square root (the paper's
  formula);
- DTW = the minimum, over monotone warping paths from ``(0, 0)`` to ``(T-1, T'-1)``, of the summed
  local costs (no square root at the end);
- ``band`` = Sakoe-Chiba radius in steps: for equal lengths, cells with ``|p - q| <= band``;
  ``None`` = no constraint. aeon's ``window=w`` (a fraction) is ``band = int(w * min(T, T'))``;
  for unequal lengths the band follows aeon's slanted construction (``sakoe_chiba_mask``).

Two implementations live here: a float64 scalar reference (``dtw_distance``) and a float32/float64
kernel that computes one anchor against ``LANES`` candidates at once, the DP of each candidate in a
SIMD lane (``dtw_lanes``), which the engine uses.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from class_core.similarity.dot_kernels import dot_columns

# nnan/ninf would break the inf-initialised DP (PERF-FACTS.md)
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
# the exact local cost: no reassoc, so that its sums keep their order (see _sq_cost_row)
ORDERED = FASTMATH - {"reassoc"}
LANES = 32
COSTS = ("sqeuclidean", "euclidean")


def check_cost(cost: str) -> bool:
    """Validate ``cost`` and return True for the Euclidean local cost."""
    if cost not in COSTS:
        raise ValueError(f"cost must be one of {COSTS}, got {cost!r}")
    return cost == "euclidean"


def check_band(band: int | None) -> int:
    """Validate ``band`` (None or an int >= 0) and return it as an int (-1 = no band)."""
    if band is None:
        return -1
    if isinstance(band, bool) or not isinstance(band, int | np.integer) or band < 0:
        raise ValueError(f"band must be None or an integer >= 0 (steps), got {band!r}")
    return int(band)


def band_from_aeon_window(window: float | None, n: int, m: int) -> int | None:
    """The ``band`` that reproduces aeon's ``window`` fraction for series of lengths n and m."""
    if window is None or window == 1.0:
        return None
    if not 0.0 <= window <= 1.0:
        raise ValueError(f"window must be in [0, 1], got {window}")
    return int(window * min(n, m))


def _dense_sakoe_chiba(n: int, m: int, band: int) -> np.ndarray:
    if n > m:
        return _dense_sakoe_chiba(m, n, band).T
    mask = np.zeros((n, m), dtype=bool)
    steps = max(n, m) + 1
    for step in range(steps):
        xi = math.floor(step / steps * n)
        yi = math.floor(step / steps * m)
        mask[max(0, xi - band) : min(n, xi + band + 1), yi] = True
    return mask


def sakoe_chiba_mask(n: int, m: int, band: int | None) -> np.ndarray:
    """Boolean ``(n, m)`` mask of allowed cells, as aeon (1.x) builds it for radius ``band``.

    aeon steps along the interpolated diagonal, rows indexed by the longer series, and keeps each
    row's cells contiguous (first to last covered column). For n == m this is ``|p - q| <= band``.
    """
    if band is None:
        return np.ones((n, m), dtype=bool)
    if n < m:
        return sakoe_chiba_mask(m, n, band).T
    dense = _dense_sakoe_chiba(n, m, band)
    mask = np.zeros_like(dense)
    for r in range(n):
        cols = np.flatnonzero(dense[r])
        if cols.size:
            mask[r, cols[0] : cols[-1] + 1] = True
    return mask


def check_series(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a (T, D) array, got shape {x.shape}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must have at least one step and one dimension, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf")
    return x


@njit(cache=True)
def _dtw_ref(x: np.ndarray, y: np.ndarray, mask: np.ndarray, euclid: bool) -> float:
    n, m, dim = x.shape[0], y.shape[0], x.shape[1]
    prev = np.full(m + 1, np.inf)
    cur = np.full(m + 1, np.inf)
    prev[0] = 0.0
    for p in range(n):
        cur[:] = np.inf
        for q in range(m):
            if not mask[p, q]:
                continue
            c = 0.0
            for d in range(dim):
                t = x[p, d] - y[q, d]
                c += t * t
            if euclid:
                c = math.sqrt(c)
            cur[q + 1] = c + min(prev[q + 1], prev[q], cur[q])
        prev, cur = cur, prev
    return float(prev[m])


def dtw_distance(x: np.ndarray, y: np.ndarray, cost: str = "sqeuclidean", band: int | None = None) -> float:
    """Exact float64 DTW of two ``(T, D)`` / ``(T', D)`` series (the reference implementation)."""
    euclid = check_cost(cost)
    check_band(band)
    x = check_series(x, "x").astype(np.float64)
    y = check_series(y, "y").astype(np.float64)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same number of dimensions, got {x.shape} and {y.shape}")
    return float(_dtw_ref(x, y, sakoe_chiba_mask(x.shape[0], y.shape[0], band), euclid))


@njit(cache=True, fastmath=ORDERED)
def _sq_cost_row(a, bt, p, k0, n, c):
    """``c[k] = sum_d (a[p, d] - bt[d, k0 + k])**2`` for k < n, summed over d in order.

    The first dimension is one rounded product; each further one is ``fma(t, t, c)`` onto the
    running sum, three dimensions per pass over the row (the sum stays in a register: one
    load/store of ``c`` per 3 dimensions instead of per dimension, ~1.05-1.2x float32, ~1.2x
    float64). Every cell gets exactly the roundings of one dimension per pass, so the result is
    bitwise that of the plain loop (tests/test_dtw.py); hence no ``reassoc`` here, and the first
    product is stored before the chains start (``t0 * t0 + t1 * t1`` would fuse the wrong product).
    """
    D = a.shape[1]
    av = a[p, 0]
    b = bt[0, k0 : k0 + n]
    for k in range(n):
        t = av - b[k]
        c[k] = t * t
    d0 = 1
    while d0 + 3 <= D:
        m0 = a[p, d0]
        m1 = a[p, d0 + 1]
        m2 = a[p, d0 + 2]
        x0 = bt[d0, k0 : k0 + n]
        x1 = bt[d0 + 1, k0 : k0 + n]
        x2 = bt[d0 + 2, k0 : k0 + n]
        for k in range(n):
            t0 = m0 - x0[k]
            t1 = m1 - x1[k]
            t2 = m2 - x2[k]
            c[k] = ((c[k] + t0 * t0) + t1 * t1) + t2 * t2
        d0 += 3
    for d in range(d0, D):
        av = a[p, d]
        b = bt[d, k0 : k0 + n]
        for k in range(n):
            t = av - b[k]
            c[k] += t * t


@njit(cache=True, fastmath=FASTMATH)
def dtw_lanes(a, bt, band, euclid, thr, zero, inf, cst, prev, cur, out):
    """DTW of anchor ``a`` (T, D) against ``L`` candidates, written into ``out`` (L,).

    Layout (lanes contiguous, so every inner loop is a unit-stride loop over lanes that LLVM
    vectorises): ``bt[d, q * L + l]`` = step ``q``, dimension ``d`` of candidate ``l`` (``pack_lanes``);
    ``cst``, ``prev``, ``cur``: (T * L,) scratch, cell ``(q, l)`` at ``q * L + l``.
    ``zero``/``inf`` carry the dtype (float32 or float64). Lanes whose DP row minimum exceeds
    ``thr`` may be abandoned: if every lane exceeds it (checked every 4th row), ``out`` is filled
    with inf.

    Speed (PERF-FACTS, docs/similarity.md): the local cost of a DP row is accumulated with the
    dimension loop outermost over the whole contiguous (q, l) row, a few dimensions per streaming
    loop of sub + fma (``_sq_cost_row``); every inner loop starts at 0 on a slice view, so numba's negative
    index wraparound folds away and LLVM emits packed (not gathered) loads. ~3x the previous
    (q, d, l) kernel, whose per-cell accumulation over d was a serial chain through memory.
    """
    T = a.shape[0]
    L = out.shape[0]
    for p in range(T):
        lo = 0
        hi = T - 1
        if band >= 0:
            lo = max(0, p - band)
            hi = min(T - 1, p + band)
        k0 = lo * L
        n = (hi + 1 - lo) * L
        c = cst[k0 : k0 + n]
        _sq_cost_row(a, bt, p, k0, n, c)
        if euclid:
            for k in range(n):
                c[k] = np.sqrt(c[k])
        for k in range(k0):
            cur[k] = inf
        if p == 0:
            for l in range(L):
                cur[l] = cst[l]
            for q in range(1, hi + 1):
                cc = cur[q * L : q * L + L]
                cp = cur[q * L - L : q * L]
                cs = cst[q * L : q * L + L]
                for l in range(L):
                    cc[l] = cs[l] + cp[l]
        else:
            if lo == 0:
                for l in range(L):
                    cur[l] = cst[l] + prev[l]
            else:
                cc = cur[k0 : k0 + L]
                pp = prev[k0 - L : k0]
                pq = prev[k0 : k0 + L]
                cs = cst[k0 : k0 + L]
                for l in range(L):
                    cc[l] = cs[l] + min(pq[l], pp[l])
            for q in range(lo + 1, hi + 1):
                base = q * L
                cc = cur[base : base + L]
                cp = cur[base - L : base]
                pq = prev[base : base + L]
                pp = prev[base - L : base]
                cs = cst[base : base + L]
                for l in range(L):
                    cc[l] = cs[l] + min(min(pq[l], pp[l]), cp[l])
        tail = cur[(hi + 1) * L :]
        for k in range(tail.shape[0]):
            tail[k] = inf
        if thr < inf and p < T - 1 and (p & 3) == 3:
            alive = False
            for l in range(L):
                mn = cur[k0 + l]
                for q in range(lo + 1, hi + 1):
                    mn = min(mn, cur[q * L + l])
                if mn <= thr:
                    alive = True
                    break
            if not alive:
                for l in range(L):
                    out[l] = inf
                return
        prev, cur = cur, prev
    last = prev[(T - 1) * L : T * L]
    for l in range(L):
        out[l] = last[l]


@njit(cache=True)
def pack_lanes(X, J, nb, bt):
    """Pack chunks ``X[J[0:nb]]`` into the lane layout ``bt`` (D, T * L); idle lanes repeat the last one."""
    T = X.shape[1]
    D = X.shape[2]
    L = bt.shape[1] // T
    for l in range(L):
        xj = X[J[min(l, nb - 1)]]
        for q in range(T):
            base = q * L + l
            for d in range(D):
                bt[d, base] = xj[q, d]


@njit(cache=True, parallel=True)
def _grouped_dist(X, I, J, starts, band, euclid, zero, inf):
    """DTW of pairs (I[k], J[k]) where I is grouped: pairs starts[g]:starts[g+1] share anchor I."""
    T, D = X.shape[1], X.shape[2]
    out = np.empty(I.shape[0], dtype=X.dtype)
    for g in prange(starts.shape[0] - 1):
        s0, s1 = starts[g], starts[g + 1]
        a = X[I[s0]]
        bt = np.empty((D, T * LANES), dtype=X.dtype)
        cst = np.empty(T * LANES, dtype=X.dtype)
        prev = np.empty(T * LANES, dtype=X.dtype)
        cur = np.empty(T * LANES, dtype=X.dtype)
        res = np.empty(LANES, dtype=X.dtype)
        for b0 in range(s0, s1, LANES):
            nb = min(LANES, s1 - b0)
            pack_lanes(X, J[b0 : b0 + nb], nb, bt)
            dtw_lanes(a, bt, band, euclid, inf, zero, inf, cst, prev, cur, res)
            for l in range(nb):
                out[b0 + l] = res[l]
    return out


def pair_distances(
    X: np.ndarray, i: np.ndarray, j: np.ndarray, cost: str = "sqeuclidean", band: int | None = None
) -> np.ndarray:
    """DTW of the pairs ``(X[i[k]], X[j[k]])`` for equal-length chunks ``X`` (N, T, D), in X's dtype.

    float64 input gives the exact values (used to break float32 near-ties); float32 is ~2x faster.
    """
    euclid = check_cost(cost)
    b = check_band(band)
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    if i.shape != j.shape or i.ndim != 1:
        raise ValueError(f"i and j must be 1-D of the same length, got {i.shape} and {j.shape}")
    if X.dtype not in (np.float32, np.float64):
        raise ValueError(f"X must be float32 or float64, got {X.dtype}")
    if i.size == 0:
        return np.empty(0, dtype=X.dtype)
    order = np.argsort(i, kind="stable")
    si, sj = i[order], j[order]
    starts = np.flatnonzero(np.r_[True, si[1:] != si[:-1], True]).astype(np.int64)
    zero = X.dtype.type(0)
    inf = X.dtype.type(np.inf)
    d = _grouped_dist(np.ascontiguousarray(X), si, sj, starts, b, euclid, zero, inf)
    out = np.empty_like(d)
    out[order] = d
    return out


def pairwise_distances(X: np.ndarray, cost: str = "sqeuclidean", band: int | None = None) -> np.ndarray:
    """Dense ``(N, N)`` float64 DTW matrix of small sets (tests, checks); the engine never builds one."""
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    iu, ju = np.triu_indices(n, 1)
    out = np.zeros((n, n))
    d = pair_distances(X, iu, ju, cost, band)
    out[iu, ju] = d
    out[ju, iu] = d
    return out


# ---------------------------------------------------------------------------------------------------
# the dot-product prefilter: |x - y|^2 = |x|^2 + |y|^2 - 2 x.y, one fma per dimension instead of sub + fma

U32 = 2.0**-24  # unit roundoff of float32
DOT_GROUP = 5  # dimensions per pass over the cost row: 5 chained fmas per load/store of it


def dot_layout(x: np.ndarray, lanes: int = LANES) -> tuple[np.ndarray, float]:
    """Layouts of chunks ``x`` (N, T, D) for the dot-product kernel (``dot_rows``), and their radius.

    Steps are stored in the order that makes the DP's row minimum grow soonest: reversed when the
    chunks spread more over their second half (random walks: differences grow with time), so that
    per-lane abandoning after the first rows removes most lanes. DTW is unchanged by reversing both
    series. D' = D rounded up to a multiple of DOT_GROUP (extra dimensions zero); coordinates are
    the chunks minus the centre of their bounding box (DTW is translation invariant; a small
    ``|x|`` keeps the cancellation error of the dot-product form small); "norm" = squared norm of
    each centred step. Returns

    - ``xb`` (ceil(N / lanes), D' + 1, T * lanes): ``xb[b]`` = aligned block ``b`` (the last one
      padded with the last chunk) in the lane layout of ``dtw_lanes``, norms in row D', so a whole
      block is used with no packing (single candidates: ``gather_blocks``);
    - the radius, a bound on ``|x_q|`` over all centred steps (``dot_threshold``).
    """
    n, t, d = x.shape
    nblk = -(-n // lanes)
    dp = -(-d // DOT_GROUP) * DOT_GROUP
    x64 = x.astype(np.float64)
    spread = x64.var(axis=0).sum(axis=1)  # (T,)
    if spread[t - t // 2 :].sum() > spread[: t // 2].sum():
        x64 = x64[:, ::-1]
    centre = 0.5 * (x64.min(axis=(0, 1)) + x64.max(axis=(0, 1)))
    xc = (x64 - centre).astype(np.float32)
    xc64 = xc.astype(np.float64)
    nrm = np.einsum("ntd,ntd->nt", xc64, xc64)
    xr = np.zeros((n, t, dp + 1), dtype=np.float32)
    xr[:, :, :d] = xc
    xr[:, :, dp] = nrm
    pad = xr if nblk * lanes == n else np.concatenate([xr, np.repeat(xr[-1:], nblk * lanes - n, axis=0)])
    xb = np.ascontiguousarray(pad.reshape(nblk, lanes, t, dp + 1).transpose(0, 3, 2, 1))
    radius = float(np.sqrt(nrm.max()))
    return xb.reshape(nblk, dp + 1, t * lanes), radius * (1 + 1e-6) + 1e-30


def dot_threshold(thr: float, t: int, d: int, radius: float) -> float:
    """A float32 threshold for ``dtw_lanes_dot`` that every pair with exact DTW <= ``thr`` stays under.

    Error of one cell in float32 (all terms bounded by ``(|x| + |y|)**2 <= (2 radius)**2``): the
    rounding of the centred inputs (2u relative to that square), of the two norms and of the D
    products summed in any order ((2D + 2) u): at most (2D + 8) u (2 radius)**2, doubled for safety.
    A path has at most 2T - 1 cells and the DP adds each with one more rounding (relative 2T u).
    """
    if not math.isfinite(thr):
        return math.inf
    cell = 2.0 * (2 * d + 8) * U32 * (2.0 * radius) ** 2
    bound = (thr + (2 * t - 1) * cell) * (1.0 + 4.0 * t * U32) * (1 + 1e-6)
    return float(np.nextafter(np.float32(bound), np.float32(np.inf)))


@njit(cache=True, fastmath=FASTMATH)
def dot_rows(a2, na, bt, band, p0, p1, inf, cst, prev, cur, cols, exit_col):
    """Rows ``p0 .. p1 - 1`` of the float32 DP with the dot-product cost (see ``dtw_lanes_dot``),
    over columns ``0 .. cols - 1`` (``cols`` = T: whole rows; fewer: the corner of ``dot_corner``).
    ``exit_col``: column ``cols - 1`` costs 0, so that its cell in row p holds the minimum of column
    ``cols - 2`` over rows ``0 .. p`` (``dot_corner``).

    ``prev`` holds row ``p0 - 1`` (ignored when ``p0 == 0``); cell ``(q, l)`` at ``q * L + l``.
    The rows alternate between ``cur`` and ``prev``: row ``p1 - 1`` ends in ``cur`` when
    ``p1 - p0`` is odd, in ``prev`` when it is even.
    The local cost ``|a|^2 + |b|^2 - 2 a.b`` is one fma per dimension (half the floating-point
    work of ``dtw_lanes``) but not exact: ``dot_threshold`` bounds the error, and the engine only
    uses it to discard pairs (survivors are recomputed by ``dtw_lanes``). Dimensions are
    accumulated DOT_GROUP = 5 at a time as one chain of fmas per cell (one load/store of the cost
    row per 5 fmas; measured ~25 % faster than 4 at a time as a tree of adds).
    """
    T = a2.shape[0]
    D = a2.shape[1]
    L = bt.shape[1] // T
    for p in range(p0, p1):
        lo = 0
        hi = cols - 1
        if band >= 0:
            lo = max(0, p - band)
            hi = min(cols - 1, p + band)
        k0 = lo * L
        n = (hi + 1 - lo) * L
        if exit_col and hi == cols - 1:
            n -= L  # the exit column: no cost to compute
            ce = cst[hi * L : hi * L + L]
            for l in range(L):
                ce[l] = 0.0
        c = cst[k0 : k0 + n]
        nb = bt[D, k0 : k0 + n]
        av = na[p]
        m0 = a2[p, 0]
        m1 = a2[p, 1]
        m2 = a2[p, 2]
        m3 = a2[p, 3]
        m4 = a2[p, 4]
        x0 = bt[0, k0 : k0 + n]
        x1 = bt[1, k0 : k0 + n]
        x2 = bt[2, k0 : k0 + n]
        x3 = bt[3, k0 : k0 + n]
        x4 = bt[4, k0 : k0 + n]
        for k in range(n):
            c[k] = av + nb[k] + m0 * x0[k] + m1 * x1[k] + m2 * x2[k] + m3 * x3[k] + m4 * x4[k]
        for d in range(5, D, 5):
            m0 = a2[p, d]
            m1 = a2[p, d + 1]
            m2 = a2[p, d + 2]
            m3 = a2[p, d + 3]
            m4 = a2[p, d + 4]
            x0 = bt[d, k0 : k0 + n]
            x1 = bt[d + 1, k0 : k0 + n]
            x2 = bt[d + 2, k0 : k0 + n]
            x3 = bt[d + 3, k0 : k0 + n]
            x4 = bt[d + 4, k0 : k0 + n]
            for k in range(n):
                c[k] = c[k] + m0 * x0[k] + m1 * x1[k] + m2 * x2[k] + m3 * x3[k] + m4 * x4[k]
        # the DP row below is dtw_lanes' own, kept in line on purpose: one shared njit helper
        # (inlined or not) measured 15 % slower on both kernels (dtw_bench.py --kernel, interleaved)
        for k in range(k0):
            cur[k] = inf
        if p == 0:
            for l in range(L):
                cur[l] = cst[l]
            for q in range(1, hi + 1):
                cc = cur[q * L : q * L + L]
                cp = cur[q * L - L : q * L]
                cs = cst[q * L : q * L + L]
                for l in range(L):
                    cc[l] = cs[l] + cp[l]
        else:
            if lo == 0:
                for l in range(L):
                    cur[l] = cst[l] + prev[l]
            else:
                cc = cur[k0 : k0 + L]
                pp = prev[k0 - L : k0]
                pq = prev[k0 : k0 + L]
                cs = cst[k0 : k0 + L]
                for l in range(L):
                    cc[l] = cs[l] + min(pq[l], pp[l])
            for q in range(lo + 1, hi + 1):
                base = q * L
                cc = cur[base : base + L]
                cp = cur[base - L : base]
                pq = prev[base : base + L]
                pp = prev[base - L : base]
                cs = cst[base : base + L]
                for l in range(L):
                    cc[l] = cs[l] + min(min(pq[l], pp[l]), cp[l])
        tail = cur[(hi + 1) * L : cols * L]
        for k in range(tail.shape[0]):
            tail[k] = inf
        prev, cur = cur, prev


@njit(cache=True)
def corner_size(t):
    """Side k of the corner square ``dot_corner`` bounds with (T = 16: 9; the whole chunk when T < 4)."""
    return t // 2 + 1 if t >= 4 else t


@njit(cache=True, fastmath=FASTMATH)
def dot_corner(a2, na, bt, band, k, inf, cst, prev, cur, out):
    """A lower bound of every lane's DTW from the k x k corner of the DP at step 0 (float32, the
    dot-product cost of ``dot_rows``), into ``out`` (L,).

    Every warping path leaves the square of cells ``max(p, q) < k - 1`` through a cell with
    ``max(p, q) = k - 1`` (row or column k - 1 of the corner), and the DP inside the square is exact,
    so the minimum of that L-shaped band bounds the DTW. ``dot_layout`` puts the steps that spread
    most first: on random walks (N = 30k, T = 16) the 9 x 9 corner (81 cells) removes 83 % of the
    pairs, the first 8 whole rows (128 cells) 81 % (``benchmarks/dtw_bounds.py``): the rows spend
    half their cells far from the diagonal, where the optimal path seldom goes.
    Shapes with a generated kernel (``dot_kernels.py``, ``dot_codegen.SHAPES``) run it instead.
    """
    if k >= a2.shape[0]:  # the whole DP (short chunks): its last cell
        dtw_lanes_dot(a2, na, bt, band, inf, inf, cst, prev, cur, out)
        return
    L = out.shape[0]
    # the unrolled kernel of this shape (dot_kernels.py), column by column: cst = the last column,
    # prev[:L] = the minimum of the last row
    if dot_columns(a2, na, bt, band, k, 0, k, cst, prev[:L]):
        _lane_min(cst, k, out)
        for l in range(L):
            out[l] = min(out[l], prev[l])
        return
    # one more column, of zero cost: row k - 1 of it = the minimum of column k - 1
    dot_rows(a2, na, bt, band, 0, k, inf, cst, prev, cur, k + 1, True)
    _lane_min(cur if k % 2 == 1 else prev, k + 1, out)


@njit(cache=True, fastmath=FASTMATH)
def _lane_min(cells, t, out):
    """``out[l]`` = the minimum over the ``t`` cells of a DP row or column (cell ``(q, l)`` at
    ``q * L + l``, L = ``out.shape[0]``), vectorised over the lanes."""
    L = out.shape[0]
    for l in range(L):
        out[l] = cells[l]
    for q in range(1, t):
        cq = cells[q * L : q * L + L]
        for l in range(L):
            out[l] = min(out[l], cq[l])


@njit(cache=True, fastmath=FASTMATH)
def _all_over(cells, t, lanes, thr):
    """Whether every lane's minimum over the ``t`` cells of a DP row or column (cell ``(q, l)`` at
    ``q * lanes + l``) exceeds ``thr``: then no lane can end under it."""
    for l in range(lanes):
        mn = cells[l]
        for q in range(1, t):
            mn = min(mn, cells[q * lanes + l])
        if mn <= thr:
            return False
    return True


@njit(cache=True, fastmath=FASTMATH)
def dtw_lanes_dot(a2, na, bt, band, thr, inf, cst, prev, cur, out):
    """Approximate float32 DTW (squared-Euclidean cost) of an anchor against ``L`` candidates.

    ``a2`` (T, D) = -2 x the centred anchor, ``na`` (T,) its squared step norms; ``bt`` (D + 1, T * L):
    rows 0..D-1 the centred candidates in the lane layout of ``dtw_lanes``, row D their squared step
    norms (a block of ``dot_layout``; D a multiple of DOT_GROUP, padded with zeros). ``dot_rows``
    four rows at a time; if every lane's row minimum then exceeds ``thr``, ``out`` is filled with inf.
    Shapes with a generated kernel (``dot_kernels.py``, ``dot_codegen.SHAPES``) run it instead, four
    columns at a time, with the same test on the column minimum.
    """
    T = a2.shape[0]
    L = out.shape[0]
    # the unrolled kernel of this shape (dot_kernels.py), four columns at a time (every path also
    # crosses every column): cst = the last column, prev[:L] = scratch
    if dot_columns(a2, na, bt, band, T, 0, min(T, 4), cst, prev[:L]):
        for q0 in range(4, T, 4):
            if thr < inf and _all_over(cst, T, L, thr):
                for l in range(L):
                    out[l] = inf
                return
            dot_columns(a2, na, bt, band, T, q0, min(T, q0 + 4), cst, prev[:L])
        last = cst[(T - 1) * L : T * L]
        for l in range(L):
            out[l] = last[l]
        return
    for p0 in range(0, T, 4):
        p1 = min(T, p0 + 4)
        dot_rows(a2, na, bt, band, p0, p1, inf, cst, prev, cur, T, False)
        if (p1 - p0) % 2 == 1:
            prev, cur = cur, prev  # prev = the last row
        if thr < inf and p1 < T and _all_over(prev, T, L, thr):
            for l in range(L):
                out[l] = inf
            return
    last = prev[(T - 1) * L : T * L]
    for l in range(L):
        out[l] = last[l]


@njit(cache=True)
def gather_blocks(xb, J, nb, bt, idx):
    """Gather candidates ``J[0:nb]`` from the block layout ``xb`` (``dot_layout``) into ``bt``
    (D' + 1, T * L); idle lanes repeat the last one. ``idx``: (L,) int64 scratch. Stores are
    contiguous (the lane loop is innermost); the sources are the blocks just computed (cached)."""
    E = xb.shape[1]
    W = xb.shape[2]
    L = idx.shape[0]
    T = W // L
    flat = xb.reshape(-1)
    for l in range(L):
        j = J[min(l, nb - 1)]
        idx[l] = (j // L) * (E * W) + j % L
    for d in range(E):
        for q in range(T):
            dst = bt[d, q * L : q * L + L]
            off = d * W + q * L
            for l in range(L):
                dst[l] = flat[idx[l] + off]
