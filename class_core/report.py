"""Figures and tables for run reports: training curves from TensorBoard logs, nearest-neighbour grids."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from class_core.io import atomic_write_bytes


def read_scalars(logdir: str | os.PathLike[str], tag: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of scalar ``tag`` from the TensorBoard event files under ``logdir``.

    Several event files (a resumed run writes a new one) are merged; a later file wins for a
    step logged twice.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(Path(logdir).rglob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise FileNotFoundError(f"{logdir}: no TensorBoard event files")
    by_step: dict[int, float] = {}
    for f in files:
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        if tag not in acc.Tags().get("scalars", []):
            continue
        for ev in acc.Scalars(tag):
            by_step[int(ev.step)] = float(ev.value)
    if not by_step:
        raise KeyError(f"{logdir}: no scalar {tag!r} in the event files")
    steps = np.array(sorted(by_step))
    return steps, np.array([by_step[s] for s in steps])


def _savefig(fig: object, path: str | os.PathLike[str]) -> Path:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return atomic_write_bytes(path, buf.getvalue())


def plot_curve(
    steps: np.ndarray, values: np.ndarray, path: str | os.PathLike[str], title: str, ylabel: str
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(steps, values, lw=1, alpha=0.4, color="tab:blue")
    if len(values) >= 10:
        k = max(2, len(values) // 20)
        smooth = np.convolve(values, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1 :], smooth, lw=2, color="tab:blue", label=f"moving mean ({k})")
        ax.legend()
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _savefig(fig, path)


def image_grid(
    rows: Sequence[Sequence[np.ndarray]],
    path: str | os.PathLike[str],
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str = "",
) -> Path:
    """Save a grid of uint8 HWC images (row i, column j) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows = len(rows)
    n_cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.4 * n_cols, 1.5 * n_rows), squeeze=False)
    for i in range(n_rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(rows[i]):
                ax.imshow(rows[i][j])
            else:
                ax.axis("off")
            if col_labels is not None and i == 0 and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=7)
            if row_labels is not None and j == 0:
                ax.set_ylabel(row_labels[i], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return _savefig(fig, path)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)
