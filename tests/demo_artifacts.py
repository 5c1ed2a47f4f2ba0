"""Small but real Push-T policy artifacts for the ROS tests and the Docker image's launch tests.

Scripted random-walk Push-T episodes -> an episode store -> a policy of each node mode with a
randomly initialised (untrained) CLASS encoder: ``nonparametric`` (retrieval, exported with
``export_retrieval_policy``), ``mlp`` and ``diffusion`` (untrained heads, exported with
``export_parametric_policy``). They drive the simulation bridge; they are not meant to solve the
task. This lives with the tests, not in ``class_core``: the training library does not depend on
the simulation package.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

MODES = ("nonparametric", "mlp", "diffusion")


def _write_store(store_path: Path, n_episodes: int, steps: int, seed: int) -> None:
    from class_core.data.store import EpisodeStoreWriter
    from sim_bridge.task import make_task

    task = make_task("pusht", "fixed-color", max_steps=steps)
    rng = np.random.default_rng(seed)
    with EpisodeStoreWriter(store_path, overwrite=True) as w:
        for e in range(n_episodes):
            obs = task.reset(seed + e)
            images, pos, actions = [], [], []
            target = obs["agent_pos"].astype(np.float64)
            for _ in range(steps):
                target = np.clip(target + rng.normal(0, 15, 2), 20, 490)  # a smooth random walk
                images.append(obs["image"])
                pos.append(obs["agent_pos"])
                actions.append(target.astype(np.float32))
                obs, _, info = task.step(target)
                if info["truncated"]:
                    break
            w.add_episode(
                {"image": np.stack(images), "agent_pos": np.stack(pos), "action": np.stack(actions)}
            )
    task.close()


def make_demo_artifact(
    path: str | os.PathLike[str],
    n_episodes: int = 2,
    steps: int = 40,
    seed: int = 0,
    n_action_steps: int = 8,
    overwrite: bool = False,
    mode: str = "nonparametric",
) -> Path:
    """Write a Push-T artifact of node mode ``mode`` at ``path``; returns the path."""
    import torch

    from class_core.data.store import EpisodeStore
    from class_core.nn.encoder import build_encoder
    from class_core.nn.heads import DiffusionConfig, HeadConfig
    from class_core.nn.unet1d import UNet1DConfig
    from class_core.policy import (
        HeadPolicy,
        MinMax,
        PolicySpec,
        RetrievalConfig,
        build_policy_model,
        export_parametric_policy,
        export_retrieval_policy,
    )
    from class_core.policy.artifact import fit_proprio_normalizer

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    path = Path(path)
    store_path = path.with_name(path.name + ".demo_store.zarr")
    _write_store(store_path, n_episodes, steps, seed)
    try:
        torch.manual_seed(seed)
        encoder = build_encoder({"cameras": ["image"], "weights": "random"}).eval()
        spec = PolicySpec(image_keys=["image"], proprio_keys=["agent_pos"], proprio_dims=[2], action_dim=2,
                          horizon=16, n_action_steps=n_action_steps)  # fmt: skip
        store = EpisodeStore.open(store_path)
        if mode == "nonparametric":
            rcfg = RetrievalConfig(k=min(16, n_episodes * steps), tau_nn=0.01)
            return export_retrieval_policy(path, store, encoder, spec, rcfg, overwrite=overwrite,
                                           progress=False, meta={"demo": True})  # fmt: skip
        # a small head: these artifacts exercise the ROS path, not the network's size
        unet = UNet1DConfig(down_dims=[16, 32], kernel_size=5, n_groups=8, step_embed_dim=16)
        head = HeadConfig(
            type=mode, unet=unet, diffusion=DiffusionConfig(scheduler="ddim", num_inference_steps=4)
        )
        model = build_policy_model(spec, encoder, fit_proprio_normalizer(store, spec), head)
        policy = HeadPolicy(spec, model.eval(), MinMax.fit(store.actions()), head, seed=seed)
        return export_parametric_policy(path, policy, overwrite=overwrite, meta={"demo": True})
    finally:
        shutil.rmtree(store_path, ignore_errors=True)
