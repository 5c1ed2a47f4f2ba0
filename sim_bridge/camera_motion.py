"""Camera-motion math for the heterogeneous-view variants (CLASS paper, Appendix E).

- `OrbitCamera`: a camera on a sphere around a fixed look-at target (Dyn-Cam: orbits a little every
  step; Rand-Cam: a random static pose per episode). Pure numpy; the robosuite tasks copy its pose
  into a MuJoCo camera.
- `RotatingView`: per-episode in-plane image rotation for the Aloha top view.

Conventions: world z is up; a MuJoCo camera looks along its local -z axis with +y up in the image,
so its frame matrix (columns = camera axes in world) is `look_at_matrix(eye, target)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_UP = np.array([0.0, 0.0, 1.0])


def spherical_to_cartesian(radius: float, azimuth: float, polar: float) -> np.ndarray:
    """Offset from the target: azimuth about world z from +x, polar angle from world +z (pi/2 = level)."""
    s = np.sin(polar)
    return radius * np.array([s * np.cos(azimuth), s * np.sin(azimuth), np.cos(polar)])


def look_at_matrix(eye: np.ndarray, target: np.ndarray, up: np.ndarray = _UP) -> np.ndarray:
    """(3, 3) frame of a MuJoCo camera at `eye` looking at `target`: columns x (right), y (up), z (back)."""
    eye = np.asarray(eye, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    z = eye - target
    nz = np.linalg.norm(z)
    if nz < 1e-9:
        raise ValueError("look_at: eye and target coincide")
    z /= nz
    x = np.cross(up, z)
    nx = np.linalg.norm(x)
    if nx < 1e-6:  # looking straight up or down: any horizontal right vector will do
        x = np.cross(np.array([0.0, 1.0, 0.0]), z)
        nx = np.linalg.norm(x)
    x /= nx
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=-1)


def rotate_about_axis(v: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation of vector v about the unit `axis` by `angle` radians."""
    k = axis / np.linalg.norm(axis)
    c, s = np.cos(angle), np.sin(angle)
    return v * c + np.cross(k, v) * s + k * np.dot(k, v) * (1.0 - c)


def tangent_direction(offset: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Unit direction in the tangent plane of the sphere at `offset` (camera position - target).

    The paper samples a direction from x in [-1, 1], y in [-0.01, 0.3] and projects it onto the
    tangent plane. We read x as the horizontal (azimuthal) component and y as the world-up
    component, so the camera mostly sweeps sideways and drifts slightly upwards.
    """
    p = offset / np.linalg.norm(offset)
    horiz = np.cross(_UP, p)
    if np.linalg.norm(horiz) < 1e-6:
        horiz = np.array([1.0, 0.0, 0.0])
    horiz /= np.linalg.norm(horiz)
    d = dx * horiz + dy * _UP
    d = d - np.dot(d, p) * p  # project onto the tangent plane
    n = np.linalg.norm(d)
    if n < 1e-9:  # degenerate draw (dx = 0 and dy = 0 or up at the pole): move sideways
        return horiz
    return np.asarray(d / n)


@dataclass(frozen=True)
class OrbitConfig:
    """Sampling ranges of Appendix E.1. `min_height`: world z below which a camera pose is rejected
    (initial pose resampled; an orbit that would go lower reverses), None to disable."""

    radius: float = 1.0
    azimuth_range: tuple[float, float] = (0.0, 2.0 * np.pi)
    polar_range: tuple[float, float] = (np.pi / 3.0, 2.0 * np.pi / 3.0)
    dir_x_range: tuple[float, float] = (-1.0, 1.0)
    dir_y_range: tuple[float, float] = (-0.01, 0.3)
    arc_step: float = 1.5e-4
    min_height: float | None = None

    def __post_init__(self) -> None:
        if not self.radius > 0:
            raise ValueError(f"OrbitConfig.radius must be > 0, got {self.radius}")
        for name in ("azimuth_range", "polar_range", "dir_x_range", "dir_y_range"):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ValueError(f"OrbitConfig.{name} must be (low, high) with low <= high, got {(lo, hi)}")
        lo, hi = self.polar_range
        if lo < 0 or hi > np.pi:
            raise ValueError(f"OrbitConfig.polar_range must lie in [0, pi], got {(lo, hi)}")
        if self.arc_step < 0:
            raise ValueError(f"OrbitConfig.arc_step must be >= 0, got {self.arc_step}")


class OrbitCamera:
    """A camera on a sphere of `cfg.radius` around `target`, always looking at it.

    `reset(rng)` samples the initial pose (and the orbit direction); `step()` advances the orbit by
    `cfg.arc_step` radians (arc length on the unit sphere times radius) when `moving` is True.
    """

    def __init__(self, target: np.ndarray, cfg: OrbitConfig | None = None, moving: bool = True) -> None:
        self.target = np.asarray(target, dtype=np.float64).reshape(3)
        self.cfg = cfg or OrbitConfig()
        self.moving = moving
        self.offset = spherical_to_cartesian(self.cfg.radius, 0.0, np.pi / 2)
        self.axis = np.array([0.0, 0.0, 1.0])
        self.azimuth = 0.0
        self.polar = np.pi / 2

    def _too_low(self, offset: np.ndarray) -> bool:
        return self.cfg.min_height is not None and self.target[2] + offset[2] < self.cfg.min_height

    def reset(self, rng: np.random.Generator, max_tries: int = 1000) -> None:
        c = self.cfg
        for _ in range(max_tries):
            az = float(rng.uniform(*c.azimuth_range))
            pol = float(rng.uniform(*c.polar_range))
            offset = spherical_to_cartesian(c.radius, az, pol)
            if not self._too_low(offset):
                break
        else:
            raise ValueError(
                f"OrbitCamera: no camera pose above min_height={c.min_height} in {max_tries} draws; "
                f"target z={self.target[2]:.3f}, radius={c.radius}, polar_range={c.polar_range}"
            )
        self.azimuth, self.polar, self.offset = az, pol, offset
        d = tangent_direction(offset, float(rng.uniform(*c.dir_x_range)), float(rng.uniform(*c.dir_y_range)))
        # rotating the position about p x d moves it along d on a great circle
        self.axis = np.cross(offset / np.linalg.norm(offset), d)

    def step(self, n: int = 1) -> None:
        if not self.moving or self.cfg.arc_step == 0.0:
            return
        nxt = rotate_about_axis(self.offset, self.axis, self.cfg.arc_step * n)
        if self._too_low(nxt):
            self.axis = -self.axis
            nxt = rotate_about_axis(self.offset, self.axis, self.cfg.arc_step * n)
        self.offset = nxt

    @property
    def position(self) -> np.ndarray:
        return self.target + self.offset

    @property
    def matrix(self) -> np.ndarray:
        return look_at_matrix(self.position, self.target)

    def quat_wxyz(self) -> np.ndarray:
        """Orientation as MuJoCo's (w, x, y, z) quaternion."""
        from class_core.geometry import matrix_to_quat

        x, y, z, w = matrix_to_quat(self.matrix)
        return np.array([w, x, y, z])


def rotate_image(img: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotate an HWC uint8 image counter-clockwise by `angle_deg` about its centre; corners become black."""
    import cv2

    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(angle_deg), 1.0)
    out = cv2.warpAffine(
        img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    return np.asarray(out, dtype=img.dtype)


class RotatingView:
    """Appendix E.1 (Aloha): initial angle U[0, 360) degrees, then +-`rate_deg` every step."""

    def __init__(self, rate_deg: float = 0.5, moving: bool = True) -> None:
        if rate_deg < 0:
            raise ValueError(f"RotatingView.rate_deg must be >= 0, got {rate_deg}")
        self.rate_deg = rate_deg
        self.moving = moving
        self.angle = 0.0
        self.direction = 1.0

    def reset(self, rng: np.random.Generator) -> None:
        self.angle = float(rng.uniform(0.0, 360.0))
        self.direction = 1.0 if rng.random() < 0.5 else -1.0

    def step(self) -> None:
        if self.moving:
            self.angle = (self.angle + self.direction * self.rate_deg) % 360.0

    def apply(self, img: np.ndarray) -> np.ndarray:
        return rotate_image(img, self.angle)
