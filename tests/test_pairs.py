"""Positive pairs against brute force, resume, backends, distribution, file format, batch slicing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import class_core.similarity.engine as engine
from class_core.similarity import (
    Interrupted,
    PairConfig,
    PairSet,
    batch_weights,
    compute_pairs,
    kernels,
    load_pairs,
    n_positives,
    pair_weights,
    pairwise_distances,
)


def walks(n: int, seed: int = 0, t: int = 16, d: int = 10) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (np.cumsum(rng.normal(size=(n, t, d)), axis=1) * 0.1).astype(np.float32)


def demo_like(n_eps: int = 12, seed: int = 0) -> np.ndarray:
    """Chunks of smooth episodes from 3 behaviours; two episodes recorded twice (exact ties)."""
    rng = np.random.default_rng(seed)
    chunks = []
    for _ in range(n_eps):
        b = rng.integers(3)
        u = np.linspace(0, 3, int(rng.integers(20, 30)))
        path = np.stack([np.sin(u * (k + 1) * (b + 1) / 3 + b) for k in range(4)], 1) + rng.normal(
            0, 0.02, (1, 4)
        )
        idx = np.minimum(np.arange(len(u))[:, None] + np.arange(16)[None], len(u) - 1)
        chunks.append(path[idx])
    chunks += chunks[:2]
    return np.concatenate(chunks).astype(np.float32)


def brute_quantile(dm: np.ndarray, q: float) -> set[tuple[int, int]]:
    iu, ju = np.triu_indices(dm.shape[0], 1)
    d = dm[iu, ju]
    m = d <= np.quantile(d, q)
    return set(zip(iu[m].tolist(), ju[m].tolist(), strict=True))


def as_set(ps: PairSet) -> set[tuple[int, int]]:
    return set(zip(ps.i.tolist(), ps.j.tolist(), strict=True))


@pytest.fixture(scope="module")
def walk_set() -> tuple[np.ndarray, np.ndarray]:
    # imported here, not at the top: the spawned gloo workers import this module (aeon: ~2 s each)
    from aeon.distances import dtw_pairwise_distance

    x = walks(220)
    return x, dtw_pairwise_distance(x.transpose(0, 2, 1).astype(np.float64))


@pytest.mark.parametrize("q", [0.01, 0.025, 0.3, 1.0])
def test_quantile_mode_equals_brute_force(walk_set: tuple[np.ndarray, np.ndarray], q: float) -> None:
    x, dm = walk_set
    # sample_pairs small so that the threshold is estimated from a sample, not from all pairs
    ps = compute_pairs(
        x, PairConfig(quantile=q, sample_pairs=2048, strip_rows=64, tile_cols=96), progress=False
    )
    assert ps is not None
    want = brute_quantile(dm, q)
    assert as_set(ps) == want
    assert len(ps) == n_positives(220, q) == len(want)
    np.testing.assert_allclose(ps.distance, dm[ps.i, ps.j], rtol=1e-12)
    assert ps.meta["threshold"] == pytest.approx(max(dm[i, j] for i, j in want), rel=1e-12)
    assert np.all(ps.i < ps.j)


def test_quantile_mode_pruned_on_demonstrations_with_ties() -> None:
    x = demo_like()
    n = x.shape[0]
    dm = pairwise_distances(x)  # float64, same arithmetic as the engine's final recomputation
    iu, ju = np.triu_indices(n, 1)
    d = dm[iu, ju]
    assert (d == 0).sum() > 10  # repeated last actions -> exact ties
    for q in (0.002, 0.025):
        k = n_positives(n, q)
        order = np.lexsort((ju, iu, d))[:k]
        want = set(zip(iu[order].tolist(), ju[order].tolist(), strict=True))
        ps = compute_pairs(x, PairConfig(quantile=q, sample_pairs=1024, strip_rows=50), progress=False)
        assert ps is not None and as_set(ps) == want
        st = ps.meta["stats"]
        assert st["pairs_after_lower_bounds"] < 0.5 * st["pairs_total"]  # the bounds prune here


@pytest.mark.parametrize(
    "cost,band,horizon", [("euclidean", None, None), ("sqeuclidean", 2, None), ("sqeuclidean", None, 5)]
)
def test_options_equal_brute_force(cost: str, band: int | None, horizon: int | None) -> None:
    x = walks(150, seed=1)
    dm = pairwise_distances(x[:, :horizon], cost=cost, band=band)
    ps = compute_pairs(
        x,
        PairConfig(quantile=0.05, cost=cost, band=band, horizon=horizon, sample_pairs=512, strip_rows=40),
        progress=False,
    )
    assert ps is not None and as_set(ps) == brute_quantile(dm, 0.05)
    assert ps.meta["T"] == (horizon or 16) and ps.meta["cost"] == cost and ps.meta["band"] == band


@pytest.mark.parametrize(
    "cost,band,d,horizon,flip",
    [
        ("sqeuclidean", None, 10, None, False),
        ("sqeuclidean", None, 10, None, True),  # spread shrinking over time: layout not reversed
        ("sqeuclidean", 2, 7, None, False),
        ("sqeuclidean", 0, 3, 5, False),  # T = 5: a 3 x 3 corner, band 0
        ("sqeuclidean", None, 4, 3, True),  # T = 3: the "corner" is the whole DP
        ("euclidean", 1, 10, None, False),  # never prefiltered
    ],
)
@pytest.mark.parametrize("dot", [True, False])
def test_dense_block_prefilter_equals_brute_force(
    cost: str,
    band: int | None,
    d: int,
    horizon: int | None,
    flip: bool,
    dot: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The dense-block path (corner bound, the survivors' whole DP, exact recheck)
    and the packed path give the same set as brute force (random walks: most blocks are dense),
    with a sampled threshold."""
    x = walks(300, seed=5, d=d) + np.float32(3.0)  # off-centre: the layout's centring matters
    if flip:
        x = np.ascontiguousarray(x[:, ::-1])
    dm = pairwise_distances(x[:, :horizon], cost=cost, band=band)
    calls: list[bool] = []

    def forced(*args: object) -> bool:
        calls.append(dot)
        return dot

    monkeypatch.setattr(engine, "_dot_pays", forced)
    cfg = PairConfig(
        quantile=0.025, cost=cost, band=band, horizon=horizon, sample_pairs=1024, strip_rows=64, tile_cols=160
    )
    ps = compute_pairs(x, cfg, progress=False)
    assert calls == [dot]  # a sampled (finite) threshold: the choice was made once
    assert ps is not None and as_set(ps) == brute_quantile(dm, 0.025)
    np.testing.assert_allclose(ps.distance, dm[ps.i, ps.j], rtol=1e-12)


@pytest.mark.parametrize("dot", [True, False])
def test_row_groups_do_not_change_the_strips(dot: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Strip rows visit the column blocks in groups (kernels.GROUP): any group size gives the same
    candidates in the same order (each row keeps its own queues and gates)."""
    x = walks(300, seed=3) if dot else demo_like()
    monkeypatch.setattr(engine, "_dot_pays", lambda *args: dot)
    kernel = kernels.strip_candidates
    cfg = PairConfig(sample_pairs=1024, strip_rows=61, tile_cols=160)
    prep = engine._prepare(x, 0)
    thr = engine._sample_threshold(prep, cfg, -1, False)
    jmax = np.minimum(
        np.searchsorted(prep.s, prep.s + engine._gap_limit(thr * 1.001, False), side="right"), len(x)
    )
    runs = []
    for group in (1, 3, kernels.GROUP):
        monkeypatch.setattr(kernels, "strip_candidates", lambda *args, g=group: kernel(*args, g))
        runs.append(engine._strip_numba(prep, 0, 61, jmax.astype(np.int64), -1, False, thr, 160, dot))
    for run in runs[1:]:
        for key in ("i", "j", "d", "stats"):
            np.testing.assert_array_equal(run[key], runs[0][key])
    assert runs[0]["i"].size > 0


def test_dot_prefilter_choice() -> None:
    x = walks(3000, seed=2)
    prep = engine._prepare(x, 0)
    cfg = PairConfig()
    thr = engine._sample_threshold(prep, cfg, -1, False)
    assert math.isfinite(thr)
    assert engine._dot_pays(prep, cfg, thr, False)  # random walks: few LB_Kim survivors are positives
    assert not engine._dot_pays(prep, cfg, thr, True)  # euclidean cost: never
    assert not engine._dot_pays(prep, cfg, math.inf, False)  # collect-all pass: never
    demo = demo_like()  # demonstration chunks: most LB_Kim survivors are positives
    dm = pairwise_distances(demo)
    thr = float(np.quantile(dm[np.triu_indices(demo.shape[0], 1)], 0.025))
    assert not engine._dot_pays(engine._prepare(demo, 0), cfg, thr, False)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_topk_mode_equals_brute_force(walk_set: tuple[np.ndarray, np.ndarray], k: int) -> None:
    x, dm = walk_set
    ps = compute_pairs(x, PairConfig(topk=k, strip_rows=64), progress=False)
    d = dm.copy()
    np.fill_diagonal(d, np.inf)
    nn = np.argsort(d, axis=1, kind="stable")[:, :k]
    want = {(min(a, b), max(a, b)) for a in range(len(x)) for b in nn[a].tolist()}
    assert ps is not None and as_set(ps) == want
    assert ps.meta["mode"] == "topk" and ps.meta["topk"] == k


def test_threshold_underestimate_is_corrected(
    walk_set: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    x, dm = walk_set
    monkeypatch.setattr(
        engine, "_sample_threshold", lambda *a: float(np.quantile(dm[np.triu_indices(220, 1)], 0.005))
    )
    ps = compute_pairs(x, PairConfig(quantile=0.025, strip_rows=64), progress=False)
    assert ps is not None and as_set(ps) == brute_quantile(dm, 0.025)


def test_weights_rank_and_cdf() -> None:
    from class_core.similarity.pairs import order_by_distance

    d = np.array([3.0, 1.0, 2.0, 2.0, 5.0])
    i = np.arange(5)
    j = i + 1
    np.testing.assert_allclose(pair_weights(d, i, j, "rank"), [0.25, 1.0, 0.75, 0.5, 0.0])
    # 1 - F(d), F = empirical CDF of the positive distances
    np.testing.assert_allclose(pair_weights(d, i, j, "cdf"), [0.2, 0.8, 0.4, 0.4, 0.0])
    assert pair_weights(np.array([1.0]), i[:1], j[:1], "rank")[0] == 1.0
    # a precomputed (distance, i, j) order (what the engine passes) gives the same weights
    rng = np.random.default_rng(3)
    d2 = rng.integers(0, 20, 500).astype(np.float64)  # many ties
    i2 = rng.permutation(500)
    j2 = i2 + 1
    for mode in ("rank", "cdf"):
        given = pair_weights(d2, i2, j2, mode, order=order_by_distance(d2, i2, j2))
        np.testing.assert_array_equal(given, pair_weights(d2, i2, j2, mode))
    x = walks(60)
    for mode in ("rank", "cdf"):
        ps = compute_pairs(x, PairConfig(quantile=0.1, weights=mode), progress=False)
        assert ps is not None
        np.testing.assert_array_equal(ps.weight, pair_weights(ps.distance, ps.i, ps.j, mode))
        assert ps.weight.dtype == np.float32 and ps.weight.min() == 0.0 and ps.weight.max() <= 1.0


def test_resume_after_interruption(tmp_path: Path) -> None:
    x = walks(200, seed=3)
    cfg = PairConfig(quantile=0.025, sample_pairs=1024, strip_rows=25)  # 8 strips
    full = compute_pairs(x, cfg, progress=False)
    wd = tmp_path / "work"
    with pytest.raises(Interrupted):
        compute_pairs(x, cfg, workdir=wd, progress=False, interrupt_after=3)
    assert len(list(wd.rglob("strip_*.npz"))) == 3
    # the rerun needs only the 5 strips left: a limit of 5 does not trigger
    again = compute_pairs(x, cfg, workdir=wd, progress=False, interrupt_after=5)
    assert full is not None and again is not None
    for name in ("i", "j", "distance", "weight"):
        np.testing.assert_array_equal(getattr(again, name), getattr(full, name))
    # a different job in the same work directory is refused, naming what differs
    with pytest.raises(ValueError, match="quantile"):
        compute_pairs(
            x, PairConfig(quantile=0.05, sample_pairs=1024, strip_rows=25), workdir=wd, progress=False
        )


def test_torch_backend_equals_numba() -> None:
    x = walks(120, seed=4)
    for cfg in (
        PairConfig(quantile=0.03, sample_pairs=256, strip_rows=32),
        PairConfig(topk=4, strip_rows=32),
    ):
        a = compute_pairs(x, cfg, progress=False)
        cfg.backend = "torch"
        b = compute_pairs(x, cfg, progress=False, device=torch.device("cpu"))
        assert a is not None and b is not None
        for name in ("i", "j", "distance", "weight"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def _dist_worker(rank: int, world: int, init: str, chunks: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        ps = compute_pairs(
            np.load(chunks), PairConfig(quantile=0.025, sample_pairs=1024, strip_rows=30), progress=False
        )
        if rank == 0:
            assert ps is not None
            ps.save(out)
        else:
            assert ps is None
    finally:
        torch.distributed.destroy_process_group()


def test_two_process_gloo_equals_one_process(tmp_path: Path) -> None:
    x = walks(180, seed=5)
    np.save(tmp_path / "x.npy", x)
    one = compute_pairs(x, PairConfig(quantile=0.025, sample_pairs=1024, strip_rows=30), progress=False)
    init = f"file://{tmp_path / 'rendezvous'}"
    torch.multiprocessing.spawn(
        _dist_worker, args=(2, init, str(tmp_path / "x.npy"), str(tmp_path / "two.npz")), nprocs=2, join=True
    )
    two = load_pairs(tmp_path / "two.npz")
    assert one is not None
    for name in ("i", "j", "distance", "weight"):
        np.testing.assert_array_equal(getattr(two, name), getattr(one, name))
    assert two.meta["stats"]["world_size"] == 2


def test_file_format_and_csr(tmp_path: Path) -> None:
    x = walks(80, seed=6)
    ps = compute_pairs(x, PairConfig(quantile=0.05), progress=False)
    assert ps is not None
    path = ps.save(tmp_path / "pairs.npz")
    with np.load(path, allow_pickle=False) as z:
        assert z["i"].dtype == np.int64 and z["j"].dtype == np.int64
        assert z["distance"].dtype == np.float64 and z["weight"].dtype == np.float32
        meta = json.loads(str(z["meta"]))
    for key in (
        "n",
        "horizon",
        "quantile",
        "threshold",
        "fingerprint",
        "engine_version",
        "cost",
        "band",
        "weights",
    ):
        assert key in meta
    back = load_pairs(path)
    np.testing.assert_array_equal(back.i, ps.i)
    assert back.meta == json.loads(json.dumps(ps.meta))
    # CSR vs a dense symmetric matrix
    dense = np.zeros((80, 80), np.float32)
    dense[ps.i, ps.j] = ps.weight
    dense[ps.j, ps.i] = ps.weight
    csr = back.to_csr(80)
    rebuilt = np.zeros_like(dense)
    for r in range(80):
        s, e = csr.indptr[r], csr.indptr[r + 1]
        assert np.all(np.diff(csr.indices[s:e]) > 0)
        rebuilt[r, csr.indices[s:e]] = csr.weights[s:e]
    np.testing.assert_array_equal(rebuilt, dense)
    # a batch drawn with replacement: slicing equals the dense matrix (zero diagonal, copies not positives)
    idx = np.random.default_rng(0).integers(0, 80, size=160)
    idx[:4] = [5, 5, 7, 5]
    bw = batch_weights(csr, idx)
    np.testing.assert_array_equal(bw, dense[idx][:, idx])
    assert bw[0, 1] == 0.0 and bw[1, 3] == 0.0 and np.all(np.diag(bw) == 0)
    with pytest.raises(IndexError, match="80"):
        batch_weights(csr, np.array([0, 80]))
    with pytest.raises(ValueError, match="n=10"):
        back.to_csr(10)


def test_bad_inputs_raise_clear_errors(tmp_path: Path) -> None:
    x = walks(10)
    bad = x.copy()
    bad[3, 2, 1] = np.nan
    with pytest.raises(ValueError, match=r"chunk 3, step 2, dim 1"):
        compute_pairs(bad, progress=False)
    with pytest.raises(ValueError, match=r"\(N, T, D\)"):
        compute_pairs(x[0], progress=False)
    with pytest.raises(ValueError, match="at least 2"):
        compute_pairs(x[:1], progress=False)
    for q in (0.0, -0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match="quantile"):
            compute_pairs(x, PairConfig(quantile=q), progress=False)
    with pytest.raises(ValueError, match="topk"):
        compute_pairs(x, PairConfig(topk=10), progress=False)
    with pytest.raises(ValueError, match="horizon"):
        compute_pairs(x, PairConfig(horizon=17), progress=False)
    with pytest.raises(ValueError, match="weights"):
        compute_pairs(x, PairConfig(weights="soft"), progress=False)
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="x.npz"):
        load_pairs(tmp_path / "x.npz")
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_pairs(tmp_path / "nope.npz")


def test_order_by_distance_equals_lexsort_with_ties():
    from class_core.similarity.pairs import order_by_distance

    rng = np.random.default_rng(3)
    d = rng.integers(0, 40, size=5000).astype(np.float64) / 7.0  # many exact ties
    i = rng.integers(0, 300, size=d.size)
    j = rng.integers(0, 300, size=d.size)
    np.testing.assert_array_equal(order_by_distance(d, i, j), np.lexsort((j, i, d)))
    d2 = rng.normal(size=1000)  # no ties
    i2, j2 = np.arange(1000), np.arange(1000)
    np.testing.assert_array_equal(order_by_distance(d2, i2, j2), np.lexsort((j2, i2, d2)))
