"""Action chunks and per-dimension min-max normalisation.

A sample per timestep t; its action chunk is ``A_t = a_t .. a_{t+T_p-1}`` within the same
episode, the episode's last action repeated past its end (as Diffusion Policy pads).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

# End-effector actions: position (3), rot6d (6), gripper (1).
ROT6D_SLICE = slice(3, 9)
EE_ACTION_DIM = 10


def chunk_indices(episode_ends: np.ndarray, horizon: int) -> np.ndarray:
    """(N, T_p) int64 flat indices of every sample's action chunk, clamped at its episode's end."""
    ends = np.asarray(episode_ends, dtype=np.int64)
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    if ends.ndim != 1 or len(ends) == 0:
        raise ValueError(f"episode_ends must be a non-empty 1-D array, got shape {ends.shape}")
    lengths = np.diff(np.concatenate([[0], ends]))
    if np.any(lengths <= 0):
        i = int(np.argmax(lengths <= 0))
        raise ValueError(f"episode_ends must be strictly increasing (index {i}: {ends[i]})")
    last = np.repeat(ends - 1, lengths)  # (N,) last index of each sample's episode
    idx = np.arange(int(ends[-1]), dtype=np.int64)[:, None] + np.arange(horizon, dtype=np.int64)[None, :]
    return np.minimum(idx, last[:, None])


def action_chunks(actions: np.ndarray, episode_ends: np.ndarray, horizon: int) -> np.ndarray:
    """(N, D) actions -> (N, T_p, D) chunks."""
    actions = np.asarray(actions)
    if actions.ndim != 2:
        raise ValueError(f"actions must be (N, D), got shape {actions.shape}")
    idx = chunk_indices(episode_ends, horizon)
    if len(idx) != len(actions):
        raise ValueError(f"episode_ends end at {len(idx)} but there are {len(actions)} actions")
    return actions[idx]


@dataclass
class MinMaxNormalizer:
    """Per-dimension affine map of [min, max] onto [-1, 1]; constant dimensions map to 0.

    Statistics are plain lists in ``to_dict()`` so they travel as JSON inside artifacts.
    """

    min: np.ndarray
    max: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> MinMaxNormalizer:
        x = np.asarray(x, dtype=np.float64)
        x = x.reshape(-1, x.shape[-1])
        if len(x) == 0:
            raise ValueError("cannot fit a normaliser on an empty array")
        if not np.isfinite(x).all():
            raise ValueError("cannot fit a normaliser on non-finite values")
        return cls(x.min(axis=0), x.max(axis=0))

    def __post_init__(self) -> None:
        self.min = np.asarray(self.min, dtype=np.float64)
        self.max = np.asarray(self.max, dtype=np.float64)
        if self.min.shape != self.max.shape or self.min.ndim != 1:
            raise ValueError(f"min/max must be 1-D of equal shape, got {self.min.shape} and {self.max.shape}")
        if np.any(self.max < self.min):
            raise ValueError("normaliser has max < min")

    @property
    def dim(self) -> int:
        return int(self.min.shape[0])

    def _scale_offset(self) -> tuple[np.ndarray, np.ndarray]:
        span = self.max - self.min
        const = span < 1e-12
        scale = np.where(const, 1.0, 2.0 / np.where(const, 1.0, span))
        # A constant dimension maps to 0: offset = -scale*min - 1 would give -1; centre it instead.
        offset = np.where(const, -self.min, -1.0 - scale * self.min)
        return scale, offset

    def normalize(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        self._check(x)
        scale, offset = self._scale_offset()
        return (x * scale + offset).astype(x.dtype if x.dtype.kind == "f" else np.float32, copy=False)

    def unnormalize(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y)
        self._check(y)
        scale, offset = self._scale_offset()
        return ((y - offset) / scale).astype(y.dtype if y.dtype.kind == "f" else np.float32, copy=False)

    def _check(self, x: np.ndarray) -> None:
        if x.shape[-1] != self.dim:
            raise ValueError(f"normaliser expects last dimension {self.dim}, got shape {x.shape}")

    def to_dict(self) -> dict[str, Any]:
        return {"type": "minmax", "min": self.min.tolist(), "max": self.max.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MinMaxNormalizer:
        if d.get("type", "minmax") != "minmax" or "min" not in d or "max" not in d:
            raise ValueError(f"not a min-max normaliser record: keys {sorted(d)}")
        return cls(np.asarray(d["min"], dtype=np.float64), np.asarray(d["max"], dtype=np.float64))


def similarity_chunks(
    actions: np.ndarray,
    episode_ends: np.ndarray,
    horizon: int = 16,
    rot6d_scale: float = 0.5,
    normalizer: MinMaxNormalizer | None = None,
) -> tuple[np.ndarray, MinMaxNormalizer]:
    """Normalised float32 (N, T_p, D) chunks as the DTW engine consumes them.

    For 10-D end-effector actions the rot6d part is scaled by ``rot6d_scale`` after
    normalisation (METHOD-FACTS: the authors use 0.5), so orientation does not dominate DTW.
    """
    actions = np.asarray(actions, dtype=np.float32)
    norm = normalizer if normalizer is not None else MinMaxNormalizer.fit(actions)
    a = norm.normalize(actions).astype(np.float32)
    if a.shape[1] == EE_ACTION_DIM and rot6d_scale != 1.0:
        a[:, ROT6D_SLICE] *= np.float32(rot6d_scale)
    return np.ascontiguousarray(action_chunks(a, episode_ends, horizon), dtype=np.float32), norm
