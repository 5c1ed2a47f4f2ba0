"""Numba kernels of the pair engine: lower bounds, pruned candidate search, per-anchor top-k.

Chunks arrive sorted by their projection ``s`` on a direction of (first, last) step space, so that
``|s_i - s_j|`` bounds LB_Kim from below and a row can stop once the gap exceeds the threshold.
All distance work is float32 in ``LANES``-wide blocks (see ``dtw.dtw_lanes``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from class_core.similarity.dtw import (
    FASTMATH,
    LANES,
    corner_size,
    dot_corner,
    dtw_lanes,
    dtw_lanes_dot,
    gather_blocks,
    pack_lanes,
)


@njit(cache=True, fastmath=FASTMATH)
def _lower_bounds(a, amin, amax, Xt, bmin, bmax, j0, nb, euclid, thr, use_box, lb, e, b1, b2, kim_done=False):
    """lb[l] = LB_Kim + max(box bound both ways) of anchor ``a`` vs chunks j0..j0+nb (float32).

    Every warping path visits (0, 0), (T-1, T-1) and one cell in each middle row (column), and
    that cell costs at least the distance to the other chunk's per-dimension bounding box.
    The box bound is only computed when ``use_box`` and some lane survives LB_Kim (it costs ~15x
    more). Returns the number of lanes that survive LB_Kim (input of ``_box_gate``).
    ``kim_done``: ``lb`` already holds LB_Kim (an earlier call with ``use_box`` False); add the box.
    ``e``, ``b1``, ``b2``: (LANES,) float32 scratch. Every inner loop runs from 0 over a slice
    view, so it compiles to packed SIMD (an offset index ``j0 + l`` made numba's wraparound
    check defeat the vectoriser).
    """
    T = Xt.shape[0]
    D = Xt.shape[1]
    zero = np.float32(0.0)
    if not kim_done:
        for l in range(nb):
            lb[l] = zero
            e[l] = zero
        for d in range(D):
            av = a[0, d]
            x = Xt[0, d, j0 : j0 + nb]
            for l in range(nb):
                t = av - x[l]
                lb[l] += t * t
        if T > 1:
            for d in range(D):
                av = a[T - 1, d]
                x = Xt[T - 1, d, j0 : j0 + nb]
                for l in range(nb):
                    t = av - x[l]
                    e[l] += t * t
        if euclid:
            for l in range(nb):
                lb[l] = np.sqrt(lb[l]) + np.sqrt(e[l])
        else:
            for l in range(nb):
                lb[l] += e[l]
    alive = 0
    for l in range(nb):
        if lb[l] <= thr:
            alive += 1
    if T > 2 and alive > 0 and use_box:
        # one direction first (anchor rows vs candidate boxes); the other only if a lane survives
        for l in range(nb):
            b1[l] = zero
        for p in range(1, T - 1):
            for l in range(nb):
                e[l] = zero
            for d in range(D):
                av = a[p, d]
                lo = bmin[d, j0 : j0 + nb]
                hi = bmax[d, j0 : j0 + nb]
                for l in range(nb):
                    t = max(max(lo[l] - av, av - hi[l]), zero)
                    e[l] += t * t
            if euclid:
                for l in range(nb):
                    b1[l] += np.sqrt(e[l])
            else:
                for l in range(nb):
                    b1[l] += e[l]
        more = False
        for l in range(nb):
            if lb[l] + b1[l] <= thr:
                more = True
        if not more:
            for l in range(nb):
                lb[l] += b1[l]
            return alive
        for l in range(nb):
            b2[l] = zero
        for p in range(1, T - 1):
            for l in range(nb):
                e[l] = zero
            for d in range(D):
                lo = amin[d]
                hi = amax[d]
                x = Xt[p, d, j0 : j0 + nb]
                for l in range(nb):
                    v = x[l]
                    t = max(max(lo - v, v - hi), zero)
                    e[l] += t * t
            if euclid:
                for l in range(nb):
                    b2[l] += np.sqrt(e[l])
            else:
                for l in range(nb):
                    b2[l] += e[l]
        for l in range(nb):
            lb[l] += max(b1[l], b2[l])
    return alive


# The rows of a strip go through the column blocks GROUP at a time: each block (22.5 KB of the
# dot layout, or its columns of Xt, bmin, bmax) is used by the group's rows in turn while it is in
# L1/L2, so it is streamed from L3/memory once per group instead of once per row. dot_rows alone
# on 20 MB of blocks took ~1.5x the time per block of blocks in cache; the strip pass at N = 30k
# ran 1.06-1.15x faster with 8 rows per group on 1 thread, 1.14-1.19x on 2 (dtw_bench.py --strip).
GROUP = 8


# A block with at least DENSE in-range lanes surviving LB_Kim goes whole through the dot-product
# rows (all 32 lanes, no packing, no box bound) instead of packing its survivors: packing and the
# box bound cost about as much per lane as the whole block's prefiltered DTW.
DENSE = 20


# Adaptive use of the box bound, per anchor row. It costs about BOX_COST (~85 ns) per lane of a
# block, a lane it removes saves packing + DTW (~290 ns): worth it while it removes more than
# ~30 % of the lanes it is computed on (demonstration chunks: most LB_Kim survivors; random walks:
# few). Measured over the row with decay; when off, it is retried every 16th block. Pruning stays
# exact whatever the decision (both bounds are valid), only the speed changes.
@njit(cache=True)
def _box_gate(st, nb, kim_alive, final_alive, computed):
    """Update the row's gate state ``st`` (int64[4]: lanes, pruned, blocks, on) after one block."""
    st[2] += 1
    if computed and kim_alive > 0:
        st[0] += nb
        st[1] += kim_alive - final_alive
        if st[0] > 8192:
            st[0] //= 2
            st[1] //= 2
    on = st[0] < 256 or st[1] * 10 >= st[0] * 3 or (st[2] & 15) == 0
    st[3] = 1 if on else 0


@njit(cache=True)
def _gate(st, total, hit, computed, num, den, warm, every):
    """Generic per-row gate (int64[4]: total, hits, calls, on) with decay: on while hits / total
    >= num / den, while total < ``warm``, and every ``every``-th call (a power of 2: retry)."""
    st[2] += 1
    if computed:
        st[0] += total
        st[1] += hit
        if st[0] > 8192:
            st[0] //= 2
            st[1] //= 2
    on = st[0] < warm or st[1] * den >= st[0] * num or (st[2] & (every - 1)) == 0
    st[3] = 1 if on else 0


@njit(cache=True, fastmath=FASTMATH)
def _exact_flush(X, a, queue, nq, band, euclid, thr, zero, inf, bt, cst, prev, cur, res, row_j, row_d, n):
    """Exact DTW (in X's dtype) of anchor ``a`` against the first ``m = min(nq, LANES)`` queued candidates;
    those within ``thr`` are appended to ``row_j``/``row_d`` from index ``n``, and the ``m`` are
    removed from the front of ``queue``. Returns (new n, m)."""
    m = min(nq, LANES)
    pack_lanes(X, queue, m, bt)
    dtw_lanes(a, bt, band, euclid, thr, zero, inf, cst, prev, cur, res)
    for l in range(m):
        if res[l] <= thr:
            row_j[n] = queue[l]
            row_d[n] = res[l]
            n += 1
    for l in range(m, nq):
        queue[l - m] = queue[l]
    return n, m


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def strip_candidates(
    X,
    X64,
    Xt,
    bmin,
    bmax,
    kb,
    Xb,
    jmax,
    r0,
    r1,
    c0,
    c1,
    band,
    euclid,
    thr,
    thr_prune,
    thr_dot,
    out_j,
    out_d,
    out_n,
    stats,
    group=GROUP,
):
    """Pairs (i, j), r0 <= i < r1, max(i+1, c0) <= j < min(c1, jmax[i]), with DTW <= thr.

    Bounds and prefilters run on the float32 chunks ``X``; the DTW of every pair that passes them
    is computed once, exactly, on ``X64`` (the same chunks in float64), so ``out_d`` (float64)
    holds final distances and the engine recomputes nothing.

    Row ``i - r0`` of ``out_j``/``out_d`` receives its candidates, ``out_n`` their count;
    ``stats[i - r0]`` = (pairs in range, pairs surviving the lower bounds, lanes computed).
    Rows go to the threads in groups of ``group`` (GROUP) that visit the column blocks together;
    each row keeps its own queues and gates, so its work and output do not depend on the group.
    ``thr_prune`` (slightly above ``thr``) guards the float32 bounds against rounding.
    Columns are visited in aligned blocks of LANES; ``kb`` (4, D, blocks) = per-block min/max of
    the first and the last steps (``block_boxes``): LB_Kim of the anchor against those boxes
    bounds LB_Kim of every chunk in the block, so a whole block can be skipped for ~2 D flops.

    Dense blocks (at least DENSE of LANES in-range lanes survive LB_Kim; most blocks on random
    walks; ``thr_dot`` = inf switches this path off): the whole aligned block is taken straight
    from ``Xb`` (``dtw.dot_layout``, no packing) through the corner bound ``dtw.dot_corner`` (the
    DP's first K x K cells, dot-product cost: half the flops, not exact; for T = 16 a generated
    kernel, ``dot_kernels.py``); lanes whose bound is
    under ``thr_dot`` (``dtw.dot_threshold``, an error bound above ``thr_prune``) are queued and
    get their whole DP 32 at a time (``dtw.gather_blocks``, ``dtw.dtw_lanes_dot``); those still
    under it are computed exactly by ``dtw_lanes``. A per-row gate (``pgate``) falls back to
    packing while more than 40 % of the lanes survive the corner. Other blocks pack their survivors of
    LB_Kim + box bound into lanes for ``dtw_lanes`` (most blocks on demonstration chunks).
    """
    T = X.shape[1]
    D = X.shape[2]
    inf = np.float32(np.inf)
    zero = np.float32(0.0)
    inf64 = np.float64(np.inf)
    zero64 = np.float64(0.0)
    thr64 = np.float64(thr)
    use_dot = thr_dot < inf
    K = corner_size(T)
    w = LANES if use_dot else 0
    dp = Xb.shape[1] - 1  # D padded to a multiple of dtw.DOT_GROUP
    for grp in prange((r1 - r0 + group - 1) // group):
        i0 = r0 + grp * group
        rows = min(r1, i0 + group) - i0
        jlo_g = np.empty(rows, dtype=np.int64)
        jhi_g = np.empty(rows, dtype=np.int64)
        blk_lo = (c1 + LANES) // LANES
        blk_hi = -1
        for g in range(rows):
            jlo_g[g] = max(i0 + g + 1, c0)
            jhi_g[g] = min(c1, jmax[i0 + g])
            if jhi_g[g] > jlo_g[g]:
                blk_lo = min(blk_lo, jlo_g[g] // LANES)
                blk_hi = max(blk_hi, (jhi_g[g] - 1) // LANES)
        # per row: n, pairs in range, after the bounds, lanes computed, and the queue lengths
        cnt = np.zeros((rows, 7), dtype=np.int64)
        if blk_hi >= blk_lo:
            # scratch, shared by the rows of the group (each row's block work is self-contained)
            cst = np.empty(T * LANES, dtype=np.float32)
            prev = np.empty(T * LANES, dtype=np.float32)
            cur = np.empty(T * LANES, dtype=np.float32)
            lb = np.empty(LANES, dtype=np.float32)
            # the exact DTW of the pairs that pass the bounds and prefilters: float64
            bt64 = np.empty((D, T * LANES), dtype=np.float64)
            cst64 = np.empty(T * LANES, dtype=np.float64)
            prev64 = np.empty(T * LANES, dtype=np.float64)
            cur64 = np.empty(T * LANES, dtype=np.float64)
            res64 = np.empty(LANES, dtype=np.float64)
            e = np.empty(LANES, dtype=np.float32)
            b1 = np.empty(LANES, dtype=np.float32)
            b2 = np.empty(LANES, dtype=np.float32)
            bt2 = np.empty((Xb.shape[1], T * w), dtype=np.float32)
            gidx = np.empty(w, dtype=np.int64)
            rmin = np.empty(w, dtype=np.float32)
            res32 = np.empty(w, dtype=np.float32)
            # per-row state
            amin_g = np.empty((rows, D), dtype=np.float32)
            amax_g = np.empty((rows, D), dtype=np.float32)
            pend_g = np.empty((rows, 2 * LANES), dtype=np.int64)
            chk_g = np.empty((rows, 4 * w), dtype=np.int64)  # dense survivors: exact DTW next
            gate_g = np.zeros((rows, 4), dtype=np.int64)  # the box bound
            pgate_g = np.zeros((rows, 4), dtype=np.int64)  # the dot-product prefilter
            # dense path, per-lane abandoning: lanes whose corner bound is under thr_dot wait here
            # for their whole DP, 32 at a time (gathered from Xb); the buffers are empty when the
            # path is off (small jobs: allocations per row add up)
            qj_g = np.empty((rows, 2 * w), dtype=np.int64)
            a2_g = np.empty((rows, T, dp), dtype=np.float32)
            na_g = np.empty((rows, T), dtype=np.float32)
            for g in range(rows):
                i = i0 + g
                for d in range(D):
                    amin_g[g, d] = bmin[d, i]
                    amax_g[g, d] = bmax[d, i]
                gate_g[g, 3] = 1
                pgate_g[g, 3] = 1
                if use_dot:
                    ab = Xb[i // LANES]
                    il = i % LANES
                    for q in range(T):
                        for d in range(dp):
                            a2_g[g, q, d] = np.float32(-2.0) * ab[d, q * LANES + il]
                        na_g[g, q] = ab[dp, q * LANES + il]
            for blk in range(blk_lo, blk_hi + 1):
                for g in range(rows):
                    jlo = jlo_g[g]
                    jhi = jhi_g[g]
                    if jhi <= jlo or blk < jlo // LANES or blk > (jhi - 1) // LANES:
                        continue
                    i = i0 + g
                    r = i - r0
                    a = X[i]
                    a64 = X64[i]
                    amin = amin_g[g]
                    amax = amax_g[g]
                    pend = pend_g[g]
                    chk = chk_g[g]
                    gate = gate_g[g]
                    pgate = pgate_g[g]
                    qj = qj_g[g]
                    a2 = a2_g[g]
                    na = na_g[g]
                    n = cnt[g, 0]
                    st0 = cnt[g, 1]
                    st1 = cnt[g, 2]
                    st2 = cnt[g, 3]
                    npend = cnt[g, 4]
                    nchk = cnt[g, 5]
                    nq = cnt[g, 6]
                    j0 = max(jlo, blk * LANES)
                    nb = min(jhi, blk * LANES + LANES) - j0
                    st0 += nb
                    s1 = zero
                    s2 = zero
                    for d in range(D):
                        v = a[0, d]
                        t = max(max(kb[0, d, blk] - v, v - kb[1, d, blk]), zero)
                        s1 += t * t
                        v = a[T - 1, d]
                        t = max(max(kb[2, d, blk] - v, v - kb[3, d, blk]), zero)
                        s2 += t * t
                    if T == 1:
                        s2 = zero
                    blb = np.sqrt(s1) + np.sqrt(s2) if euclid else s1 + s2
                    if blb <= thr_prune and not use_dot:  # as before the dense-block path
                        box = gate[3] == 1
                        kim = _lower_bounds(
                            a, amin, amax, Xt, bmin, bmax, j0, nb, euclid, thr_prune, box, lb, e, b1, b2
                        )
                        n0 = npend
                        for l in range(nb):
                            if lb[l] <= thr_prune:
                                pend[npend] = j0 + l
                                npend += 1
                        _box_gate(gate, nb, kim, npend - n0, box)
                    elif blb <= thr_prune:
                        kim = _lower_bounds(
                            a, amin, amax, Xt, bmin, bmax, j0, nb, euclid, thr_prune, False, lb, e, b1, b2
                        )
                        ns = kim
                        # the box bound (~85 ns a lane) costs more than a dense block's prefiltered DTW
                        # saves: only on blocks that are sparse after LB_Kim
                        dense = kim >= DENSE and pgate[3] == 1
                        box = gate[3] == 1 and kim > 0 and not dense
                        if box:
                            _lower_bounds(
                                a,
                                amin,
                                amax,
                                Xt,
                                bmin,
                                bmax,
                                j0,
                                nb,
                                euclid,
                                thr_prune,
                                True,
                                lb,
                                e,
                                b1,
                                b2,
                                True,
                            )
                            ns = 0
                            for l in range(nb):
                                if lb[l] <= thr_prune:
                                    ns += 1
                        _box_gate(gate, nb, kim, ns, box)
                        if dense:
                            st1 += ns
                            st2 += LANES
                            dot_corner(a2, na, Xb[blk], band, K, inf, cst, prev, cur, rmin)
                            off = j0 - blk * LANES
                            kept = 0
                            for l in range(nb):
                                if lb[l] <= thr_prune and rmin[off + l] <= thr_dot:
                                    qj[nq] = j0 + l
                                    nq += 1
                                    kept += 1
                            # the prefilter pays while at most ~40 % of its lanes survive it
                            _gate(pgate, ns, ns - kept, True, 3, 5, 256, 16)
                        else:
                            if ns >= DENSE:
                                _gate(pgate, 0, 0, False, 3, 5, 256, 16)  # counts towards the retry
                            for l in range(nb):
                                if lb[l] <= thr_prune:
                                    pend[npend] = j0 + l
                                    npend += 1
                    last = j0 + nb >= jhi
                    while npend >= LANES or (last and npend > 0):
                        st2 += LANES
                        n, m = _exact_flush(X64, a64, pend, npend, band, euclid, thr64, zero64,
                                            inf64, bt64, cst64, prev64, cur64, res64, out_j[r],
                                            out_d[r], n)  # fmt: skip
                        st1 += m
                        npend -= m
                    while nq >= LANES or (last and nq > 0):
                        m = min(nq, LANES)
                        st2 += LANES
                        gather_blocks(Xb, qj, m, bt2, gidx)
                        dtw_lanes_dot(a2, na, bt2, band, thr_dot, inf, cst, prev, cur, res32)
                        died = 0
                        for l in range(m):
                            if res32[l] <= thr_dot:
                                chk[nchk] = qj[l]
                                nchk += 1
                            else:
                                died += 1
                        _gate(pgate, 0, died, True, 3, 5, 256, 16)
                        for l in range(m, nq):
                            qj[l - m] = qj[l]
                        nq -= m
                    while nchk >= LANES or (last and nchk > 0):
                        st2 += LANES
                        n, m = _exact_flush(X64, a64, chk, nchk, band, euclid, thr64, zero64,
                                            inf64, bt64, cst64, prev64, cur64, res64, out_j[r],
                                            out_d[r], n)  # fmt: skip
                        nchk -= m
                    cnt[g, 0] = n
                    cnt[g, 1] = st0
                    cnt[g, 2] = st1
                    cnt[g, 3] = st2
                    cnt[g, 4] = npend
                    cnt[g, 5] = nchk
                    cnt[g, 6] = nq
        for g in range(rows):
            r = i0 + g - r0
            out_n[r] = cnt[g, 0]
            stats[r, 0] = cnt[g, 1]
            stats[r, 1] = cnt[g, 2]
            stats[r, 2] = cnt[g, 3]


def block_boxes(x: np.ndarray) -> np.ndarray:
    """(4, D, ceil(N / LANES)) float32: min/max over each aligned block of LANES chunks of the first
    step (0, 1) and of the last step (2, 3) of sorted chunks ``x`` (N, T, D)."""
    n, _, d = x.shape
    nblk = -(-n // LANES)
    pad = nblk * LANES - n
    out = np.empty((4, d, nblk), dtype=np.float32)
    for k, step in ((0, 0), (2, -1)):
        v = x[:, step, :]
        if pad:
            v = np.concatenate([v, np.repeat(v[-1:], pad, axis=0)])
        v = v.reshape(nblk, LANES, d)
        out[k] = v.min(axis=1).T
        out[k + 1] = v.max(axis=1).T
    return out


@njit(cache=True)
def gather_rows(out_j, out_d, out_n, r0):
    """Flatten per-row candidate lists (row r holds ``out_n[r]`` entries) into (i, j, d) arrays."""
    tot = 0
    for r in range(out_n.shape[0]):
        tot += out_n[r]
    ii = np.empty(tot, dtype=np.int64)
    jj = np.empty(tot, dtype=np.int64)
    dd = np.empty(tot, dtype=out_d.dtype)
    k = 0
    for r in range(out_n.shape[0]):
        for t in range(out_n[r]):
            ii[k] = r0 + r
            jj[k] = out_j[r, t]
            dd[k] = out_d[r, t]
            k += 1
    return ii, jj, dd


@njit(cache=True)
def _compact(cd, cj, n, k, rel, cap):
    """Keep candidates within (1 + rel) of the k-th smallest; at most ``cap // 2`` if still too many."""
    order = np.argsort(cd[:n])
    kth = cd[order[k - 1]]
    lim = kth * (np.float32(1.0) + rel)
    keep = 0
    for t in range(n):
        if cd[order[t]] <= lim:
            keep += 1
    if keep > cap // 2:
        keep = max(cap // 2, k)  # only exact float32 ties get cut here (documented)
    nd = cd[order[:keep]].copy()
    nj = cj[order[:keep]].copy()
    cd[:keep] = nd
    cj[:keep] = nj
    return keep, lim


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def topk_candidates(X, Xt, bmin, bmax, s, r0, r1, k, band, euclid, rel, gap_sq, out_j, out_d, out_n, stats):
    """Per-anchor k nearest candidates of rows r0..r1 (all j != i), searched outward in ``s`` order.

    Keeps every candidate within a factor (1 + rel) of the row's k-th float32 distance (the near
    ties that float64 decides). ``gap_sq``: True when the distance bounds ``(s_j - s_i)**2``
    (squared cost), else ``|s_j - s_i|``.
    """
    N = X.shape[0]
    T = X.shape[1]
    D = X.shape[2]
    cap = out_j.shape[1]
    inf = np.float32(np.inf)
    zero = np.float32(0.0)
    for i in prange(r0, r1):
        r = i - r0
        a = X[i]
        amin = bmin[:, i].copy()
        amax = bmax[:, i].copy()
        bt = np.empty((D, T * LANES), dtype=np.float32)
        cst = np.empty(T * LANES, dtype=np.float32)
        prev = np.empty(T * LANES, dtype=np.float32)
        cur = np.empty(T * LANES, dtype=np.float32)
        res = np.empty(LANES, dtype=np.float32)
        lb = np.empty(LANES, dtype=np.float32)
        e = np.empty(LANES, dtype=np.float32)
        b1 = np.empty(LANES, dtype=np.float32)
        b2 = np.empty(LANES, dtype=np.float32)
        pend = np.empty(2 * LANES, dtype=np.int64)
        gate = np.zeros(4, dtype=np.int64)
        gate[3] = 1
        cd = np.empty(cap, dtype=np.float32)
        cj = np.empty(cap, dtype=np.int64)
        n = 0
        npend = 0
        bound = inf  # (1 + rel) x current k-th distance once k candidates are known
        left = i - 1
        right = i + 1
        st0 = 0
        st1 = 0
        st2 = 0
        while True:
            gl = s[i] - s[left] if left >= 0 else np.inf
            gr = s[right] - s[i] if right < N else np.inf
            g = min(gl, gr)
            done = g == np.inf
            if not done and bound < inf:
                lim = np.float64(bound) * (1.0 + 1e-6) + 1e-30
                done = (g * g if gap_sq else g) > lim
            if not done:
                if gr <= gl:
                    j0 = right
                    nb = min(LANES, N - right)
                    right += nb
                else:
                    nb = min(LANES, left + 1)
                    j0 = left - nb + 1
                    left -= nb
                st0 += nb
                box = gate[3] == 1
                kim = _lower_bounds(a, amin, amax, Xt, bmin, bmax, j0, nb, euclid, bound, box, lb, e, b1, b2)
                n0 = npend
                for l in range(nb):
                    if lb[l] <= bound:
                        pend[npend] = j0 + l
                        npend += 1
                _box_gate(gate, nb, kim, npend - n0, box)
            while npend >= LANES or (done and npend > 0):
                m = min(npend, LANES)
                st1 += m
                st2 += LANES
                pack_lanes(X, pend, m, bt)
                dtw_lanes(a, bt, band, euclid, bound, zero, inf, cst, prev, cur, res)
                for l in range(m):
                    if res[l] <= bound:
                        if n == cap:
                            n, bound = _compact(cd, cj, n, k, rel, cap)
                        if res[l] <= bound:
                            cd[n] = res[l]
                            cj[n] = pend[l]
                            n += 1
                for l in range(m, npend):
                    pend[l - m] = pend[l]
                npend -= m
                if n >= k:
                    n, bound = _compact(cd, cj, n, k, rel, cap)
            if done:
                break
        for t in range(n):
            out_j[r, t] = cj[t]
            out_d[r, t] = cd[t]
        out_n[r] = n
        stats[r, 0] = st0
        stats[r, 1] = st1
        stats[r, 2] = st2
