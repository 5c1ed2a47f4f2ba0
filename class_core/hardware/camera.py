"""RealSense colour camera: capture, RGB conversion, 256x256 crop and device-to-host clock mapping.

Capture goes through the sensor API (query device by serial -> colour sensor -> open profile ->
frame queue), the same path realsense-ros uses; it works unchanged for a real D435 and for a
pyrealsense2 ``software_device``, which is how the tests feed synthetic frames.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class CameraConfig:
    serial: str = ""  # empty: the first device with a colour sensor
    width: int = 1280
    height: int = 720
    fps: int = 30
    crop_size: int = 256
    # pyrealsense2: this process owns the camera; external: realsense2_camera publishes the
    # native image and only the crop runs here (camera_node subscribes to it).
    driver: Literal["pyrealsense2", "external"] = "pyrealsense2"
    timeout_ms: int = 1000
    clock_window_s: float = 5.0  # sliding window of the offset estimator

    def __post_init__(self) -> None:
        for name in ("width", "height", "fps", "crop_size", "timeout_ms"):
            if getattr(self, name) <= 0:
                raise ValueError(f"camera.{name} must be positive, got {getattr(self, name)}")
        if self.clock_window_s <= 0:
            raise ValueError(f"camera.clock_window_s must be positive, got {self.clock_window_s}")


def resize_center_crop(rgb: np.ndarray, size: int = 256) -> np.ndarray:
    """Resize so the short side is ``size`` (cv2.INTER_AREA), then crop the centre ``size x size``."""
    import cv2

    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (H, W, 3), got {a.dtype} {a.shape}")
    if size <= 0:
        raise ValueError(f"crop size must be positive, got {size}")
    h, w = a.shape[:2]
    scale = size / min(h, w)
    # round, then force the short side to exactly `size` (float rounding on odd sizes)
    nh, nw = (size, max(size, round(w * scale))) if h <= w else (max(size, round(h * scale)), size)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(np.ascontiguousarray(a), (nw, nh), interpolation=interp)
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(resized[top : top + size, left : left + size])


class ClockOffsetEstimator:
    """Maps a device clock (seconds) to host time.

    Each frame gives a pair (device time d, host arrival time h) with h = d + offset + latency,
    latency >= 0 and random. The smallest h - d over a sliding window is the offset plus the
    smallest latency seen, a tight bound that follows slow drift as the window slides (the method
    of realsense-ros' global timestamps). A jump larger than ``reset_s`` (device reboot, clock
    reset) restarts the window.
    """

    def __init__(self, window_s: float = 5.0, reset_s: float = 1.0):
        if window_s <= 0 or reset_s <= 0:
            raise ValueError("window_s and reset_s must be positive")
        self.window_s = window_s
        self.reset_s = reset_s
        self._pairs: collections.deque[tuple[float, float]] = collections.deque()
        self._min: collections.deque[tuple[float, float]] = collections.deque()  # monotone (h, h-d)

    @property
    def offset(self) -> float | None:
        return self._min[0][1] if self._min else None

    def update(self, device_s: float, host_s: float) -> float:
        """Add one observation; returns the device time mapped to host time."""
        diff = host_s - device_s
        if self._min and abs(diff - self._min[0][1]) > self.reset_s:
            log.warning("device clock jumped by %.3f s: restarting offset estimation", diff - self._min[0][1])
            self._min.clear()
        # monotone deque: the window minimum in O(1) amortised
        while self._min and self._min[-1][1] >= diff:
            self._min.pop()
        self._min.append((host_s, diff))
        while self._min and self._min[0][0] < host_s - self.window_s:
            self._min.popleft()
        return device_s + self._min[0][1]

    def to_host(self, device_s: float) -> float:
        if not self._min:
            raise RuntimeError("ClockOffsetEstimator has no observation yet")
        return device_s + self._min[0][1]


@dataclass
class Frame:
    rgb: np.ndarray  # uint8 (H, W, 3), native resolution
    stamp_s: float  # host time of exposure, from the device clock
    device_s: float
    host_arrival_s: float
    frame_number: int


class RealSenseCamera:
    """One RealSense colour stream at ``width x height @ fps``, frames as RGB with host stamps."""

    def __init__(
        self,
        cfg: CameraConfig,
        device: Any = None,
        clock: Callable[[], float] = time.time,
    ):
        self.cfg = cfg
        self._device = device
        self._clock = clock
        self._sensor: Any = None
        self._queue: Any = None
        self.profile: Any = None  # the opened stream profile (intrinsics: CameraInfo)
        self.clock = ClockOffsetEstimator(cfg.clock_window_s)
        self.dropped = 0
        self._last_number: int | None = None

    def _find_device(self, rs: Any) -> Any:
        if self._device is not None:
            return self._device
        devices = list(rs.context().query_devices())
        if not devices:
            raise RuntimeError("no RealSense device connected (check USB and udev rules)")
        serials = [d.get_info(rs.camera_info.serial_number) for d in devices]
        if not self.cfg.serial:
            return devices[0]
        if self.cfg.serial not in serials:
            raise RuntimeError(f"camera.serial {self.cfg.serial!r} not found; connected: {serials}")
        return devices[serials.index(self.cfg.serial)]

    def start(self) -> None:
        import pyrealsense2 as rs

        dev = self._find_device(rs)
        c = self.cfg
        offered = []
        for sensor in dev.query_sensors():
            for p in sensor.get_stream_profiles():
                if p.stream_type() != rs.stream.color or not p.is_video_stream_profile():
                    continue
                v = p.as_video_stream_profile()
                offered.append(f"{v.width()}x{v.height()}@{p.fps()} {p.format()}")
                if (v.width(), v.height(), p.fps()) == (c.width, c.height, c.fps) and p.format() in (
                    rs.format.rgb8,
                    rs.format.bgr8,
                ):
                    self._sensor, profile = sensor, p
                    if p.format() == rs.format.rgb8:
                        break
            if self._sensor is not None:
                break
        if self._sensor is None:
            raise RuntimeError(
                f"camera offers no colour stream {c.width}x{c.height}@{c.fps} rgb8/bgr8; offered: {offered}"
            )
        self._queue = rs.frame_queue(2)  # small: old frames are worthless
        self._sensor.open(profile)
        self._sensor.start(self._queue)
        self.profile = profile
        self._rs = rs
        log.info("camera started: %s", profile)

    def read(self) -> Frame:
        """Next frame (blocks up to ``timeout_ms``); RGB, host-time stamped."""
        if self._queue is None:
            raise RuntimeError("camera not started: call start() first")
        rs = self._rs
        f = self._queue.wait_for_frame(self.cfg.timeout_ms)
        host = self._clock()
        a = np.asanyarray(f.get_data())
        fmt = f.get_profile().format()
        rgb = a[..., ::-1].copy() if fmt == rs.format.bgr8 else np.array(a, copy=True)
        number = int(f.get_frame_number())
        if self._last_number is not None and number > self._last_number + 1:
            self.dropped += number - self._last_number - 1
        self._last_number = number
        device = float(f.get_timestamp()) * 1e-3
        domain = f.get_frame_timestamp_domain()
        if domain in (rs.timestamp_domain.system_time, rs.timestamp_domain.global_time):
            stamp = device  # already host-based
        else:
            stamp = self.clock.update(device, host)
        return Frame(rgb=rgb, stamp_s=stamp, device_s=device, host_arrival_s=host, frame_number=number)

    def stop(self) -> None:
        if self._sensor is not None:
            try:
                self._sensor.stop()
                self._sensor.close()
            finally:
                self._sensor = None
                self._queue = None

    def __enter__(self) -> RealSenseCamera:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
