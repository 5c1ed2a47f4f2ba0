"""The topic table and the mapping between canonical observation names and topic fields.

One table serves the policy node (messages -> observation dict), the simulation bridge
(observation dict -> messages) and the rosbag importer (recorded messages -> episode arrays),
so the three cannot disagree on where ``agent_pos`` or ``ee_rot6d`` travels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from class_core import ros_msgs as rm
from class_core.geometry import matrix_to_quat, rot6d_to_matrix

# topic -> message type (ARCHITECTURE.md, "Topics")
TOPICS: dict[str, str] = {
    "/camera/camera/color/image_raw": "sensor_msgs/msg/Image",
    "/class/obs/image": "sensor_msgs/msg/Image",
    "/joint_states": "sensor_msgs/msg/JointState",
    "/class/robot/ee_pose": "geometry_msgs/msg/PoseStamped",
    "/class/gripper/state": "sensor_msgs/msg/JointState",
    "/class/teleop/target": "geometry_msgs/msg/PoseStamped",
    "/class/teleop/joy": "sensor_msgs/msg/Joy",
    "/class/policy/action_chunk": "trajectory_msgs/msg/JointTrajectory",
    "/class/episode/event": "std_msgs/msg/String",
}
ACTION_CHUNK_TOPIC = "/class/policy/action_chunk"
EVENT_TOPIC = "/class/episode/event"
DIAGNOSTICS_TOPIC = "/diagnostics"
CLOCK_TOPIC = "/clock"
EVENTS = ("start", "stop", "success", "discard")

# kind -> message type it reads
KINDS: dict[str, str] = {
    "image": "sensor_msgs/msg/Image",
    "pose_position": "geometry_msgs/msg/PoseStamped",
    "pose_xy": "geometry_msgs/msg/PoseStamped",
    "pose_rot6d": "geometry_msgs/msg/PoseStamped",
    "pose_pos_rot6d": "geometry_msgs/msg/PoseStamped",
    "joint_position": "sensor_msgs/msg/JointState",
    "joy_axes": "sensor_msgs/msg/Joy",
    "joy_buttons": "sensor_msgs/msg/Joy",
}
_POSE_WIDTH = {"pose_position": 3, "pose_xy": 2, "pose_rot6d": 6, "pose_pos_rot6d": 9}


class SourceError(ValueError):
    """A topic mapping is malformed; the message names the key."""


@dataclass(frozen=True)
class Source:
    """Where (part of) a canonical value travels: a topic and which field of its message.

    ``names`` picks JointState joints by name; ``index`` picks Joy axes/buttons by position.
    """

    topic: str
    kind: str
    names: tuple[str, ...] = ()
    index: tuple[int, ...] = ()

    @property
    def msgtype(self) -> str:
        return KINDS[self.kind]

    def extract(self, msg: Any) -> np.ndarray:
        """The value this source holds in ``msg``: uint8 (H, W, 3) RGB or float32 (k,)."""
        k = self.kind
        if k == "image":
            return rm.image_to_rgb(msg)
        if k in _POSE_WIDTH:
            v = rm.pose_to_pos_rot6d(msg)
            out = {"pose_position": v[:3], "pose_xy": v[:2], "pose_rot6d": v[3:], "pose_pos_rot6d": v}[k]
            return out.astype(np.float32)
        if k == "joint_position":
            return rm.joint_state_to_numpy(msg, self.names or None).astype(np.float32)
        axes, buttons = rm.joy_to_numpy(msg)
        vals = axes if k == "joy_axes" else buttons
        if self.index:
            bad = [i for i in self.index if not -len(vals) <= i < len(vals)]
            if bad:
                raise rm.MessageError(f"Joy has {len(vals)} {k[4:]}, index {bad} out of range ({self.topic})")
            vals = vals[list(self.index)]
        return vals.astype(np.float32)


ObsSources = dict[str, tuple[Source, ...]]

# Canonical name -> sources (concatenated). The real robot and the simulation bridge agree on these.
DEFAULT_OBS_SOURCES: dict[str, Any] = {
    "image": {"topic": "/class/obs/image", "kind": "image"},
    "wrist_image": {"topic": "/class/obs/wrist_image", "kind": "image"},
    # Push-T's agent is the planar analogue of the end effector
    "agent_pos": {"topic": "/class/robot/ee_pose", "kind": "pose_xy"},
    "ee_pos": {"topic": "/class/robot/ee_pose", "kind": "pose_position"},
    "ee_rot6d": {"topic": "/class/robot/ee_pose", "kind": "pose_rot6d"},
    "gripper": {"topic": "/class/gripper/state", "kind": "joint_position"},
    "joint_pos": {"topic": "/joint_states", "kind": "joint_position"},
}


def _parse_one(key: str, spec: Any) -> Source:
    if isinstance(spec, Source):
        return spec
    if not isinstance(spec, Mapping):
        raise SourceError(f"source of {key!r} must be a mapping with 'topic' and 'kind', got {spec!r}")
    unknown = set(spec) - {"topic", "kind", "names", "index"}
    if unknown:
        raise SourceError(
            f"source of {key!r}: unknown field(s) {sorted(unknown)} (allowed: topic, kind, names, index)"
        )
    if "topic" not in spec or "kind" not in spec:
        raise SourceError(f"source of {key!r} needs 'topic' and 'kind', got {dict(spec)}")
    topic, kind = str(spec["topic"]), str(spec["kind"])
    if not topic.startswith("/"):
        raise SourceError(f"source of {key!r}: topic {topic!r} must be absolute (start with '/')")
    if kind not in KINDS:
        raise SourceError(f"source of {key!r}: unknown kind {kind!r}; use one of {sorted(KINDS)}")
    names = tuple(str(n) for n in spec.get("names") or ())
    index = tuple(int(i) for i in spec.get("index") or ())
    if names and kind != "joint_position":
        raise SourceError(f"source of {key!r}: 'names' only applies to kind joint_position")
    if index and not kind.startswith("joy_"):
        raise SourceError(f"source of {key!r}: 'index' only applies to kinds joy_axes/joy_buttons")
    if topic in TOPICS and TOPICS[topic] != KINDS[kind]:
        raise SourceError(
            f"source of {key!r}: topic {topic} carries {TOPICS[topic]}, kind {kind} reads {KINDS[kind]}"
        )
    return Source(topic, kind, names, index)


def parse_sources(mapping: Mapping[str, Any], keys: Sequence[str] | None = None) -> ObsSources:
    """``{name: source or [sources]}`` -> ObsSources, restricted to ``keys`` (each must be present)."""
    if keys is not None:
        missing = [k for k in keys if k not in mapping]
        if missing:
            raise SourceError(f"no topic mapping for observation key(s) {missing}; known: {sorted(mapping)}")
        mapping = {k: mapping[k] for k in keys}
    out: ObsSources = {}
    for key, spec in mapping.items():
        parts = spec if isinstance(spec, (list, tuple)) else [spec]
        if not parts:
            raise SourceError(f"source of {key!r} is an empty list")
        out[key] = tuple(_parse_one(key, p) for p in parts)
        if any(p.kind == "image" for p in out[key]) and len(out[key]) > 1:
            raise SourceError(f"source of {key!r}: an image cannot be concatenated with other sources")
    return out


def sources_topics(sources: ObsSources) -> dict[str, str]:
    """topic -> message type for every topic the sources read (a topic read twice must agree)."""
    out: dict[str, str] = {}
    for key, parts in sources.items():
        for s in parts:
            if out.setdefault(s.topic, s.msgtype) != s.msgtype:
                raise SourceError(
                    f"topic {s.topic} is read as {out[s.topic]} and as {s.msgtype} (key {key!r})"
                )
    return out


def extract(key: str, parts: Sequence[Source], msgs: Mapping[str, Any]) -> np.ndarray:
    """Value of ``key`` from the latest message of each topic (``msgs``: topic -> message)."""
    vals = []
    for s in parts:
        if s.topic not in msgs:
            raise SourceError(f"no message on {s.topic} for {key!r}")
        try:
            vals.append(s.extract(msgs[s.topic]))
        except rm.MessageError as e:
            raise rm.MessageError(f"{key!r} from {s.topic}: {e}") from None
    return vals[0] if len(vals) == 1 else np.concatenate(vals).astype(np.float32)


def build_messages(
    f: rm.MsgFactory, sources: ObsSources, obs: Mapping[str, np.ndarray], stamp: int, frame_id: str = ""
) -> list[tuple[str, Any]]:
    """The inverse of ``extract`` for publishing an observation (simulation bridge).

    Pose parts sharing a topic are merged into one PoseStamped (missing position = 0, missing
    rotation = identity); JointState joints are named by ``names`` or ``<key>_<i>``.
    """
    poses: dict[str, dict[str, np.ndarray]] = {}
    joints: dict[str, tuple[list[str], list[float]]] = {}
    out: list[tuple[str, Any]] = []
    for key, parts in sources.items():
        if key not in obs:
            raise SourceError(f"observation has no key {key!r} (it has {sorted(obs)})")
        value = np.asarray(obs[key])
        if parts[0].kind == "image":
            if value.dtype != np.uint8 or value.ndim != 3 or value.shape[2] != 3:
                raise SourceError(
                    f"observation {key!r} must be uint8 (H, W, 3), got {value.dtype}{value.shape}"
                )
            out.append((parts[0].topic, rm.numpy_to_image(f, value, stamp, "rgb8", frame_id)))
            continue
        flat = value.astype(np.float64).reshape(-1)
        pos = 0
        for s in parts:
            if s.kind in _POSE_WIDTH:
                width = _POSE_WIDTH[s.kind]
                chunk = flat[pos : pos + width]
                slot = poses.setdefault(s.topic, {})
                if s.kind in ("pose_position", "pose_pos_rot6d"):
                    slot["position"] = chunk[:3]
                elif s.kind == "pose_xy":
                    slot["position"] = np.r_[chunk, 0.0]
                if s.kind in ("pose_rot6d", "pose_pos_rot6d"):
                    slot["rot6d"] = chunk[-6:]
            elif s.kind == "joint_position":
                width = len(s.names) if s.names else len(flat) - pos
                chunk = flat[pos : pos + width]
                names = list(s.names) if s.names else [f"{key}_{i}" for i in range(width)]
                jn, jp = joints.setdefault(s.topic, ([], []))
                jn.extend(names)
                jp.extend(chunk.tolist())
            else:
                raise SourceError(f"observation {key!r}: kind {s.kind} cannot be published")
            if len(chunk) != width:
                raise SourceError(f"observation {key!r} has {len(flat)} values, its sources need more")
            pos += width
        if pos != len(flat):
            raise SourceError(f"observation {key!r} has {len(flat)} values, its sources take {pos}")
    for topic, slot in poses.items():
        position = slot.get("position", np.zeros(3))
        quat = matrix_to_quat(rot6d_to_matrix(slot["rot6d"])) if "rot6d" in slot else np.array([0, 0, 0, 1.0])
        out.append((topic, rm.numpy_to_pose_stamped(f, position, quat, stamp, frame_id)))
    for topic, (names, values) in joints.items():
        out.append((topic, rm.numpy_to_joint_state(f, np.asarray(values), names, stamp, frame_id)))
    return out


def resize_center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, 3) -> (size, size, 3): short side resized to ``size`` (antialiased), centre crop.

    The preprocessing of ``/class/obs/image`` (ARCHITECTURE.md) and of imported camera frames.
    """
    import torch
    import torch.nn.functional as F

    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3:
        raise ValueError(f"resize_center_crop expects uint8 (H, W, C), got {img.dtype}{img.shape}")
    h, w = img.shape[:2]
    if (h, w) == (size, size):
        return img.copy()
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    if (nh, nw) != (h, w):
        t = F.interpolate(t, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    top, left = (nh - size) // 2, (nw - size) // 2
    t = t[0, :, top : top + size, left : left + size]
    # numpy rounding: torch's round() is oddly slow on small tensors with busy cores
    out = np.rint(t.permute(1, 2, 0).numpy())
    return np.clip(out, 0, 255).astype(np.uint8)
