"""The one inference API shared by every policy, and the observation encoder they all use.

``obs`` is a dict of canonical names (docs/interfaces.md): images ``uint8 (H, W, 3)``, proprio
``float32 (k,)``. A policy normalises proprio and unnormalises actions itself; callers pass raw
values and receive raw action units.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from class_core.geometry import orthonormalize_rot6d


@dataclass
class PolicySpec:
    """What a policy consumes and produces (stored in every artifact's config)."""

    image_keys: list[str] = field(default_factory=lambda: ["image"])
    proprio_keys: list[str] = field(default_factory=list)
    proprio_dims: list[int] = field(default_factory=list)
    action_dim: int = 2
    horizon: int = 16  # T_p
    n_action_steps: int = 16  # T_a
    n_obs_steps: int = 1  # T_o
    # [start, stop) of the rot6d block inside an action, or None; "auto" = [3, 9] when D == 10
    rot6d: list[int] | None = None

    def validate(self) -> None:
        if not self.image_keys and not self.proprio_keys:
            raise ValueError("policy spec: needs at least one image key or proprio key")
        if len(self.proprio_dims) != len(self.proprio_keys):
            raise ValueError(
                f"policy spec: proprio_dims {self.proprio_dims} must give one size per proprio key "
                f"{self.proprio_keys}"
            )
        if self.action_dim < 1:
            raise ValueError(f"policy spec: action_dim must be >= 1, got {self.action_dim}")
        if not 1 <= self.n_action_steps <= self.horizon:
            raise ValueError(f"policy spec: T_a={self.n_action_steps} must be in [1, T_p={self.horizon}]")
        if self.n_obs_steps < 1:
            raise ValueError(f"policy spec: T_o must be >= 1, got {self.n_obs_steps}")
        if self.rot6d is not None:
            a, b = self.rot6d
            if b - a != 6 or a < 0 or b > self.action_dim:
                raise ValueError(
                    f"policy spec: rot6d slice {self.rot6d} must span 6 dims inside D={self.action_dim}"
                )

    @property
    def rot6d_slice(self) -> tuple[int, int] | None:
        return None if self.rot6d is None else (int(self.rot6d[0]), int(self.rot6d[1]))


def resolve_rot6d(value: Any, action_dim: int) -> list[int] | None:
    """Config value ``auto`` / ``null`` / ``[start, stop]`` -> slice or None."""
    if value == "auto":
        return [3, 9] if action_dim == 10 else None
    if value is None or value is False:
        return None
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return [int(value[0]), int(value[1])]
    raise ValueError(f"rot6d must be 'auto', null or [start, stop], got {value!r}")


class MinMax(nn.Module):
    """Per-dimension min-max to [-1, 1] (constant dimensions map to 0), on the model's device.

    Statistics are non-persistent buffers: they travel in the artifact's normaliser JSON.
    """

    lo: torch.Tensor
    hi: torch.Tensor
    scale: torch.Tensor
    const: torch.Tensor

    def __init__(self, lo: np.ndarray | Sequence[float], hi: np.ndarray | Sequence[float]) -> None:
        super().__init__()
        lo_t = torch.as_tensor(np.asarray(lo, dtype=np.float64), dtype=torch.float64)
        hi_t = torch.as_tensor(np.asarray(hi, dtype=np.float64), dtype=torch.float64)
        if lo_t.shape != hi_t.shape or lo_t.ndim != 1:
            raise ValueError(
                f"normaliser min/max must be equal 1-D shapes, got {tuple(lo_t.shape)}, {tuple(hi_t.shape)}"
            )
        if torch.any(hi_t < lo_t):
            raise ValueError("normaliser max < min in some dimension")
        span = hi_t - lo_t
        const = span < 1e-12  # same rule as class_core.data.chunks.MinMaxNormalizer
        scale = torch.where(
            const, torch.zeros_like(span), 2.0 / torch.where(const, torch.ones_like(span), span)
        )
        self.register_buffer("lo", lo_t.float(), persistent=False)
        self.register_buffer("hi", hi_t.float(), persistent=False)
        self.register_buffer("scale", scale.float(), persistent=False)
        self.register_buffer("const", const, persistent=False)

    @property
    def dim(self) -> int:
        return int(self.lo.shape[0])

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        y = (x - self.lo) * self.scale - 1.0
        return torch.where(self.const, torch.zeros_like(y), y)

    def unnormalize(self, y: torch.Tensor) -> torch.Tensor:
        x = (y + 1.0) * 0.5 * (self.hi - self.lo) + self.lo
        return torch.where(self.const, self.lo.expand_as(x), x)

    @classmethod
    def fit(cls, x: np.ndarray) -> MinMax:
        x = np.asarray(x, dtype=np.float64).reshape(-1, np.asarray(x).shape[-1])
        return cls(x.min(axis=0), x.max(axis=0))

    def to_dict(self) -> dict[str, Any]:
        """The ``MinMaxNormalizer.to_dict()`` record (JSON-safe)."""
        return {
            "type": "minmax",
            "min": self.lo.double().cpu().tolist(),
            "max": self.hi.double().cpu().tolist(),
        }

    @classmethod
    def from_normalizer(cls, norm: Any) -> MinMax:
        """From a ``class_core.data.chunks.MinMaxNormalizer`` (or anything with .min/.max arrays)."""
        return cls(np.asarray(norm.min, dtype=np.float64), np.asarray(norm.max, dtype=np.float64))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "normalizer") -> MinMax:
        if not isinstance(d, Mapping) or d.get("type", "minmax") != "minmax":
            raise ValueError(f"{where}: not a min-max normaliser record")
        try:
            return cls(np.asarray(d["min"], dtype=np.float64), np.asarray(d["max"], dtype=np.float64))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{where}: expected {{'min': [...], 'max': [...]}} ({e})") from None


class ObservationEncoder(nn.Module):
    """Raw observations -> one feature vector per sample: ``[image keypoints || normalised proprio]``.

    ``image_encoder(images, augment=..., normalize=False)`` follows
    ``class_core.nn.encoder.MultiCameraEncoder``; the keypoints are taken un-normalised (as the
    authors' code does) and the caller decides whether to L2-normalise the concatenation.
    """

    def __init__(
        self, image_encoder: nn.Module | None, spec: PolicySpec, proprio_norm: MinMax | None
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.image_keys = list(spec.image_keys)
        self.proprio_keys = list(spec.proprio_keys)
        self.proprio_dims = list(spec.proprio_dims)
        if self.image_keys and image_encoder is None:
            raise ValueError(f"image keys {self.image_keys} given but no image encoder")
        if self.proprio_keys:
            if proprio_norm is None or proprio_norm.dim != sum(self.proprio_dims):
                raise ValueError(
                    f"proprio normaliser must have {sum(self.proprio_dims)} dims for keys {self.proprio_keys}"
                )
        self.proprio_norm = proprio_norm

    @property
    def image_dim(self) -> int:
        if self.image_encoder is None:
            return 0
        return int(self.image_encoder.out_dim)  # type: ignore[arg-type]

    @property
    def out_dim(self) -> int:
        return self.image_dim + sum(self.proprio_dims)

    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def forward(
        self,
        images: Mapping[str, torch.Tensor],
        proprio: torch.Tensor | None,
        augment: bool = False,
        proprio_scale: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> (image features (B, d_img), normalised proprio (B, k) or None)."""
        feats = torch.empty(0)
        if self.image_encoder is not None:
            feats = self.image_encoder(images, augment=augment, normalize=False)
        prop = None
        if self.proprio_norm is not None and proprio is not None:
            prop = self.proprio_norm.normalize(proprio.to(self.device()).float()) * proprio_scale
        return feats, prop

    def features(
        self,
        images: Mapping[str, torch.Tensor],
        proprio: torch.Tensor | None,
        augment: bool = False,
        proprio_scale: float = 1.0,
    ) -> torch.Tensor:
        img, prop = self(images, proprio, augment=augment, proprio_scale=proprio_scale)
        parts = ([img] if self.image_encoder is not None else []) + ([prop] if prop is not None else [])
        if not parts:
            raise ValueError("observation encoder got neither images nor proprio")
        return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]


def batch_observations(
    obs_list: Sequence[Mapping[str, Any]], spec: PolicySpec
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Validate raw observation dicts and stack them: images uint8 (B, H, W, 3), proprio (B, k)."""
    images: dict[str, list[np.ndarray]] = {k: [] for k in spec.image_keys}
    proprio: list[np.ndarray] = []
    for n, obs in enumerate(obs_list):
        if not isinstance(obs, Mapping):
            raise TypeError(f"observation must be a dict of canonical names, got {type(obs).__name__}")
        for key in spec.image_keys:
            if key not in obs:
                raise KeyError(f"observation lacks image key {key!r} (has {sorted(obs)})")
            img = np.asarray(obs[key])
            if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
                raise ValueError(f"observation[{key!r}] must be uint8 (H, W, 3), got {img.dtype} {img.shape}")
            if n and img.shape != images[key][0].shape:
                raise ValueError(
                    f"observation[{key!r}] changed shape from {images[key][0].shape} to {img.shape}"
                )
            images[key].append(img)
        parts = []
        for key, dim in zip(spec.proprio_keys, spec.proprio_dims, strict=True):
            if key not in obs:
                raise KeyError(f"observation lacks proprio key {key!r} (has {sorted(obs)})")
            v = np.asarray(obs[key], dtype=np.float32).reshape(-1)
            if v.shape[0] != dim:
                raise ValueError(f"observation[{key!r}] must have {dim} values, got {v.shape[0]}")
            if not np.all(np.isfinite(v)):
                raise ValueError(f"observation[{key!r}] contains NaN or inf")
            parts.append(v)
        if parts:
            proprio.append(np.concatenate(parts))
    imgs = {k: torch.from_numpy(np.stack(v)) for k, v in images.items()}
    prop = torch.from_numpy(np.stack(proprio)) if proprio else None
    return imgs, prop


class Policy:
    """Base of every policy: observation history, action queue and the public API.

    Subclasses implement ``_predict(history) -> (T_p, D)`` where ``history`` holds the last
    ``T_o`` observations (oldest first, the first one repeated after a reset).
    """

    kind = "base"

    def __init__(self, spec: PolicySpec) -> None:
        spec.validate()
        self.spec = spec
        self._queue: deque[np.ndarray] = deque()
        self._history: deque[Mapping[str, Any]] = deque(maxlen=spec.n_obs_steps)

    # -- public API -------------------------------------------------------------------------
    def reset(self) -> None:
        self._queue.clear()
        self._history.clear()

    def predict_action_chunk(self, obs: Mapping[str, Any]) -> np.ndarray:
        """-> float32 (T_p, D) in raw action units; records ``obs`` in the history."""
        self._observe(obs)
        return self._predict(list(self._history))

    def select_action(self, obs: Mapping[str, Any]) -> np.ndarray:
        """-> float32 (D,): the next action of the queued chunk, predicting a new chunk of which
        ``T_a`` steps are queued when the queue runs empty. ``obs`` is not read while
        ``reads_observation()`` is False (it may then be empty)."""
        if self.reads_observation():
            self._observe(obs)
        if not self._queue:
            chunk = self._predict(list(self._history))
            self._queue.extend(chunk[: self.spec.n_action_steps])
        return self._queue.popleft()

    def reads_observation(self) -> bool:
        """Whether the next ``select_action`` reads its observation: when it predicts (the queue is
        empty) or keeps a history of more than one step. With ``n_obs_steps`` 1 an observation
        between predictions would only be replaced by the next one, so rollouts may skip
        rendering it (``Task.step(..., observe=False)``)."""
        return not self._queue or self.spec.n_obs_steps > 1

    # -- many episodes in lockstep (batched inference) ----------------------------------------
    def fork(self) -> Policy:
        """A copy that shares the model (weights, bank) but has its own observation history and
        action queue: one per episode when episodes run in lockstep (``select_actions``)."""
        twin = copy.copy(self)
        twin._queue = deque()
        twin._history = deque(maxlen=self.spec.n_obs_steps)
        return twin

    def select_actions(
        self, forks: Sequence[Policy], observations: Sequence[Mapping[str, Any]]
    ) -> list[np.ndarray]:
        """``select_action`` of many episodes at once: fork ``i`` (from ``fork()``) receives
        ``observations[i]``; the forks whose queue is empty are predicted in one batch, so an
        encoder or a diffusion head runs once per step for all of them."""
        if len(forks) != len(observations):
            raise ValueError(f"select_actions: {len(forks)} forks but {len(observations)} observations")
        for f, obs in zip(forks, observations, strict=True):
            if f.reads_observation():
                f._observe(obs)
        need = [i for i, f in enumerate(forks) if not f._queue]
        if need:
            chunks = self._predict_many([list(forks[i]._history) for i in need])
            for i, chunk in zip(need, chunks, strict=True):
                forks[i]._queue.extend(chunk[: self.spec.n_action_steps])
        return [f._queue.popleft() for f in forks]

    def _predict_many(self, histories: list[list[Mapping[str, Any]]]) -> np.ndarray:
        """(B, T_p, D) for B histories; subclasses batch it."""
        return np.stack([self._predict(h) for h in histories])

    @property
    def horizon(self) -> int:
        return self.spec.horizon

    @property
    def n_action_steps(self) -> int:
        return self.spec.n_action_steps

    @property
    def action_dim(self) -> int:
        return self.spec.action_dim

    # -- helpers ----------------------------------------------------------------------------
    def _observe(self, obs: Mapping[str, Any]) -> None:
        batch_observations([obs], self.spec)  # validate now, with a clear error
        # keep copies: callers often reuse their image buffers between steps
        keys = [*self.spec.image_keys, *self.spec.proprio_keys]
        obs = {k: np.array(obs[k], copy=True) for k in keys}
        if not self._history:
            for _ in range(self.spec.n_obs_steps):
                self._history.append(obs)
        else:
            self._history.append(obs)

    def _predict(self, history: list[Mapping[str, Any]]) -> np.ndarray:
        raise NotImplementedError

    def _finish(self, chunk: np.ndarray) -> np.ndarray:
        rs = self.spec.rot6d_slice
        chunk = np.asarray(chunk, dtype=np.float32)
        if rs is not None:
            chunk = chunk.copy()
            chunk[..., rs[0] : rs[1]] = orthonormalize_rot6d(chunk[..., rs[0] : rs[1]].astype(np.float64))
        return chunk
