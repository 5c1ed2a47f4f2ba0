"""Encoder: ResNet-18/GroupNorm trunk, spatial softmax, augmentation, weight loading, load_encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from class_core.nn import augment as aug
from class_core.nn.encoder import (
    EncoderConfig,
    MultiCameraEncoder,
    SpatialSoftmax,
    build_encoder,
    encoder_config_dict,
    resnet18_gn_trunk,
)
from class_core.train.checkpoint import CheckpointError, load_encoder, save_checkpoint


def images(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, h, w, 3), dtype=torch.uint8, generator=g)


@pytest.fixture(scope="module")
def encoder() -> MultiCameraEncoder:
    torch.manual_seed(0)
    return build_encoder({"cameras": ["image", "wrist_image"], "num_keypoints": 8}).eval()


def test_output_contract(encoder: MultiCameraEncoder) -> None:
    x = {"image": images(3, 48, 48), "wrist_image": images(3, 40, 40, 1)}
    with torch.no_grad():
        z = encoder(x)
        z2 = encoder(x)
        raw = encoder(x, normalize=False)
    assert z.shape == (3, encoder.out_dim) == (3, 2 * 2 * 8)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(z, z2)  # evaluation (centre crop) is deterministic
    torch.testing.assert_close(z, torch.nn.functional.normalize(raw, dim=1))
    # camera order follows cfg.cameras: the first 16 dims are the global camera's keypoints
    with torch.no_grad():
        own = encoder.encoders["image"](encoder.preprocess(x)["image"])
    torch.testing.assert_close(raw[:, :16], own)
    assert (raw.abs() <= 1).all()  # keypoints are expected coordinates in [-1, 1]


def test_default_is_all_channels_and_no_batchnorm() -> None:
    enc = MultiCameraEncoder(EncoderConfig())
    assert enc.out_dim == 1024
    mods = list(enc.modules())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in mods)
    gns = [m for m in mods if isinstance(m, nn.GroupNorm)]
    assert len(gns) == 20 and all(m.num_groups == 16 for m in gns)


def test_missing_camera_and_bad_images_fail_by_name(encoder: MultiCameraEncoder) -> None:
    with pytest.raises(KeyError, match="wrist_image"):
        encoder({"image": images(1, 64, 64)})
    with pytest.raises(ValueError, match="wrist_image: expected dtype uint8"):
        encoder({"image": images(1, 64, 64), "wrist_image": images(1, 64, 64).float()})
    with pytest.raises(ValueError, match="image: expected uint8 \\(B, H, W, 3\\)"):
        encoder({"image": images(1, 64, 64).permute(0, 3, 1, 2), "wrist_image": images(1, 64, 64)})
    with pytest.raises(Exception, match="encoder.norm_groups"):
        build_encoder({"norm_groups": 7})
    with pytest.raises(Exception, match="encoder.camera"):
        build_encoder({"camera": ["image"]})


def test_spatial_softmax_matches_formula() -> None:
    torch.manual_seed(1)
    ss = SpatialSoftmax(4, temperature=0.5)
    x = torch.randn(2, 4, 3, 5)
    got = ss(x).reshape(2, 4, 2)
    p = torch.softmax(x.reshape(2, 4, 15) / 0.5, dim=-1).reshape(2, 4, 3, 5)
    xs = torch.linspace(-1, 1, 5)
    ys = torch.linspace(-1, 1, 3)
    torch.testing.assert_close(got[..., 0], (p.sum(2) * xs).sum(-1))
    torch.testing.assert_close(got[..., 1], (p.sum(3) * ys).sum(-1))
    # a sharp peak at row 2, column 1 -> keypoint (x, y) = (-0.5, 1)
    peak = torch.zeros(1, 4, 3, 5)
    peak[:, :, 2, 1] = 100.0
    torch.testing.assert_close(ss(peak).reshape(4, 2), torch.tensor([[-0.5, 1.0]] * 4))
    # the temperature is learned (log-parametrised, stays positive)
    ss(x).sum().backward()
    assert ss.log_temperature.grad is not None and ss.log_temperature.ndim == 1


def test_random_crop_is_per_sample_and_exact() -> None:
    b, h, w = 64, 12, 10
    # pixel value encodes its position, so each crop reveals its offset
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    base = torch.stack([yy, xx, yy * 0], -1).to(torch.uint8)
    x = base.expand(b, h, w, 3).clone()
    g = torch.Generator().manual_seed(0)
    out = aug.random_crop(x, (8, 7), g)
    assert out.shape == (b, 8, 7, 3)
    tops, lefts = out[:, 0, 0, 0].long(), out[:, 0, 0, 1].long()
    for k in range(b):
        torch.testing.assert_close(out[k], x[k, tops[k] : tops[k] + 8, lefts[k] : lefts[k] + 7])
    assert len(set(zip(tops.tolist(), lefts.tolist(), strict=True))) > 5  # offsets differ per sample
    assert set(tops.tolist()) == set(range(h - 8 + 1)) and set(lefts.tolist()) == set(range(w - 7 + 1))
    # same generator state -> same crops (resumable augmentation)
    torch.testing.assert_close(aug.random_crop(x, (8, 7), torch.Generator().manual_seed(0)), out)


def test_preprocess_crop_sizes_noise_and_normalisation() -> None:
    assert aug.crop_size(256, 256, 0.875) == (224, 224)
    assert aug.crop_size(96, 96, 0.875) == (84, 84)
    x = torch.full((4, 96, 96, 3), 128, dtype=torch.uint8)
    ev = aug.preprocess(x, 0.875, train=False)
    assert ev.shape == (4, 3, 84, 84)
    mean = torch.tensor(aug.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(aug.IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(ev, ((128 / 255 - mean) / std).expand_as(ev).contiguous())
    tr = aug.preprocess(x, 0.875, train=True, noise_std=5.0, generator=torch.Generator().manual_seed(0))
    noise_255 = (tr * std + mean) * 255 - 128
    assert noise_255.std().item() == pytest.approx(5.0, rel=0.05)
    assert abs(noise_255.mean().item()) < 0.1
    # centre crop picks the middle
    grid = torch.arange(10, dtype=torch.uint8).view(1, 1, 10, 1).expand(1, 10, 10, 3)
    assert aug.center_crop(grid, (4, 4))[0, 0, :, 0].tolist() == [3, 4, 5, 6]


def _torchvision_resnet18_sd(seed: int) -> dict[str, torch.Tensor]:
    from torchvision.models import resnet18

    torch.manual_seed(seed)
    net = resnet18(weights=None)
    for m in net.modules():  # non-trivial BN affine params, to see them copied
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.5, 0.5)
    return net.state_dict()


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_loads_local_resnet18_weights(tmp_path: Path, fmt: str) -> None:
    sd = _torchvision_resnet18_sd(3)
    path = tmp_path / f"resnet18.{fmt}"
    if fmt == "pth":
        torch.save(sd, path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    trunk = resnet18_gn_trunk(str(path))
    got = trunk.state_dict()
    torch.testing.assert_close(got["conv1.weight"], sd["conv1.weight"])
    torch.testing.assert_close(got["layer3.1.conv2.weight"], sd["layer3.1.conv2.weight"])
    torch.testing.assert_close(got["bn1.weight"], sd["bn1.weight"])  # GN affine <- BN affine
    torch.testing.assert_close(got["layer4.0.downsample.1.bias"], sd["layer4.0.downsample.1.bias"])
    assert isinstance(trunk.bn1, nn.GroupNorm)


def test_bad_weight_files_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="encoder.weights"):
        resnet18_gn_trunk(str(tmp_path / "nope.pth"))
    bad = tmp_path / "other.pth"
    torch.save({"foo.weight": torch.zeros(3)}, bad)
    with pytest.raises(ValueError, match="not a torchvision resnet18 state_dict"):
        resnet18_gn_trunk(str(bad))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="weights_only"):
        resnet18_gn_trunk(str(junk))


def test_imagenet_offline_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from torchvision.models import ResNet18_Weights

    def offline(*a: object, **k: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(type(ResNet18_Weights.IMAGENET1K_V1), "get_state_dict", offline)
    with pytest.raises(RuntimeError, match=r"encoder.weights=/path/to/resnet18-f37072fd.pth"):
        resnet18_gn_trunk("imagenet")


def test_load_encoder_roundtrip(tmp_path: Path) -> None:
    cfg = EncoderConfig(cameras=["image"], num_keypoints=4)
    torch.manual_seed(2)
    model = MultiCameraEncoder(cfg)
    ema_model = MultiCameraEncoder(cfg)
    full_cfg = {"pretrain": {"encoder": encoder_config_dict(cfg)}, "note": "x"}
    save_checkpoint(tmp_path / "run", 7, model, full_cfg, encoder_config_dict(cfg), ema_model=ema_model)
    x = {"image": images(2, 40, 40)}
    ckpt_dir = tmp_path / "run/checkpoints/step_00000007"
    for path in (tmp_path / "run", ckpt_dir, ckpt_dir / "ema.safetensors"):
        enc, loaded_cfg = load_encoder(path)
        assert not enc.training and loaded_cfg["note"] == "x" and loaded_cfg["encoder"]["num_keypoints"] == 4
        for k, v in ema_model.state_dict().items():
            torch.testing.assert_close(enc.state_dict()[k], v)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), ema_model.eval()(x))
    enc, _ = load_encoder(tmp_path / "run", ema=False)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(enc.state_dict()[k], v)
    with pytest.raises(CheckpointError, match="not found"):
        load_encoder(tmp_path / "missing")
    (tmp_path / "run/checkpoints/step_00000007/ema.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="ema.safetensors"):
        load_encoder(tmp_path / "run")
