"""Batched DTW in torch: the DP runs along anti-diagonals, each one a single vectorised step.

Runs on CUDA when available; on CPU it is tested against the numba kernel.
"""

from __future__ import annotations

import torch


def dtw_batch(a: torch.Tensor, b: torch.Tensor, band: int = -1, euclid: bool = False) -> torch.Tensor:
    """DTW of pairs ``a[k]`` vs ``b[k]``: ``a`` (B, T, D), ``b`` (B, T', D) -> (B,) in a's dtype.

    ``band`` < 0: no constraint; else cells with ``|p - q| <= band`` (equal lengths).
    """
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[2]:
        raise ValueError(
            f"dtw_batch expects (B, T, D) and (B, T', D), got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    B, T, _ = a.shape
    U = b.shape[1]
    # exact differences (not the matmul trick) so values match the numba kernel to float rounding
    cost = ((a[:, :, None, :] - b[:, None, :, :]) ** 2).sum(-1)
    if euclid:
        cost = cost.sqrt()
    inf = torch.tensor(float("inf"), dtype=cost.dtype, device=cost.device)
    if band >= 0:
        p = torch.arange(T, device=a.device)[:, None]
        q = torch.arange(U, device=a.device)[None, :]
        cost = torch.where((p - q).abs() <= band, cost, inf)
    R = torch.full((B, T + 1, U + 1), float("inf"), dtype=cost.dtype, device=cost.device)
    R[:, 0, 0] = 0
    for k in range(2, T + U + 1):
        p = torch.arange(max(1, k - U), min(T, k - 1) + 1, device=a.device)
        q = k - p
        best = torch.minimum(torch.minimum(R[:, p - 1, q], R[:, p, q - 1]), R[:, p - 1, q - 1])
        R[:, p, q] = cost[:, p - 1, q - 1] + best
    return R[:, T, U]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pair_distances_torch(
    X: torch.Tensor,
    i: torch.Tensor,
    j: torch.Tensor,
    band: int = -1,
    euclid: bool = False,
    batch: int = 16384,
) -> torch.Tensor:
    """DTW of pairs (X[i[k]], X[j[k]]) in batches; X (N, T, D) on the compute device."""
    out = torch.empty(i.shape[0], dtype=X.dtype, device=X.device)
    for s in range(0, i.shape[0], batch):
        e = min(s + batch, i.shape[0])
        out[s:e] = dtw_batch(X[i[s:e]], X[j[s:e]], band, euclid)
    return out
