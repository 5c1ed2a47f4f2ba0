"""What teleop_record.launch.py records and where (ROS-free, so it is tested here)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from class_core.config import from_dict, load_config
from class_core.deploy.topics import TOPICS

# ARCHITECTURE.md's topic table less the policy's output: everything a dataset and its episode
# boundaries need
RECORD_TOPICS: dict[str, str] = {t: ty for t, ty in TOPICS.items() if t != "/class/policy/action_chunk"}


@dataclass
class RecordingConfig:
    data_root: str = "data/bags"
    prefix: str = "demo"
    storage: Literal["sqlite3", "mcap"] = "sqlite3"
    native_image: bool = True  # also record the 1280x720 stream (large)


def bag_dir(cfg: RecordingConfig, now: _dt.datetime | None = None) -> Path:
    """<data_root>/<YYYY-MM-DD>/<prefix>_<HHMMSS>: dated, never an existing folder (ros2 bag
    record refuses to write into one)."""
    now = now or _dt.datetime.now()
    day = Path(cfg.data_root).expanduser() / now.strftime("%Y-%m-%d")
    base = day / f"{cfg.prefix}_{now.strftime('%H%M%S')}"
    out, k = base, 1
    while out.exists():
        out = base.with_name(f"{base.name}_{k}")
        k += 1
    return out


def record_command(cfg: RecordingConfig, out: Path) -> list[str]:
    topics = [t for t in RECORD_TOPICS if cfg.native_image or t != "/camera/camera/color/image_raw"]
    return ["ros2", "bag", "record", "-s", cfg.storage, "-o", str(out), *topics]


def load_robot_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """config/robot.yaml -> the resolved mapping, every section validated by its dataclass."""
    from class_core.hardware.arm import ArmConfig
    from class_core.hardware.camera import CameraConfig
    from class_core.hardware.gripper import GripperConfig
    from class_core.hardware.teleop import TeleopConfig

    cfg = load_config(path, overrides)
    out: dict[str, Any] = {}
    for key, cls in (
        ("camera", CameraConfig),
        ("arm", ArmConfig),
        ("gripper", GripperConfig),
        ("teleop", TeleopConfig),
        ("recording", RecordingConfig),
    ):
        try:
            out[key] = from_dict(cls, cfg.get(key), where=key)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
    return out
