"""Numba kernels of the pair engine: lower bounds, pruned candidate search, per-anchor top-k.

Chunks arrive sorted by their projection ``s`` on a direction of (first, last) step space, so that
``|s_i - s_j|`` bounds LB_Kim from below and a row can stop once the gap exceeds the threshold.
All distance work is float32 in ``LANES``-wide blocks (see ``dtw.dtw_lanes``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from class_core.similarity.dtw import FASTMATH, LANES, dtw_lanes


@njit(cache=True, fastmath=FASTMATH)
def _lower_bounds(a, amin, amax, Xt, bmin, bmax, j0, nb, euclid, thr, lb):
    """lb[l] = LB_Kim + max(box bound both ways) of anchor ``a`` vs chunks j0..j0+nb (float32).

    Every warping path visits (0, 0), (T-1, T-1) and one cell in each middle row (column), and
    that cell costs at least the distance to the other chunk's bounding box.
    """
    T = Xt.shape[0]
    D = Xt.shape[1]
    zero = np.float32(0.0)
    for l in range(nb):
        lb[l] = zero
    for d in range(D):
        av = a[0, d]
        for l in range(nb):
            t = av - Xt[0, d, j0 + l]
            lb[l] += t * t
    if euclid:
        for l in range(nb):
            lb[l] = np.sqrt(lb[l])
    e = np.empty(LANES, dtype=np.float32)
    if T > 1:
        for l in range(nb):
            e[l] = zero
        for d in range(D):
            av = a[T - 1, d]
            for l in range(nb):
                t = av - Xt[T - 1, d, j0 + l]
                e[l] += t * t
        for l in range(nb):
            lb[l] += np.sqrt(e[l]) if euclid else e[l]
    if T > 2:
        # the box bound costs ~15x LB_Kim: only when some lane survives LB_Kim
        alive = False
        for l in range(nb):
            if lb[l] <= thr:
                alive = True
        if not alive:
            return
        b1 = np.zeros(LANES, dtype=np.float32)
        b2 = np.zeros(LANES, dtype=np.float32)
        for p in range(1, T - 1):
            for l in range(nb):
                e[l] = zero
            for d in range(D):
                av = a[p, d]
                for l in range(nb):
                    t = max(max(bmin[d, j0 + l] - av, av - bmax[d, j0 + l]), zero)
                    e[l] += t * t
            if euclid:
                for l in range(nb):
                    b1[l] += np.sqrt(e[l])
            else:
                for l in range(nb):
                    b1[l] += e[l]
            for l in range(nb):
                e[l] = zero
            for d in range(D):
                lo = amin[d]
                hi = amax[d]
                for l in range(nb):
                    v = Xt[p, d, j0 + l]
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


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def strip_candidates(
    X, Xt, bmin, bmax, jmax, r0, r1, c0, c1, band, euclid, thr, thr_prune, out_j, out_d, out_n, stats
):
    """Pairs (i, j), r0 <= i < r1, max(i+1, c0) <= j < min(c1, jmax[i]), with float32 DTW <= thr.

    Row ``i - r0`` of ``out_j``/``out_d`` receives its candidates, ``out_n`` their count;
    ``stats[i - r0]`` = (pairs in range, pairs surviving the lower bounds, lanes computed).
    ``thr_prune`` (slightly above ``thr``) guards the float32 bounds against rounding.
    """
    T = X.shape[1]
    D = X.shape[2]
    inf = np.float32(np.inf)
    zero = np.float32(0.0)
    for i in prange(r0, r1):
        r = i - r0
        a = X[i]
        amin = bmin[:, i].copy()
        amax = bmax[:, i].copy()
        jlo = max(i + 1, c0)
        jhi = min(c1, jmax[i])
        n = 0
        st0 = 0
        st1 = 0
        st2 = 0
        if jhi > jlo:
            bt = np.empty((T, D, LANES), dtype=np.float32)
            cst = np.empty((T, LANES), dtype=np.float32)
            prev = np.empty((T, LANES), dtype=np.float32)
            cur = np.empty((T, LANES), dtype=np.float32)
            res = np.empty(LANES, dtype=np.float32)
            lb = np.empty(LANES, dtype=np.float32)
            pend = np.empty(2 * LANES, dtype=np.int64)
            npend = 0
            for j0 in range(jlo, jhi, LANES):
                nb = min(LANES, jhi - j0)
                st0 += nb
                _lower_bounds(a, amin, amax, Xt, bmin, bmax, j0, nb, euclid, thr_prune, lb)
                for l in range(nb):
                    if lb[l] <= thr_prune:
                        pend[npend] = j0 + l
                        npend += 1
                last = j0 + LANES >= jhi
                while npend >= LANES or (last and npend > 0):
                    m = min(npend, LANES)
                    st1 += m
                    st2 += LANES
                    for l in range(LANES):
                        j = pend[min(l, m - 1)]
                        for q in range(T):
                            for d in range(D):
                                bt[q, d, l] = X[j, q, d]
                    dtw_lanes(a, bt, band, euclid, thr, zero, inf, cst, prev, cur, res)
                    for l in range(m):
                        if res[l] <= thr:
                            out_j[r, n] = pend[l]
                            out_d[r, n] = res[l]
                            n += 1
                    for l in range(m, npend):
                        pend[l - m] = pend[l]
                    npend -= m
        out_n[r] = n
        stats[r, 0] = st0
        stats[r, 1] = st1
        stats[r, 2] = st2


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
        bt = np.empty((T, D, LANES), dtype=np.float32)
        cst = np.empty((T, LANES), dtype=np.float32)
        prev = np.empty((T, LANES), dtype=np.float32)
        cur = np.empty((T, LANES), dtype=np.float32)
        res = np.empty(LANES, dtype=np.float32)
        lb = np.empty(LANES, dtype=np.float32)
        pend = np.empty(2 * LANES, dtype=np.int64)
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
                _lower_bounds(a, amin, amax, Xt, bmin, bmax, j0, nb, euclid, bound, lb)
                for l in range(nb):
                    if lb[l] <= bound:
                        pend[npend] = j0 + l
                        npend += 1
            while npend >= LANES or (done and npend > 0):
                m = min(npend, LANES)
                st1 += m
                st2 += LANES
                for l in range(LANES):
                    j = pend[min(l, m - 1)]
                    for q in range(T):
                        for d in range(D):
                            bt[q, d, l] = X[j, q, d]
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
