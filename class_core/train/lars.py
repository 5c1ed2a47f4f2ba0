"""LARS (You et al. 2017) as used by SimCLR/BYOL/Barlow Twins and the CLASS authors.

For every parameter p with gradient g (1-D parameters -- biases, norm affines, the spatial
softmax temperature -- skip both weight decay and the trust ratio when ``exclude_1d``):

    g <- g + weight_decay * p
    g <- g * (trust_coefficient * ||p|| / ||g||)     (1 if either norm is 0)
    m <- momentum * m + g
    p <- p - lr * m
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer


class LARS(Optimizer):
    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.5,
        weight_decay: float = 1e-6,
        momentum: float = 0.9,
        trust_coefficient: float = 0.001,
        exclude_1d: bool = True,
    ):
        if lr < 0:
            raise ValueError(f"LARS: lr must be >= 0, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"LARS: weight_decay must be >= 0, got {weight_decay}")
        if not 0 <= momentum < 1:
            raise ValueError(f"LARS: momentum must be in [0, 1), got {momentum}")
        if trust_coefficient <= 0:
            raise ValueError(f"LARS: trust_coefficient must be > 0, got {trust_coefficient}")
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            trust_coefficient=trust_coefficient,
            exclude_1d=exclude_1d,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd, mom = group["lr"], group["weight_decay"], group["momentum"]
            eta, excl = group["trust_coefficient"], group["exclude_1d"]
            adapt_p, adapt_g, plain_p, plain_g = [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("LARS does not support sparse gradients")
                if excl and p.ndim <= 1:
                    plain_p.append(p)
                    plain_g.append(p.grad)
                else:
                    adapt_p.append(p)
                    adapt_g.append(p.grad)
            # one fused pass per operation over all tensors (foreach), not a Python loop per tensor
            if adapt_p:
                g = torch._foreach_add(adapt_g, adapt_p, alpha=wd) if wd != 0 else list(adapt_g)
                p_norm = torch.stack(torch._foreach_norm(adapt_p))
                g_norm = torch.stack(torch._foreach_norm(g))
                ok = (p_norm > 0) & (g_norm > 0)
                q = torch.where(ok, eta * p_norm / torch.where(ok, g_norm, 1.0), 1.0)
                g = torch._foreach_mul(g, list(q.to(g[0].dtype).unbind()))
                self._momentum(adapt_p, g, lr, mom)
            if plain_p:
                self._momentum(plain_p, plain_g, lr, mom)
        return loss

    def _momentum(self, params: list[Tensor], grads: Sequence[Tensor], lr: float, mom: float) -> None:
        bufs = []
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            bufs.append(state["momentum_buffer"])
        torch._foreach_mul_(bufs, mom)
        torch._foreach_add_(bufs, list(grads))
        torch._foreach_add_(params, bufs, alpha=-lr)
