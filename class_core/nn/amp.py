"""Mixed precision: which autocast dtype a job uses on a device (pre-training, retrieval encoding).

``auto`` is bf16 on CUDA where supported (else fp16) and, on a CPU, bf16 only where the CPU has
AMX bf16 tiles (Intel Sapphire Rapids and later): there a ResNet-18 forward pass at 84 x 84 runs
2.1x faster and the demo's pre-training step 1.15x; elsewhere bf16 convolutions are emulated and
slower than float32, so ``auto`` stays float32.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from class_core.config import ConfigError

CHOICES = ("auto", "bf16", "fp16", "none")


def cpu_has_amx_bf16() -> bool:
    """True where the CPU has AMX bf16 tiles (Intel Sapphire Rapids and later; Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " amx_bf16" in line for line in f)
    except OSError:
        return False


def autocast_dtype(pref: str, device: torch.device, where: str) -> torch.dtype | None:
    """The autocast dtype for ``pref`` (auto | bf16 | fp16 | none) on ``device``; None = float32.
    ``where`` names the config key in errors."""
    if pref not in CHOICES:
        raise ConfigError(f"{where}={pref!r}: expected one of {', '.join(CHOICES)}")
    if pref == "none":
        return None
    if device.type == "cuda":
        if pref == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if pref == "bf16" else torch.float16
    if pref == "fp16":
        raise ConfigError(f"{where}=fp16 needs CUDA (on CPU use bf16 or none)")
    if pref == "bf16" or (pref == "auto" and device.type == "cpu" and cpu_has_amx_bf16()):
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    """``torch.autocast`` for ``dtype``, or a no-op context for float32 (None)."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
