"""A small but real policy artifact for trying the ROS stack without training (debug preset).

Scripted-expert Push-T episodes -> episode store -> a retrieval policy with a randomly
initialised CLASS encoder, exported with ``class_core.policy.export_retrieval_policy``. It
drives the simulation bridge in tests (here and in the Docker image's launch tests); it is not
meant to solve the task.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def make_demo_artifact(
    path: str | os.PathLike[str],
    n_episodes: int = 2,
    steps: int = 40,
    seed: int = 0,
    n_action_steps: int = 8,
    overwrite: bool = False,
) -> Path:
    """Write a ``nonparametric`` (retrieval) Push-T artifact at ``path``; returns the path."""
    import torch

    from class_core.data.store import EpisodeStore, EpisodeStoreWriter
    from class_core.nn.encoder import build_encoder
    from class_core.policy import PolicySpec, RetrievalConfig, export_retrieval_policy
    from sim_bridge.task import make_task

    path = Path(path)
    store_path = path.with_name(path.name + ".demo_store.zarr")
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
    torch.manual_seed(seed)
    encoder = build_encoder({"cameras": ["image"], "weights": "random"}).eval()
    spec = PolicySpec(image_keys=["image"], proprio_keys=["agent_pos"], proprio_dims=[2], action_dim=2,
                      horizon=16, n_action_steps=n_action_steps)  # fmt: skip
    k = min(16, n_episodes * steps)
    store = EpisodeStore.open(store_path)
    rcfg = RetrievalConfig(k=k, tau_nn=0.01)
    out = export_retrieval_policy(path, store, encoder, spec, rcfg, overwrite=overwrite, progress=False,
                                  meta={"demo": True})  # fmt: skip
    import shutil

    shutil.rmtree(store_path, ignore_errors=True)
    return out
