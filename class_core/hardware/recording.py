"""What teleop_record.launch.py records and where, and with what (ROS-free, so it is tested here).

One bag per session under ``<data_root>/<date>/<prefix>_<time>``, written by ``ros2 bag record``
where rosbag2 is installed, else by ``class_ros.recorder_node`` (``class_core.hardware.bag_recorder``),
which records the same topics into the same kind of bag.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from class_core.config import from_dict, load_config
from class_core.topics import TOPICS

# ARCHITECTURE.md's topic table less the policy's output: everything a dataset and its episode
# boundaries need
RECORD_TOPICS: dict[str, str] = {t: ty for t, ty in TOPICS.items() if t != "/class/policy/action_chunk"}
NATIVE_IMAGE_TOPIC = "/camera/camera/color/image_raw"


@dataclass
class RecordingConfig:
    data_root: str = "data/bags"
    prefix: str = "demo"
    storage: Literal["sqlite3", "mcap"] = "sqlite3"
    native_image: bool = True  # also record the 1280x720 stream (large)

    def __post_init__(self) -> None:
        if self.storage not in ("sqlite3", "mcap"):
            raise ValueError(f"recording.storage must be sqlite3 or mcap, got {self.storage!r}")


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


def record_topics(cfg: RecordingConfig) -> dict[str, str]:
    """topic -> message type of what a recording holds (the native stream only with native_image)."""
    return {t: ty for t, ty in RECORD_TOPICS.items() if cfg.native_image or t != NATIVE_IMAGE_TOPIC}


def record_command(cfg: RecordingConfig, out: Path) -> list[str]:
    """``ros2 bag record`` of ``record_topics`` into ``out`` (where rosbag2 is installed)."""
    return ["ros2", "bag", "record", "-s", cfg.storage, "-o", str(out), *record_topics(cfg)]


def rosbag2_available() -> bool:
    """Whether ``ros2 bag record`` works here: the ros2bag verb and rosbag2_py are installed (an
    apt or Docker ROS has them; the pip layer of ../shared/ros2 has neither)."""
    import importlib.util
    from importlib.metadata import entry_points

    try:
        verbs = {e.name for e in entry_points(group="ros2cli.command")}
    except Exception:  # a broken distribution's metadata
        verbs = set()
    return "bag" in verbs and importlib.util.find_spec("rosbag2_py") is not None


def choose_recorder(choice: str) -> str:
    """``recorder`` launch argument -> ``ros2bag`` or ``node`` (auto: ros2bag where installed)."""
    if choice not in ("auto", "ros2bag", "node"):
        raise ValueError(f"recorder must be auto, ros2bag or node, got {choice!r}")
    if choice == "auto":
        return "ros2bag" if rosbag2_available() else "node"
    return choice


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
