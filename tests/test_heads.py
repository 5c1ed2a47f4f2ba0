"""U-Net and heads: shapes, conditioning, early config errors, and overfitting a tiny dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from policy_fixtures import one_torch_thread  # noqa: F401

from class_core.nn.heads import DiffusionConfig, DiffusionHead, HeadConfig, MLPHead, build_head
from class_core.nn.unet1d import ConditionalUNet1D, SinusoidalEmbedding, UNet1DConfig

SMALL = UNet1DConfig(down_dims=[32, 64], kernel_size=5, n_groups=8, step_embed_dim=32)
# chunk length of the overfitting tests: horizon 8 is learnt in fewer training steps than 16 (each
# step also costs less), with at least the margin under the error thresholds that 16 had; what it
# sees less clearly (an off-by-one timestep), test_diffusion_training_and_sampling_agree_exactly checks
H = 8


def tiny_dataset(
    n: int = 6, t: int = H, d: int = 2, c: int = 12, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    cond = torch.randn(n, c, generator=g)
    s = torch.linspace(0, 1, t)[None, :, None]
    a0, a1 = torch.rand(n, 1, d, generator=g) * 1.6 - 0.8, torch.rand(n, 1, d, generator=g) * 1.6 - 0.8
    chunks = a0 + (a1 - a0) * s + 0.1 * torch.sin(6.28 * s + a0)
    return cond, chunks.clamp(-1, 1)


def test_unet_shapes_and_full_size_parameter_count() -> None:
    net = ConditionalUNet1D(10, 66)  # defaults: 256/512/1024, kernel 5, 8 groups
    x = torch.randn(2, 16, 10)
    y = net(x, torch.randn(2, 66), torch.tensor([0, 15]))
    assert y.shape == (2, 16, 10)
    n_params = sum(p.numel() for p in net.parameters())
    assert 60e6 < n_params < 75e6  # Diffusion Policy's CNN U-Net is about 65M at these widths


def test_unet_depends_on_condition_and_step() -> None:
    torch.manual_seed(0)
    net = ConditionalUNet1D(3, 8, SMALL).eval()
    x, c = torch.randn(1, 16, 3), torch.randn(1, 8)
    base = net(x, c, torch.tensor([1]))
    assert not torch.allclose(base, net(x, c + 1, torch.tensor([1])))
    assert not torch.allclose(base, net(x, c, torch.tensor([7])))
    with pytest.raises(ValueError, match="pass t"):
        net(x, c)


def test_sinusoidal_embedding_matches_formula() -> None:
    emb = SinusoidalEmbedding(8)
    t = torch.tensor([0.0, 3.0])
    half = 4
    freqs = torch.exp(-torch.log(torch.tensor(10000.0)) * torch.arange(half) / (half - 1))
    ref = torch.cat([torch.sin(t[:, None] * freqs), torch.cos(t[:, None] * freqs)], dim=1)
    torch.testing.assert_close(emb(t), ref)


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match="not divisible by the U-Net stride 4"):
        HeadConfig(type="mlp").validate(horizon=10)
    with pytest.raises(ValueError, match="head.diffusion.num_inference_steps"):
        DiffusionConfig(num_inference_steps=40).validate()
    with pytest.raises(ValueError, match="use scheduler=ddim"):
        DiffusionConfig(scheduler="ddpm", num_inference_steps=8).validate()
    with pytest.raises(ValueError, match="n_groups"):
        UNet1DConfig(down_dims=[12, 24]).validate(16)


def _train(head: torch.nn.Module, cond: torch.Tensor, chunks: torch.Tensor, steps: int, lr: float) -> float:
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    loss = torch.tensor(0.0)
    for _ in range(steps):
        loss = head.loss(cond, chunks)  # type: ignore[operator]
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return float(loss.detach())


def test_mlp_head_overfits_tiny_dataset() -> None:
    torch.manual_seed(0)
    cond, chunks = tiny_dataset()
    head = MLPHead(2, H, cond.shape[1], HeadConfig(type="mlp", unet=SMALL))
    _train(head, cond, chunks, steps=150, lr=3e-3)
    head.eval()
    err = (head.predict(cond) - chunks).abs().max().item()
    assert err < 0.05, err


@pytest.mark.slow  # the fixture's 400 training steps: about 25 s on an idle 2-core machine
@pytest.mark.parametrize("scheduler,steps", [("ddpm", 16), ("ddim", 16), ("ddim", 8)])
def test_diffusion_head_overfits_tiny_dataset(
    trained_diffusion: DiffusionHead, scheduler: str, steps: int
) -> None:
    cond, chunks = tiny_dataset()
    head = trained_diffusion
    head.set_inference(scheduler, steps)
    g = torch.Generator().manual_seed(1)
    pred = head.predict(cond, generator=g)
    err = (pred - chunks).abs().mean().item()
    # each condition maps to its own chunk (mean error far below the distance between chunks)
    assert err < 0.05, err
    dists = torch.cdist(pred.flatten(1), chunks.flatten(1))
    assert torch.equal(dists.argmin(dim=1), torch.arange(len(chunks)))


@pytest.fixture(scope="module")
def trained_diffusion() -> DiffusionHead:
    torch.manual_seed(0)
    cond, chunks = tiny_dataset()
    head = DiffusionHead(2, H, cond.shape[1], HeadConfig(type="diffusion", unet=SMALL))
    head.train()
    # replicate the batch so every step sees several noise levels per chunk
    rc, rx = cond.repeat(8, 1), chunks.repeat(8, 1, 1)
    # 400 steps at horizon 8: worst mean error 0.028-0.032 over torch seeds 0-2, sampler seeds 1-4
    # and the three samplers (700 steps at horizon 16: up to 0.038)
    _train(head, rc, rx, steps=400, lr=3e-3)
    return head.eval()


class _OracleNet(torch.nn.Module):
    """The exact noise predictor of a known dataset: the noise that takes each condition's chunk to
    ``x`` at step ``t`` of the training schedule."""

    def __init__(self, cond: torch.Tensor, chunks: torch.Tensor, alphas_cumprod: torch.Tensor) -> None:
        super().__init__()
        self.cond, self.chunks, self.abar = cond, chunks, alphas_cumprod

    def forward(self, x: torch.Tensor, c: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x0 = self.chunks[torch.cdist(c, self.cond).argmin(dim=1)]
        a = self.abar[t.long()].view(-1, 1, 1)
        return (x - a.sqrt() * x0) / (1 - a).sqrt()


@pytest.mark.parametrize("scheduler,steps", [("ddpm", 16), ("ddim", 16), ("ddim", 8)])
def test_diffusion_training_and_sampling_agree_exactly(scheduler: str, steps: int) -> None:
    """With the exact noise predictor, the training loss is zero and every sampler returns the
    data: the noising in ``loss`` (schedule, timesteps given to the network) and each inference
    scheduler invert each other. Catches off-by-one timesteps or a schedule mismatch that the
    overfitting test above only sees as a somewhat larger error."""
    cond, chunks = tiny_dataset(t=16)
    head = DiffusionHead(2, 16, cond.shape[1], HeadConfig(type="diffusion", unet=SMALL))
    head.net = _OracleNet(cond, chunks, head.train_scheduler.alphas_cumprod)
    torch.manual_seed(0)
    assert head.loss(cond.repeat(8, 1), chunks.repeat(8, 1, 1)).item() < 1e-8
    head.set_inference(scheduler, steps)
    pred = head.predict(cond, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(pred, chunks, rtol=0, atol=1e-4)


def test_ddim_with_one_step_per_train_step_is_deterministic() -> None:
    torch.manual_seed(0)
    head = build_head(
        2, 16, 4, HeadConfig(type="diffusion", unet=SMALL, diffusion=DiffusionConfig(scheduler="ddim"))
    )
    assert isinstance(head, DiffusionHead)
    c = torch.randn(2, 4)
    a = head.predict(c, generator=torch.Generator().manual_seed(3))
    b = head.predict(c, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    assert np.isfinite(a.numpy()).all() and a.abs().max() <= 1.0 + 1e-6  # clip_sample
