"""The non-parametric (retrieval) policy and the construction of its bank from an episode store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from class_core.data.chunks import action_chunks
from class_core.data.store import EpisodeStore
from class_core.nn.amp import autocast, autocast_dtype
from class_core.policy.base import ObservationEncoder, Policy, PolicySpec, batch_observations
from class_core.policy.retrieval import KNNIndex, RetrievalConfig, weighted_chunks


@torch.no_grad()
def encode_latents(
    obs_encoder: ObservationEncoder,
    images: Mapping[str, torch.Tensor],
    proprio: torch.Tensor | None,
    proprio_scale: float = 1.0,
    amp: str = "none",
) -> np.ndarray:
    """Retrieval latents: L2-normalised ``[image keypoints || proprio_scale * normalised proprio]``.

    ``amp`` (auto | bf16 | fp16 | none, class_core.nn.amp) is the encoder's autocast: the bank is
    built with ``retrieval.amp``; queries run in float32 (see RetrievalPolicy.encode)."""
    dev = obs_encoder.device()
    with autocast(dev, autocast_dtype(amp, dev, "retrieval.amp")):
        z = obs_encoder.features(images, proprio, augment=False, proprio_scale=proprio_scale)
    z = torch.nn.functional.normalize(z.float(), dim=-1)
    return z.cpu().numpy().astype(np.float32)


def build_bank(
    store: EpisodeStore,
    obs_encoder: ObservationEncoder,
    spec: PolicySpec,
    proprio_scale: float = 1.0,
    batch_size: int = 256,
    progress: bool = True,
    amp: str = "none",
) -> tuple[np.ndarray, np.ndarray]:
    """Encode every sample of ``store`` -> (latents float32 (N, d), raw chunks float32 (N, T_p, D)).

    The encoder must already be in eval mode (EMA weights); images are read in contiguous blocks.
    """
    actions = store.actions("action")
    if actions.shape[1] != spec.action_dim:
        raise ValueError(
            f"{store.path}: actions have D={actions.shape[1]}, the policy spec says {spec.action_dim}"
        )
    chunks = action_chunks(actions, store.episode_ends, spec.horizon).astype(np.float32)
    for key in spec.image_keys:
        store.check_image(key)
    proprio_all = None
    if spec.proprio_keys:
        parts = []
        for key, dim in zip(spec.proprio_keys, spec.proprio_dims, strict=True):
            v = store.get(key).astype(np.float32).reshape(store.n_steps, -1)
            if v.shape[1] != dim:
                raise ValueError(
                    f"{store.path}: proprio key {key!r} has {v.shape[1]} dims, the spec says {dim}"
                )
            parts.append(v)
        proprio_all = np.concatenate(parts, axis=1)
    n = store.n_steps
    obs_encoder.eval()
    dev = obs_encoder.device()
    out: np.ndarray | None = None
    for lo in tqdm(range(0, n, batch_size), desc="encode bank", unit="batch", disable=not progress):
        hi = min(n, lo + batch_size)
        imgs = {
            k: torch.from_numpy(np.ascontiguousarray(store.get(k, slice(lo, hi)))).to(dev)
            for k in spec.image_keys
        }
        prop = torch.from_numpy(proprio_all[lo:hi]).to(dev) if proprio_all is not None else None
        z = encode_latents(obs_encoder, imgs, prop, proprio_scale, amp)
        if out is None:
            out = np.empty((n, z.shape[1]), dtype=np.float32)
        out[lo:hi] = z
    assert out is not None
    return out, chunks


class RetrievalPolicy(Policy):
    """k-NN over the bank; the action chunk is the softmax(cos / tau_nn)-weighted mean of the
    neighbours' raw chunks (rot6d re-orthonormalised). Uses the latest observation only."""

    kind = "retrieval"

    def __init__(
        self,
        spec: PolicySpec,
        obs_encoder: ObservationEncoder,
        index: KNNIndex,
        chunks: np.ndarray,
        cfg: RetrievalConfig,
    ) -> None:
        super().__init__(spec)
        cfg.validate()
        chunks = np.ascontiguousarray(chunks, dtype=np.float32)
        if chunks.shape != (index.n, spec.horizon, spec.action_dim):
            raise ValueError(
                f"bank chunks must be (N={index.n}, T_p={spec.horizon}, D={spec.action_dim}), "
                f"got {chunks.shape}"
            )
        if index.dim != obs_encoder.out_dim:
            raise ValueError(
                f"bank latents have d={index.dim} but the observation encoder gives {obs_encoder.out_dim}"
            )
        self.obs_encoder = obs_encoder.eval()
        self.index = index
        self.chunks = chunks
        self.cfg = cfg

    def to(self, device: str | torch.device) -> RetrievalPolicy:
        self.obs_encoder.to(device)
        return self

    def encode(self, obs_list: Sequence[Mapping[str, Any]]) -> np.ndarray:
        imgs, prop = batch_observations(obs_list, self.spec)
        dev = self.obs_encoder.device()
        imgs = {k: v.to(dev) for k, v in imgs.items()}
        # float32: on a CPU, bf16 autocast re-casts every weight per call, which made a single
        # query slower (~41 vs 20-30 ms here); the bank's own bf16 rounding (cosine >= 0.9998 to
        # float32) is a per-entry noise that an exact query does not add to
        return encode_latents(self.obs_encoder, imgs, prop, self.cfg.proprio_scale)

    def neighbours(self, obs_list: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """-> (cosine similarities (B, k), bank indices (B, k)), best first."""
        return self.index.search(self.encode(obs_list), self.cfg.k)

    def predict_batch(self, obs_list: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Many observations at once (e.g. parallel rollouts): -> float32 (B, T_p, D); no queue."""
        sims, idx = self.neighbours(obs_list)
        return weighted_chunks(sims, idx, self.chunks, self.cfg.tau_nn, self.spec.rot6d_slice)

    def _predict(self, history: list[Mapping[str, Any]]) -> np.ndarray:
        return self.predict_batch([history[-1]])[0]

    def _predict_many(self, histories: list[list[Mapping[str, Any]]]) -> np.ndarray:
        return self.predict_batch([h[-1] for h in histories])
