"""Small episode stores and encoders for the policy tests (built here, nothing downloaded)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from class_core.data.store import EpisodeStore, EpisodeStoreWriter
from class_core.geometry import matrix_to_rot6d, rot6d_to_matrix


def random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    r6 = rng.normal(size=(n, 6))
    return rot6d_to_matrix(r6)


def render(pos: np.ndarray, size: int) -> np.ndarray:
    """A uint8 image with a bright square at ``pos`` in [-1, 1]^2 on a textured background."""
    img = np.full((size, size, 3), 40, dtype=np.uint8)
    img[::4, :, 1] = 70
    c = ((pos + 1) / 2 * (size - 12) + 6).astype(int)
    img[c[1] - 5 : c[1] + 5, c[0] - 5 : c[0] + 5] = (230, 200, 60)
    return img


def make_store(
    path: Path,
    n_episodes: int = 4,
    length: int = 20,
    size: int = 64,
    ee: bool = False,
    seed: int = 0,
) -> EpisodeStore:
    """Episodes of a point moving smoothly; images show it; actions = next positions.

    ``ee=False``: Push-T-like, ``agent_pos`` (2) and 2-D actions.
    ``ee=True``: 10-D end-effector actions (pos 3, rot6d 6, gripper 1), proprio ``ee_pos`` (3) and
    ``gripper`` (1).
    """
    rng = np.random.default_rng(seed)
    with EpisodeStoreWriter(path) as w:
        for _ in range(n_episodes):
            start, goal = rng.uniform(-0.8, 0.8, size=(2, 2))
            s = np.linspace(0, 1, length + 1)[:, None]
            traj = (start + (goal - start) * s).astype(np.float32)
            images = np.stack([render(p, size) for p in traj[:-1]])
            ep: dict[str, np.ndarray] = {"image": images}
            if not ee:
                ep["agent_pos"] = traj[:-1]
                ep["action"] = traj[1:]
            else:
                z = rng.uniform(0, 0.3)
                pos3 = np.concatenate([traj, np.full((length + 1, 1), z, np.float32)], axis=1)
                rots = random_rotations(rng, 1)[0]
                angle = np.linspace(0, 0.5, length + 1)
                rz = np.zeros((length + 1, 3, 3))
                rz[:, 0, 0] = rz[:, 1, 1] = np.cos(angle)
                rz[:, 0, 1], rz[:, 1, 0] = -np.sin(angle), np.sin(angle)
                rz[:, 2, 2] = 1
                r6 = matrix_to_rot6d(rz @ rots).astype(np.float32)
                grip = (s > 0.5).astype(np.float32)
                act = np.concatenate([pos3, r6, grip], axis=1)
                ep["ee_pos"] = pos3[:-1]
                ep["gripper"] = grip[:-1]
                ep["action"] = act[1:]
            w.add_episode(ep)
    return EpisodeStore.open(path)


def small_encoder(cameras: tuple[str, ...] = ("image",), seed: int = 0):  # type: ignore[no-untyped-def]
    """The real CLASS encoder (ResNet-18 GN + spatial softmax), randomly initialised."""
    import torch

    from class_core.nn.encoder import build_encoder

    torch.manual_seed(seed)
    return build_encoder({"cameras": list(cameras), "weights": "random"}).eval()


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Small networks on a shared 2-core machine: one intra-op thread is ~10x faster than two
    (no spinning against other processes). Import this fixture into a test module to use it."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
