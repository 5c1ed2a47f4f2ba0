"""Gripper control from the action's gripper value: WSG-50 (UMI gripper) or Franka Hand.

The action's gripper value g is in [0, 1]: 0 = open, 1 = closed (the VR trigger). It maps
linearly to a finger width between ``open_width_m`` and ``closed_width_m``; the observation
(`/class/gripper/state`) is the measured width in metres.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from class_core.hardware.wsg50 import Cmd, Status, WSG50Client

log = logging.getLogger(__name__)


@dataclass
class GripperConfig:
    kind: Literal["wsg50", "franka_hand", "none"] = "wsg50"
    host: str = "192.168.1.20"
    port: int = 1000
    open_width_m: float = 0.11
    closed_width_m: float = 0.0
    speed_m_s: float = 0.2
    force_n: float = 40.0
    rate_hz: float = 30.0
    deadband_m: float = 0.002  # smaller target changes are not sent
    home_on_start: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.closed_width_m < self.open_width_m:
            raise ValueError(
                f"gripper.closed_width_m ({self.closed_width_m}) must be >= 0 and < gripper.open_width_m "
                f"({self.open_width_m})"
            )
        for name in ("speed_m_s", "force_n", "rate_hz"):
            if getattr(self, name) <= 0:
                raise ValueError(f"gripper.{name} must be positive, got {getattr(self, name)}")
        if self.deadband_m < 0:
            raise ValueError(f"gripper.deadband_m must be >= 0, got {self.deadband_m}")


def action_to_width(g: float, cfg: GripperConfig) -> float:
    """Gripper action in [0, 1] (0 open, 1 closed; clipped) -> finger width in metres."""
    if not np.isfinite(g):
        raise ValueError(f"gripper action is not finite: {g}")
    g = float(np.clip(g, 0.0, 1.0))
    return cfg.open_width_m - g * (cfg.open_width_m - cfg.closed_width_m)


def width_to_action(width_m: float, cfg: GripperConfig) -> float:
    g = (cfg.open_width_m - width_m) / (cfg.open_width_m - cfg.closed_width_m)
    return float(np.clip(g, 0.0, 1.0))


class GripperController:
    """Runs a control loop at ``rate_hz``: reads the width, sends a new target when it changed
    by more than the deadband. ``set_action`` is thread-safe and never blocks on the device."""

    def __init__(self, cfg: GripperConfig, clock: Callable[[], float] = time.time):
        self.cfg = cfg
        self._clock = clock
        self._target: float | None = None
        self._sent: float | None = None
        self.width_m = float("nan")
        self.stamp_s = 0.0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._running = False
        self.ticks = 0
        self.error: BaseException | None = None

    # device hooks
    def _open(self) -> None:
        raise NotImplementedError

    def _read_width(self) -> float:
        raise NotImplementedError

    def _send_target(self, width_m: float) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def set_action(self, g: float) -> float:
        w = action_to_width(g, self.cfg)
        with self._lock:
            self._target = w
        return w

    def set_width(self, width_m: float) -> None:
        with self._lock:
            self._target = float(np.clip(width_m, self.cfg.closed_width_m, self.cfg.open_width_m))

    def tick(self) -> None:
        """One control step (the loop calls it; tests may call it directly)."""
        self.width_m = self._read_width()
        self.stamp_s = self._clock()
        with self._lock:
            target = self._target
        if target is not None and (self._sent is None or abs(target - self._sent) > self.cfg.deadband_m):
            self._send_target(target)
            self._sent = target
        self.ticks += 1

    def _loop(self) -> None:
        period = 1.0 / self.cfg.rate_hz
        nxt = time.monotonic()
        while self._running:
            try:
                self.tick()
            except Exception as e:  # keep the loop alive; the node reports it
                self.error = e
                log.error("gripper control step failed: %s", e)
            nxt += period
            time.sleep(max(0.0, nxt - time.monotonic()))
            if time.monotonic() - nxt > 5 * period:
                nxt = time.monotonic()  # fell behind: do not burst

    def start(self) -> None:
        self._open()
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="gripper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._close()


class WSG50Gripper(GripperController):
    """WSG-50 over TCP. A new target aborts a running motion (STOP, then MOVE) instead of
    queueing behind it, so the fingers follow the teleoperator at the loop rate."""

    def __init__(self, cfg: GripperConfig, clock: Callable[[], float] = time.time):
        super().__init__(cfg, clock)
        self.client = WSG50Client(cfg.host, cfg.port)
        self._moving = False

    def _open(self) -> None:
        self.client.connect()
        self.client.ack_fault()
        self.client.set_force_limit(self.cfg.force_n)
        if self.cfg.home_on_start:
            self.client.homing()

    def _update_moving(self) -> None:
        for m in self.client.drain(Cmd.MOVE):
            if m.status == Status.E_CMD_PENDING:
                self._moving = True
            else:
                self._moving = False
                if m.status not in (Status.E_SUCCESS, Status.E_CMD_ABORTED):
                    log.warning("WSG-50 move ended with %s", m.status.name)

    def _read_width(self) -> float:
        self._update_moving()
        return self.client.get_width() * 1e-3

    def _send_target(self, width_m: float) -> None:
        self._update_moving()
        if self._moving:
            self.client.stop()
            self.client.drain(Cmd.MOVE)  # the aborted move's final status
        self.client.send(Cmd.MOVE, struct.pack("<Bff", 0, width_m * 1e3, self.cfg.speed_m_s * 1e3))
        self._moving = True

    def _close(self) -> None:
        self.client.close()


class FrankaHandGripper(GripperController):
    """Franka Hand through franky's Gripper (asynchronous moves, the newest replaces the last)."""

    def __init__(self, cfg: GripperConfig, clock: Callable[[], float] = time.time):
        super().__init__(cfg, clock)
        self.gripper: Any = None
        self._future: Any = None

    def _open(self) -> None:
        import franky

        self.gripper = franky.Gripper(self.cfg.host)
        if self.cfg.home_on_start:
            self.gripper.homing()

    def _read_width(self) -> float:
        return float(self.gripper.width)

    def _send_target(self, width_m: float) -> None:
        if self._future is not None and not self._future.wait(0.0):
            self.gripper.stop()
        self._future = self.gripper.move_async(float(width_m), float(self.cfg.speed_m_s))

    def _close(self) -> None:
        # franky's move_async keeps using the Gripper from a C++ thread: dropping the object while
        # a move runs frees it under that thread (a use-after-free that crashed the process).
        # Stop the move and wait for it before letting go.
        if self.gripper is not None and self._future is not None:
            try:
                if not self._future.wait(0.0):
                    self.gripper.stop()
                self._future.wait(10.0)
            except Exception:  # a failed stop/move must not keep the driver from shutting down
                pass
        self._future = None
        self.gripper = None


def make_gripper(cfg: GripperConfig, clock: Callable[[], float] = time.time) -> GripperController | None:
    if cfg.kind == "wsg50":
        return WSG50Gripper(cfg, clock)
    if cfg.kind == "franka_hand":
        return FrankaHandGripper(cfg, clock)
    return None
