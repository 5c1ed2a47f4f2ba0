"""Synthetic drivers for the recorder tests: every recorded topic's k-th message, built through
``class_core.ros_msgs`` (so the same code makes rclpy and ``rosbags`` messages), and what
class-import-bags must make of them.

A message's content depends only on its index k on its topic, so the expected episode arrays
follow from what was published when (the latest message with header stamp <= each tick),
whatever the timing of a loaded machine was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from class_core import ros_msgs as rm
from class_core.geometry import matrix_to_quat, matrix_to_rot6d

NATIVE, CROP = "/camera/camera/color/image_raw", "/class/obs/image"
EE, GRIPPER, JOINTS = "/class/robot/ee_pose", "/class/gripper/state", "/joint_states"
TARGET, JOY, EVENT = "/class/teleop/target", "/class/teleop/joy", "/class/episode/event"
STREAMS = (NATIVE, CROP, JOINTS, EE, GRIPPER, TARGET, JOY)  # every recorded topic but the events
CONTROL_HZ = 10.0
IMAGE_SIZE = 16


def _rotz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def ee(k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.array([0.4 + 0.001 * k, -0.1 + 0.002 * k, 0.3]), _rotz(0.01 * k)


def target(k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.array([0.41 + 0.001 * k, -0.1 + 0.002 * k, 0.31]), _rotz(0.01 * k + 0.1)


def trigger(k: int) -> float:
    return (k % 40) / 40.0


def width(k: int) -> float:
    return 0.05 + 0.0001 * k


def pixel(k: int) -> int:
    return (7 * k) % 256


def image(k: int, h: int, w: int) -> np.ndarray:
    img = np.full((h, w, 3), pixel(k), np.uint8)
    img[..., 1] = 255 - pixel(k)
    return img


def message(f: rm.MsgFactory, topic: str, k: int, stamp: int) -> Any:
    """The k-th message on ``topic`` with header stamp ``stamp`` (ns)."""
    if topic == NATIVE:
        return rm.numpy_to_image(f, image(k, 24, 32), stamp, "rgb8", "camera_color_optical_frame")
    if topic == CROP:
        return rm.numpy_to_image(f, image(k, 8, 8), stamp, "rgb8", "camera_color_optical_frame")
    if topic == JOINTS:
        return rm.numpy_to_joint_state(
            f, 0.01 * k * np.arange(1, 8), [f"fr3_joint{i}" for i in range(1, 8)], stamp
        )
    if topic == EE:
        p, r = ee(k)
        return rm.numpy_to_pose_stamped(f, p, matrix_to_quat(r), stamp, "fr3_link0")
    if topic == GRIPPER:
        return rm.numpy_to_joint_state(f, [width(k)], ["gripper_width"], stamp)
    if topic == TARGET:
        p, r = target(k)
        return rm.numpy_to_pose_stamped(f, p, matrix_to_quat(r), stamp, "fr3_link0")
    if topic == JOY:
        return rm.numpy_to_joy(f, np.array([trigger(k), 1.0]), np.array([1, 0, 0, 0]), stamp)
    raise KeyError(topic)


def write_import_config(path: Path, **over: Any) -> Path:
    """A task config whose ``rosbag_import`` section reads these streams (defaults otherwise)."""
    section = {"control_hz": CONTROL_HZ, "image_size": IMAGE_SIZE, "max_gap": 1.0, "max_lead": 2.0, **over}
    path.write_text(yaml.safe_dump({"rosbag_import": section}))
    return path


def expected_episode(published: Mapping[str, Sequence[int]], ticks: np.ndarray) -> dict[str, np.ndarray]:
    """``published``: topic -> header stamps of its messages in publishing order (k = position).
    The arrays class-import-bags makes at ``ticks``: each key from the latest message <= tick."""

    def k_at(topic: str, t: int) -> int:
        stamps = np.asarray(published[topic], dtype=np.int64)
        k = int(np.searchsorted(stamps, t, side="right")) - 1
        assert k >= 0, f"no {topic} message at or before tick {t}"
        return k

    out: dict[str, list[Any]] = {"image": [], "ee_pos": [], "ee_rot6d": [], "gripper": [], "action": []}
    for t in ticks:
        out["image"].append(image(k_at(NATIVE, t), IMAGE_SIZE, IMAGE_SIZE))
        p, r = ee(k_at(EE, t))
        out["ee_pos"].append(p)
        out["ee_rot6d"].append(matrix_to_rot6d(r))
        out["gripper"].append([width(k_at(GRIPPER, t))])
        tp, tr = target(k_at(TARGET, t))
        out["action"].append(np.r_[tp, matrix_to_rot6d(tr), trigger(k_at(JOY, t))])
    return {k: np.asarray(v) for k, v in out.items()}


def ticks_of(episode: Mapping[str, Any], control_hz: float = CONTROL_HZ) -> np.ndarray:
    """The tick times of an imported episode from the store's ``episodes`` attribute."""
    dt = round(1e9 / control_hz)
    t0 = int(episode["start_ns"]) + round(float(episode["lead_s"]) * 1e9)
    return t0 + dt * np.arange(int(episode["steps"]), dtype=np.int64)


def check_episode(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray], where: str) -> None:
    assert sorted(got) == sorted(want), f"{where}: keys {sorted(got)}"
    np.testing.assert_array_equal(got["image"], want["image"], err_msg=f"{where}: image")
    for key in ("ee_pos", "ee_rot6d", "gripper", "action"):
        np.testing.assert_allclose(got[key], want[key], atol=1e-5, err_msg=f"{where}: {key}")
