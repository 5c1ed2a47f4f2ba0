"""Exponential moving average of weights with warmup (Diffusion Policy / diffusers ``EMAModel``).

decay(step) = clip(1 - (1 + s / inv_gamma) ** -power, min_decay, max_decay),
s = max(0, step - update_after_step - 1), and decay = 0 while s == 0, so the first update copies
the weights. ``power`` 0.75 (CLASS) reaches 0.999 after 10k steps.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class EmaConfig:
    """The ``ema`` config section of pre-training and fine-tuning (the arguments of ``ema_decay``)."""

    enabled: bool = True
    power: float = 0.75
    inv_gamma: float = 1.0
    min_decay: float = 0.0
    max_decay: float = 0.9999


def ema_decay(
    step: int,
    power: float = 0.75,
    inv_gamma: float = 1.0,
    min_decay: float = 0.0,
    max_decay: float = 0.9999,
    update_after_step: int = 0,
) -> float:
    s = max(0, step - update_after_step - 1)
    if s <= 0:
        return 0.0
    value = 1.0 - (1.0 + s / inv_gamma) ** -power
    return max(min_decay, min(value, max_decay))


class EMA:
    """Holds ``.model``, an eval-mode copy of the tracked model, updated by ``.update(model)``."""

    def __init__(
        self,
        model: nn.Module,
        power: float = 0.75,
        inv_gamma: float = 1.0,
        min_decay: float = 0.0,
        max_decay: float = 0.9999,
        update_after_step: int = 0,
    ):
        if power <= 0:
            raise ValueError(f"ema.power must be > 0, got {power}")
        if inv_gamma <= 0:
            raise ValueError(f"ema.inv_gamma must be > 0, got {inv_gamma}")
        if not 0 <= min_decay <= max_decay <= 1:
            raise ValueError(f"ema: need 0 <= min_decay <= max_decay <= 1, got {min_decay}, {max_decay}")
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.power, self.inv_gamma = power, inv_gamma
        self.min_decay, self.max_decay = min_decay, max_decay
        self.update_after_step = update_after_step
        self.optimization_step = 0
        self.decay = 0.0

    def get_decay(self, step: int) -> float:
        return ema_decay(
            step, self.power, self.inv_gamma, self.min_decay, self.max_decay, self.update_after_step
        )

    @torch.no_grad()
    def update(self, model: nn.Module) -> float:
        """One EMA step towards ``model`` (unwrap DDP first). Returns the decay used."""
        self.decay = d = self.get_decay(self.optimization_step)
        ema_params: list[torch.Tensor] = []
        params: list[torch.Tensor] = []
        frozen = []
        src = dict(model.named_parameters())
        for name, ep in self.model.named_parameters():
            p = src[name]
            if p.requires_grad and ep.dtype.is_floating_point:
                ema_params.append(ep)
                params.append(p.detach().to(ep.dtype))
            else:
                frozen.append((ep, p))
        if ema_params:
            torch._foreach_mul_(ema_params, d)
            torch._foreach_add_(ema_params, params, alpha=1.0 - d)
        for ep, p in frozen:
            ep.copy_(p)
        src_buf = dict(model.named_buffers())
        for name, eb in self.model.named_buffers():
            eb.copy_(src_buf[name])
        self.optimization_step += 1
        return d

    def state_dict(self) -> dict[str, Any]:
        return {"optimization_step": self.optimization_step, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimization_step = int(state["optimization_step"])
        self.decay = float(state.get("decay", 0.0))
