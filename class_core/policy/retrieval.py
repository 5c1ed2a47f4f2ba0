"""Retrieval (non-parametric) policy math: the latent bank, FAISS search and chunk averaging.

The bank holds one L2-normalised latent ``[image keypoints || normalised proprio]`` per training
sample and the raw action chunk of that sample. A query latent retrieves its ``k`` nearest bank
entries by cosine similarity; their chunks are averaged with weights ``softmax(cos / tau_nn)``
and any rot6d part of the result is projected back onto rotations (Gram-Schmidt).

Index kinds (``IndexConfig.kind``):
- ``flat``: exact inner products over the full latents, one BLAS matrix product per batch of
  queries (no FAISS object: FAISS's ``IndexFlatIP`` measured 1.3x slower for one query and 8x
  slower for 50 on a 28k x 1026 bank here, and held a second copy of the bank), on one BLAS
  thread so that the result does not depend on the machine's or the process's thread count.
- ``pca_flat``: PCA to ``pca_dim`` then exact L2 search there; ``candidates`` hits are re-ranked
  by exact cosine on the full latents. For unit vectors L2 = 2 - 2 cos, and PCA keeps L2
  distances (it centres, which would bias inner products).
- ``hnsw``: HNSW graph (on the PCA projection if ``pca_dim > 0``), re-ranked exactly.
- ``ivf``: inverted lists with ``nlist`` k-means cells, ``nprobe`` visited, re-ranked exactly.
Re-ranking makes the returned similarities exact for every kind, so the softmax weights (very
sharp at tau_nn = 0.01) never see approximation error; only the neighbour set can differ.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

import faiss
import numpy as np

from class_core.geometry import orthonormalize_rot6d

IndexKind = Literal["flat", "pca_flat", "hnsw", "ivf"]


@dataclass
class IndexConfig:
    kind: IndexKind = "flat"
    pca_dim: int = 64
    candidates: int = 256
    hnsw_m: int = 32
    ef_construction: int = 64
    ef_search: int = 128
    nlist: int = 1024
    nprobe: int = 16
    train_size: int = 50_000
    seed: int = 0

    def validate(self, k: int) -> None:
        if self.kind not in ("flat", "pca_flat", "hnsw", "ivf"):
            raise ValueError(f"retrieval.index.kind must be flat, pca_flat, hnsw or ivf, got {self.kind!r}")
        if self.kind != "flat" and self.candidates < k:
            raise ValueError(f"retrieval.index.candidates={self.candidates} must be >= retrieval.k={k}")
        if self.kind == "pca_flat" and self.pca_dim <= 0:
            raise ValueError("retrieval.index.pca_dim must be > 0 for kind pca_flat")
        for name in ("hnsw_m", "ef_search", "nlist", "nprobe", "train_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"retrieval.index.{name} must be positive, got {getattr(self, name)}")


@dataclass
class RetrievalConfig:
    k: int = 64
    tau_nn: float = 0.01
    # weight of the normalised proprio block relative to the image keypoints before L2-normalising
    proprio_scale: float = 1.0
    # autocast of the encoder while building the bank (class_core.nn.amp): auto = bf16 on CUDA
    # and on AMX CPUs (2.1x faster batch encoding there), float32 elsewhere; queries: float32
    amp: str = "auto"
    index: IndexConfig | None = None

    def __post_init__(self) -> None:
        if self.index is None:
            self.index = IndexConfig()

    @property
    def index_cfg(self) -> IndexConfig:
        assert self.index is not None
        return self.index

    def validate(self) -> None:
        if self.k <= 0:
            raise ValueError(f"retrieval.k must be positive, got {self.k}")
        if not self.tau_nn > 0:
            raise ValueError(f"retrieval.tau_nn must be positive, got {self.tau_nn}")
        self.index_cfg.validate(self.k)


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(n, 1e-12)


_BLAS: Any = None  # threadpoolctl's controller, made on first use


def _one_blas_thread() -> Any:
    """A context with numpy's BLAS on one thread. OpenBLAS's sgemm sums in an order that depends
    on its thread count: with 2 threads instead of 1 the similarities of a batch of queries
    differed in the last bits, enough to flip near-tie neighbours and change 5 of 200 Push-T
    rollouts; a rollout's result then depended on ``class-eval --workers``. A row's similarities
    on one thread do not depend on the batch it is in."""
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


_MAX_SEARCH_THREADS: int | None = None  # limit_search_threads


def limit_search_threads(n: int | None) -> None:
    """Cap the OpenMP threads of FAISS searches in this process (``None``: all cores). Rollout
    workers take one core each (``class_core.cli.eval.load_policy``): two workers searching a 28k
    bank with 2 threads each took 1.4x (IVF) and 1.7x (HNSW) as long as with one each
    (benchmarks/search_threads_bench.py)."""
    global _MAX_SEARCH_THREADS
    _MAX_SEARCH_THREADS = None if n is None else max(1, int(n))


def _set_threads(n_queries: int) -> None:
    # One query: a single thread is faster (thread start-up dominates, PERF-FACTS).
    cores = max(1, os.cpu_count() or 1)
    if _MAX_SEARCH_THREADS is not None:
        cores = min(cores, _MAX_SEARCH_THREADS)
    faiss.omp_set_num_threads(1 if n_queries == 1 else cores)


class KNNIndex:
    """Cosine k-NN over a bank of L2-normalised latents; returns exact similarities."""

    def __init__(self, index: faiss.Index | None, latents: np.ndarray, cfg: IndexConfig) -> None:
        if latents.ndim != 2 or latents.dtype != np.float32:
            raise ValueError(f"bank latents must be float32 (N, d), got {latents.dtype} {latents.shape}")
        if (index is None) != (cfg.kind == "flat"):
            raise ValueError(f"index kind {cfg.kind!r}: a FAISS index is used by every kind but flat")
        if index is not None and (index.ntotal != latents.shape[0] or index.d != latents.shape[1]):
            raise ValueError(
                f"index holds {index.ntotal} x {index.d} vectors but the bank is "
                f"{latents.shape[0]} x {latents.shape[1]}"
            )
        self.index = index
        self.latents = np.ascontiguousarray(latents)
        self.cfg = cfg
        self._apply_search_params()

    @property
    def n(self) -> int:
        return int(self.latents.shape[0])

    @property
    def dim(self) -> int:
        return int(self.latents.shape[1])

    def _apply_search_params(self) -> None:
        if self.index is None:
            return
        ps = faiss.ParameterSpace()
        if self.cfg.kind == "hnsw":
            ps.set_index_parameter(self.index, "efSearch", int(max(self.cfg.ef_search, self.cfg.candidates)))
        elif self.cfg.kind == "ivf":
            ps.set_index_parameter(self.index, "nprobe", int(self.cfg.nprobe))

    @classmethod
    def build(cls, latents: np.ndarray, cfg: IndexConfig | None = None) -> KNNIndex:
        cfg = cfg or IndexConfig()
        latents = np.ascontiguousarray(latents, dtype=np.float32)
        if latents.ndim != 2 or latents.shape[0] == 0:
            raise ValueError(f"bank latents must be a non-empty (N, d) array, got shape {latents.shape}")
        if not np.all(np.isfinite(latents)):
            raise ValueError("bank latents contain NaN or inf")
        n, d = latents.shape
        if cfg.kind == "flat":
            return cls(None, latents, cfg)
        _set_threads(n)
        pca = min(cfg.pca_dim, d) if cfg.pca_dim > 0 else 0
        prefix = f"PCA{pca}," if 0 < pca < d else ""
        nlist = max(1, min(cfg.nlist, n // 39))  # faiss wants >= 39 training points per cell
        if cfg.kind == "pca_flat":
            body = "Flat"
        elif cfg.kind == "hnsw":
            body = f"HNSW{cfg.hnsw_m}"
        else:
            body = f"IVF{nlist},Flat"
        index = faiss.index_factory(d, prefix + body, faiss.METRIC_L2)
        if cfg.kind == "hnsw":
            hnsw: Any = faiss.downcast_index(index.index if prefix else index)  # type: ignore[attr-defined]
            hnsw.hnsw.efConstruction = cfg.ef_construction
        if not index.is_trained:
            rng = np.random.default_rng(cfg.seed)
            # IVF k-means wants ~40 points per cell: train on more than train_size if needed
            n_train = min(n, max(cfg.train_size, 40 * nlist if cfg.kind == "ivf" else 0))
            sel = rng.choice(n, size=n_train, replace=False) if n > n_train else None
            index.train(latents if sel is None else latents[np.sort(sel)])
        index.add(latents)
        return cls(index, latents, cfg)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``queries (B, d)`` L2-normalised -> ``(cos (B, k) float32, idx (B, k) int64)``, best first."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.shape[1] != self.dim:
            raise ValueError(f"query latent has dimension {q.shape[1]}, the bank has {self.dim}")
        k = min(k, self.n)
        if self.index is None:  # flat: exact, one BLAS product
            with _one_blas_thread():
                sims = q @ self.latents.T
            # OpenBLAS's last bits depend on the batch size and on a row's place in its blocks
            # (on AMD EPYC a query alone and in a batch ranked two equal rows differently): the
            # best k + a margin are scored again row by row, which no batch or position changes
            return self._rerank(q, _best_k(sims, min(self.n, k + _RERANK_MARGIN)), k)
        _set_threads(q.shape[0])
        c = min(max(self.cfg.candidates, k), self.n)
        _, cand = self.index.search(q, c)
        return self._rerank(q, cand, k)

    def _rerank(self, q: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        cand = np.sort(cand, axis=1)  # equal similarities then resolve to the lower bank index
        valid = cand >= 0
        safe = np.where(valid, cand, 0)
        sims = np.einsum("bcd,bd->bc", self.latents[safe], q)
        sims[~valid] = -np.inf
        part = _best_k(sims, k)
        out_idx = np.take_along_axis(safe, part, axis=1).astype(np.int64)
        out_sim = np.take_along_axis(sims, part, axis=1).astype(np.float32)
        if not np.all(np.isfinite(out_sim)):
            raise RuntimeError(
                f"the index returned fewer than k={k} neighbours; "
                "raise retrieval.index.nprobe/ef_search/candidates"
            )
        return out_sim, out_idx

    def to_bytes(self) -> bytes:
        if self.index is None:
            raise ValueError("a flat index is rebuilt from the latents: it has no FAISS bytes")
        return bytes(faiss.serialize_index(self.index).tobytes())

    @classmethod
    def from_bytes(cls, data: bytes, latents: np.ndarray, cfg: IndexConfig) -> KNNIndex:
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        return cls(index, latents, cfg)


_RERANK_MARGIN = 8  # candidates beyond k that the flat search scores again exactly


def _best_k(sims: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's ``k`` largest ``sims`` (B, n), largest first (ties: lower column)."""
    if sims.shape[1] > k:
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        part.sort(axis=1)  # ties within the top k then resolve by column, as a full stable sort would
    else:
        part = np.broadcast_to(np.arange(sims.shape[1]), sims.shape)
    top = np.take_along_axis(sims, part, axis=1)
    return np.take_along_axis(part, np.argsort(-top, axis=1, kind="stable"), axis=1)


def softmax_weights(sims: np.ndarray, tau: float) -> np.ndarray:
    """Row-wise softmax(sims / tau), computed in float64 for stability at small tau."""
    s = np.asarray(sims, dtype=np.float64) / tau
    s -= s.max(axis=-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=-1, keepdims=True)


def weighted_chunks(
    sims: np.ndarray, idx: np.ndarray, chunks: np.ndarray, tau: float, rot6d: tuple[int, int] | None = None
) -> np.ndarray:
    """Weighted mean of the retrieved raw chunks: ``(B, k)`` -> ``(B, T_p, D)`` float32."""
    w = softmax_weights(sims, tau)
    out = np.einsum("bk,bktd->btd", w, chunks[idx].astype(np.float64))
    if rot6d is not None:
        a, b = rot6d
        out[..., a:b] = orthonormalize_rot6d(out[..., a:b])
    return out.astype(np.float32)


def exact_topk(bank: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Reference exact top-k indices by inner product (for recall measurements)."""
    sims = np.atleast_2d(queries) @ bank.T
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return part


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of the true k neighbours present in the found set."""
    hits = [len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits))


def holdout_chunk_error(
    latents: np.ndarray,
    chunks: np.ndarray,
    episode: np.ndarray,
    k: int,
    tau: float,
    n_queries: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Offline retrieval quality of a bank, without rollouts: for ``n_queries`` sampled entries,
    the chunk the policy would retrieve from the *other* episodes (same-episode neighbours are
    near-duplicates and say nothing about generalisation) against the entry's own chunk.

    Returns the mean absolute error per action value of the ``k``-NN softmax(cos / tau) mean
    (``knn``) and of the single nearest neighbour (``nn1``), in raw action units.
    """
    n = len(latents)
    if not (len(chunks) == len(episode) == n):
        raise ValueError(
            f"latents ({n}), chunks ({len(chunks)}) and episode ids ({len(episode)}) differ in length"
        )
    if len(np.unique(episode)) < 2:
        raise ValueError("holdout_chunk_error needs at least 2 episodes")
    q = np.random.default_rng(seed).choice(n, size=min(n_queries, n), replace=False)
    sims = latents[q] @ latents.T
    sims[episode[q][:, None] == episode[None, :]] = -np.inf
    k = min(k, int((episode != episode[q][:, None]).sum(1).min()))
    idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(sims, idx, 1)
    order = np.argsort(-top, axis=1)
    idx, top = np.take_along_axis(idx, order, 1), np.take_along_axis(top, order, 1)
    target = chunks[q].astype(np.float64)
    knn = weighted_chunks(top, idx, chunks, tau)
    return {
        "knn": float(np.abs(knn - target).mean()),
        "nn1": float(np.abs(chunks[idx[:, 0]] - target).mean()),
        "queries": float(len(q)),
        "k": float(k),
    }
