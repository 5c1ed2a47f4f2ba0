"""ROS-free core of the simulation bridge's teleoperation mode: a simulated arm that an operator drives.

It executes the operator's commands as ``arm_node`` does in teleop mode: the latest
``/class/teleop/target`` (PoseStamped, the end-effector pose to reach) and the gripper command
(``/class/teleop/joy`` ``axes[0]``), held until the next one, stepped at the control rate in real
time (stamps are the caller's clock; no ``/clock``). It publishes what the robot publishes:

- the camera as realsense-ros names it: Image on ``/camera/camera/color/image_raw`` and CameraInfo
  on ``/camera/camera/color/camera_info`` (frame ``camera_color_optical_frame``; intrinsics of a
  pinhole camera with the MuJoCo camera's vertical field of view ``fovy``, no distortion), and its
  crop on ``/class/obs/image`` (short side resized to ``crop_size`` and centre crop, as the camera
  node does; ``crop_size: 0`` keeps the rendered size);
- ``/joint_states`` (the Panda's seven joints), ``/class/robot/ee_pose`` and
  ``/class/gripper/state`` (finger width in metres, joint ``gripper_width`` as the gripper node
  names it), built by ``class_core.topics.build_messages`` from the task's observation, so a policy
  node and the rosbag importer read them exactly as they read the policy-mode bridge's.

Poses are in the simulator's world frame (``frame_id``, default ``sim`` as the policy-mode bridge):
the frame of the task's actions and observations, so data recorded here equals what ``class-collect``
stores and what ``class-eval`` and the policy-mode bridge execute.

Episodes follow ``/class/episode/event``: ``start`` resets the task with the next seed of the
sequence ``seed, seed + 1, ...``; ``stop``, ``success`` and ``discard`` end the episode. The
arm holds still between episodes (the simulator is not stepped; the unchanged scene is published
with fresh stamps, as a robot's sensors stream). Before an episode's first target, the arm holds its
pose at the reset with the gripper open. The task's step limit ends nothing on its own (a robot
does not judge episodes): the arm holds still there until the operator ends the episode.

Safety, as the arm applies it (``class_core.hardware.arm``, limits from the config's ``arm.limits``,
in the world frame here): every target goes through ``SafetyFilter.check_chunk`` on arrival -
clipped into the workspace box or refused (the previous target stays) by
``out_of_workspace`` - and, with ``motion_limits`` (default), each control step's setpoint goes
through ``SafetyFilter.limit`` (speed, acceleration, braking envelope at the walls, angular speed).
The simulator never receives a position outside the box.

The gripper command (``GripperMapping``): with ``input: action`` (default) ``axes[0]`` is the task's
own gripper value (robosuite: -1 open .. +1 closed), passed through as ``arm_node`` passes it to the
arm, so recorded actions are the task's actions; with ``input: trigger`` it is a VR trigger in
[0, 1] (teleop_node's convention, for a person on the headset), mapped onto [open, closed].

For a scripted operator (``scripted_teleop_core``), which cannot look at the screen, the bridge also
publishes the simulator's privileged state on ``/class/sim/state`` (``publish_state``), one stamped
``sensor_msgs/JointState`` per tick with named values (``encode_state``): episode index, step,
running, success, truncated, grip-site pose, gripper width, object poses, table top. It is not in
the topic table, so recordings (``recording.record_topics``) leave it out.

Settings: ``load_sim_teleop_setup("config/lift.yaml")`` reads a task config's ``task``,
``arm.limits``, ``sim_teleop`` and ``scripted_teleop`` sections.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from class_core import ros_msgs as rm
from class_core.geometry import matrix_to_rot6d, quat_to_matrix, rot6d_to_matrix
from class_core.hardware.arm import ChunkRejected, SafetyFilter, SafetyLimits
from class_core.topics import (
    DEFAULT_OBS_SOURCES,
    DIAGNOSTICS_TOPIC,
    EVENT_TOPIC,
    EVENTS,
    ObsSources,
    build_messages,
    parse_sources,
    resize_center_crop,
    sources_topics,
)

if TYPE_CHECKING:
    from class_core.deploy.scripted_teleop_core import ScriptedTeleopConfig

NS = rm.NS
TARGET_TOPIC = "/class/teleop/target"
JOY_TOPIC = "/class/teleop/joy"
NATIVE_IMAGE_TOPIC = "/camera/camera/color/image_raw"
CAMERA_INFO_TOPIC = "/camera/camera/color/camera_info"
CROP_IMAGE_TOPIC = "/class/obs/image"
JOINT_STATES_TOPIC = "/joint_states"
STATE_TOPIC = "/class/sim/state"  # privileged simulator state, for scripted operators only
CAMERA_FRAME = "camera_color_optical_frame"
PANDA_JOINTS = [f"panda_joint{i}" for i in range(1, 8)]
ENDINGS = ("stop", "success", "discard")


# --- the gripper command --------------------------------------------------------------------


@dataclass
class GripperMapping:
    """What ``/class/teleop/joy`` ``axes[0]`` means; see the module docstring."""

    input: str = "action"  # action | trigger
    open: float = -1.0  # the task's gripper command that opens (robosuite: -1)
    closed: float = 1.0  # ... and closes (robosuite: +1)

    def validate(self) -> None:
        if self.input not in ("action", "trigger"):
            raise ValueError(f"gripper.input must be 'action' or 'trigger', got {self.input!r}")
        if not (math.isfinite(self.open) and math.isfinite(self.closed)) or self.open == self.closed:
            raise ValueError(f"gripper.open ({self.open}) and gripper.closed ({self.closed}) must differ")

    def to_task(self, axis: float) -> float:
        """``axes[0]`` -> the task's gripper command."""
        if self.input == "action":
            return float(axis)
        return self.open + float(np.clip(axis, 0.0, 1.0)) * (self.closed - self.open)

    def to_axis(self, command: float) -> float:
        """The task's gripper command -> ``axes[0]`` (the operator's side)."""
        if self.input == "action":
            return float(command)
        return float(np.clip((command - self.open) / (self.closed - self.open), 0.0, 1.0))


# --- the privileged state topic ---------------------------------------------------------------


def encode_state(
    f: rm.MsgFactory, values: Mapping[str, float | np.ndarray], stamp: int, frame_id: str = ""
) -> Any:
    """Named values -> JointState: a scalar under its key, an array flattened as ``key.0``, ``key.1`` ..."""
    names: list[str] = []
    vals: list[float] = []
    for key, v in values.items():
        a = np.asarray(v, dtype=np.float64)
        if a.ndim == 0:
            names.append(key)
            vals.append(float(a))
        else:
            flat = a.reshape(-1)
            names.extend(f"{key}.{i}" for i in range(len(flat)))
            vals.extend(flat.tolist())
    return rm.numpy_to_joint_state(f, np.asarray(vals), names, stamp, frame_id)


def decode_state(msg: Any) -> dict[str, np.ndarray]:
    """Inverse of ``encode_state``: scalars as 0-d float64 arrays, arrays as (n,)."""
    pos = rm.joint_state_to_numpy(msg)
    names = list(msg.name)
    if len(names) != len(pos):
        raise rm.MessageError(f"{STATE_TOPIC}: {len(names)} names for {len(pos)} values")
    out: dict[str, np.ndarray] = {}
    parts: dict[str, dict[int, float]] = {}
    for name, v in zip(names, pos, strict=True):
        key, _, index = name.rpartition(".")
        if key and index.isdigit():
            parts.setdefault(key, {})[int(index)] = float(v)
        else:
            out[name] = np.asarray(float(v))
    for key, items in parts.items():
        if sorted(items) != list(range(len(items))):
            raise rm.MessageError(f"{STATE_TOPIC}: {key!r} has indices {sorted(items)}, expected 0..n-1")
        out[key] = np.array([items[i] for i in range(len(items))])
    return out


# --- camera ----------------------------------------------------------------------------------


def camera_info_from_fovy(
    f: rm.MsgFactory, width: int, height: int, fovy_deg: float, stamp: int, frame_id: str
) -> Any:
    """CameraInfo of an ideal pinhole camera (square pixels, no distortion) with vertical field of
    view ``fovy_deg``, as MuJoCo renders it: fy = fx = (height / 2) / tan(fovy / 2), principal point
    at the image centre ((w - 1) / 2, (h - 1) / 2 in ROS pixel-centre coordinates). Fields as
    realsense-ros fills them (``plumb_bob``, R = identity, P = [K | 0])."""
    if not 0.0 < fovy_deg < 180.0:
        raise ValueError(f"fovy must be in (0, 180) degrees, got {fovy_deg}")
    fy = 0.5 * height / math.tan(math.radians(fovy_deg) / 2.0)
    fx, cx, cy = fy, (width - 1) / 2.0, (height - 1) / 2.0
    return f.new(
        "sensor_msgs/msg/CameraInfo",
        header=f.header(stamp, frame_id),
        height=int(height),
        width=int(width),
        distortion_model="plumb_bob",
        d=f.seq(np.zeros(5), "float64"),
        k=np.array([fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]),
        r=np.eye(3).reshape(9),
        p=np.array([fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]),
        binning_x=0,
        binning_y=0,
        roi=f.new(
            "sensor_msgs/msg/RegionOfInterest", x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        ),
    )


def _camera_fovy(task: Any) -> float:
    """Vertical field of view (degrees) of the task's observation camera (a MuJoCo camera)."""
    try:
        import mujoco

        cam = mujoco.mj_name2id(task.model, mujoco.mjtObj.mjOBJ_CAMERA, task.cfg.camera)
        return float(task.model.cam_fovy[cam])
    except (AttributeError, ImportError) as e:
        raise ValueError(
            f"task {getattr(task, 'name', task)!r} has no MuJoCo observation camera (model, cfg.camera): {e}"
        ) from None


def _joint_positions(task: Any) -> np.ndarray:
    """The arm's joint positions (robosuite: the robot's joint qpos)."""
    if not hasattr(task, "joint_positions"):
        raise ValueError(f"task {task.name!r} has no joint_positions(): not an arm task")
    return np.asarray(task.joint_positions(), dtype=np.float64)


# --- the bridge ------------------------------------------------------------------------------


@dataclass
class SimTeleopConfig:
    """The ``sim_teleop`` section of a task config (the workspace box is ``arm.limits``)."""

    seed: int = 0  # the i-th 'start' (from 0) resets the task with seed + i
    rate: float = 0.0  # Hz; 0 = the task's control_hz
    crop_size: int = 0  # /class/obs/image side; 0 = the rendered size
    frame_id: str = "sim"  # ee_pose's frame, the simulator's world; targets are read in it (their
    # frame_id is not checked, as arm_node does not check it)
    camera_frame: str = CAMERA_FRAME
    joint_names: list[str] = field(default_factory=lambda: list(PANDA_JOINTS))
    gripper_joint: str = "gripper_width"  # JointState name on /class/gripper/state
    gripper: GripperMapping = field(default_factory=GripperMapping)
    motion_limits: bool = True  # the arm's setpoint filter (speed, acceleration, braking, rotation)
    publish_state: bool = True  # /class/sim/state, for a scripted operator

    def validate(self) -> None:
        if self.seed < 0 or self.rate < 0 or self.crop_size < 0:
            raise ValueError("sim_teleop.seed, rate and crop_size must be >= 0")
        if not self.joint_names or not self.gripper_joint:
            raise ValueError("sim_teleop.joint_names and gripper_joint must not be empty")
        self.gripper.validate()


@dataclass
class TeleopEpisode:
    """One episode as the bridge saw it; ``outcome`` as the importer will label it."""

    seed: int
    start_ns: int
    steps: int = 0
    end_ns: int = 0
    outcome: str = ""  # "" (running) | stop | success | discard


@dataclass
class _Snapshot:
    """What the bridge publishes, computed once per reset / step and re-stamped per tick."""

    obs: dict[str, np.ndarray]
    crop: np.ndarray
    joints: np.ndarray
    success: bool
    physical: dict[str, np.ndarray]  # privileged state values that only change with the simulator


class SimTeleopCore:
    """See the module docstring. ``tick(now)`` at the control rate; ``on_message`` for the three
    subscriptions; both return ``(topic, message)`` pairs to publish."""

    def __init__(self, task: Any, factory: rm.MsgFactory, cfg: SimTeleopConfig, limits: SafetyLimits):
        cfg.validate()
        self.task, self.f, self.cfg = task, factory, cfg
        if int(task.action_dim) != 10 or not {"ee_pos", "ee_rot6d"} <= set(task.proprio_keys):
            raise ValueError(
                f"task {task.name!r}: teleoperation needs a 10-D end-effector pose action (pos + rot6d + "
                f"gripper) and ee_pos/ee_rot6d observations; it has action_dim {task.action_dim}, "
                f"observations {list(task.proprio_keys)}"
            )
        if "image" not in task.image_keys:
            raise ValueError(f"task {task.name!r} renders no 'image' (render=False?): the camera needs one")
        mapping = {**DEFAULT_OBS_SOURCES}
        mapping["gripper"] = {**DEFAULT_OBS_SOURCES["gripper"], "names": [cfg.gripper_joint]}
        self.sources: ObsSources = parse_sources(mapping, list(task.proprio_keys))
        rate = cfg.rate or float(task.control_hz)
        if rate <= 0:
            raise ValueError(f"task {task.name!r} has no control_hz; set sim_teleop.rate")
        self.dt = round(NS / rate)
        self.fovy = _camera_fovy(task)
        n_joints = len(_joint_positions(task))
        if len(cfg.joint_names) != n_joints:
            raise ValueError(
                f"sim_teleop.joint_names has {len(cfg.joint_names)} names, the arm {n_joints} joints"
            )
        missing = [a for a in ("ee_pose", "gripper_width", "object_state") if not hasattr(task, a)]
        if cfg.publish_state and missing:
            raise ValueError(
                f"task {task.name!r} lacks {missing}: cannot publish {STATE_TOPIC} (set publish_state: false)"
            )
        self.safety = SafetyFilter(limits)
        self.episodes: list[TeleopEpisode] = []
        self.episode = -1  # index of the current (or last) episode
        self.running = False
        self.episode_start = 0
        self.stats = {"targets": 0, "targets_refused": 0, "targets_ignored": 0, "bad_messages": 0, "steps": 0}
        self.last_error = ""
        self._fresh = False  # the next tick publishes the reset observation without stepping
        self._just_ended = False  # 'success'/'discard' right after 'stop' labels that episode
        self._snap: _Snapshot | None = None
        self._hold: tuple[np.ndarray, np.ndarray] = (np.zeros(3), np.eye(3))
        self._target: tuple[np.ndarray, np.ndarray] | None = None
        self._cmd: tuple[np.ndarray, np.ndarray] = (np.zeros(3), np.eye(3))
        self._grip = cfg.gripper.open

    # --- interface for the node -----------------------------------------------------------
    def publications(self) -> dict[str, str]:
        """topic -> message type the node must advertise."""
        out = {
            NATIVE_IMAGE_TOPIC: "sensor_msgs/msg/Image",
            CAMERA_INFO_TOPIC: "sensor_msgs/msg/CameraInfo",
            CROP_IMAGE_TOPIC: "sensor_msgs/msg/Image",
            JOINT_STATES_TOPIC: "sensor_msgs/msg/JointState",
            **sources_topics(self.sources),
            DIAGNOSTICS_TOPIC: "diagnostic_msgs/msg/DiagnosticArray",
        }
        if self.cfg.publish_state:
            out[STATE_TOPIC] = "sensor_msgs/msg/JointState"
        return out

    @staticmethod
    def subscriptions() -> dict[str, str]:
        return {
            TARGET_TOPIC: "geometry_msgs/msg/PoseStamped",
            JOY_TOPIC: "sensor_msgs/msg/Joy",
            EVENT_TOPIC: "std_msgs/msg/String",
        }

    def on_message(self, topic: str, msg: Any, now: int) -> list[tuple[str, Any]]:
        if topic == TARGET_TOPIC:
            self._on_target(msg)
        elif topic == JOY_TOPIC:
            self._on_joy(msg)
        elif topic == EVENT_TOPIC:
            self._on_event(str(msg.data).strip(), now)
        else:
            raise ValueError(f"sim teleop bridge does not read topic {topic}")
        return []

    def tick(self, now: int) -> list[tuple[str, Any]]:
        """Timer callback at the control rate: one step of a running episode (none on the tick
        that publishes its reset observation, none at the step limit), then the observation."""
        if self._snap is None:  # the scene before any episode, so that an operator sees the arm
            self._snap = self._snapshot(self.task.reset(self.cfg.seed))
            self._hold = self._measured_pose()
        if self.running and not self._fresh and self.task.steps < self.task.max_steps:
            self._step()
        self._fresh = False
        return self._messages(now)

    # --- commands --------------------------------------------------------------------------
    def _error(self, kind: str, text: str) -> None:
        self.stats[kind] += 1
        self.last_error = text

    def _on_target(self, msg: Any) -> None:
        try:
            pos, quat = rm.pose_to_numpy(msg)
            stamp = rm.stamp_ns(msg)
        except rm.MessageError as e:
            self._error("bad_messages", f"{TARGET_TOPIC}: {e}")
            return
        if not self.running or stamp < self.episode_start:
            self.stats["targets_ignored"] += 1  # between episodes, or meant for the previous one
            return
        rot = quat_to_matrix(quat)
        try:
            # the arm's own check of a single-step chunk: clipped into the box, or refused
            pos = self.safety.check_chunk(pos[None], rot[None])[0]
        except ChunkRejected as e:
            self._error("targets_refused", f"teleop target refused: {e}")
            return
        self._target = (pos, rot)
        self.stats["targets"] += 1

    def _on_joy(self, msg: Any) -> None:
        axes, _ = rm.joy_to_numpy(msg)
        if not len(axes) or not np.isfinite(axes[0]):
            self._error("bad_messages", f"{JOY_TOPIC}: no finite axes[0] (gripper command)")
            return
        self._grip = self.cfg.gripper.to_task(float(axes[0]))

    def _on_event(self, event: str, now: int) -> None:
        if event not in EVENTS:
            self._error("bad_messages", f"{EVENT_TOPIC}: unknown event {event!r}")
            return
        if event == "start":
            self._start(now)
            return
        if self.running:
            ep = self.episodes[-1]
            ep.outcome, ep.end_ns = event, now
            self.running = False
            self._target = None
            self._just_ended = event == "stop"
        elif self._just_ended and event != "stop":
            self.episodes[-1].outcome = event  # the operator ends an episode, then labels it
            self._just_ended = False

    def _start(self, now: int) -> None:
        if self.running:  # a 'start' while running: that episode is dropped, as the importer does
            self.episodes[-1].outcome, self.episodes[-1].end_ns = "discard", now
        self.episode += 1
        seed = self.cfg.seed + self.episode
        self._snap = self._snapshot(self.task.reset(seed))
        self._hold = self._measured_pose()
        self._cmd = self._hold
        self._target = None
        self._grip = self.cfg.gripper.open
        self.safety.reset_motion()
        self.running, self._fresh, self._just_ended = True, True, False
        self.episode_start = now
        self.episodes.append(TeleopEpisode(seed, now))

    def _measured_pose(self) -> tuple[np.ndarray, np.ndarray]:
        assert self._snap is not None
        obs = self._snap.obs
        return np.asarray(obs["ee_pos"], np.float64), rot6d_to_matrix(np.asarray(obs["ee_rot6d"], np.float64))

    def _step(self) -> None:
        pos, rot = self._target if self._target is not None else self._hold
        if self.cfg.motion_limits:
            self._cmd = self.safety.limit(self._cmd[0], self._cmd[1], pos, rot, self.dt / NS)
        else:
            self._cmd = (pos, rot)
        action = np.concatenate([self._cmd[0], matrix_to_rot6d(self._cmd[1]), [self._grip]])
        obs, success, info = self.task.step(action)
        self._snap = self._snapshot(obs, success)
        self.episodes[-1].steps = int(info["step"])
        self.stats["steps"] += 1

    # --- observations ----------------------------------------------------------------------
    def _snapshot(self, obs: dict[str, np.ndarray], success: bool | None = None) -> _Snapshot:
        img = np.asarray(obs["image"])
        crop = img if not self.cfg.crop_size else resize_center_crop(img, self.cfg.crop_size)
        if success is None:
            success = bool(self.task.success()) if hasattr(self.task, "success") else False
        physical: dict[str, np.ndarray] = {}
        if self.cfg.publish_state:
            pos, mat = self.task.ee_pose()
            physical = {"ee_pos": pos, "ee_mat": mat, "gripper_width": np.asarray(self.task.gripper_width())}
            for key, value in self.task.object_state().items():
                physical[f"object.{key}"] = value
            if hasattr(self.task, "table_top"):
                physical["table_top"] = np.asarray(self.task.table_top)
        return _Snapshot(dict(obs), crop, _joint_positions(self.task), bool(success), physical)

    def _messages(self, now: int) -> list[tuple[str, Any]]:
        assert self._snap is not None
        s, f, cfg = self._snap, self.f, self.cfg
        img = np.asarray(s.obs["image"])
        info = camera_info_from_fovy(f, img.shape[1], img.shape[0], self.fovy, now, cfg.camera_frame)
        joints = rm.numpy_to_joint_state(f, s.joints, cfg.joint_names, now)
        out = [
            (NATIVE_IMAGE_TOPIC, rm.numpy_to_image(f, img, now, "rgb8", cfg.camera_frame)),
            (CAMERA_INFO_TOPIC, info),
            (CROP_IMAGE_TOPIC, rm.numpy_to_image(f, s.crop, now, "rgb8", cfg.camera_frame)),
            (JOINT_STATES_TOPIC, joints),
        ]
        out += build_messages(f, self.sources, s.obs, now, cfg.frame_id)
        if cfg.publish_state:
            meta = {
                "episode": float(self.episode),
                "step": float(self.task.steps),
                "running": float(self.running),
                "success": float(s.success),
                "truncated": float(self.task.steps >= self.task.max_steps),
            }
            out.append((STATE_TOPIC, encode_state(f, {**meta, **s.physical}, now, cfg.frame_id)))
        return out

    def diagnostics(self, now: int) -> Any:
        done = [e for e in self.episodes if e.outcome]
        values = {
            "task": self.task.name,
            "variant": getattr(self.task, "variant", ""),
            "episode": self.episode,
            "running": self.running,
            "episode_steps": self.episodes[-1].steps if self.episodes else 0,
            "episodes_ended": len(done),
            "successes": sum(e.outcome == "success" for e in done),
            "discarded": sum(e.outcome == "discard" for e in done),
            **self.stats,
            **{f"safety_{k}": v for k, v in sorted(self.safety.events.items())},
        }
        level = "warn" if self.last_error else "ok"
        state = f"episode {self.episode} running" if self.running else "waiting for 'start'"
        message = self.last_error or state
        return rm.diagnostic_array(self.f, now, "class_sim_teleop", level, message, values)


# --- config ----------------------------------------------------------------------------------


@dataclass
class TaskSection:
    """The ``task`` section of a task config (as in config/pusht.yaml)."""

    name: str = ""
    variant: str = ""  # empty: the task's default
    kwargs: dict[str, Any] = field(default_factory=dict)  # task constructor options
    expert_kwargs: dict[str, Any] = field(default_factory=dict)  # demonstrator options


@dataclass
class SimTeleopSetup:
    """Everything the teleoperation bridge and the scripted operator read from a task config."""

    task: TaskSection
    bridge: SimTeleopConfig
    operator: ScriptedTeleopConfig
    limits: SafetyLimits

    def make_task(self) -> Any:
        from sim_bridge.task import make_task

        return make_task(self.task.name, self.task.variant or None, **self.task.kwargs)


def load_sim_teleop_setup(path: str | Path, overrides: Sequence[str] = ()) -> SimTeleopSetup:
    """A task config (config/lift.yaml) -> its ``task``, ``arm`` (``arm.limits``: the workspace box
    in the simulator's world frame; required), ``sim_teleop`` and ``scripted_teleop`` sections,
    through the loader the CLIs use (``defaults:``, ``key=value`` overrides, unknown keys fail).
    The operator takes the task name, gripper mapping and frame from the task and bridge sections."""
    from class_core.config import ConfigError, from_dict, load_config
    from class_core.deploy.scripted_teleop_core import ScriptedTeleopConfig
    from class_core.hardware.arm import ArmConfig

    cfg = load_config(path, overrides)
    try:
        task = from_dict(TaskSection, cfg.get("task"), where="task")
        if not task.name:
            raise ConfigError("task.name is not set")
        arm = cfg.get("arm")
        if not isinstance(arm, dict) or "limits" not in arm:
            raise ConfigError(
                "arm.limits is not set: the simulated arm's workspace box (world frame) must be configured"
            )
        limits = from_dict(ArmConfig, arm, where="arm").limits
        bridge = from_dict(SimTeleopConfig, cfg.get("sim_teleop"), where="sim_teleop")
        bridge.validate()
        section = dict(cfg.get("scripted_teleop") or {})
        taken = sorted({"task", "gripper", "frame_id"} & set(section))
        if taken:
            raise ConfigError(
                f"scripted_teleop.{taken[0]} is not set there: the operator takes task.name, "
                "sim_teleop.gripper and sim_teleop.frame_id"
            )
        operator = from_dict(ScriptedTeleopConfig, section, where="scripted_teleop")
        operator.task = task.name
        operator.gripper = bridge.gripper
        operator.frame_id = bridge.frame_id
        operator.expert_kwargs = {**task.expert_kwargs, **operator.expert_kwargs}
        operator.validate()
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from None
    return SimTeleopSetup(task, bridge, operator, limits)
