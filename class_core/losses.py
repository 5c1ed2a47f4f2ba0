"""Soft InfoNCE (CLASS paper, Eq. 1).

    S_ij = z_i . z_j / tau
    p_ij = exp(S_ij) / sum_{k != i} exp(S_ik)            (self excluded from the denominator)
    L    = -1/|R| sum_{i in R} sum_j w_ij log p_ij / sum_j w_ij,   R = rows with sum_j w_ij > 0

Rows without any positive in the batch are dropped (the paper's 1/B becomes 1/|R|, as in the
authors' code). ``hard=True`` replaces every w_ij > 0 by 1 (the paper's ablation), which is
SupCon's "out" loss with DTW positives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, overload

import torch
from torch import Tensor


@dataclass(frozen=True)
class LossStats:
    """What a batch offered the loss (for logging)."""

    batch_size: int
    rows_kept: int  # anchors with at least one positive in the batch
    positive_pairs: int  # unordered pairs {i, j}, i != j, with w_ij > 0

    @property
    def anchor_share(self) -> float:
        return self.rows_kept / max(self.batch_size, 1)


def _check(z: Tensor, w: Tensor, tau: float) -> None:
    if z.ndim != 2:
        raise ValueError(f"soft_info_nce: z must be (B, d), got shape {tuple(z.shape)}")
    b = z.shape[0]
    if w.shape != (b, b):
        raise ValueError(f"soft_info_nce: w must be (B, B) = ({b}, {b}) to match z, got {tuple(w.shape)}")
    if b < 2:
        raise ValueError(f"soft_info_nce: need a batch of at least 2 samples, got B = {b}")
    if not tau > 0:
        raise ValueError(f"soft_info_nce: temperature tau must be > 0, got {tau}")


@overload
def soft_info_nce(
    z: Tensor,
    w: Tensor,
    tau: float = ...,
    hard: bool = ...,
    check_weights: bool = ...,
    return_stats: Literal[False] = ...,
) -> Tensor: ...


@overload
def soft_info_nce(
    z: Tensor,
    w: Tensor,
    tau: float = ...,
    hard: bool = ...,
    check_weights: bool = ...,
    *,
    return_stats: Literal[True],
) -> tuple[Tensor, LossStats]: ...


def soft_info_nce(
    z: Tensor,
    w: Tensor,
    tau: float = 0.05,
    hard: bool = False,
    check_weights: bool = True,
    return_stats: bool = False,
) -> Tensor | tuple[Tensor, LossStats]:
    """Eq. 1 of the paper: the scalar loss, or ``(loss, LossStats)`` with ``return_stats=True``.

    z: (B, d) L2-normalised latents (not re-normalised here). w: (B, B) non-negative weights;
    the diagonal is ignored (treated as zero). The loss is computed in float32 for half/bf16
    ``z`` (AMP), float64 for float64, and is 0 (with a graph) when no row has a positive.
    ``check_weights=False`` skips the checks of ``w`` that need a host sync (trainer, GPU).
    """
    _check(z, w, tau)
    b = z.shape[0]
    dt = torch.float64 if z.dtype == torch.float64 else torch.float32  # half/bf16 (AMP) -> float32
    z32 = z.to(dt)
    w32 = w.to(device=z.device, dtype=dt)
    if check_weights:
        if not bool(torch.isfinite(w32).all()):
            raise ValueError("soft_info_nce: w contains NaN or inf")
        if bool((w32 < 0).any()):
            raise ValueError("soft_info_nce: w must be non-negative")
    eye = torch.eye(b, dtype=torch.bool, device=z.device)
    w32 = w32.masked_fill(eye, 0.0)
    if hard:
        w32 = (w32 > 0).to(dt)

    sim = (z32 @ z32.T) / tau
    # -inf on the diagonal removes self from the log-sum-exp; log_softmax subtracts the row max.
    log_p = torch.log_softmax(sim.masked_fill(eye, float("-inf")), dim=1)
    log_p = log_p.masked_fill(eye, 0.0)  # avoid 0 * -inf = nan in the weighted sum

    row_w = w32.sum(dim=1)
    keep = row_w > 0
    # masked mean without indexing: no host sync, and 0 (with a graph) when no row is kept
    per_row = (w32 * log_p).sum(dim=1) / row_w.clamp_min(torch.finfo(dt).tiny)
    loss = -(per_row * keep).sum() / keep.sum().clamp_min(1)
    if not return_stats:
        return loss
    return loss, weight_stats(w32)


def weight_stats(w: Tensor) -> LossStats:
    """What the loss sees in a batch's (B, B) weights (diagonal ignored); works on CPU copies."""
    pos = w > 0
    pos.fill_diagonal_(False)
    return LossStats(
        batch_size=int(w.shape[0]),
        rows_kept=int(pos.any(dim=1).sum()),
        positive_pairs=int(torch.triu(pos | pos.T, diagonal=1).sum()),
    )
