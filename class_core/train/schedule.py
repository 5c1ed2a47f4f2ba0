"""Learning-rate schedule: linear warmup then cosine decay (diffusers' ``cosine`` schedule)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_steps_for(steps_per_epoch: int, max_steps: int = 500, max_epochs: float = 5.0) -> int:
    """CLASS warmup: min(500 steps, 5 epochs)."""
    return int(min(max_steps, math.floor(max_epochs * steps_per_epoch)))


def cosine_factor(step: int, total_steps: int, warmup_steps: int, min_factor: float = 0.0) -> float:
    """Multiplier of the base lr at ``step`` (0-based): step/warmup, then half a cosine to ``min_factor``."""
    if total_steps < 1:
        raise ValueError(f"cosine schedule: total_steps must be >= 1, got {total_steps}")
    if warmup_steps < 0:
        raise ValueError(f"cosine schedule: warmup_steps must be >= 0, got {warmup_steps}")
    if step < warmup_steps:
        return step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def cosine_with_warmup(
    optimizer: Optimizer, total_steps: int, warmup_steps: int, min_factor: float = 0.0, last_epoch: int = -1
) -> LambdaLR:
    """A LambdaLR applying ``cosine_factor`` to every param group's initial lr (call ``.step()`` per step)."""
    return LambdaLR(
        optimizer, lambda s: cosine_factor(s, total_steps, warmup_steps, min_factor), last_epoch=last_epoch
    )
