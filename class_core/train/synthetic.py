"""A synthetic episode store whose right representation is known (debug preset and learning tests).

Every timestep carries a hidden behaviour b in {0 .. K-1}. The image shows a bar whose
orientation encodes b, under visual nuisance drawn per frame: background and bar colours, the
bar's position (shift), a distractor disc (random colour, size, place) and pixel noise. The
action is a 2-D velocity pointing along angle 2 pi b / K (plus small noise), so action chunks --
and their DTW positives -- are determined by the behaviour, while most pixels are not.
Episodes are a few segments of constant behaviour.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from class_core.data.store import EpisodeStoreWriter


@dataclass
class SyntheticConfig:
    episodes: int = 12
    steps: int = 40  # per episode
    segment: int = 20  # steps of constant behaviour
    behaviours: int = 4
    image_size: int = 48
    seed: int = 0

    def validate(self, where: str = "synthetic") -> None:
        for name in ("episodes", "steps", "segment", "behaviours", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{where}.{name} must be >= 1, got {getattr(self, name)}")
        if self.image_size < 16:
            raise ValueError(f"{where}.image_size must be >= 16, got {self.image_size}")


def _distinct_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 2, 3) background / bar colours at least 120 apart (RGB distance)."""
    bg = rng.integers(0, 256, size=(n, 3))
    fg = rng.integers(0, 256, size=(n, 3))
    bad = np.linalg.norm(bg - fg, axis=1) < 120
    while bad.any():
        fg[bad] = rng.integers(0, 256, size=(int(bad.sum()), 3))
        bad = np.linalg.norm(bg - fg, axis=1) < 120
    return np.stack([bg, fg], axis=1)


def render(behaviour: np.ndarray, n_behaviours: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (T, size, size, 3): an oriented bar (angle pi b / K) with random colour and shift."""
    t = len(behaviour)
    col = _distinct_colours(rng, t)
    angle = np.pi * behaviour / n_behaviours  # bar orientations modulo pi stay distinct
    half = size * 0.3
    shift = rng.uniform(-size * 0.18, size * 0.18, size=(t, 2))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cx = size / 2 - 0.5 + shift[:, 0, None, None]
    cy = size / 2 - 0.5 + shift[:, 1, None, None]
    dx, dy = xx[None] - cx, yy[None] - cy
    c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    along, across = dx * c + dy * s, -dx * s + dy * c
    mask = (np.abs(along) <= half) & (np.abs(across) <= max(1.5, size / 16))
    img = np.where(mask[..., None], col[:, None, None, 1], col[:, None, None, 0]).astype(np.float32)
    # distractor: a disc of random colour, size and place, drawn under the bar
    dc = rng.uniform(0, size, size=(t, 2))
    dr = rng.uniform(size * 0.1, size * 0.25, size=t)
    r2 = (xx[None] - dc[:, 0, None, None]) ** 2 + (yy[None] - dc[:, 1, None, None]) ** 2
    disc = (r2 <= dr[:, None, None] ** 2) & ~mask
    img = np.where(disc[..., None], rng.integers(0, 256, size=(t, 1, 1, 3)).astype(np.float32), img)
    img += rng.normal(0.0, 8.0, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_synthetic_store(
    path: str | os.PathLike[str], cfg: SyntheticConfig | None = None, overwrite: bool = False
) -> Path:
    """Write the store (keys ``image``, ``agent_pos``, ``action``, ``behaviour``); returns its path."""
    cfg = cfg or SyntheticConfig()
    cfg.validate()
    rng = np.random.default_rng(cfg.seed)
    with EpisodeStoreWriter(path, overwrite=overwrite) as w:
        for _ in range(cfg.episodes):
            n_seg = -(-cfg.steps // cfg.segment)
            beh = np.repeat(rng.integers(0, cfg.behaviours, size=n_seg), cfg.segment)[: cfg.steps]
            ang = 2 * np.pi * beh / cfg.behaviours
            action = np.stack([np.cos(ang), np.sin(ang)], axis=1) + rng.normal(0, 0.05, size=(cfg.steps, 2))
            pos = np.cumsum(action * 0.01, axis=0)
            w.add_episode(
                {
                    "image": render(beh, cfg.behaviours, cfg.image_size, rng),
                    "agent_pos": pos.astype(np.float32),
                    "action": action.astype(np.float32),
                    "behaviour": beh.astype(np.int64),
                }
            )
        w.set_attrs(task="synthetic", behaviours=cfg.behaviours)
    return Path(path)


def make_synthetic_pairs(
    store_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    horizon: int = 16,
    quantile: float = 0.025,
) -> Path | None:
    """Positive pairs of a store by the DTW engine (global quantile, rank weights), as
    ``class-precompute`` makes them. Under torch.distributed every rank must call it; rank 0 writes."""
    from class_core.data.chunks import similarity_chunks
    from class_core.data.store import EpisodeStore
    from class_core.similarity import PairConfig, compute_pairs, save_pairs

    store = EpisodeStore.open(store_path)
    chunks, _ = similarity_chunks(store.actions(), store.episode_ends, horizon)
    pairs = compute_pairs(
        chunks, PairConfig(quantile=quantile), fingerprint=store.fingerprint(), progress=False
    )
    return save_pairs(out, pairs) if pairs is not None else None
