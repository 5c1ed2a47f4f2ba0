"""The canonical episode store: zarr v2 in Diffusion Policy's ReplayBuffer layout.

```
<store>.zarr/
  data/<key>          arrays concatenated over episodes (first axis = N samples)
  meta/episode_ends   int64 (E,), exclusive end of each episode, strictly increasing, last == N
```

Diffusion Policy's Push-T zarr (``data/img``, ``data/state``, ``data/action``,
``data/keypoint``) opens as is; ``KeyMap`` maps canonical names onto whatever keys a store uses.
Arrays stay lazy zarr arrays (chunked reads), so a 30 GB image array costs no RAM to open.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from class_core.io import _fsync_dir


class StoreError(ValueError):
    """A store is malformed or does not hold what was asked; the message names file, key, index."""


_SLICE_RE = re.compile(r"^(?P<key>[^\[\]]+?)\s*(\[\s*(?P<start>-?\d*)\s*:\s*(?P<stop>-?\d*)\s*\])?$")


@dataclass(frozen=True)
class KeySpec:
    """A store key with an optional slice on the last axis, e.g. ``state[0:2]``."""

    key: str
    start: int | None = None
    stop: int | None = None

    @classmethod
    def parse(cls, spec: str) -> KeySpec:
        m = _SLICE_RE.match(spec.strip())
        if not m:
            raise StoreError(f"invalid key spec {spec!r}; expected 'key' or 'key[start:stop]'")
        start = int(m["start"]) if m["start"] else None
        stop = int(m["stop"]) if m["stop"] else None
        return cls(m["key"].strip(), start, stop)

    def apply(self, x: np.ndarray) -> np.ndarray:
        if self.start is None and self.stop is None:
            return x
        return x[..., self.start : self.stop]

    def __str__(self) -> str:
        if self.start is None and self.stop is None:
            return self.key
        return (
            f"{self.key}[{'' if self.start is None else self.start}:{'' if self.stop is None else self.stop}]"
        )


class KeyMap:
    """Canonical name (``image``, ``agent_pos``, ``action`` ...) -> store key spec."""

    def __init__(self, mapping: Mapping[str, str] | None = None):
        self._specs = {name: KeySpec.parse(str(spec)) for name, spec in (mapping or {}).items()}

    def spec(self, name: str) -> KeySpec:
        return self._specs.get(name, KeySpec(name))

    def to_dict(self) -> dict[str, str]:
        return {k: str(v) for k, v in self._specs.items()}


class EpisodeStore:
    """Read-only view of a ReplayBuffer-layout zarr store.

    ``array(name)`` returns the lazy zarr array (mapped through the key map, without a slice);
    ``get(name, index)`` reads rows and applies the slice of the key spec.
    """

    def __init__(self, root: zarr.Group, path: Path, keys: KeyMap):
        self.root = root
        self.path = path
        self.keys_map = keys
        if "data" not in root or "meta" not in root:
            missing = [g for g in ("data", "meta") if g not in root]
            raise StoreError(
                f"{path}: not an episode store, missing group(s) {missing} (expected data/, meta/)"
            )
        self.data: zarr.Group = root["data"]
        meta = root["meta"]
        if "episode_ends" not in meta:
            raise StoreError(f"{path}: missing key 'meta/episode_ends'")
        ends = np.asarray(meta["episode_ends"][:])
        self.episode_ends = ends.astype(np.int64)
        self._validate()

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], keys: Mapping[str, str] | KeyMap | None = None
    ) -> EpisodeStore:
        path = Path(path)
        if not path.exists():
            raise StoreError(f"{path}: episode store not found")
        try:
            root = zarr.open_group(str(path), mode="r")
        except Exception as e:  # zarr raises several types for a non-store folder
            raise StoreError(f"{path}: cannot open as a zarr store: {e}") from None
        keymap = keys if isinstance(keys, KeyMap) else KeyMap(keys)
        return cls(root, path, keymap)

    def _validate(self) -> None:
        ends = self.episode_ends
        where = f"{self.path}: meta/episode_ends"
        if ends.ndim != 1:
            raise StoreError(f"{where}: expected 1-D, got shape {ends.shape}")
        if len(ends) == 0:
            raise StoreError(f"{where}: empty dataset (no episodes)")
        if ends[0] <= 0:
            raise StoreError(f"{where}[0] = {ends[0]}: first episode is empty")
        bad = np.nonzero(np.diff(ends) <= 0)[0]
        if len(bad):
            i = int(bad[0]) + 1
            raise StoreError(
                f"{where}[{i}] = {ends[i]} is not greater than [{i - 1}] = {ends[i - 1]} "
                "(episode_ends must be strictly increasing)"
            )
        n = int(ends[-1])
        for key in self.data.array_keys():
            length = self.data[key].shape[0]
            if length != n:
                raise StoreError(
                    f"{self.path}: data/{key} has {length} rows but meta/episode_ends ends at {n} "
                    "(ragged store)"
                )

    # --- sizes -------------------------------------------------------------------------------
    @property
    def n_episodes(self) -> int:
        return len(self.episode_ends)

    @property
    def n_steps(self) -> int:
        return int(self.episode_ends[-1])

    def __len__(self) -> int:
        return self.n_steps

    @property
    def episode_starts(self) -> np.ndarray:
        return np.concatenate([[0], self.episode_ends[:-1]]).astype(np.int64)

    def episode_lengths(self) -> np.ndarray:
        return np.diff(np.concatenate([[0], self.episode_ends])).astype(np.int64)

    def episode_slice(self, i: int) -> slice:
        if not -self.n_episodes <= i < self.n_episodes:
            raise StoreError(f"{self.path}: episode index {i} out of range (store has {self.n_episodes})")
        i %= self.n_episodes
        return slice(int(self.episode_starts[i]), int(self.episode_ends[i]))

    def episode_index(self) -> np.ndarray:
        """(N,) episode id of every sample."""
        return np.repeat(np.arange(self.n_episodes), self.episode_lengths())

    # --- arrays ------------------------------------------------------------------------------
    def keys(self) -> list[str]:
        return sorted(self.data.array_keys())

    def has(self, name: str) -> bool:
        return self.keys_map.spec(name).key in self.data

    def array(self, name: str) -> zarr.Array:
        spec = self.keys_map.spec(name)
        if spec.key not in self.data:
            alias = f" (canonical name {name!r})" if spec.key != name else ""
            raise StoreError(f"{self.path}: missing key 'data/{spec.key}'{alias}; store has {self.keys()}")
        return self.data[spec.key]

    def get(self, name: str, index: Any = slice(None)) -> np.ndarray:
        """Read rows of canonical ``name`` (slice of the key spec applied)."""
        return self.keys_map.spec(name).apply(np.asarray(self.array(name)[index]))

    def episode(self, i: int, names: list[str] | None = None) -> dict[str, np.ndarray]:
        sl = self.episode_slice(i)
        names = names if names is not None else self.keys()
        return {n: self.get(n, sl) for n in names}

    def actions(self, name: str = "action") -> np.ndarray:
        """All actions as float32 (N, D), checked for NaN/inf (the error names the row)."""
        a = self.get(name).astype(np.float32, copy=False)
        if a.ndim != 2:
            raise StoreError(f"{self.path}: data/{self.keys_map.spec(name)} must be (N, D), got {a.shape}")
        bad = ~np.isfinite(a)
        if bad.any():
            row, col = (int(v) for v in np.argwhere(bad)[0])
            raise StoreError(
                f"{self.path}: data/{self.keys_map.spec(name)} has a non-finite value at index {row} "
                f"(dimension {col}, episode {int(np.searchsorted(self.episode_ends, row, side='right'))})"
            )
        return a

    def check_image(self, name: str, shape: tuple[int, int, int] | None = None) -> tuple[int, int, int]:
        """Check an image array is uint8 (N, H, W, 3) (and of ``shape`` if given); return (H, W, C)."""
        arr = self.array(name)
        where = f"{self.path}: data/{self.keys_map.spec(name).key}"
        if arr.dtype != np.uint8:
            raise StoreError(f"{where}: images must be uint8, got {arr.dtype}")
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise StoreError(f"{where}: images must be (N, H, W, 3), got {arr.shape}")
        hwc = (int(arr.shape[1]), int(arr.shape[2]), int(arr.shape[3]))
        if shape is not None and hwc != tuple(shape):
            raise StoreError(f"{where}: expected images of shape {tuple(shape)}, got {hwc}")
        return hwc

    def fingerprint(self, action_name: str = "action") -> str:
        """Stable hash of the layout, episode ends and the action values (what similarity depends on)."""
        h = hashlib.sha256()
        layout = {k: [list(self.data[k].shape), str(self.data[k].dtype)] for k in self.keys()}
        h.update(json.dumps(layout, sort_keys=True).encode())
        h.update(self.episode_ends.tobytes())
        h.update(str(self.keys_map.spec(action_name)).encode())
        h.update(np.ascontiguousarray(self.actions(action_name)).tobytes())
        return h.hexdigest()[:16]

    def __repr__(self) -> str:
        return (
            f"EpisodeStore({self.path}, episodes={self.n_episodes}, steps={self.n_steps}, keys={self.keys()})"
        )


def _default_chunks(x: np.ndarray) -> tuple[int, ...]:
    """A few frames per chunk for images (about 1-2 MB), long chunks for low-dim arrays."""
    row_bytes = max(1, int(np.prod(x.shape[1:], dtype=np.int64)) * x.itemsize)
    rows = max(1, min(1 << 14, (1 << 20) // row_bytes)) if x.ndim > 2 else 1 << 14
    return (rows,) + tuple(x.shape[1:])


class EpisodeStoreWriter:
    """Append episodes to a new store, written at ``<path>.tmp`` and renamed on ``close()``.

    An interrupted writer leaves ``path`` untouched (and a ``.tmp`` folder that the next writer
    replaces). Every episode must carry the same keys with consistent dtypes and trailing shapes.
    """

    def __init__(self, path: str | os.PathLike[str], overwrite: bool = False, compressor: Any = "default"):
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise FileExistsError(
                f"{self.path} already exists (pass overwrite=True / --overwrite to replace it)"
            )
        self.overwrite = overwrite
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        self.root = zarr.open_group(str(self.tmp), mode="w")
        self.data = self.root.require_group("data")
        self.meta = self.root.require_group("meta")
        self._ends: list[int] = []
        self._n = 0
        self._compressor = compressor
        self._closed = False
        self._attrs: dict[str, Any] = {}

    @property
    def n_episodes(self) -> int:
        return len(self._ends)

    def add_episode(self, episode: Mapping[str, np.ndarray]) -> None:
        if self._closed:
            raise RuntimeError(f"{self.path}: writer already closed")
        if not episode:
            raise StoreError(f"{self.path}: episode {self.n_episodes} has no arrays")
        arrays = {k: np.asarray(v) for k, v in episode.items()}
        lengths = {k: len(v) for k, v in arrays.items()}
        length = next(iter(lengths.values()))
        if length == 0:
            raise StoreError(f"{self.path}: episode {self.n_episodes} is empty")
        if len(set(lengths.values())) != 1:
            raise StoreError(
                f"{self.path}: episode {self.n_episodes} has arrays of different lengths {lengths}"
            )
        if self._ends and set(arrays) != set(self.data.array_keys()):
            raise StoreError(
                f"{self.path}: episode {self.n_episodes} has keys {sorted(arrays)}, "
                f"earlier episodes {sorted(self.data.array_keys())}"
            )
        for k, v in arrays.items():
            if v.dtype.kind == "f" and not np.isfinite(v).all():
                row = int(np.argwhere(~np.isfinite(v.reshape(len(v), -1)))[0][0])
                raise StoreError(
                    f"{self.path}: episode {self.n_episodes} key {k!r} has a non-finite value at step {row}"
                )
            if k in self.data:
                arr = self.data[k]
                if arr.dtype != v.dtype or arr.shape[1:] != v.shape[1:]:
                    raise StoreError(
                        f"{self.path}: episode {self.n_episodes} key {k!r} is {v.dtype}{v.shape[1:]}, "
                        f"earlier episodes {arr.dtype}{arr.shape[1:]}"
                    )
        for k, v in arrays.items():
            if k in self.data:
                self.data[k].append(v)
            else:
                kwargs: dict[str, Any] = {"chunks": _default_chunks(v), "dtype": v.dtype}
                if self._compressor != "default":
                    kwargs["compressor"] = self._compressor
                self.data.create_dataset(k, data=v, **kwargs)
        self._n += length
        self._ends.append(self._n)

    def set_attrs(self, **attrs: Any) -> None:
        """JSON-serialisable metadata stored in the root group's attributes (task, variant, ...)."""
        self._attrs.update(attrs)

    def close(self) -> Path:
        if self._closed:
            return self.path
        if not self._ends:
            self.abort()
            raise StoreError(f"{self.path}: no episodes were written (empty dataset)")
        self.meta.create_dataset(
            "episode_ends", data=np.asarray(self._ends, dtype=np.int64), chunks=(1 << 16,)
        )
        if self._attrs:
            self.root.attrs.update(self._attrs)
        self._closed = True
        if self.path.exists():
            old = self.path.with_name(self.path.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.path, old)
            os.replace(self.tmp, self.path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, self.path)
        _fsync_dir(self.path.parent)
        return self.path

    def abort(self) -> None:
        self._closed = True
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> EpisodeStoreWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def iter_episodes(store: EpisodeStore, names: list[str] | None = None) -> Iterator[dict[str, np.ndarray]]:
    for i in range(store.n_episodes):
        yield store.episode(i, names)
