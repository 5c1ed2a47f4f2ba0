"""Training checkpoints: atomic, pickle-free, resumable.

Layout of one checkpoint (a directory, renamed into place when complete):
```
<out_dir>/checkpoints/step_00001234/
  model.safetensors      trained weights (state_dict of the unwrapped model)
  ema.safetensors        EMA weights (absent when EMA is off)
  optimizer.pt           optimizer state_dict (tensors and numbers only: torch.load(weights_only=True))
  state.json             step, EMA counters, grad-scaler state, ...
  config.json            the resolved run config
  encoder.json           the encoder section (what load_encoder needs)
<out_dir>/checkpoints/latest   text: name of the newest complete checkpoint
```
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from class_core.io import atomic_dir, atomic_write_text

CKPT_RE = re.compile(r"^step_(\d{8,})$")


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or does not fit; the message names the file."""


def _tensors(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in sd.items()}


def save_checkpoint(
    out_dir: str | os.PathLike[str],
    step: int,
    model: nn.Module,
    config: Mapping[str, Any],
    encoder_config: Mapping[str, Any],
    ema_model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    state: Mapping[str, Any] | None = None,
    keep_last: int = 2,
) -> Path:
    """Write ``<out_dir>/checkpoints/step_<step>`` atomically, point ``latest`` at it, prune old ones."""
    root = Path(out_dir) / "checkpoints"
    path = root / f"step_{step:08d}"
    with atomic_dir(path, overwrite=True) as tmp:
        save_file(_tensors(model.state_dict()), str(tmp / "model.safetensors"))
        if ema_model is not None:
            save_file(_tensors(ema_model.state_dict()), str(tmp / "ema.safetensors"))
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, **dict(state or {})}, indent=1))
        (tmp / "config.json").write_text(json.dumps(config, indent=1, default=str))
        (tmp / "encoder.json").write_text(json.dumps(encoder_config, indent=1))
    atomic_write_text(root / "latest", path.name + "\n")
    if keep_last > 0:
        for old in list_checkpoints(out_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return path


def list_checkpoints(out_dir: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoints, oldest first (temporary directories of an interrupted save are ignored)."""
    root = Path(out_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [
        p for p in root.iterdir() if p.is_dir() and CKPT_RE.match(p.name) and (p / "state.json").is_file()
    ]
    return sorted(found, key=lambda p: int(CKPT_RE.match(p.name).group(1)))  # type: ignore[union-attr]


def latest_checkpoint(out_dir: str | os.PathLike[str]) -> Path | None:
    ckpts = list_checkpoints(out_dir)
    return ckpts[-1] if ckpts else None


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A run directory (-> its latest checkpoint), a checkpoint directory, or a file inside one."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.is_file():
        p = p.parent
    if (p / "checkpoints").is_dir():
        latest = latest_checkpoint(p)
        if latest is None:
            raise CheckpointError(f"{p}: run directory has no complete checkpoint under checkpoints/")
        return latest
    if not (p / "encoder.json").is_file() and not (p / "state.json").is_file():
        raise CheckpointError(f"{p}: not a checkpoint directory (no encoder.json / state.json)")
    return p


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: invalid JSON ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def load_weights(path: Path, device: str | torch.device = "cpu") -> dict[str, Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        return load_file(str(path), device=str(device))
    except Exception as e:  # noqa: BLE001 - truncated / foreign files
        raise CheckpointError(f"{path}: cannot read safetensors ({e})") from None


def load_into(module: nn.Module, sd: Mapping[str, Tensor], where: Path, prefix: str = "") -> None:
    """Strict load (after dropping ``prefix`` from keys that carry it); errors name the file."""
    if prefix:
        sd = {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in sd.items()}
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shape = [
        f"{k}: {tuple(sd[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in sd and sd[k].shape != v.shape
    ]
    if missing or unexpected or shape:
        raise CheckpointError(
            f"{where}: weights do not fit the model (missing {missing[:4]}, unexpected {unexpected[:4]}, "
            f"shape mismatch {shape[:4]})"
        )
    module.load_state_dict(sd, strict=True)


def load_encoder(
    path: str | os.PathLike[str], ema: bool = True, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """``(MultiCameraEncoder in eval mode, config dict)`` from a run dir, checkpoint dir or file in one.

    Weights: ``ema.safetensors`` when ``ema`` (falls back to nothing: a missing EMA file is an
    error), else ``model.safetensors``; keys may carry an ``encoder.`` prefix (a fine-tuned
    policy saving encoder + head). The config dict is ``config.json`` (the resolved run config)
    with the encoder section under ``cfg["encoder"]`` added from ``encoder.json``. ImageNet
    weights are never fetched: the encoder is built with random init, then loaded.
    """
    from class_core.nn.encoder import build_encoder

    ckpt = resolve_checkpoint(path)
    enc_cfg = read_json(ckpt / "encoder.json")
    cfg = read_json(ckpt / "config.json") if (ckpt / "config.json").is_file() else {}
    enc_cfg = {**enc_cfg, "weights": "random"}
    try:
        encoder = build_encoder(enc_cfg)
    except ValueError as e:
        raise CheckpointError(f"{ckpt / 'encoder.json'}: {e}") from None
    wfile = ckpt / ("ema.safetensors" if ema else "model.safetensors")
    sd = load_weights(wfile)
    if any(k.startswith("encoder.") for k in sd):
        sd = {k: v for k, v in sd.items() if k.startswith("encoder.")}
    load_into(encoder, sd, wfile, prefix="encoder.")
    cfg = {**cfg, "encoder": enc_cfg, "checkpoint": str(ckpt)}
    return encoder.to(device).eval(), cfg
