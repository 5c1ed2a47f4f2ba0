"""mp4 writing for rollout videos (imageio + its bundled ffmpeg), atomic."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def write_mp4(path: str | os.PathLike[str], frames: Sequence[np.ndarray], fps: float = 10.0) -> Path:
    """Write uint8 (H, W, 3) frames as H.264 mp4; the file appears only when complete."""
    import importlib

    imageio: Any = importlib.import_module("imageio.v2")  # its stub types lack append_data/iteration

    path = Path(path)
    if not frames:
        raise ValueError(f"{path}: no frames to write")
    h, w = frames[0].shape[:2]
    for i, f in enumerate(frames):
        if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3 or f.shape[:2] != (h, w):
            raise ValueError(f"{path}: frame {i} is {f.dtype}{f.shape}, expected uint8 ({h}, {w}, 3)")
    # yuv420p needs even sides: pad one pixel row/column if needed
    ph, pw = h % 2, w % 2
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".mp4", dir=path.parent)
    os.close(fd)
    try:
        with imageio.get_writer(
            tmp,
            format="FFMPEG",
            mode="I",
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            macro_block_size=1,
        ) as writer:
            for f in frames:
                writer.append_data(np.pad(f, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def read_mp4(path: str | os.PathLike[str]) -> np.ndarray:
    """All frames, uint8 (T, H, W, 3) (for tests and inspection)."""
    import importlib

    imageio: Any = importlib.import_module("imageio.v2")  # its stub types lack append_data/iteration

    with imageio.get_reader(str(path), format="FFMPEG") as reader:
        return np.stack([np.asarray(f) for f in reader])
