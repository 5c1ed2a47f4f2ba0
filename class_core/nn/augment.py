"""Image preprocessing for the encoder, run on the model's device.

Input everywhere: uint8 ``(B, H, W, 3)`` tensors (HWC, as stored). Output: float32
``(B, 3, h, w)`` ImageNet-normalised. Training: per-sample random crop of ``crop_ratio`` of each
side (224 of 256, 84 of 96), Gaussian noise on the 0-255 scale. Evaluation: centre crop.
"""

from __future__ import annotations

import torch
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def crop_size(height: int, width: int, crop_ratio: float) -> tuple[int, int]:
    """Crop of ``crop_ratio`` of each side, rounded (256 -> 224 and 96 -> 84 at 0.875)."""
    if not 0.0 < crop_ratio <= 1.0:
        raise ValueError(f"crop_ratio must be in (0, 1], got {crop_ratio}")
    return max(1, round(height * crop_ratio)), max(1, round(width * crop_ratio))


def check_images(x: Tensor, name: str = "images") -> None:
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"{name}: expected uint8 (B, H, W, 3), got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        raise ValueError(f"{name}: expected dtype uint8 (0-255 images), got {x.dtype}")


def center_crop(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Centre crop of (B, H, W, C)."""
    h, w = x.shape[1], x.shape[2]
    ch, cw = size
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[:, top : top + ch, left : left + cw]


def random_crop(x: Tensor, size: tuple[int, int], generator: torch.Generator | None = None) -> Tensor:
    """An independent random crop for every sample of (B, H, W, C), by one gather."""
    b, h, w = x.shape[0], x.shape[1], x.shape[2]
    ch, cw = size
    if ch > h or cw > w:
        raise ValueError(f"crop {size} larger than image {(h, w)}")
    dev = x.device
    top = torch.randint(
        0, h - ch + 1, (b,), generator=generator, device=generator.device if generator else dev
    )
    left = torch.randint(
        0, w - cw + 1, (b,), generator=generator, device=generator.device if generator else dev
    )
    top, left = top.to(dev), left.to(dev)
    rows = (top[:, None] + torch.arange(ch, device=dev)[None, :])[:, :, None]  # (B, ch, 1)
    cols = (left[:, None] + torch.arange(cw, device=dev)[None, :])[:, None, :]  # (B, 1, cw)
    bidx = torch.arange(b, device=dev)[:, None, None]
    return x[bidx, rows, cols]  # (B, ch, cw, C)


def normalize(x: Tensor) -> Tensor:
    """float (B, H, W, 3) on the 0-255 scale -> ImageNet-normalised (B, 3, H, W) float32."""
    x = x.permute(0, 3, 1, 2).float()
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1) * 255.0
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def preprocess(
    x: Tensor,
    crop_ratio: float,
    train: bool,
    noise_std: float = 5.0,
    generator: torch.Generator | None = None,
    name: str = "images",
) -> Tensor:
    """uint8 (B, H, W, 3) -> float32 (B, 3, h, w): crop (random if ``train``), noise, normalise."""
    check_images(x, name)
    size = crop_size(x.shape[1], x.shape[2], crop_ratio)
    if train:
        x = random_crop(x, size, generator)
        xf = x.float()
        if noise_std > 0:
            gdev = generator.device if generator is not None else xf.device
            noise = torch.randn(xf.shape, generator=generator, device=gdev).to(xf.device)
            # clamp: sensor noise saturates at the ends of the 0-255 range
            xf = (xf + noise_std * noise).clamp_(0.0, 255.0)
        return normalize(xf)
    return normalize(center_crop(x, size).float())
