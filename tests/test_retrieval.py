"""Retrieval math: neighbours, weights and averaging against an independent computation."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from policy_fixtures import random_rotations

from class_core.geometry import rot6d_to_matrix
from class_core.policy.retrieval import (
    IndexConfig,
    KNNIndex,
    RetrievalConfig,
    _best_k,
    exact_topk,
    holdout_chunk_error,
    l2_normalize,
    recall_at_k,
    softmax_weights,
    weighted_chunks,
)


def clustered(
    rng: np.random.Generator, n: int, d: int, n_clusters: int = 20, spread: float = 0.3
) -> np.ndarray:
    centres = rng.normal(size=(n_clusters, d))
    x = centres[rng.integers(0, n_clusters, n)] + spread * rng.normal(size=(n, d))
    return l2_normalize(x)


def reference_chunk(q: np.ndarray, bank: np.ndarray, chunks: np.ndarray, k: int, tau: float) -> np.ndarray:
    """Plain-Python weighted mean: exact cosines, sort, softmax, weighted sum."""
    cos = [float(np.dot(q.astype(np.float64), b.astype(np.float64))) for b in bank]
    order = sorted(range(len(bank)), key=lambda i: -cos[i])[:k]
    m = max(cos[i] for i in order)
    w = [math.exp((cos[i] - m) / tau) for i in order]
    total = sum(w)
    out = np.zeros(chunks.shape[1:], dtype=np.float64)
    for wi, i in zip(w, order, strict=True):
        out += wi / total * chunks[i].astype(np.float64)
    return out


@pytest.mark.parametrize("kind", ["flat", "pca_flat", "hnsw", "ivf"])
def test_weighted_mean_matches_reference(kind: str) -> None:
    rng = np.random.default_rng(1)
    n, d, k, tau = 600, 24, 16, 0.05
    bank = clustered(rng, n, d, spread=0.6)
    chunks = rng.normal(size=(n, 16, 2)).astype(np.float32)
    queries = clustered(rng, 5, d, spread=0.6)
    cfg = IndexConfig(kind=kind, pca_dim=24, candidates=600, nlist=4, nprobe=4, ef_search=600)
    index = KNNIndex.build(bank, cfg)
    sims, idx = index.search(queries, k)
    assert sims.shape == (5, k) and idx.dtype == np.int64
    assert np.all(np.diff(sims, axis=1) <= 1e-6), "neighbours must be sorted best first"
    np.testing.assert_allclose(sims, np.take_along_axis(queries @ bank.T, idx, axis=1), atol=1e-5)
    got = weighted_chunks(sims, idx, chunks, tau)
    for b in range(5):
        np.testing.assert_allclose(got[b], reference_chunk(queries[b], bank, chunks, k, tau), atol=1e-5)


def test_softmax_weights_small_tau_is_stable() -> None:
    sims = np.array([[0.99, 0.98, 0.5, -1.0]])
    w = softmax_weights(sims, 0.001)
    assert np.isfinite(w).all() and abs(w.sum() - 1) < 1e-12
    assert w[0, 0] > 0.9999  # exp(10) ratio over the second


def test_rot6d_output_is_orthonormal_and_equals_gram_schmidt_of_mean() -> None:
    rng = np.random.default_rng(2)
    n, k = 200, 64
    bank = clustered(rng, n, 16)
    mats = random_rotations(rng, n * 16).reshape(n, 16, 3, 3)
    r6 = np.concatenate([mats[..., :, 0], mats[..., :, 1]], axis=-1)
    chunks = np.concatenate(
        [rng.normal(size=(n, 16, 3)), r6, rng.uniform(0, 1, size=(n, 16, 1))], axis=-1
    ).astype(np.float32)
    index = KNNIndex.build(bank)
    q = clustered(rng, 3, 16)
    sims, idx = index.search(q, k)
    out = weighted_chunks(sims, idx, chunks, tau=0.5, rot6d=(3, 9))
    m = rot6d_to_matrix(out[..., 3:9].astype(np.float64))
    eye = np.broadcast_to(np.eye(3), m.shape)
    np.testing.assert_allclose(np.swapaxes(m, -1, -2) @ m, eye, atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(m), 1.0, atol=1e-5)
    # position and gripper are the plain weighted mean; rotation is Gram-Schmidt of the mean
    for b in range(3):
        ref = reference_chunk(q[b], bank, chunks, k, 0.5)
        np.testing.assert_allclose(out[b][:, :3], ref[:, :3], atol=1e-5)
        np.testing.assert_allclose(out[b][:, 9:], ref[:, 9:], atol=1e-5)
        a = ref[:, 3:6] / np.linalg.norm(ref[:, 3:6], axis=-1, keepdims=True)
        np.testing.assert_allclose(out[b][:, 3:6], a, atol=1e-5)


@pytest.mark.parametrize("kind", ["pca_flat", "hnsw", "ivf"])
def test_approximate_indexes_recall_on_clustered_data(kind: str) -> None:
    rng = np.random.default_rng(3)
    # low intrinsic dimension embedded in 256-d, like keypoint latents along trajectories
    latent = rng.normal(size=(4000, 8))
    lift = rng.normal(size=(8, 256))
    bank = l2_normalize(np.tanh(latent @ lift / 3) + 0.02 * rng.normal(size=(4000, 256)))
    q = l2_normalize(np.tanh(rng.normal(size=(50, 8)) @ lift / 3) + 0.02 * rng.normal(size=(50, 256)))
    cfg = IndexConfig(kind=kind, pca_dim=32, candidates=256, nlist=64, nprobe=32)
    index = KNNIndex.build(bank, cfg)
    _, idx = index.search(q, 64)
    assert recall_at_k(idx, exact_topk(bank, q, 64)) >= 0.99


@pytest.mark.parametrize("kind", ["pca_flat", "hnsw", "ivf"])  # flat is rebuilt from the latents
def test_index_serialisation_round_trip(kind: str) -> None:
    rng = np.random.default_rng(4)
    bank = clustered(rng, 1000, 32)
    cfg = IndexConfig(kind=kind, pca_dim=16, nlist=8, nprobe=8)
    index = KNNIndex.build(bank, cfg)
    again = KNNIndex.from_bytes(index.to_bytes(), bank, cfg)
    q = clustered(rng, 4, 32)
    for a, b in zip(index.search(q, 10), again.search(q, 10), strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_inputs_fail_clearly() -> None:
    rng = np.random.default_rng(5)
    bank = clustered(rng, 50, 8)
    with pytest.raises(ValueError, match="retrieval.index.candidates"):
        RetrievalConfig(k=64, index=IndexConfig(kind="hnsw", candidates=10)).validate()
    with pytest.raises(ValueError, match="retrieval.tau_nn"):
        RetrievalConfig(tau_nn=0.0).validate()
    with pytest.raises(ValueError, match="NaN"):
        KNNIndex.build(np.full((3, 4), np.nan, dtype=np.float32))
    index = KNNIndex.build(bank)
    with pytest.raises(ValueError, match="dimension 9"):
        index.search(np.zeros((1, 9), np.float32), 4)
    hnsw = KNNIndex.build(bank, IndexConfig(kind="hnsw", candidates=16))
    with pytest.raises(ValueError, match="index holds"):
        KNNIndex(hnsw.index, bank[:10], hnsw.cfg)
    with pytest.raises(ValueError, match="every kind but flat"):
        KNNIndex(hnsw.index, bank, IndexConfig())


def test_holdout_chunk_error_uses_other_episodes_only() -> None:
    rng = np.random.default_rng(0)
    phases, episodes = 20, 4
    episode = np.repeat(np.arange(episodes), phases)
    phase = np.tile(np.arange(phases), episodes)
    chunks = (phase[:, None, None] * np.ones((1, 16, 2))).astype(np.float32)  # the chunk is the phase
    # a representation of the phase: every other episode holds an exact match -> zero error
    good = np.eye(phases, dtype=np.float32)[phase]
    err = holdout_chunk_error(good, chunks, episode, k=1, tau=0.01, n_queries=50)
    assert err["knn"] == 0.0 and err["nn1"] == 0.0 and err["queries"] == 50
    # a representation of the episode: the only exact matches are excluded, so it is chance level
    bad = np.eye(episodes, dtype=np.float32)[episode] + 1e-3 * rng.standard_normal((len(episode), episodes))
    bad /= np.linalg.norm(bad, axis=1, keepdims=True)
    err_bad = holdout_chunk_error(bad.astype(np.float32), chunks, episode, k=1, tau=0.01, n_queries=80)
    assert err_bad["nn1"] > 3.0  # chance: E|a - b| for independent phases 0..19 is 6.65
    with pytest.raises(ValueError, match="2 episodes"):
        holdout_chunk_error(good, chunks, np.zeros(len(episode), int), k=1, tau=0.01)
    with pytest.raises(ValueError, match="differ in length"):
        holdout_chunk_error(good[:-1], chunks, episode, k=1, tau=0.01)


def test_flat_search_is_exact_and_batch_independent() -> None:
    rng = np.random.default_rng(8)
    bank = clustered(rng, 700, 16)
    bank[5] = bank[400]  # a tie
    index = KNNIndex.build(bank)
    assert index.index is None  # flat: one BLAS product, no FAISS copy of the bank
    q = np.concatenate([bank[400:401], clustered(rng, 7, 16)])
    sims, idx = index.search(q, 12)
    # an exact tie, whatever OpenBLAS's last bits (on AMD EPYC its product ranked row 400 first):
    # the lower index comes first
    assert idx[0, 0] == 5 and idx[0, 1] == 400 and sims[0, 0] == sims[0, 1]
    assert _best_k(np.array([[0.5, 0.9, 0.1, 0.9]]), 2).tolist() == [[1, 3]]
    truth = np.argsort(-(q @ bank.T), axis=1, kind="stable")[:, :12]
    np.testing.assert_array_equal(idx[1:], truth[1:])
    for b in range(len(q)):
        s1, i1 = index.search(q[b], 12)
        np.testing.assert_array_equal(i1[0], idx[b])
        np.testing.assert_allclose(s1[0], sims[b], rtol=1e-6)


def test_flat_search_does_not_depend_on_blas_threads() -> None:
    """OpenBLAS's sgemm sums over the latent dimension in an order that depends on its thread
    count (here for d = 1026, the Push-T latent size), which flipped near-tie neighbours between
    ``class-eval --workers 1`` and ``--workers 2``. The flat search runs on one BLAS thread, so
    its similarities are the same whatever the process allows."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(3)
    bank = clustered(rng, 2000, 1026)
    index = KNNIndex.build(bank)
    q = clustered(rng, 50, 1026)
    got = []
    for threads in (2, 1):
        with threadpool_limits(threads, user_api="blas"):
            got.append(index.search(q, 16))
    np.testing.assert_array_equal(got[0][0], got[1][0])
    np.testing.assert_array_equal(got[0][1], got[1][1])


def test_search_threads_can_be_capped() -> None:
    """Rollout workers cap FAISS's OpenMP threads at their share of the cores (load_policy):
    a batched search then uses that many, not every core."""
    import faiss

    from class_core.policy.retrieval import limit_search_threads

    rng = np.random.default_rng(4)
    bank = clustered(rng, 600, 16)
    index = KNNIndex.build(bank, IndexConfig(kind="ivf", nlist=4, nprobe=4, pca_dim=0))
    q = clustered(rng, 8, 16)
    try:
        limit_search_threads(1)
        capped = index.search(q, 5)
        assert faiss.omp_get_max_threads() == 1
        limit_search_threads(None)
        free = index.search(q, 5)
        assert faiss.omp_get_max_threads() == max(1, os.cpu_count() or 1)
    finally:
        limit_search_threads(None)
    np.testing.assert_array_equal(capped[1], free[1])
