"""Batches for contrastive pre-training: sample indices, uint8 images and the batch's weights.

The sampler decides the *global* batch of every step from ``(seed, step)`` alone, so resuming at
step k draws exactly what an uninterrupted run draws, and every DDP rank knows the whole batch
(its weight matrix) while loading only its own slice of images. Loading happens in DataLoader
workers; each worker opens the zarr store itself on first use (nothing opened is inherited).

Sampling modes:
- ``uniform``: B indices uniformly with replacement (the authors' choice; nothing guarantees a
  positive in the batch).
- ``positive``: B/2 anchors drawn uniformly among samples that have a positive, each with one of
  its positives drawn uniformly; every sample of the batch then has a positive in it. Samples
  without any positive are never drawn in this mode.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from class_core.data.store import EpisodeStore, KeyMap, StoreError
from class_core.similarity.pairs import CSR, batch_weights

Csr = CSR  # symmetric weights: indptr (N+1,), indices (2K,), weights (2K,)
SamplingMode = Literal["uniform", "positive"]


def batch_rng(seed: int, step: int, stream: int = 0) -> np.random.Generator:
    """Independent generator per (seed, step, stream): resumable without saved state."""
    return np.random.default_rng([int(seed), int(step), int(stream)])


@dataclass(frozen=True)
class BatchPlan:
    """What one step uses: the global batch and this rank's part of it."""

    step: int
    index: np.ndarray  # int64 (B,) global batch, sample indices
    lo: int  # this rank loads index[lo:hi]
    hi: int


def positive_graph(csr: Csr) -> tuple[np.ndarray, np.ndarray]:
    """(indptr, indices) of the CSR restricted to entries with weight > 0."""
    indptr, indices, weights = csr
    keep = np.asarray(weights) > 0
    if keep.all():
        return np.asarray(indptr, dtype=np.int64), np.asarray(indices, dtype=np.int64)
    n = len(indptr) - 1
    rows = np.repeat(np.arange(n), np.diff(indptr))
    counts = np.bincount(rows[keep], minlength=n)
    new_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return new_ptr, np.asarray(indices, dtype=np.int64)[keep]


def sample_batch(
    n: int,
    batch_size: int,
    seed: int,
    step: int,
    mode: SamplingMode = "uniform",
    graph: tuple[np.ndarray, np.ndarray] | None = None,
    candidates: np.ndarray | None = None,
) -> np.ndarray:
    """The global batch of ``step``: int64 (B,) sample indices.

    ``graph`` (mode ``positive``): ``positive_graph(csr)``, the pairs with weight > 0.
    """
    rng = batch_rng(seed, step)
    if mode == "uniform":
        return rng.integers(0, n, size=batch_size, dtype=np.int64)
    if mode != "positive":
        raise ValueError(f"train.sampling: unknown mode {mode!r} (use 'uniform' or 'positive')")
    if graph is None:
        raise ValueError("train.sampling=positive needs the pair file (CSR weights)")
    indptr, indices = graph
    if candidates is None:
        candidates = np.flatnonzero(np.diff(indptr) > 0)
    if len(candidates) == 0:
        raise ValueError("train.sampling=positive: the pair file has no pair with weight > 0")
    m = batch_size // 2
    anchors = candidates[rng.integers(0, len(candidates), size=m + 1)]
    deg = indptr[anchors + 1] - indptr[anchors]
    partners = indices[indptr[anchors] + (rng.random(m + 1) * deg).astype(np.int64)]
    out = np.empty(2 * m + 1, dtype=np.int64)
    out[0 : 2 * m : 2], out[1 : 2 * m : 2] = anchors[:m], partners[:m]
    # odd B: one more positive of the first anchor (the last anchor/partner pair is unused)
    a0 = anchors[0]
    out[2 * m] = indices[indptr[a0] + int(rng.integers(0, indptr[a0 + 1] - indptr[a0]))]
    return out[:batch_size]


class StepBatchSampler(Sampler[BatchPlan]):
    """Yields one ``BatchPlan`` per step, for steps ``start_step .. total_steps - 1``."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        total_steps: int,
        seed: int = 0,
        start_step: int = 0,
        mode: SamplingMode = "uniform",
        csr: Csr | None = None,
        rank: int = 0,
        world_size: int = 1,
    ):
        if n < 1:
            raise ValueError(f"StepBatchSampler: empty dataset (n = {n})")
        if batch_size < 2:
            raise ValueError(f"train.batch_size must be >= 2, got {batch_size}")
        if batch_size % world_size:
            raise ValueError(
                f"train.batch_size={batch_size} must be divisible by the world size {world_size}"
            )
        if mode == "positive" and csr is None:
            raise ValueError("train.sampling=positive needs the pair file (CSR weights)")
        self.n, self.batch_size, self.total_steps = n, batch_size, total_steps
        self.seed, self.start_step, self.mode = seed, start_step, mode
        self.rank, self.world_size = rank, world_size
        self.graph = positive_graph(csr) if csr is not None and mode == "positive" else None
        self.candidates = np.flatnonzero(np.diff(self.graph[0]) > 0) if self.graph is not None else None

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def plan(self, step: int) -> BatchPlan:
        idx = sample_batch(self.n, self.batch_size, self.seed, step, self.mode, self.graph, self.candidates)
        per = self.batch_size // self.world_size
        return BatchPlan(step, idx, self.rank * per, (self.rank + 1) * per)

    def __iter__(self) -> Iterator[BatchPlan]:
        for step in range(self.start_step, self.total_steps):
            yield self.plan(step)


class PretrainDataset(Dataset[dict[str, Any]]):
    """Map-style dataset indexed by ``BatchPlan``: returns the batch a step needs.

    ``dataset[plan]`` -> ``{"step": int, "index": int64 (B,), "weights": float32 (B, B),
    "images": {camera: uint8 tensor (b, H, W, 3)}}`` where ``b`` is this rank's slice.
    With ``cache_images`` every camera array is read into RAM once (before workers fork, so
    they share it); otherwise each worker reads lazily from the zarr store.
    """

    def __init__(
        self,
        store_path: str | os.PathLike[str],
        cameras: Sequence[str],
        keys: dict[str, str] | None = None,
        csr: Csr | None = None,
        cache_images: bool = False,
    ):
        self.store_path = Path(store_path)
        self.cameras = list(cameras)
        self.keys = dict(keys or {})
        self.csr = csr
        store = EpisodeStore.open(self.store_path, KeyMap(self.keys))
        self.n = store.n_steps
        self.image_shapes = {cam: store.check_image(cam) for cam in self.cameras}
        if csr is not None and len(csr[0]) != self.n + 1:
            raise StoreError(
                f"{self.store_path}: pair file is for {len(csr[0]) - 1} samples but the store has {self.n}"
            )
        self._cache: dict[str, np.ndarray] | None = (
            {cam: np.ascontiguousarray(store.get(cam)) for cam in self.cameras} if cache_images else None
        )
        self._store: EpisodeStore | None = None  # opened lazily, per worker

    def __len__(self) -> int:
        return self.n

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_store"] = None  # each (spawned) worker opens its own handle
        return state

    def _open(self) -> EpisodeStore:
        if self._store is None:
            self._store = EpisodeStore.open(self.store_path, KeyMap(self.keys))
        return self._store

    def read_images(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """uint8 (len(idx), H, W, 3) per camera; sorted unique reads, then the requested order."""
        uniq, inv = np.unique(idx, return_inverse=True)
        out = {}
        for cam in self.cameras:
            if self._cache is not None:
                out[cam] = self._cache[cam][idx]
                continue
            store = self._open()
            arr = store.array(cam)
            rows = store.keys_map.spec(cam).apply(np.asarray(arr.oindex[uniq]))
            out[cam] = rows[inv.reshape(-1)]
        return out

    def weights(self, idx: np.ndarray) -> np.ndarray:
        if self.csr is None:
            return np.zeros((len(idx), len(idx)), dtype=np.float32)
        return np.asarray(batch_weights(self.csr, idx), dtype=np.float32)

    def __getitem__(self, plan: BatchPlan) -> dict[str, Any]:
        idx = np.asarray(plan.index, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            bad = int(idx[(idx < 0) | (idx >= self.n)][0])
            raise IndexError(f"{self.store_path}: sample index {bad} out of range [0, {self.n})")
        images = self.read_images(idx[plan.lo : plan.hi])
        return {
            "step": plan.step,
            "index": torch.from_numpy(idx),
            "weights": torch.from_numpy(self.weights(idx)),
            "images": {cam: torch.from_numpy(v) for cam, v in images.items()},
        }
