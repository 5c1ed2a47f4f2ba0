"""Import a robomimic hdf5 file (``data/demo_*/obs/<key>``, ``data/demo_*/actions``) as an episode store.

Demos are written in their numeric order (``demo_2`` before ``demo_10``). Images are copied
episode by episode, so the whole file is never held in RAM.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from class_core.data.store import EpisodeStoreWriter, StoreError


def _demo_order(name: str) -> tuple[int, str]:
    m = re.search(r"(\d+)$", name)
    return (int(m.group(1)) if m else -1, name)


def import_robomimic(
    hdf5_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    obs_keys: Mapping[str, str],
    action_key: str = "actions",
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Copy every demo of ``hdf5_path`` into a store at ``out``.

    ``obs_keys`` maps store names to robomimic obs keys, e.g.
    ``{"image": "agentview_image", "ee_pos": "robot0_eef_pos"}``. The action array is stored as
    ``action`` (float32).
    """
    hdf5_path = Path(hdf5_path)
    if not hdf5_path.exists():
        raise StoreError(f"{hdf5_path}: file not found")
    with h5py.File(hdf5_path, "r") as f:
        if "data" not in f:
            raise StoreError(f"{hdf5_path}: missing group 'data' (not a robomimic file)")
        demos = sorted((k for k in f["data"] if k.startswith("demo")), key=_demo_order)
        if not demos:
            raise StoreError(f"{hdf5_path}: no 'data/demo_*' groups (empty dataset)")
        with EpisodeStoreWriter(out, overwrite=overwrite) as writer:
            writer.set_attrs(source=str(hdf5_path), importer="robomimic", obs_keys=dict(obs_keys))
            for demo in tqdm(demos, desc=f"import {hdf5_path.name}", disable=not progress):
                g = f["data"][demo]
                if action_key not in g:
                    raise StoreError(f"{hdf5_path}: missing key 'data/{demo}/{action_key}'")
                episode: dict[str, np.ndarray] = {"action": np.asarray(g[action_key], dtype=np.float32)}
                for name, key in obs_keys.items():
                    path = f"data/{demo}/obs/{key}"
                    if "obs" not in g or key not in g["obs"]:
                        raise StoreError(f"{hdf5_path}: missing key '{path}'")
                    arr = np.asarray(g["obs"][key])
                    if arr.dtype.kind == "f":
                        arr = arr.astype(np.float32)
                    if len(arr) != len(episode["action"]):
                        raise StoreError(
                            f"{hdf5_path}: '{path}' has {len(arr)} steps but "
                            f"'data/{demo}/{action_key}' has {len(episode['action'])}"
                        )
                    episode[name] = arr
                if not np.isfinite(episode["action"]).all():
                    row = int(np.argwhere(~np.isfinite(episode["action"]))[0][0])
                    raise StoreError(
                        f"{hdf5_path}: 'data/{demo}/{action_key}' has a non-finite value at index {row}"
                    )
                writer.add_episode(episode)
    return Path(out)
