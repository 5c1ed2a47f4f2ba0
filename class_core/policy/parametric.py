"""Parametric policies: an observation encoder plus an MLP (U-Net decoder) or diffusion head."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from class_core.nn.heads import DiffusionHead, HeadConfig, MLPHead, build_head
from class_core.policy.base import MinMax, ObservationEncoder, Policy, PolicySpec, batch_observations


class PolicyModel(nn.Module):
    """What fine-tuning trains and the artifact stores: ``obs_encoder`` + ``head``.

    ``condition(images, proprio)`` takes ``(B, T_o, ...)`` observations and returns the head's
    conditioning vector ``(B, T_o * d)``.
    """

    def __init__(
        self, obs_encoder: ObservationEncoder, head: MLPHead | DiffusionHead, n_obs_steps: int
    ) -> None:
        super().__init__()
        self.obs_encoder = obs_encoder
        self.head = head
        self.n_obs_steps = n_obs_steps

    def condition(
        self, images: Mapping[str, torch.Tensor], proprio: torch.Tensor | None, augment: bool = False
    ) -> torch.Tensor:
        b, t = _bt(images, proprio)
        if t != self.n_obs_steps:
            raise ValueError(f"expected T_o={self.n_obs_steps} observation steps, got {t}")
        flat_imgs = {k: v.reshape(b * t, *v.shape[2:]) for k, v in images.items()}
        flat_prop = proprio.reshape(b * t, -1) if proprio is not None else None
        z = self.obs_encoder.features(flat_imgs, flat_prop, augment=augment)
        return z.reshape(b, t * z.shape[-1])

    def loss(
        self,
        images: Mapping[str, torch.Tensor],
        proprio: torch.Tensor | None,
        actions_norm: torch.Tensor,
        augment: bool = True,
    ) -> torch.Tensor:
        return self.head.loss(self.condition(images, proprio, augment=augment), actions_norm)


def _bt(images: Mapping[str, torch.Tensor], proprio: torch.Tensor | None) -> tuple[int, int]:
    for v in images.values():
        return int(v.shape[0]), int(v.shape[1])
    if proprio is None:
        raise ValueError("no observations given")
    return int(proprio.shape[0]), int(proprio.shape[1])


def build_policy_model(
    spec: PolicySpec, image_encoder: nn.Module | None, proprio_norm: MinMax | None, head_cfg: HeadConfig
) -> PolicyModel:
    obs_encoder = ObservationEncoder(image_encoder, spec, proprio_norm)
    cond_dim = spec.n_obs_steps * obs_encoder.out_dim
    head = build_head(spec.action_dim, spec.horizon, cond_dim, head_cfg)
    return PolicyModel(obs_encoder, head, spec.n_obs_steps)


class HeadPolicy(Policy):
    """MLP or diffusion policy: ``T_o`` observations -> normalised chunk -> raw actions."""

    def __init__(
        self,
        spec: PolicySpec,
        model: PolicyModel,
        action_norm: MinMax,
        head_cfg: HeadConfig,
        seed: int | None = 0,
    ) -> None:
        super().__init__(spec)
        if action_norm.dim != spec.action_dim:
            raise ValueError(
                f"action normaliser has {action_norm.dim} dims, the policy spec says D={spec.action_dim}"
            )
        self.model = model.eval()
        self.action_norm = action_norm
        self.head_cfg = head_cfg
        self.kind = head_cfg.type
        self._seed = seed
        self.generator: torch.Generator | None = None
        self.seed(seed)

    def seed(self, seed: int | None) -> None:
        """Seed the sampling noise of a diffusion head (None: unseeded)."""
        self._seed = seed
        self.generator = None if seed is None else torch.Generator(device="cpu").manual_seed(int(seed))

    def reseed(self, seed: int | None) -> None:
        """Called by the rollout engine at every episode start: a diffusion rollout's noise then
        depends on its episode seed only, not on which episodes a worker ran before."""
        self.seed(seed)

    def to(self, device: str | torch.device) -> HeadPolicy:
        self.model.to(device)
        self.action_norm.to(device)
        return self

    def set_sampler(self, scheduler: str, steps: int) -> None:
        """Diffusion only: switch to e.g. DDIM with fewer steps at inference."""
        if not isinstance(self.model.head, DiffusionHead):
            raise ValueError("set_sampler applies to diffusion policies only")
        self.model.head.set_inference(scheduler, steps)

    @torch.no_grad()
    def predict_batch(self, histories: Sequence[Sequence[Mapping[str, Any]]]) -> np.ndarray:
        """``histories[b]`` = the last T_o observations of rollout b -> float32 (B, T_p, D)."""
        t_o = self.spec.n_obs_steps
        flat: list[Mapping[str, Any]] = []
        for h in histories:
            if len(h) != t_o:
                raise ValueError(f"each history must hold T_o={t_o} observations, got {len(h)}")
            flat.extend(h)
        imgs, prop = batch_observations(flat, self.spec)
        dev = self.model.obs_encoder.device()
        b = len(histories)
        imgs = {k: v.to(dev).reshape(b, t_o, *v.shape[1:]) for k, v in imgs.items()}
        prop_t = prop.to(dev).reshape(b, t_o, -1) if prop is not None else None
        cond = self.model.condition(imgs, prop_t, augment=False)
        # a CPU generator works for CUDA models too (noise is drawn on CPU and moved)
        naction = self.model.head.predict(cond, generator=self.generator)
        action = self.action_norm.unnormalize(naction.float())
        return self._finish(action.cpu().numpy())

    def _predict(self, history: list[Mapping[str, Any]]) -> np.ndarray:
        return self.predict_batch([history])[0]

    def _predict_many(self, histories: list[list[Mapping[str, Any]]]) -> np.ndarray:
        return self.predict_batch(histories)
