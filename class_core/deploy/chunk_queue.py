"""Time-stamped action queue of an executor (simulation bridge, arm driver).

A received chunk's point k is meant for ``stamp + time_from_start[k]``. A newer chunk replaces
every queued point from its first point's time on; earlier points stay. Times are int ns.
"""

from __future__ import annotations

import numpy as np

from class_core.ros_msgs import TimedChunk


class ChunkQueue:
    def __init__(self) -> None:
        self.times = np.zeros(0, dtype=np.int64)
        self.actions = np.zeros((0, 0), dtype=np.float64)

    def __len__(self) -> int:
        return len(self.times)

    def clear(self) -> None:
        self.times = np.zeros(0, dtype=np.int64)
        self.actions = np.zeros((0, 0), dtype=np.float64)

    def push(self, chunk: TimedChunk) -> None:
        times = chunk.times.astype(np.int64)
        if len(self.times) and self.actions.shape[1] != chunk.actions.shape[1]:
            raise ValueError(
                f"action chunk of dimension {chunk.actions.shape[1]}, queue holds {self.actions.shape[1]}"
            )
        keep = self.times < times[0]
        self.times = np.concatenate([self.times[keep], times])
        self.actions = np.concatenate([self.actions[keep].reshape(-1, chunk.actions.shape[1]), chunk.actions])

    def action_at(self, t: int, tolerance: int) -> np.ndarray | None:
        """The point planned for time ``t`` (within ``tolerance`` ns), or None (lock-step execution)."""
        if not len(self.times):
            return None
        i = int(np.argmin(np.abs(self.times - t)))
        return self.actions[i].copy() if abs(int(self.times[i]) - t) <= tolerance else None

    def latest_before(self, t: int) -> np.ndarray | None:
        """The last point due at or before ``t`` (real-time execution holds it), or None."""
        i = int(np.searchsorted(self.times, t, side="right")) - 1
        return self.actions[i].copy() if i >= 0 else None

    def drop_before(self, t: int) -> None:
        """Forget points due before ``t`` except the latest of them (still the held target)."""
        i = int(np.searchsorted(self.times, t, side="right")) - 1
        if i > 0:
            self.times, self.actions = self.times[i:], self.actions[i:]
