"""DTW values against aeon (the authors' implementation) and between this project's kernels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from aeon.distances import dtw_distance as aeon_dtw
from aeon.distances import dtw_pairwise_distance
from aeon.distances.elastic._bounding_matrix import create_bounding_matrix
from numba import njit

from class_core.similarity import band_from_aeon_window, dtw_distance, pair_distances, pairwise_distances
from class_core.similarity.dtw import (
    DOT_GROUP,
    FASTMATH,
    LANES,
    _sq_cost_row,
    check_band,
    corner_size,
    dot_corner,
    dot_layout,
    dot_threshold,
    dtw_lanes_dot,
    gather_blocks,
    sakoe_chiba_mask,
)
from class_core.similarity.engine import corner_bound
from class_core.similarity.torch_dtw import dtw_batch

WINDOWS = [None, 0.0, 0.1, 0.25, 0.5, 1.0]


@pytest.mark.parametrize("n,m", [(16, 16), (10, 13), (13, 10), (1, 5), (6, 1), (7, 7)])
def test_reference_equals_aeon_incl_bands_and_lengths(n: int, m: int) -> None:
    rng = np.random.default_rng(n * 100 + m)
    for _ in range(3):
        x, y = rng.normal(size=(n, 3)), rng.normal(size=(m, 3))
        # aeon 1.6's dtw_distance disagrees with its own dense bounding matrix for unequal lengths
        # with a window (e.g. 10 vs 13, window 0): bands are compared on equal lengths only
        for w in WINDOWS if n == m else [None, 1.0]:
            want = aeon_dtw(x.T, y.T, window=w)
            got = dtw_distance(x, y, band=band_from_aeon_window(w, n, m))
            assert got == pytest.approx(want, rel=1e-12, abs=1e-12), (n, m, w)


@pytest.mark.parametrize("n,m", [(10, 13), (13, 10), (5, 16), (16, 16), (1, 4)])
def test_band_mask_equals_aeon_bounding_matrix(n: int, m: int) -> None:
    for w in WINDOWS:
        want = create_bounding_matrix(n, m, window=w)
        np.testing.assert_array_equal(sakoe_chiba_mask(n, m, band_from_aeon_window(w, n, m)), want)


def test_known_value_zeros_vs_ones() -> None:
    # 16 steps x 10 channels of unit differences: squared cost 10 per step along the diagonal
    assert dtw_distance(np.zeros((16, 10)), np.ones((16, 10))) == 160.0
    assert dtw_distance(np.zeros((16, 10)), np.ones((16, 10)), cost="euclidean") == pytest.approx(
        16 * 10**0.5
    )


def test_euclidean_cost_is_min_over_paths_of_norms() -> None:
    # brute-force the Euclidean-cost DP with a full cost matrix
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(9, 4)), rng.normal(size=(9, 4))
    c = np.linalg.norm(x[:, None] - y[None], axis=-1)
    acc = np.full((10, 10), np.inf)
    acc[0, 0] = 0
    for p in range(9):
        for q in range(9):
            if abs(p - q) <= 2:
                acc[p + 1, q + 1] = c[p, q] + min(acc[p, q + 1], acc[p + 1, q], acc[p, q])
    assert dtw_distance(x, y, cost="euclidean", band=2) == pytest.approx(acc[9, 9], rel=1e-12)


@pytest.mark.parametrize("band", [None, 0, 1, 3, 15])
def test_lane_kernel_matches_aeon_pairwise(band: int | None) -> None:
    rng = np.random.default_rng(2)
    x = np.cumsum(rng.normal(size=(40, 16, 10)), axis=1).astype(np.float32)
    window = None if band is None else band / 16
    want = dtw_pairwise_distance(x.transpose(0, 2, 1).astype(np.float64), window=window)
    assert band_from_aeon_window(window, 16, 16) == band
    got64 = pairwise_distances(x, band=band)
    np.testing.assert_allclose(got64, want, rtol=1e-12, atol=1e-9)
    iu = np.triu_indices(40, 1)
    got32 = pair_distances(x, iu[0], iu[1], band=band)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, want[iu], rtol=2e-6)


def test_lane_kernel_euclidean_and_partial_blocks() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(12, 5, 3))
    i = np.array([0, 0, 0, 3, 7, 11, 2])  # groups shorter than a SIMD block, repeated anchors
    j = np.array([1, 5, 0, 3, 2, 4, 9])
    got = pair_distances(x, i, j, cost="euclidean", band=1)
    want = [dtw_distance(x[a], x[b], cost="euclidean", band=1) for a, b in zip(i, j, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[2] == 0.0 and got[3] == 0.0


@pytest.mark.parametrize("band,cost", [(-1, "sqeuclidean"), (2, "sqeuclidean"), (-1, "euclidean")])
def test_torch_wavefront_matches_numba(band: int, cost: str) -> None:
    rng = np.random.default_rng(4)
    x = np.cumsum(rng.normal(size=(30, 16, 10)), axis=1)
    i, j = np.triu_indices(30, 1)
    want = pair_distances(x, i, j, cost=cost, band=None if band < 0 else band)
    t = torch.from_numpy(x)
    got = dtw_batch(t[torch.from_numpy(i)], t[torch.from_numpy(j)], band, cost == "euclidean").numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # unequal lengths without a band
    a, b = rng.normal(size=(4, 7, 3)), rng.normal(size=(4, 11, 3))
    got_u = dtw_batch(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(got_u, [dtw_distance(a[k], b[k]) for k in range(4)], rtol=1e-12)


def test_bad_input_errors() -> None:
    with pytest.raises(ValueError, match="NaN"):
        dtw_distance(np.full((3, 2), np.nan), np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"\(T, D\)"):
        dtw_distance(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="same number of dimensions"):
        dtw_distance(np.zeros((3, 2)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="cost"):
        dtw_distance(np.zeros((3, 2)), np.zeros((3, 2)), cost="manhattan")
    with pytest.raises(ValueError, match="band"):
        dtw_distance(np.zeros((3, 2)), np.zeros((3, 2)), band=-1)
    with pytest.raises(ValueError, match="window"):
        band_from_aeon_window(1.5, 3, 3)


@njit(fastmath=FASTMATH)
def _cost_row_one_dim_per_pass(a, bt, p, k0, n, c):  # the kernel's previous loop
    av = a[p, 0]
    b = bt[0, k0 : k0 + n]
    for k in range(n):
        t = av - b[k]
        c[k] = t * t
    for d in range(1, a.shape[1]):
        av = a[p, d]
        b = bt[d, k0 : k0 + n]
        for k in range(n):
            t = av - b[k]
            c[k] += t * t


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cost_row_chains_are_bitwise_one_dim_per_pass(dtype: type) -> None:
    """``_sq_cost_row`` (3 dimensions per pass) rounds every cell exactly as one dimension per pass,
    so exact distances (the float64 output) do not change with the kernel's loop structure."""
    rng = np.random.default_rng(7)
    t = 16
    for d in range(1, 15):
        a = (rng.normal(size=(t, d)) * 3).astype(dtype)
        bt = (rng.normal(size=(d, t * LANES)) * 3).astype(dtype)
        for p, k0, n in ((0, 0, t * LANES), (5, 3 * LANES, 4 * LANES), (t - 1, 0, LANES)):
            c1 = np.zeros(t * LANES, dtype)
            c2 = np.zeros(t * LANES, dtype)
            _sq_cost_row(a, bt, p, k0, n, c1[k0:])
            _cost_row_one_dim_per_pass(a, bt, p, k0, n, c2[k0:])
            np.testing.assert_array_equal(c1, c2)


@pytest.mark.parametrize("t,d", [(16, 10), (16, 7), (16, 3), (5, 3), (1, 1), (8, 12)])
def test_dot_kernel_stays_within_its_error_bound(t: int, d: int) -> None:
    """``dtw_lanes_dot`` (the prefilter) never exceeds ``dot_threshold`` of the exact distance."""
    rng = np.random.default_rng(t * 100 + d)
    n = 70  # 3 blocks, the last one padded
    x = (np.cumsum(rng.normal(size=(n, t, d)), axis=1) * 3 + 5).astype(np.float32)  # off-centre
    xb, radius = dot_layout(x)
    dp = xb.shape[1] - 1
    assert dp % DOT_GROUP == 0 and dp >= d and xb.shape == (3, dp + 1, t * LANES)
    inf = np.float32(np.inf)
    for band in (None, 0, 2):
        b = check_band(band)
        for blk in range(xb.shape[0]):
            i = int(rng.integers(n))
            a = xb[i // LANES][:, i % LANES :: LANES]  # (dp + 1, t)
            a2 = np.ascontiguousarray(-2 * a[:dp].T)
            na = np.ascontiguousarray(a[dp])
            cst = np.empty(t * LANES, np.float32)
            out = np.empty(LANES, np.float32)
            dtw_lanes_dot(a2, na, xb[blk], b, inf, inf, cst, cst.copy(), cst.copy(), out)
            for lane in range(LANES):
                j = min(blk * LANES + lane, n - 1)
                ref = dtw_distance(x[i], x[j], band=band)
                assert out[lane] <= dot_threshold(ref, t, dp, radius)
                assert out[lane] == pytest.approx(ref, rel=1e-3, abs=1e-2)
            # single candidates gathered from the blocks equal their lanes
            jj = rng.choice(n, size=5, replace=False).astype(np.int64)
            bt = np.empty_like(xb[0])
            gather_blocks(xb, jj, 5, bt, np.empty(LANES, np.int64))
            for lane in range(LANES):
                j = int(jj[min(lane, 4)])
                np.testing.assert_array_equal(bt[:, lane::LANES], xb[j // LANES][:, j % LANES :: LANES])
            # early abandoning: a threshold below every distance fills the block with inf
            dtw_lanes_dot(a2, na, xb[blk], b, np.float32(-1.0), inf, cst, cst.copy(), cst.copy(), out)
            assert t < 5 or np.all(out == inf)


def _corner_bound_ref(a: np.ndarray, b: np.ndarray, k: int, band: int | None) -> float:
    """float64 minimum of the DP over the k x k corner on its last row and column (brute force)."""
    t = a.shape[0]
    dp = np.full((k, k), np.inf)
    for p in range(k):
        for q in range(k):
            if band is not None and abs(p - q) > band:
                continue
            up = dp[p - 1, q] if p else np.inf
            left = dp[p, q - 1] if q else np.inf
            diag = dp[p - 1, q - 1] if p and q else np.inf
            best = 0.0 if p == q == 0 else min(up, left, diag)
            dp[p, q] = float(((a[p] - b[q]) ** 2).sum()) + best
    if k == t:
        return float(dp[k - 1, k - 1])
    return float(min(dp[k - 1].min(), dp[:, k - 1].min()))


@pytest.mark.parametrize("t,d", [(16, 10), (16, 4), (9, 3), (3, 2), (1, 1)])
def test_corner_bound_is_a_lower_bound_of_dtw(t: int, d: int) -> None:
    """``dot_corner`` = the brute-force corner bound (to float32 error), never above the DTW of the
    same pair plus the prefilter's error margin: pairs it removes are never positives."""
    rng = np.random.default_rng(t * 10 + d)
    n = 40
    x = (np.cumsum(rng.normal(size=(n, t, d)), axis=1) + 2).astype(np.float32)
    xb, radius = dot_layout(x)
    dp = xb.shape[1] - 1
    k = corner_size(t)
    assert k == (9 if t == 16 else t if t < 4 else t // 2 + 1)
    inf = np.float32(np.inf)
    cst = np.empty(t * LANES, np.float32)
    out = np.empty(LANES, np.float32)
    tight = 0
    for band in (None, 0, 2):
        b = check_band(band)
        for i in (0, 7, 33):
            a = xb[i // LANES][:, i % LANES :: LANES]  # (dp + 1, t), the layout's step order
            a2 = np.ascontiguousarray(-2 * a[:dp].T)
            na = np.ascontiguousarray(a[dp])
            dot_corner(a2, na, xb[0], b, k, inf, cst, cst.copy(), cst.copy(), out)
            for lane in range(LANES):
                c = xb[0][:, lane::LANES]
                ra, rb = a[:dp].T.astype(np.float64), c[:dp].T.astype(np.float64)
                ref = _corner_bound_ref(ra, rb, k, band)
                assert out[lane] == pytest.approx(ref, rel=1e-4, abs=1e-2)
                cost = ((ra[:k, None, :] - rb[None, :k, :]) ** 2).sum(-1)[None]
                assert corner_bound(cost, t, band)[0] == pytest.approx(ref, rel=1e-12)  # engine's
                full = dtw_distance(x[i], x[lane], band=band)
                assert out[lane] <= dot_threshold(full, t, dp, radius)
                tight += ref > 0.5 * full
    assert tight > 0  # the bound is not trivially 0


def test_generated_dot_kernels_are_up_to_date() -> None:
    """``dot_kernels.py`` is exactly what ``dot_codegen`` writes, and ``dot_columns`` runs the kernels
    of ``SHAPES`` only (other shapes fall back to ``dot_rows``; the kernel tests above cover both)."""
    from class_core.similarity import dot_codegen
    from class_core.similarity.dot_kernels import dot_columns

    assert dot_codegen.TARGET.read_text() == dot_codegen.module_source()
    assert dot_codegen.main(["--check"]) == 0
    for rows, dp in [*dot_codegen.SHAPES, (9, 5), (16, 5), (8, 10), (16, 15)]:
        t = max(rows, 16)
        a2, na = np.zeros((t, dp), np.float32), np.zeros(t, np.float32)
        bt = np.zeros((dp + 1, t * LANES), np.float32)
        st = np.empty(t * LANES, np.float32)
        ran = dot_columns(a2, na, bt, -1, rows, 0, 1, st, np.empty(LANES, np.float32))
        assert ran == ((rows, dp) in dot_codegen.SHAPES)
