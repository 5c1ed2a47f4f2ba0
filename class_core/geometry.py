"""Rotation conversions, batched over leading axes.

Conventions: quaternions are (x, y, z, w) as in ROS and scipy; rot6d is the first two columns
of the rotation matrix, concatenated column by column (r00, r10, r20, r01, r11, r21), the
representation of Zhou et al. that Diffusion Policy and CLASS use for end-effector actions.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-9


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) xyzw quaternions (need not be unit) -> (..., 3, 3) rotation matrices."""
    q = np.asarray(q, dtype=np.float64)
    if q.shape[-1] != 4:
        raise ValueError(f"quaternion must have 4 components (x, y, z, w), got shape {q.shape}")
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(norm < _EPS):
        raise ValueError("zero-norm quaternion")
    x, y, z, w = np.moveaxis(q / norm, -1, 0)
    m = np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        axis=-1,
    )  # fmt: skip
    return m.reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 4) unit xyzw quaternions with w >= 0."""
    m = np.asarray(m, dtype=np.float64)
    if m.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrix must be (..., 3, 3), got shape {m.shape}")
    flat = m.reshape(-1, 3, 3)
    out = np.empty((flat.shape[0], 4))
    for n, r in enumerate(flat):
        # Shepperd's method: pivot on the largest of trace and diagonal for stability.
        t = np.trace(r)
        diag = np.diag(r)
        k = int(np.argmax(np.r_[t, diag]))
        if k == 0:
            s = 2.0 * np.sqrt(max(1.0 + t, 0.0))
            out[n] = [(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, 0.25 * s]
        else:
            i = k - 1
            j, l = (i + 1) % 3, (i + 2) % 3
            s = 2.0 * np.sqrt(max(1.0 + r[i, i] - r[j, j] - r[l, l], 0.0))
            v = np.empty(4)
            v[i] = 0.25 * s
            v[j] = (r[j, i] + r[i, j]) / s
            v[l] = (r[l, i] + r[i, l]) / s
            v[3] = (r[l, j] - r[j, l]) / s
            out[n] = v
    out /= np.linalg.norm(out, axis=-1, keepdims=True)
    out[out[:, 3] < 0] *= -1
    return out.reshape(m.shape[:-2] + (4,))


def matrix_to_rot6d(m: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 6): first column then second column."""
    m = np.asarray(m)
    return np.concatenate([m[..., :, 0], m[..., :, 1]], axis=-1)


def rot6d_to_matrix(r6: np.ndarray) -> np.ndarray:
    """(..., 6) -> (..., 3, 3) by Gram-Schmidt; any 6-vector with independent halves is valid."""
    r6 = np.asarray(r6, dtype=np.float64)
    if r6.shape[-1] != 6:
        raise ValueError(f"rot6d must have 6 components, got shape {r6.shape}")
    a, b = r6[..., :3], r6[..., 3:]
    na = np.linalg.norm(a, axis=-1, keepdims=True)
    if np.any(na < _EPS):
        raise ValueError("degenerate rot6d: first column is zero")
    c1 = a / na
    b = b - np.sum(c1 * b, axis=-1, keepdims=True) * c1
    nb = np.linalg.norm(b, axis=-1, keepdims=True)
    if np.any(nb < _EPS):
        raise ValueError("degenerate rot6d: the two columns are parallel")
    c2 = b / nb
    c3 = np.cross(c1, c2)
    return np.stack([c1, c2, c3], axis=-1)


def orthonormalize_rot6d(r6: np.ndarray) -> np.ndarray:
    """Project (..., 6) onto valid rotations (e.g. after averaging retrieved chunks)."""
    return matrix_to_rot6d(rot6d_to_matrix(r6)).astype(np.asarray(r6).dtype, copy=False)


def quat_to_rot6d(q: np.ndarray) -> np.ndarray:
    return matrix_to_rot6d(quat_to_matrix(q))


def rot6d_to_quat(r6: np.ndarray) -> np.ndarray:
    return matrix_to_quat(rot6d_to_matrix(r6))


def axis_angle_to_matrix(v: np.ndarray) -> np.ndarray:
    """(..., 3) rotation vectors (axis * angle) -> (..., 3, 3), Rodrigues' formula."""
    v = np.asarray(v, dtype=np.float64)
    theta = np.linalg.norm(v, axis=-1, keepdims=True)
    k = np.where(theta > _EPS, v / np.maximum(theta, _EPS), 0.0)
    kx, ky, kz = np.moveaxis(k, -1, 0)
    zero = np.zeros_like(kx)
    kmat = np.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], axis=-1).reshape(v.shape[:-1] + (3, 3))
    s = np.sin(theta)[..., None]
    c = np.cos(theta)[..., None]
    eye = np.broadcast_to(np.eye(3), kmat.shape)
    return eye + s * kmat + (1 - c) * (kmat @ kmat)


def matrix_to_axis_angle(m: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 3) rotation vectors, through quaternions for stability near pi."""
    q = matrix_to_quat(m)
    xyz, w = q[..., :3], q[..., 3]
    s = np.linalg.norm(xyz, axis=-1)
    angle = 2 * np.arctan2(s, w)
    scale = np.where(s > _EPS, angle / np.maximum(s, _EPS), 2.0)
    return xyz * scale[..., None]


def rotation_angle_between(m1: np.ndarray, m2: np.ndarray) -> np.ndarray:
    """Geodesic angle (radians) between rotation matrices, batched."""
    r = np.swapaxes(m1, -1, -2) @ m2
    cos = (np.trace(r, axis1=-2, axis2=-1) - 1) / 2
    return np.arccos(np.clip(cos, -1.0, 1.0))
