"""ROS message <-> numpy conversion by field names, without importing rclpy.

The same functions serve rclpy messages and the pure-Python message classes of the ``rosbags``
package: reading only touches attributes (``msg.header.stamp.sec``, ``msg.data`` ...), and
building goes through a ``MsgFactory`` that knows how one backend names its classes and which
container its sequence fields want (rosbags: numpy arrays, rclpy: ``array.array``).

Times are integer nanoseconds everywhere (no float rounding of stamps).
"""

from __future__ import annotations

import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from class_core.geometry import matrix_to_quat, matrix_to_rot6d, quat_to_matrix, rot6d_to_matrix

NS = 1_000_000_000


class MessageError(ValueError):
    """A message does not hold what the conversion expects; the text names the field."""


# --- backends -------------------------------------------------------------------------------

_TYPECODES = {"uint8": "B", "int8": "b", "int32": "i", "uint32": "I", "float32": "f", "float64": "d"}


def _normalise_type(typename: str) -> str:
    """'sensor_msgs/Image' or 'sensor_msgs/msg/Image' -> 'sensor_msgs/msg/Image'."""
    parts = typename.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise MessageError(f"invalid message type name {typename!r} (expected 'pkg/msg/Name')")
    return "/".join(parts)


class MsgFactory:
    """Builds messages of one backend by type name.

    ``get_class('sensor_msgs/msg/Image')`` returns the message class; ``sequence(values, dtype)``
    converts a 1-D numpy array into what that backend's primitive sequence fields accept.
    """

    def __init__(
        self,
        get_class: Callable[[str], Any],
        sequence: Callable[[np.ndarray, str], Any],
        name: str,
        byte_as_bytes: bool = False,
    ):
        self._get_class = get_class
        self._byte_as_bytes = byte_as_bytes
        self._sequence = sequence
        self.name = name
        self._cache: dict[str, Any] = {}

    def cls(self, typename: str) -> Any:
        typename = _normalise_type(typename)
        if typename not in self._cache:
            try:
                self._cache[typename] = self._get_class(typename)
            except (KeyError, ImportError, AttributeError) as e:
                raise MessageError(f"{self.name}: unknown message type {typename!r} ({e})") from None
        return self._cache[typename]

    def new(self, typename: str, **fields: Any) -> Any:
        return self.cls(typename)(**fields)

    def seq(self, values: Any, dtype: str) -> Any:
        arr = np.ascontiguousarray(np.asarray(values, dtype=dtype).reshape(-1))
        return self._sequence(arr, dtype)

    def byte(self, value: int) -> Any:
        """A value for a ``byte`` field: rclpy wants a length-1 bytes object, rosbags an int."""
        return bytes([value]) if self._byte_as_bytes else int(value)

    def time(self, ns: int) -> Any:
        ns = int(ns)
        if ns < 0:
            raise MessageError(f"negative time stamp {ns} ns")
        return self.new("builtin_interfaces/msg/Time", sec=ns // NS, nanosec=ns % NS)

    def duration(self, ns: int) -> Any:
        ns = int(ns)
        return self.new("builtin_interfaces/msg/Duration", sec=ns // NS, nanosec=ns % NS)

    def header(self, stamp_ns: int, frame_id: str = "") -> Any:
        return self.new("std_msgs/msg/Header", stamp=self.time(stamp_ns), frame_id=frame_id)


class RosbagsFactory(MsgFactory):
    """Message classes of the ``rosbags`` type store (Humble or Jazzy), with CDR (de)serialisation."""

    def __init__(self, distro: str = "jazzy"):
        from rosbags.typesys import Stores, get_typestore

        stores = {"humble": Stores.ROS2_HUMBLE, "jazzy": Stores.ROS2_JAZZY}
        if distro not in stores:
            raise MessageError(
                f"unknown ROS distro {distro!r} for the rosbags type store; use one of {sorted(stores)}"
            )
        self.distro = distro
        self.typestore = get_typestore(stores[distro])
        super().__init__(lambda t: self.typestore.types[t], lambda a, _d: a.copy(), f"rosbags[{distro}]")

    def serialize(self, msg: Any) -> bytes:
        return bytes(self.typestore.serialize_cdr(msg, msg.__msgtype__))

    def deserialize(self, data: bytes | memoryview, typename: str) -> Any:
        return self.typestore.deserialize_cdr(bytes(data), _normalise_type(typename))

    def roundtrip(self, msg: Any) -> Any:
        """Serialise to CDR and back, as a message crossing DDS would."""
        return self.deserialize(self.serialize(msg), msg.__msgtype__)


def array_sequence(values: np.ndarray, dtype: str) -> Any:
    """rclpy's primitive sequences take ``array.array`` with the matching type code."""
    return array.array(_TYPECODES[dtype], values.tobytes())


# --- times ----------------------------------------------------------------------------------


def stamp_ns(msg: Any) -> int:
    """Header stamp of a stamped message (or a Time/Duration message itself) in nanoseconds."""
    t = msg.header.stamp if hasattr(msg, "header") else msg
    try:
        return int(t.sec) * NS + int(t.nanosec)
    except AttributeError:
        raise MessageError(f"{type(msg).__name__} has no header stamp (sec, nanosec)") from None


duration_ns = stamp_ns


# --- images ---------------------------------------------------------------------------------

_CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1}


def image_to_numpy(msg: Any) -> np.ndarray:
    """sensor_msgs/Image -> uint8 (H, W, 3) in the message's channel order, or (H, W) for mono8.

    Row padding (``step`` > width * channels) is removed; wrong encodings and sizes are rejected.
    """
    enc = str(msg.encoding)
    if enc not in _CHANNELS:
        raise MessageError(f"Image.encoding {enc!r} is not supported (use one of {sorted(_CHANNELS)})")
    c = _CHANNELS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise MessageError(f"Image has an empty size height={h} width={w}")
    if step < w * c:
        raise MessageError(f"Image.step {step} is smaller than width * channels = {w} * {c} ({enc})")
    raw = msg.data
    if isinstance(raw, np.ndarray):
        data = raw.reshape(-1).view(np.uint8)
    elif isinstance(raw, (bytes, bytearray, memoryview, array.array)):
        data = np.frombuffer(raw, dtype=np.uint8)
    else:  # a plain list of ints
        data = np.asarray(raw, dtype=np.uint8)
    if data.size != step * h:
        raise MessageError(f"Image.data has {data.size} bytes, expected step * height = {step} * {h}")
    img = data.reshape(h, step)[:, : w * c]
    return (img.reshape(h, w, c) if c > 1 else img.reshape(h, w)).copy()


def image_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8 or mono8) -> uint8 (H, W, 3) RGB."""
    img = image_to_numpy(msg)
    if msg.encoding == "bgr8":
        return np.ascontiguousarray(img[..., ::-1])
    if msg.encoding == "mono8":
        return np.repeat(img[..., None], 3, axis=-1)
    return img


def numpy_to_image(
    f: MsgFactory, img: np.ndarray, stamp: int, encoding: str = "rgb8", frame_id: str = ""
) -> Any:
    """uint8 (H, W, 3) (rgb8/bgr8, already in that channel order) or (H, W) (mono8) -> Image."""
    img = np.asarray(img)
    if encoding not in _CHANNELS:
        raise MessageError(f"encoding {encoding!r} is not supported (use one of {sorted(_CHANNELS)})")
    if img.dtype != np.uint8:
        raise MessageError(f"image for {encoding} must be uint8, got {img.dtype}")
    c = _CHANNELS[encoding]
    ok = (
        img.ndim == 3 and img.shape[2] == c
        if c > 1
        else img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1)
    )
    if not ok or img.shape[0] == 0 or img.shape[1] == 0:
        want = "(H, W, 3)" if c > 1 else "(H, W)"
        raise MessageError(f"image for {encoding} must be {want}, got shape {img.shape}")
    h, w = img.shape[:2]
    return f.new(
        "sensor_msgs/msg/Image",
        header=f.header(stamp, frame_id),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=w * c,
        data=f.seq(img, "uint8"),
    )


# --- joint states ---------------------------------------------------------------------------


def joint_state_to_numpy(msg: Any, names: Sequence[str] | None = None) -> np.ndarray:
    """JointState positions as float64 (n,), optionally picked (and ordered) by joint name."""
    pos = np.asarray(msg.position, dtype=np.float64)
    have = list(msg.name)
    if have and len(have) != len(pos):
        raise MessageError(f"JointState has {len(have)} names but {len(pos)} positions")
    if names is None:
        return pos.copy()
    if not have:
        if len(pos) != len(names):
            raise MessageError(f"JointState has no names and {len(pos)} positions, expected {len(names)}")
        return pos.copy()
    index = {n: i for i, n in enumerate(have)}
    missing = [n for n in names if n not in index]
    if missing:
        raise MessageError(f"JointState lacks joint(s) {missing}; it has {have}")
    return pos[[index[n] for n in names]]


def numpy_to_joint_state(
    f: MsgFactory, position: np.ndarray, names: Sequence[str], stamp: int, frame_id: str = ""
) -> Any:
    position = np.asarray(position, dtype=np.float64).reshape(-1)
    if len(names) != len(position):
        raise MessageError(f"JointState: {len(names)} names for {len(position)} positions")
    empty = np.zeros(0)
    return f.new(
        "sensor_msgs/msg/JointState",
        header=f.header(stamp, frame_id),
        name=list(names),
        position=f.seq(position, "float64"),
        velocity=f.seq(empty, "float64"),
        effort=f.seq(empty, "float64"),
    )


# --- poses ----------------------------------------------------------------------------------


def pose_to_numpy(msg: Any) -> tuple[np.ndarray, np.ndarray]:
    """PoseStamped (or Pose) -> position (3,), unit quaternion xyzw (4,)."""
    pose = msg.pose if hasattr(msg, "pose") else msg
    p, o = pose.position, pose.orientation
    pos = np.array([p.x, p.y, p.z], dtype=np.float64)
    q = np.array([o.x, o.y, o.z, o.w], dtype=np.float64)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or abs(n - 1.0) > 1e-3:
        raise MessageError(f"Pose.orientation is not a unit quaternion (norm {n:.6g})")
    return pos, q / n


def pose_to_pos_rot6d(msg: Any) -> np.ndarray:
    """PoseStamped -> float64 (9,): position then rot6d (first two rotation-matrix columns)."""
    pos, q = pose_to_numpy(msg)
    return np.concatenate([pos, matrix_to_rot6d(quat_to_matrix(q))])


def numpy_to_pose_stamped(
    f: MsgFactory, position: np.ndarray, quat_xyzw: np.ndarray, stamp: int, frame_id: str = ""
) -> Any:
    position = np.asarray(position, dtype=np.float64).reshape(-1)
    q = np.asarray(quat_xyzw, dtype=np.float64).reshape(-1)
    if position.shape != (3,) or q.shape != (4,):
        raise MessageError(
            f"PoseStamped needs position (3,) and quaternion (4,), got {position.shape} {q.shape}"
        )
    q = q / np.linalg.norm(q)
    pose = f.new(
        "geometry_msgs/msg/Pose",
        position=f.new(
            "geometry_msgs/msg/Point", x=float(position[0]), y=float(position[1]), z=float(position[2])
        ),
        orientation=f.new(
            "geometry_msgs/msg/Quaternion", x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])
        ),
    )
    return f.new("geometry_msgs/msg/PoseStamped", header=f.header(stamp, frame_id), pose=pose)


def pos_rot6d_to_pose_stamped(f: MsgFactory, pos_rot6d: np.ndarray, stamp: int, frame_id: str = "") -> Any:
    v = np.asarray(pos_rot6d, dtype=np.float64).reshape(-1)
    if v.shape != (9,):
        raise MessageError(f"pos + rot6d must have 9 values, got {v.shape}")
    return numpy_to_pose_stamped(f, v[:3], matrix_to_quat(rot6d_to_matrix(v[3:])), stamp, frame_id)


# --- action chunks --------------------------------------------------------------------------


def chunk_to_joint_trajectory(
    f: MsgFactory, chunk: np.ndarray, names: Sequence[str], stamp: int, dt_ns: int
) -> Any:
    """Action chunk (T, D) -> JointTrajectory: names = action dims, point k at ``k * dt``."""
    chunk = np.asarray(chunk, dtype=np.float64)
    if chunk.ndim != 2 or chunk.shape[0] == 0:
        raise MessageError(f"action chunk must be (T, D) with T > 0, got shape {chunk.shape}")
    if len(names) != chunk.shape[1]:
        raise MessageError(f"{len(names)} action names for an action chunk of dimension {chunk.shape[1]}")
    if not np.isfinite(chunk).all():
        raise MessageError("action chunk has a non-finite value")
    if dt_ns <= 0:
        raise MessageError(f"dt must be positive, got {dt_ns} ns")
    empty = np.zeros(0)
    points = [
        f.new(
            "trajectory_msgs/msg/JointTrajectoryPoint",
            positions=f.seq(row, "float64"),
            velocities=f.seq(empty, "float64"),
            accelerations=f.seq(empty, "float64"),
            effort=f.seq(empty, "float64"),
            time_from_start=f.duration(k * dt_ns),
        )
        for k, row in enumerate(chunk)
    ]
    return f.new(
        "trajectory_msgs/msg/JointTrajectory", header=f.header(stamp), joint_names=list(names), points=points
    )


@dataclass(frozen=True)
class TimedChunk:
    """An action chunk with absolute times: point k is meant for ``stamp + offsets[k]``."""

    stamp: int
    offsets: np.ndarray  # int64 (T,) ns, strictly increasing
    actions: np.ndarray  # float64 (T, D)
    names: tuple[str, ...]

    @property
    def times(self) -> np.ndarray:
        return self.stamp + self.offsets


def joint_trajectory_to_chunk(msg: Any, names: Sequence[str] | None = None) -> TimedChunk:
    """JointTrajectory -> TimedChunk; with ``names`` the columns are picked (and ordered) by name."""
    have = tuple(msg.joint_names)
    pts = list(msg.points)
    if not pts:
        raise MessageError("JointTrajectory has no points")
    rows = []
    for k, p in enumerate(pts):
        row = np.asarray(p.positions, dtype=np.float64)
        if row.shape != (len(have),):
            raise MessageError(
                f"JointTrajectory.points[{k}] has {row.size} positions, {len(have)} joint_names"
            )
        rows.append(row)
    actions = np.stack(rows)
    if not np.isfinite(actions).all():
        raise MessageError("JointTrajectory has a non-finite position")
    offsets = np.array([duration_ns(p.time_from_start) for p in pts], dtype=np.int64)
    if len(offsets) > 1 and np.any(np.diff(offsets) <= 0):
        k = int(np.nonzero(np.diff(offsets) <= 0)[0][0]) + 1
        raise MessageError(f"JointTrajectory.points[{k}].time_from_start is not after points[{k - 1}]")
    if names is not None and tuple(names) != have:
        index = {n: i for i, n in enumerate(have)}
        missing = [n for n in names if n not in index]
        if missing:
            raise MessageError(f"JointTrajectory lacks joint_names {missing}; it has {list(have)}")
        actions = actions[:, [index[n] for n in names]]
        have = tuple(names)
    return TimedChunk(stamp_ns(msg), offsets, actions, have)


# --- small messages -------------------------------------------------------------------------


def string_msg(f: MsgFactory, text: str) -> Any:
    return f.new("std_msgs/msg/String", data=str(text))


def joy_to_numpy(msg: Any) -> tuple[np.ndarray, np.ndarray]:
    """Joy -> axes float32 (n,), buttons int32 (m,)."""
    return np.asarray(msg.axes, dtype=np.float32).copy(), np.asarray(msg.buttons, dtype=np.int32).copy()


def numpy_to_joy(f: MsgFactory, axes: np.ndarray, buttons: np.ndarray, stamp: int, frame_id: str = "") -> Any:
    return f.new(
        "sensor_msgs/msg/Joy",
        header=f.header(stamp, frame_id),
        axes=f.seq(axes, "float32"),
        buttons=f.seq(buttons, "int32"),
    )


def clock_msg(f: MsgFactory, ns: int) -> Any:
    return f.new("rosgraph_msgs/msg/Clock", clock=f.time(ns))


DIAG_LEVELS = {"ok": 0, "warn": 1, "error": 2, "stale": 3}


def diagnostic_array(
    f: MsgFactory,
    stamp: int,
    name: str,
    level: str,
    message: str,
    values: Mapping[str, Any],
    hardware_id: str = "",
) -> Any:
    """A DiagnosticArray with one status; ``level`` is ok | warn | error | stale."""
    if level not in DIAG_LEVELS:
        raise MessageError(f"diagnostic level {level!r} not in {sorted(DIAG_LEVELS)}")
    kvs = [f.new("diagnostic_msgs/msg/KeyValue", key=str(k), value=str(v)) for k, v in values.items()]
    status = f.new(
        "diagnostic_msgs/msg/DiagnosticStatus",
        level=f.byte(DIAG_LEVELS[level]),
        name=name,
        message=message,
        hardware_id=hardware_id,
        values=kvs,
    )
    return f.new("diagnostic_msgs/msg/DiagnosticArray", header=f.header(stamp), status=[status])


def diagnostic_values(msg: Any) -> dict[str, str]:
    """Key/values of all statuses of a DiagnosticArray, merged (for tests and tools)."""
    return {kv.key: kv.value for st in msg.status for kv in st.values}
