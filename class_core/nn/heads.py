"""Policy heads over normalised action chunks ``(B, T_p, D)`` conditioned on ``cond (B, c)``.

- ``MLPHead``: deterministic. A learned input sequence goes through the FiLM U-Net (no step
  embedding); trained with MSE against the chunk.
- ``DiffusionHead``: DDPM-style denoiser (epsilon or sample prediction) with diffusers'
  ``DDPMScheduler`` or ``DDIMScheduler``; ``predict`` runs ``num_inference_steps`` denoising
  steps from Gaussian noise.

Both expose ``loss(cond, actions) -> scalar`` and ``predict(cond, generator=None) -> (B, T_p, D)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from class_core.nn.unet1d import ConditionalUNet1D, UNet1DConfig


@dataclass
class DiffusionConfig:
    scheduler: Literal["ddpm", "ddim"] = "ddpm"
    num_train_timesteps: int = 16
    num_inference_steps: int = 16
    beta_schedule: str = "squaredcos_cap_v2"
    clip_sample: bool = True
    prediction_type: Literal["epsilon", "sample"] = "epsilon"

    def validate(self) -> None:
        if self.scheduler not in ("ddpm", "ddim"):
            raise ValueError(f"head.diffusion.scheduler must be ddpm or ddim, got {self.scheduler!r}")
        if self.num_train_timesteps < 1:
            raise ValueError(
                f"head.diffusion.num_train_timesteps must be >= 1, got {self.num_train_timesteps}"
            )
        if not 1 <= self.num_inference_steps <= self.num_train_timesteps:
            raise ValueError(
                f"head.diffusion.num_inference_steps={self.num_inference_steps} must be in "
                f"[1, num_train_timesteps={self.num_train_timesteps}]"
            )
        if self.scheduler == "ddpm" and self.num_inference_steps != self.num_train_timesteps:
            # diffusers' DDPM can skip steps, but the variance then no longer matches the training chain
            raise ValueError(
                "head.diffusion.scheduler=ddpm needs num_inference_steps == num_train_timesteps; "
                "use scheduler=ddim for fewer inference steps"
            )
        if self.prediction_type not in ("epsilon", "sample"):
            raise ValueError(
                f"head.diffusion.prediction_type must be epsilon or sample, got {self.prediction_type!r}"
            )


@dataclass
class HeadConfig:
    type: Literal["mlp", "diffusion"] = "diffusion"
    unet: UNet1DConfig = field(default_factory=UNet1DConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)

    def validate(self, horizon: int) -> None:
        if self.type not in ("mlp", "diffusion"):
            raise ValueError(f"head.type must be mlp or diffusion, got {self.type!r}")
        self.unet.validate(horizon)
        if self.type == "diffusion":
            self.diffusion.validate()


def make_scheduler(cfg: DiffusionConfig, kind: str | None = None) -> Any:
    from diffusers import DDIMScheduler, DDPMScheduler

    kind = kind or cfg.scheduler
    common: dict[str, Any] = dict(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule=cfg.beta_schedule,
        clip_sample=cfg.clip_sample,
        prediction_type=cfg.prediction_type,
    )
    if kind == "ddpm":
        return DDPMScheduler(variance_type="fixed_small", **common)
    return DDIMScheduler(set_alpha_to_one=True, steps_offset=0, **common)


class MLPHead(nn.Module):
    def __init__(self, action_dim: int, horizon: int, cond_dim: int, cfg: HeadConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or HeadConfig(type="mlp")
        cfg.validate(horizon)
        unet_cfg = UNet1DConfig(**{**cfg.unet.__dict__, "timestep_embed": False})
        self.net = ConditionalUNet1D(action_dim, cond_dim, unet_cfg)
        # the decoder's input: a learned sequence, so the chunk is a function of cond alone
        self.query = nn.Parameter(0.02 * torch.randn(1, horizon, action_dim))
        self.horizon, self.action_dim = horizon, action_dim

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        return self.net(self.query.expand(cond.shape[0], -1, -1), cond)

    def loss(self, cond: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self(cond), actions)

    @torch.no_grad()
    def predict(self, cond: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self(cond)


class DiffusionHead(nn.Module):
    def __init__(self, action_dim: int, horizon: int, cond_dim: int, cfg: HeadConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or HeadConfig(type="diffusion")
        cfg.validate(horizon)
        self.cfg = cfg
        unet_cfg = UNet1DConfig(**{**cfg.unet.__dict__, "timestep_embed": True})
        self.net = ConditionalUNet1D(action_dim, cond_dim, unet_cfg)
        self.horizon, self.action_dim = horizon, action_dim
        self.train_scheduler = make_scheduler(cfg.diffusion)
        self.set_inference(cfg.diffusion.scheduler, cfg.diffusion.num_inference_steps)

    def set_inference(self, scheduler: str, steps: int) -> None:
        """Switch the sampler (e.g. DDIM with fewer steps) without retraining."""
        d = DiffusionConfig(
            **{**self.cfg.diffusion.__dict__, "scheduler": scheduler, "num_inference_steps": steps}
        )
        d.validate()
        self.infer_scheduler = make_scheduler(d)
        self.infer_scheduler.set_timesteps(steps)
        self.num_inference_steps = steps

    def forward(self, noisy: torch.Tensor, cond: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(noisy, cond, t)

    def loss(self, cond: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        b = actions.shape[0]
        noise = torch.randn_like(actions)
        t = torch.randint(0, self.cfg.diffusion.num_train_timesteps, (b,), device=actions.device)
        noisy = self.train_scheduler.add_noise(actions, noise, t)
        pred = self.net(noisy, cond, t)
        target = noise if self.cfg.diffusion.prediction_type == "epsilon" else actions
        return F.mse_loss(pred, target)

    @torch.no_grad()
    def predict(self, cond: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b = cond.shape[0]
        shape = (b, self.horizon, self.action_dim)
        dev = cond.device
        gen_dev = generator.device if generator is not None else dev
        x = torch.randn(shape, generator=generator, device=gen_dev).to(dev)
        sched = self.infer_scheduler
        for t in sched.timesteps:
            out = self.net(x, cond, t.to(dev).expand(b))
            x = sched.step(out, t, x, generator=generator).prev_sample
        return x


def build_head(action_dim: int, horizon: int, cond_dim: int, cfg: HeadConfig) -> MLPHead | DiffusionHead:
    if cfg.type == "mlp":
        return MLPHead(action_dim, horizon, cond_dim, cfg)
    if cfg.type == "diffusion":
        return DiffusionHead(action_dim, horizon, cond_dim, cfg)
    raise ValueError(f"head.type must be mlp or diffusion, got {cfg.type!r}")
