"""VR teleoperation (Meta Quest): controller reading and the DROID-style mapping to robot targets.

Input: the oculus_reader APK logs one line per frame to logcat, tagged ``wE9ryARX``:
``r:<16 floats, row-major 4x4>|l:<16 floats>&R,A,RG,rightTrig 0.8,rightGrip 1.0,rightJS 0.0 0.0``
(buttons pressed are listed by name; analog values follow their name). ``LogcatReader`` runs
``adb logcat`` and parses these lines; ``parse_line`` / ``format_line`` are the pure codec.

Mapping (as in DROID's VR policy): holding the grip engages; at the engage instant the controller
pose and the robot's end-effector pose are stored; while engaged the target is
``robot_origin + scale * R_cal (p_vr - p_vr_origin)`` in position and
``R_cal (R_vr R_vr_origin^T) R_cal^T R_robot_origin`` in rotation; releasing the grip freezes the
target. The trigger (0..1) is the gripper action. Buttons, on rising edges, give episode events.
``R_cal`` maps the headset frame to the robot base frame (calibration below).
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from class_core.geometry import matrix_to_quat, quat_to_matrix

log = logging.getLogger(__name__)

TAG = "wE9ryARX"
BOOL_BUTTONS = ("A", "B", "RThU", "RJ", "RG", "RTr", "X", "Y", "LThU", "LJ", "LG", "LTr")
EVENTS = ("start", "stop", "success", "discard")

# OpenXR / Quest tracking frame: x right, y up, z towards the user. Robot base: x forward, y left,
# z up. With the user standing behind the robot facing +x: robot = M @ vr.
VR_TO_ROBOT_DEFAULT = np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


@dataclass
class ControllerSample:
    t: float
    pose: np.ndarray  # (4, 4) controller pose in the headset frame
    grip: float  # 0..1
    trigger: float  # 0..1
    buttons: dict[str, bool] = field(default_factory=dict)


def format_line(sample: ControllerSample, hand: str = "r") -> str:
    """A logcat payload in oculus_reader's format (used to write replayable traces)."""
    m = " ".join(f"{v:.6f}" for v in np.asarray(sample.pose, dtype=np.float64).reshape(16))
    side = "R" if hand == "r" else "L"
    names = [side] + [k for k, v in sample.buttons.items() if v]
    pre = "right" if hand == "r" else "left"
    names += [f"{pre}Trig {sample.trigger:.4f}", f"{pre}Grip {sample.grip:.4f}", f"{pre}JS 0.0 0.0"]
    return f"{hand}:{m}&{','.join(names)}"


def parse_line(line: str, hand: str = "r", t: float | None = None) -> ControllerSample | None:
    """One logcat line (or its payload) -> sample of ``hand``; None for other lines or a frame
    without that controller. Malformed payloads raise ValueError naming the field."""
    if TAG in line:
        line = line.split(TAG + ": ", 1)[-1]
    if "&" not in line:
        return None
    transforms, buttons_text = line.strip().split("&", 1)
    pose = None
    for pair in transforms.split("|"):
        side, _, values = pair.partition(":")
        if side.strip() != hand:
            continue
        nums = [float(v) for v in values.split()]
        if len(nums) != 16:
            raise ValueError(f"controller '{hand}' transform has {len(nums)} values, expected 16")
        pose = np.array(nums, dtype=np.float64).reshape(4, 4)
    if pose is None:
        return None
    pre = "right" if hand == "r" else "left"
    buttons: dict[str, bool] = {}
    analog: dict[str, tuple[float, ...]] = {}
    for tok in buttons_text.split(","):
        tok = tok.strip()
        if not tok or tok in ("R", "L"):
            continue
        parts = tok.split(" ")
        if len(parts) == 1:
            buttons[parts[0]] = True
        else:
            try:
                analog[parts[0]] = tuple(float(x) for x in parts[1:])
            except ValueError:
                raise ValueError(f"button field {parts[0]!r} has a non-numeric value: {tok!r}") from None
    for b in BOOL_BUTTONS:
        buttons.setdefault(b, False)
    trig = analog.get(f"{pre}Trig", (1.0 if buttons.get("RTr" if hand == "r" else "LTr") else 0.0,))[0]
    grip = analog.get(f"{pre}Grip", (1.0 if buttons.get("RG" if hand == "r" else "LG") else 0.0,))[0]
    return ControllerSample(time.time() if t is None else t, pose, float(grip), float(trig), buttons)


class LogcatReader:
    """Reads the Quest through ``adb logcat -T 0`` in a thread; ``latest()`` gives the newest
    sample. ``source`` can be any iterable of lines (a recorded trace) instead of adb."""

    def __init__(
        self, hand: str = "r", adb: str = "adb", serial: str = "", source: Iterable[str] | None = None
    ):
        self.hand = hand
        self._cmd = [adb] + (["-s", serial] if serial else []) + ["logcat", "-T", "0", "-s", f"{TAG}:*"]
        self._source = source
        self._proc: subprocess.Popen[str] | None = None
        self._latest: ControllerSample | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.frames = 0
        self.errors = 0

    def _lines(self) -> Iterator[str]:
        if self._source is not None:
            yield from self._source
            return
        try:
            self._proc = subprocess.Popen(self._cmd, stdout=subprocess.PIPE, text=True, errors="replace")
        except FileNotFoundError:
            raise RuntimeError(f"'{self._cmd[0]}' not found: install Android platform tools (adb)") from None
        assert self._proc.stdout is not None
        yield from self._proc.stdout

    def _run(self) -> None:
        for line in self._lines():
            try:
                s = parse_line(line, self.hand)
            except ValueError as e:
                self.errors += 1
                log.warning("bad controller frame: %s", e)
                continue
            if s is not None:
                with self._lock:
                    self._latest = s
                    self.frames += 1

    def start(self) -> LogcatReader:
        self._thread = threading.Thread(target=self._run, name="quest-logcat", daemon=True)
        self._thread.start()
        return self

    def latest(self) -> ControllerSample | None:
        with self._lock:
            return self._latest

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=2.0)
        if self._thread is not None:
            self._thread.join(timeout=2.0)


def calibrate_rotation(vr_points: np.ndarray, robot_points: np.ndarray) -> np.ndarray:
    """Rotation R_cal (3, 3) minimising sum |R_cal (v_i - v_mean) - (r_i - r_mean)|^2 (Kabsch):
    move the engaged controller along a few directions while the robot follows known moves."""
    v = np.asarray(vr_points, dtype=np.float64)
    r = np.asarray(robot_points, dtype=np.float64)
    if v.shape != r.shape or v.ndim != 2 or v.shape[1] != 3 or len(v) < 3:
        raise ValueError(f"calibration needs matching (N >= 3, 3) point sets, got {v.shape} and {r.shape}")
    h = (v - v.mean(0)).T @ (r - r.mean(0))
    u, s, vt = np.linalg.svd(h)
    if s[1] < 1e-9 * max(s[0], 1e-12):
        raise ValueError("calibration points are (nearly) collinear: move along at least two directions")
    d = np.sign(np.linalg.det(vt.T @ u.T))
    return vt.T @ np.diag([1.0, 1.0, d]) @ u.T


def heading_calibration(controller_pose: np.ndarray, base: np.ndarray = VR_TO_ROBOT_DEFAULT) -> np.ndarray:
    """DROID-style quick calibration: the controller, held pointing along the robot's +x, fixes
    the yaw of the headset frame; ``base`` is the axis convention (VR_TO_ROBOT_DEFAULT)."""
    fwd = base @ (np.asarray(controller_pose)[:3, :3] @ np.array([0.0, 0.0, -1.0]))  # pointing direction
    yaw = np.arctan2(fwd[1], fwd[0])
    c, s = np.cos(-yaw), np.sin(-yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ base


@dataclass
class TeleopConfig:
    rate_hz: float = 30.0
    hand: str = "r"
    position_scale: float = 1.0
    rotation_enabled: bool = True
    engage_threshold: float = 0.5  # grip value that engages
    # button name -> event; "start" toggles to "stop" while an episode runs
    buttons: dict[str, str] = field(default_factory=lambda: {"A": "start", "B": "success", "RJ": "discard"})
    vr_to_robot: list[list[float]] = field(default_factory=lambda: VR_TO_ROBOT_DEFAULT.tolist())
    source: str = "adb"  # adb | topic (an existing VR bridge publishing PoseStamped + Joy)
    adb_serial: str = ""

    def __post_init__(self) -> None:
        if not 15.0 <= self.rate_hz <= 50.0:
            raise ValueError(f"teleop.rate_hz must be within [15, 50], got {self.rate_hz}")
        if self.hand not in ("r", "l"):
            raise ValueError(f"teleop.hand must be 'r' or 'l', got {self.hand!r}")
        if self.position_scale <= 0:
            raise ValueError(f"teleop.position_scale must be positive, got {self.position_scale}")
        for b, ev in self.buttons.items():
            if ev not in EVENTS:
                raise ValueError(f"teleop.buttons.{b}: {ev!r} is not one of {EVENTS}")
        r = np.asarray(self.vr_to_robot, dtype=np.float64)
        if r.shape != (3, 3) or not np.allclose(r @ r.T, np.eye(3), atol=1e-6) or np.linalg.det(r) < 0:
            raise ValueError("teleop.vr_to_robot must be a 3x3 rotation matrix")
        if self.source not in ("adb", "topic"):
            raise ValueError(f"teleop.source must be 'adb' or 'topic', got {self.source!r}")


@dataclass
class TeleopOutput:
    engaged: bool
    pos: np.ndarray | None  # target position (3,), None before the first engage
    quat: np.ndarray | None  # target orientation (x, y, z, w)
    gripper: float
    events: list[str]


class TeleopMapper:
    """DROID-style mapping from controller samples to end-effector targets and episode events."""

    def __init__(self, cfg: TeleopConfig, clip: Callable[[np.ndarray], np.ndarray] | None = None):
        self.cfg = cfg
        self.r_cal = np.asarray(cfg.vr_to_robot, dtype=np.float64)
        self.clip = clip  # e.g. the arm's workspace box
        self._engaged = False
        self._vr0: np.ndarray | None = None
        self._robot0_pos = np.zeros(3)
        self._robot0_rot = np.eye(3)
        self._target_pos: np.ndarray | None = None
        self._target_rot: np.ndarray | None = None
        self._prev_buttons: dict[str, bool] = {}
        self.recording = False

    def _events(self, buttons: dict[str, bool]) -> list[str]:
        out: list[str] = []
        for name, ev in self.cfg.buttons.items():
            pressed = bool(buttons.get(name, False))
            if pressed and not self._prev_buttons.get(name, False):
                if ev == "start":
                    out.append("stop" if self.recording else "start")
                    self.recording = not self.recording
                elif ev in ("success", "discard"):
                    if self.recording:  # ends the episode, then labels it
                        out.append("stop")
                        self.recording = False
                    out.append(ev)
                else:
                    if self.recording:
                        out.append("stop")
                        self.recording = False
        self._prev_buttons = {k: bool(v) for k, v in buttons.items()}
        return out

    def step(self, s: ControllerSample, robot_pos: np.ndarray, robot_quat: np.ndarray) -> TeleopOutput:
        """One mapping step with the robot's current end-effector pose (used at engage)."""
        engaged = s.grip >= self.cfg.engage_threshold
        p_vr, r_vr = s.pose[:3, 3], s.pose[:3, :3]
        if engaged and not self._engaged:  # engage: new origins, no jump
            self._vr0 = s.pose.copy()
            if self._target_pos is None:
                self._robot0_pos = np.asarray(robot_pos, dtype=np.float64).copy()
                self._robot0_rot = quat_to_matrix(np.asarray(robot_quat, dtype=np.float64))
            else:  # continue from the last target (the arm may still be on its way)
                assert self._target_rot is not None
                self._robot0_pos, self._robot0_rot = self._target_pos.copy(), self._target_rot.copy()
        self._engaged = engaged
        if engaged and self._vr0 is not None:
            dp = self.r_cal @ (p_vr - self._vr0[:3, 3]) * self.cfg.position_scale
            pos = self._robot0_pos + dp
            if self.clip is not None:
                pos = self.clip(pos)
            if self.cfg.rotation_enabled:
                dr = self.r_cal @ (r_vr @ self._vr0[:3, :3].T) @ self.r_cal.T
                rot = dr @ self._robot0_rot
            else:
                rot = self._robot0_rot
            self._target_pos, self._target_rot = pos, rot
        q = None if self._target_rot is None else matrix_to_quat(self._target_rot)
        return TeleopOutput(
            engaged, self._target_pos, q, float(np.clip(s.trigger, 0.0, 1.0)), self._events(s.buttons)
        )
