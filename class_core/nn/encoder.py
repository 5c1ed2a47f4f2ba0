"""CLASS image encoder: ResNet-18 (GroupNorm) trunk + spatial softmax, one per camera.

``MultiCameraEncoder.forward(images)`` takes ``{camera: uint8 (B, H, W, 3)}`` and returns
``(B, d)``: per-camera keypoints (x, y of every softmax channel) concatenated in camera order and
L2-normalised. Preprocessing (crop, noise, ImageNet normalisation) runs inside, on the model's
device: centre crop by default, random crop + noise with ``augment=True`` (training).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from class_core.nn import augment as aug

IMAGENET_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"


@dataclass
class EncoderConfig:
    cameras: list[str] = field(default_factory=lambda: ["image"])
    # "random", "imagenet" (torchvision download / cache) or a path to a resnet18 state_dict
    # (.pth / .pt loaded with weights_only=True, or .safetensors)
    weights: str = "random"
    norm_groups: int = 16  # GroupNorm groups replacing every BatchNorm
    num_keypoints: int | None = None  # None: all 512 channels (1024-d); else a 1x1 conv first
    temperature: float = 1.0  # spatial-softmax initial temperature (learned)
    learnable_temperature: bool = True
    crop_ratio: float = 0.875  # 224/256, 84/96
    noise_std: float = 5.0  # training noise, 0-255 scale

    def validate(self, where: str = "encoder") -> None:
        if not self.cameras:
            raise ValueError(f"{where}.cameras: at least one camera key is needed")
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"{where}.cameras: duplicate camera keys {self.cameras}")
        if self.norm_groups < 1 or 64 % self.norm_groups:
            raise ValueError(
                f"{where}.norm_groups: must divide 64 (the narrowest ResNet-18 layer), got {self.norm_groups}"
            )
        if self.num_keypoints is not None and self.num_keypoints < 1:
            raise ValueError(f"{where}.num_keypoints: must be >= 1 or null, got {self.num_keypoints}")
        if not self.temperature > 0:
            raise ValueError(f"{where}.temperature: must be > 0, got {self.temperature}")
        if not 0 < self.crop_ratio <= 1:
            raise ValueError(f"{where}.crop_ratio: must be in (0, 1], got {self.crop_ratio}")
        if self.noise_std < 0:
            raise ValueError(f"{where}.noise_std: must be >= 0, got {self.noise_std}")


class SpatialSoftmax(nn.Module):
    """Expected (x, y) in [-1, 1] of a softmax over each channel's H x W map.

    With ``num_keypoints`` a 1x1 conv maps the channels to that many keypoints first. The
    temperature is learned in log space so that it stays positive under any step size.
    """

    def __init__(
        self,
        in_channels: int,
        num_keypoints: int | None = None,
        temperature: float = 1.0,
        learnable_temperature: bool = True,
    ):
        super().__init__()
        self.proj: nn.Module = (
            nn.Conv2d(in_channels, num_keypoints, kernel_size=1) if num_keypoints else nn.Identity()
        )
        self.num_keypoints = num_keypoints or in_channels
        log_t = torch.tensor([float(temperature)]).log()
        if learnable_temperature:
            self.log_temperature = nn.Parameter(log_t)
        else:
            self.register_buffer("log_temperature", log_t)

    @property
    def out_dim(self) -> int:
        return 2 * self.num_keypoints

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x)
        b, k, h, w = x.shape
        logits = x.reshape(b, k, h * w).float() / self.log_temperature.float().exp()
        attn = torch.softmax(logits, dim=-1)
        ys = torch.linspace(-1.0, 1.0, h, device=x.device)
        xs = torch.linspace(-1.0, 1.0, w, device=x.device)
        pos_y, pos_x = torch.meshgrid(ys, xs, indexing="ij")
        pos = torch.stack([pos_x.reshape(-1), pos_y.reshape(-1)], dim=1)  # (h*w, 2)
        kp = attn @ pos  # (B, K, 2)
        return kp.reshape(b, 2 * k)


def _imagenet_state_dict() -> dict[str, Tensor]:
    from torchvision.models import ResNet18_Weights

    try:
        sd = ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=False, check_hash=True)
    except Exception as e:  # noqa: BLE001 - any download failure gets the same advice
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        raise RuntimeError(
            "encoder.weights=imagenet: could not obtain torchvision's ResNet-18 ImageNet weights "
            f"({type(e).__name__}: {e}). Offline, download {IMAGENET_URL} on a machine with internet "
            f"and either put it in {hub}/ or pass encoder.weights=/path/to/resnet18-f37072fd.pth"
        ) from None
    return dict(sd)


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """A torchvision resnet18 state_dict from .safetensors or a weights_only torch file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"encoder.weights: {p} is not a file (use 'random', 'imagenet' or a resnet18 state_dict path)"
        )
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd: Any = load_file(str(p))
    else:
        try:
            sd = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise ValueError(
                f"encoder.weights: cannot load {p} with torch.load(weights_only=True): {e}"
            ) from None
        if isinstance(sd, Mapping) and "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
            sd = sd["state_dict"]
    if not isinstance(sd, Mapping) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise ValueError(f"encoder.weights: {p} does not hold a state_dict of tensors")
    out = {}
    for k, v in sd.items():
        for prefix in ("module.", "model.", "backbone."):
            if k.startswith(prefix):
                k = k[len(prefix) :]
        out[k] = v
    return out


def replace_bn_with_gn(module: nn.Module, num_groups: int) -> nn.Module:
    """Swap every BatchNorm2d for GroupNorm, keeping the BN affine parameters as GN's."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            gn = nn.GroupNorm(num_groups, child.num_features, eps=child.eps, affine=True)
            if child.affine:
                with torch.no_grad():
                    gn.weight.copy_(child.weight)
                    gn.bias.copy_(child.bias)
            setattr(module, name, gn)
        else:
            replace_bn_with_gn(child, num_groups)
    return module


def resnet18_gn_trunk(weights: str = "random", norm_groups: int = 16) -> nn.Sequential:
    """ResNet-18 up to layer4 (stride 32, 512 channels) with GroupNorm instead of BatchNorm.

    Pretrained weights are loaded into the BatchNorm model first, then BN is replaced.
    """
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    if weights not in ("random", "", "none", None):
        sd = _imagenet_state_dict() if weights == "imagenet" else load_state_dict_file(weights)
        sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}
        missing, unexpected = net.load_state_dict(sd, strict=False)
        missing = [k for k in missing if not k.startswith("fc.") and not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise ValueError(
                f"encoder.weights={weights}: not a torchvision resnet18 state_dict "
                f"(missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''})"
            )
    # named children keep torchvision's key names (conv1, bn1, layer1..4); avgpool and fc dropped
    trunk = nn.Sequential(OrderedDict((n, m) for n, m in net.named_children() if n not in ("avgpool", "fc")))
    return replace_bn_with_gn(trunk, norm_groups)  # type: ignore[return-value]


class ImageEncoder(nn.Module):
    """One camera: normalised float images (B, 3, h, w) -> keypoints (B, 2K)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.trunk = resnet18_gn_trunk(cfg.weights, cfg.norm_groups)
        self.pool = SpatialSoftmax(512, cfg.num_keypoints, cfg.temperature, cfg.learnable_temperature)

    @property
    def out_dim(self) -> int:
        return self.pool.out_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.trunk(x))


class MultiCameraEncoder(nn.Module):
    """One ``ImageEncoder`` per camera, features concatenated in ``cfg.cameras`` order."""

    def __init__(self, cfg: EncoderConfig | None = None):
        super().__init__()
        self.cfg = cfg or EncoderConfig()
        self.cfg.validate()
        self.encoders = nn.ModuleDict({cam: ImageEncoder(self.cfg) for cam in self.cfg.cameras})

    @property
    def cameras(self) -> list[str]:
        return list(self.cfg.cameras)

    @property
    def out_dim(self) -> int:
        return sum(e.out_dim for e in self.encoders.values())  # type: ignore[misc]

    def preprocess(
        self, images: Mapping[str, Tensor], augment: bool = False, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """uint8 (B, H, W, 3) per camera -> normalised float (B, 3, h, w) on the model's device."""
        dev = next(self.parameters()).device
        missing = [c for c in self.cfg.cameras if c not in images]
        if missing:
            raise KeyError(f"encoder input lacks camera(s) {missing}; got keys {sorted(images)}")
        out = {}
        for cam in self.cfg.cameras:
            x = images[cam].to(dev, non_blocking=True)
            out[cam] = aug.preprocess(
                x,
                self.cfg.crop_ratio,
                train=augment,
                noise_std=self.cfg.noise_std,
                generator=generator,
                name=cam,
            )
        return out

    def encode(self, pre: Mapping[str, Tensor], normalize: bool = True) -> Tensor:
        """Preprocessed images -> (B, d) features (L2-normalised unless ``normalize=False``)."""
        feats = [self.encoders[cam](pre[cam]) for cam in self.cfg.cameras]
        z = torch.cat(feats, dim=1) if len(feats) > 1 else feats[0]
        return F.normalize(z.float(), dim=1) if normalize else z

    def forward(
        self,
        images: Mapping[str, Tensor],
        augment: bool = False,
        generator: torch.Generator | None = None,
        normalize: bool = True,
    ) -> Tensor:
        return self.encode(self.preprocess(images, augment, generator), normalize=normalize)


def build_encoder(
    cfg: EncoderConfig | Mapping[str, Any] | None = None, **overrides: Any
) -> MultiCameraEncoder:
    """``MultiCameraEncoder`` from a dataclass or a mapping (unknown keys fail by name)."""
    if cfg is None or isinstance(cfg, Mapping):
        from class_core.config import from_dict

        cfg = from_dict(EncoderConfig, dict(cfg or {}, **overrides), where="encoder")
    elif overrides:
        cfg = EncoderConfig(**{**cfg.__dict__, **overrides})
    return MultiCameraEncoder(cfg)


def encoder_config_dict(cfg: EncoderConfig) -> dict[str, Any]:
    return {
        "cameras": list(cfg.cameras),
        "weights": cfg.weights,
        "norm_groups": cfg.norm_groups,
        "num_keypoints": cfg.num_keypoints,
        "temperature": cfg.temperature,
        "learnable_temperature": cfg.learnable_temperature,
        "crop_ratio": cfg.crop_ratio,
        "noise_std": cfg.noise_std,
    }


__all__: Sequence[str] = (
    "EncoderConfig",
    "ImageEncoder",
    "MultiCameraEncoder",
    "SpatialSoftmax",
    "build_encoder",
    "encoder_config_dict",
    "load_state_dict_file",
    "replace_bn_with_gn",
    "resnet18_gn_trunk",
)
