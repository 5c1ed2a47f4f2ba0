"""1-D temporal U-Net with FiLM conditioning (the architecture of Diffusion Policy's CNN head).

Shapes follow docs/interfaces.md: ``x (B, T_p, D)`` action chunks, ``cond (B, c)`` a global
conditioning vector (the observation latent, flattened over ``T_o``), ``t (B,)`` diffusion steps.

Layout: an encoder path of residual blocks at channel widths ``down_dims`` (each level but the
last halves the time axis), two residual blocks in the middle, and a decoder path that mirrors the
encoder with skip connections. Every residual block is conditioned by FiLM: a linear map of the
conditioning vector gives a per-channel scale and bias applied after its first convolution.
With ``timestep_embed=True`` (diffusion) the conditioning vector is
``[sinusoidal(t) -> MLP || cond]``; with ``False`` (the deterministic "MLP" head) it is ``cond``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import nn


@dataclass
class UNet1DConfig:
    down_dims: list[int] = field(default_factory=lambda: [256, 512, 1024])
    kernel_size: int = 5
    n_groups: int = 8
    step_embed_dim: int = 256
    timestep_embed: bool = True

    def validate(self, horizon: int) -> None:
        """Fail early on shapes the network cannot take (named by config key)."""
        if not self.down_dims or any(int(d) <= 0 for d in self.down_dims):
            raise ValueError(
                f"head.unet.down_dims must be a non-empty list of positive ints, got {self.down_dims}"
            )
        for d in self.down_dims:
            if d % self.n_groups:
                raise ValueError(
                    f"head.unet.down_dims entry {d} is not divisible by head.unet.n_groups={self.n_groups}"
                )
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"head.unet.kernel_size must be odd and positive, got {self.kernel_size}")
        stride = 2 ** (len(self.down_dims) - 1)
        if horizon % stride:
            raise ValueError(
                f"horizon T_p={horizon} is not divisible by the U-Net stride {stride} "
                f"(2 ** (len(head.unet.down_dims) - 1)); change T_p or head.unet.down_dims"
            )


class SinusoidalEmbedding(nn.Module):
    """Transformer-style sinusoidal embedding of a scalar step: [sin(t w_k) || cos(t w_k)]."""

    freqs: torch.Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"sinusoidal embedding dimension must be even, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = t.float()[:, None] * self.freqs[None, :]
        return torch.cat([arg.sin(), arg.cos()], dim=-1)


class ConvGNMish(nn.Module):
    """Conv1d -> GroupNorm -> Mish, 'same' padding."""

    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2)
        self.norm = nn.GroupNorm(groups, c_out)
        self.act = nn.Mish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class FiLMResBlock(nn.Module):
    """Two conv blocks; FiLM (scale, bias from ``cond``) after the first; 1x1 residual if widths differ."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.block1 = ConvGNMish(c_in, c_out, kernel, groups)
        self.block2 = ConvGNMish(c_out, c_out, kernel, groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * c_out))
        self.skip: nn.Module = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.c_out = c_out

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.block1(x)
        scale, bias = self.film(cond).unsqueeze(-1).chunk(2, dim=1)
        h = scale * h + bias
        h = self.block2(h)
        return h + self.skip(x)


class ConditionalUNet1D(nn.Module):
    """FiLM-conditioned 1-D U-Net over the time axis of an action chunk.

    ``forward(x (B, T, D), cond (B, c), t (B,) | None) -> (B, T, D)``.
    """

    def __init__(self, action_dim: int, cond_dim: int, cfg: UNet1DConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or UNet1DConfig()
        self.cfg = cfg
        self.action_dim = action_dim
        dims: Sequence[int] = [action_dim, *cfg.down_dims]
        k, g = cfg.kernel_size, cfg.n_groups

        film_dim = cond_dim
        self.step_mlp: nn.Module | None = None
        if cfg.timestep_embed:
            e = cfg.step_embed_dim
            self.step_mlp = nn.Sequential(
                SinusoidalEmbedding(e), nn.Linear(e, 4 * e), nn.Mish(), nn.Linear(4 * e, e)
            )
            film_dim += e
        if film_dim <= 0:
            raise ValueError("the U-Net needs a conditioning vector (cond_dim > 0 or timestep_embed)")

        pairs = list(zip(dims[:-1], dims[1:], strict=True))
        self.down = nn.ModuleList()
        for level, (c_in, c_out) in enumerate(pairs):
            last = level == len(pairs) - 1
            self.down.append(
                nn.ModuleList(
                    [
                        FiLMResBlock(c_in, c_out, film_dim, k, g),
                        FiLMResBlock(c_out, c_out, film_dim, k, g),
                        nn.Identity() if last else nn.Conv1d(c_out, c_out, 3, stride=2, padding=1),
                    ]
                )
            )
        mid = dims[-1]
        self.mid = nn.ModuleList(
            [FiLMResBlock(mid, mid, film_dim, k, g), FiLMResBlock(mid, mid, film_dim, k, g)]
        )
        self.up = nn.ModuleList()
        # Every decoder level upsamples, so the shallowest skip (full resolution) goes unused, as in DP.
        for c_in, c_out in reversed(pairs[1:]):
            self.up.append(
                nn.ModuleList(
                    [
                        FiLMResBlock(2 * c_out, c_in, film_dim, k, g),
                        FiLMResBlock(c_in, c_in, film_dim, k, g),
                        nn.ConvTranspose1d(c_in, c_in, 4, stride=2, padding=1),
                    ]
                )
            )
        first = dims[1]
        self.out = nn.Sequential(ConvGNMish(first, first, k, g), nn.Conv1d(first, action_dim, 1))

    def forward(self, x: torch.Tensor, cond: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.action_dim:
            raise ValueError(f"U-Net input must be (B, T, {self.action_dim}), got {tuple(x.shape)}")
        parts = []
        if self.step_mlp is not None:
            if t is None:
                raise ValueError("this U-Net embeds the diffusion step: pass t")
            if t.ndim == 0:
                t = t.expand(x.shape[0])
            parts.append(self.step_mlp(t.to(x.device)))
        parts.append(cond)
        c = torch.cat(parts, dim=-1)

        h = x.transpose(1, 2)  # (B, D, T): convolve over time
        skips = []
        for level in self.down:
            res1, res2, down = cast(nn.ModuleList, level)
            h = res2(res1(h, c), c)
            skips.append(h)
            h = down(h)
        for block in self.mid:
            h = block(h, c)
        for level in self.up:
            res1, res2, up = cast(nn.ModuleList, level)
            h = torch.cat([h, skips.pop()], dim=1)
            h = res2(res1(h, c), c)
            h = up(h)
        return self.out(h).transpose(1, 2)
