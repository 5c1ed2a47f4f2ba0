"""Franka arm execution of timestamped end-effector action chunks, with safety enforced here.

Motion: a control thread at ``control_hz`` (default 50 Hz) interpolates the plan at the current
time (linear in position, geodesic in rotation), passes the setpoint through the safety filter,
and sends it to franky as an asynchronous ``CartesianMotion`` that preempts the previous one.
franky's Ruckig generator starts each motion from the robot's reported commanded velocity and
acceleration, so the arm flows through the waypoints without stopping, the timing of the chunk is
kept, and the velocity/acceleration/jerk limits hold (docs/hardware.md argues this against
waypoint motions and impedance tracking).

Workspace by construction: every target is inside the box, and a motion is only preempted when
the generator, re-planning from the state it will start from, can brake inside the box (or no
further out than it already is): ``preemption_is_safe``. Otherwise the running motion, planned
when that held, goes on, and the next setpoint is sent at a later tick.

Everything that decides (chunk scheduling, limits, watchdog) is pure Python and unit-tested;
``FrankaArm`` only adds the franky calls.

Every blocking franky call has a deadline (``call_with_deadline``, ``join_motion(timeout)``):
libfranka waits for the robot's answer to a TCP command (connect, stop, error recovery) with none,
so an unanswered command would otherwise block its caller, and the control thread, forever.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from class_core.geometry import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_quat,
    quat_to_matrix,
    rot6d_to_matrix,
    rotation_angle_between,
)

log = logging.getLogger(__name__)

ACTION_DIM = 10  # pos 3 + rot6d 6 + gripper 1
# robot time between our state read and franky switching to the new motion (a few 1 kHz cycles)
PREEMPT_LATENCY_S = 0.005
# below this, the reported state is noise (an arm resting on a wall must be able to leave it)
PREEMPT_TOL_M = 5e-5


@dataclass
class SafetyLimits:
    workspace_min: list[float] = field(default_factory=lambda: [0.25, -0.45, 0.02])
    workspace_max: list[float] = field(default_factory=lambda: [0.80, 0.45, 0.70])
    max_linear_speed: float = 0.25  # m/s of the commanded setpoint
    max_angular_speed: float = 1.0  # rad/s
    # setpoint acceleration; also the braking envelope at the walls (speed towards a wall at most
    # sqrt(2 a d)), so the motion generator, which brakes harder, never overshoots the box
    max_linear_accel: float = 1.0  # m/s^2
    max_step_m: float = 0.08  # between consecutive steps of one chunk; larger: chunk refused
    max_step_rad: float = 0.6
    out_of_workspace: Literal["clip", "refuse"] = "clip"
    # the arm's own commanded pose (robot state O_T_EE_c) further than this outside the box:
    # hard stop (a last guard behind the setpoint filter and the preemption check)
    guard_margin_m: float = 0.01
    command_timeout_s: float = 2.5  # longer than one chunk (16 steps at 10 Hz)
    observation_timeout_s: float = 0.5  # <= 0 disables the observation watchdog

    def __post_init__(self) -> None:
        lo, hi = np.asarray(self.workspace_min, float), np.asarray(self.workspace_max, float)
        if lo.shape != (3,) or hi.shape != (3,):
            raise ValueError("arm.limits.workspace_min / workspace_max must have 3 values (x, y, z)")
        if np.any(lo >= hi):
            raise ValueError(
                f"arm.limits.workspace_min {self.workspace_min} must be below workspace_max "
                f"{self.workspace_max} on every axis"
            )
        for name in (
            "max_linear_speed",
            "max_angular_speed",
            "max_step_m",
            "max_step_rad",
            "command_timeout_s",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"arm.limits.{name} must be positive, got {getattr(self, name)}")

    @property
    def lo(self) -> np.ndarray:
        return np.asarray(self.workspace_min, dtype=np.float64)

    @property
    def hi(self) -> np.ndarray:
        return np.asarray(self.workspace_max, dtype=np.float64)


@dataclass
class ArmConfig:
    host: str = "172.16.0.2"
    connect_timeout_s: float = 20.0  # franky.Robot(host): connection and the robot's answer
    call_timeout_s: float = 10.0  # one blocking franky command (stop, error recovery)
    home_timeout_s: float = 120.0  # the homing motion, start to rest
    control_hz: float = 50.0
    relative_dynamics_factor: float = 0.2
    home_joints: list[float] = field(default_factory=lambda: [0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
    home_dynamics_factor: float = 0.1
    stale_tolerance_s: float = 0.0  # steps older than now - tolerance are dropped
    teleop_lead_s: float = 0.1  # a teleop target is reached this far in the future
    max_recoveries: int = 3  # automatic recoveries before the arm stays faulted
    realtime: Literal["enforce", "ignore"] = "enforce"
    limits: SafetyLimits = field(default_factory=SafetyLimits)

    def __post_init__(self) -> None:
        if not 1.0 <= self.control_hz <= 1000.0:
            raise ValueError(f"arm.control_hz must be in [1, 1000], got {self.control_hz}")
        if not 0.0 < self.relative_dynamics_factor <= 1.0:
            raise ValueError(
                f"arm.relative_dynamics_factor must be in (0, 1], got {self.relative_dynamics_factor}"
            )
        if not 0.0 < self.home_dynamics_factor <= 1.0:
            raise ValueError(f"arm.home_dynamics_factor must be in (0, 1], got {self.home_dynamics_factor}")
        if len(self.home_joints) != 7:
            raise ValueError(f"arm.home_joints must have 7 values, got {len(self.home_joints)}")
        for name in ("connect_timeout_s", "call_timeout_s", "home_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"arm.{name} must be positive, got {getattr(self, name)}")


class ChunkRejected(ValueError):
    pass


class ArmTimeout(TimeoutError):
    """A blocking call to the robot did not return before its deadline; the message names it."""


def call_with_deadline(fn: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """``fn()`` with a deadline: its result or exception, or ``ArmTimeout`` naming ``what`` when it
    has not returned after ``timeout_s``. It runs in a daemon thread (franky releases the GIL while
    it waits for the robot), which a call that timed out leaves behind, still blocked."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # handed to the caller
            box["error"] = e

    th = threading.Thread(target=target, name=f"deadline: {what}", daemon=True)
    th.start()
    th.join(timeout_s)
    if th.is_alive():
        raise ArmTimeout(f"{what}: no answer within {timeout_s:g} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _thread_scheduling() -> Any:
    """The calling thread's scheduling policy and parameters (None where the OS has no such call)."""
    if not hasattr(os, "sched_getscheduler"):
        return None
    return os.sched_getscheduler(0), os.sched_getparam(0)


def _set_thread_scheduling(sched: Any) -> None:
    if sched is None or _thread_scheduling() == sched:
        return
    try:
        os.sched_setscheduler(0, *sched)
    except OSError as e:
        log.warning("arm: could not give this thread the robot connection's scheduling %s: %s", sched, e)


def slerp_matrix(r0: np.ndarray, r1: np.ndarray, s: float) -> np.ndarray:
    """Geodesic interpolation between rotation matrices, s in [0, 1]."""
    return r0 @ axis_angle_to_matrix(s * matrix_to_axis_angle(r0.T @ r1))


def decode_actions(actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T, 10) actions -> positions (T, 3), rotation matrices (T, 3, 3), gripper (T,)."""
    a = np.asarray(actions, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != ACTION_DIM or a.shape[0] == 0:
        raise ChunkRejected(f"action chunk must be (T, {ACTION_DIM}) with T > 0, got {a.shape}")
    bad = ~np.isfinite(a).all(axis=1)
    if bad.any():
        raise ChunkRejected(f"action chunk step {int(np.nonzero(bad)[0][0])} is not finite")
    return a[:, :3].copy(), rot6d_to_matrix(a[:, 3:9]), a[:, 9].copy()


def stop_distance(v: np.ndarray, a: np.ndarray, a_max: float, j_max: float) -> np.ndarray:
    """Upper bound, per axis, of how far a jerk-limited generator travels in +direction before it
    is at rest, from velocity ``v`` and acceleration ``a`` (limits a_max, j_max per axis).
    Bound: the acceleration first ramps from max(a, 0) to -a_max at j_max (during which the speed
    is at most v + a^2 / 2j), then it brakes at a_max."""
    ap = np.maximum(np.asarray(a, dtype=np.float64), 0.0)
    vp = np.maximum(np.asarray(v, dtype=np.float64), 0.0) + ap * ap / (2.0 * j_max)
    t_ramp = (ap + a_max) / j_max + PREEMPT_LATENCY_S
    return np.where(vp > 0.0, vp * t_ramp + vp * vp / (2.0 * a_max), 0.0)


def preemption_is_safe(
    c: np.ndarray,
    v: np.ndarray,
    a: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    a_max: float,
    j_max: float,
) -> bool:
    """Whether a new motion may start from commanded position ``c`` with velocity ``v`` and
    acceleration ``a`` (what franky re-plans from): its braking reach stays inside the box, or no
    further out than ``c`` already is. With a target inside the box, a time-optimal plan goes no
    further than max(target, braking reach) on each axis, so no plan started under this condition
    leaves the box."""
    up = c + stop_distance(v, a, a_max, j_max)
    down = c - stop_distance(-np.asarray(v), -np.asarray(a), a_max, j_max)
    return bool(
        np.all(up <= np.maximum(hi, c) + PREEMPT_TOL_M) and np.all(down >= np.minimum(lo, c) - PREEMPT_TOL_M)
    )


class SafetyFilter:
    """Workspace box, per-step jump limits on chunks, and speed limits on the setpoint stream.
    Counts every intervention in ``events`` and logs it (the first few of each kind)."""

    def __init__(self, limits: SafetyLimits):
        self.limits = limits
        self.events: dict[str, int] = {}
        self._vel = np.zeros(3)

    def _event(self, kind: str, msg: str) -> None:
        n = self.events.get(kind, 0) + 1
        self.events[kind] = n
        if n <= 5 or n % 100 == 0:
            log.warning("safety: %s (%d so far)", msg, n)

    def check_chunk(self, pos: np.ndarray, rot: np.ndarray) -> np.ndarray:
        """Validates one chunk; returns positions clipped into the workspace (or raises)."""
        lim = self.limits
        outside = np.any((pos < lim.lo) | (pos > lim.hi), axis=1)
        if outside.any():
            k = int(np.nonzero(outside)[0][0])
            msg = f"chunk step {k} at {np.round(pos[k], 4).tolist()} is outside the workspace box"
            if lim.out_of_workspace == "refuse":
                self._event("refused_workspace", msg + ": chunk refused")
                raise ChunkRejected(msg)
            self._event("clipped_workspace", msg + ": clipped")
            pos = np.clip(pos, lim.lo, lim.hi)
        if len(pos) > 1:
            jumps = np.linalg.norm(np.diff(pos, axis=0), axis=1)
            angles = rotation_angle_between(rot[:-1], rot[1:])
            if jumps.max() > lim.max_step_m or angles.max() > lim.max_step_rad:
                k = int(np.argmax(np.maximum(jumps / lim.max_step_m, angles / lim.max_step_rad))) + 1
                msg = (
                    f"chunk step {k} jumps {jumps[k - 1]:.3f} m / {angles[k - 1]:.3f} rad from step {k - 1} "
                    f"(limits {lim.max_step_m} m / {lim.max_step_rad} rad): chunk refused"
                )
                self._event("refused_step", msg)
                raise ChunkRejected(msg)
        return pos

    def reset_motion(self) -> None:
        """The setpoint is at rest (after homing, a halt or a recovery)."""
        self._vel = np.zeros(3)

    def limit(
        self, prev_pos: np.ndarray, prev_rot: np.ndarray, pos: np.ndarray, rot: np.ndarray, dt: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Next setpoint from the previous one towards the planned one: inside the box, speed,
        acceleration and braking-envelope limited, rotation speed limited."""
        lim = self.limits
        vel = self._vel
        if np.any((pos < lim.lo) | (pos > lim.hi)):
            self._event(
                "clipped_workspace", f"setpoint {np.round(pos, 4).tolist()} outside the workspace: clipped"
            )
            pos = np.clip(pos, lim.lo, lim.hi)
        gap = pos - prev_pos
        v = gap / dt
        # arrive at rest: no faster than one can brake within the remaining gap
        v *= min(
            1.0,
            float(np.sqrt(2.0 * lim.max_linear_accel * np.linalg.norm(gap)))
            * dt
            / max(float(np.linalg.norm(gap)), 1e-12),
        )
        speed = float(np.linalg.norm(v))
        if speed > lim.max_linear_speed + 1e-9:
            self._event("clipped_speed", f"linear speed {speed:.3f} m/s over {lim.max_linear_speed}: clipped")
            v *= lim.max_linear_speed / speed
        dv = v - vel
        n = float(np.linalg.norm(dv))
        if n > lim.max_linear_accel * dt:
            v = vel + dv * (lim.max_linear_accel * dt / n)
        # braking envelope, per axis towards the wall it moves to
        room = np.where(v > 0, lim.hi - prev_pos, prev_pos - lim.lo)
        vmax = np.sqrt(2.0 * lim.max_linear_accel * np.maximum(room, 0.0))
        v = np.clip(v, -vmax, vmax)
        new = np.clip(prev_pos + v * dt, lim.lo, lim.hi)
        self._vel = (new - prev_pos) / dt
        ang = float(rotation_angle_between(prev_rot, rot))
        max_a = lim.max_angular_speed * dt
        if ang > max_a + 1e-12:
            self._event(
                "clipped_angular", f"angular speed {ang / dt:.3f} rad/s over {lim.max_angular_speed}: clipped"
            )
            rot = slerp_matrix(prev_rot, rot, max_a / ang)
        return new, rot


class ChunkScheduler:
    """The plan: timestamped steps, interpolated at query time from an anchor (the setpoint when
    the chunk arrived). A new chunk replaces the remaining plan; steps already past are dropped."""

    def __init__(self, stale_tolerance_s: float = 0.0):
        self.tol = stale_tolerance_s
        self.times = np.zeros(0)
        self.pos = np.zeros((0, 3))
        self.rot = np.zeros((0, 3, 3))
        self.grip = np.zeros(0)
        self.dropped_steps = 0
        self.dropped_chunks = 0

    @property
    def active(self) -> bool:
        return len(self.times) > 0

    def clear(self) -> None:
        self.times = np.zeros(0)

    def set_plan(
        self,
        times: np.ndarray,
        pos: np.ndarray,
        rot: np.ndarray,
        grip: np.ndarray,
        now: float,
        anchor_pos: np.ndarray,
        anchor_rot: np.ndarray,
        anchor_grip: float,
    ) -> int:
        times = np.asarray(times, dtype=np.float64)
        if len(times) > 1 and np.any(np.diff(times) <= 0):
            raise ChunkRejected("chunk times are not strictly increasing")
        keep = times >= now - self.tol
        n_drop = int((~keep).sum())
        self.dropped_steps += n_drop
        if not keep.any():
            self.dropped_chunks += 1
            log.warning("stale chunk dropped: its last step is %.3f s in the past", now - times[-1])
            return 0  # the plan in progress stays
        if n_drop:
            log.info("dropped %d past step(s) of a chunk", n_drop)
        k = keep
        self.times = np.concatenate([[now], times[k]])
        self.pos = np.concatenate([anchor_pos[None], pos[k]])
        self.rot = np.concatenate([anchor_rot[None], rot[k]])
        self.grip = np.concatenate([[anchor_grip], grip[k]])
        return int(k.sum())

    def setpoint(self, now: float) -> tuple[np.ndarray, np.ndarray, float, bool] | None:
        """(pos, rot, grip, finished) at ``now``; None without a plan."""
        if not self.active:
            return None
        t = self.times
        if now >= t[-1]:
            return self.pos[-1], self.rot[-1], float(self.grip[-1]), True
        i = int(np.searchsorted(t, now, side="right")) - 1
        i = max(i, 0)
        s = float(np.clip((now - t[i]) / (t[i + 1] - t[i]), 0.0, 1.0))
        p = self.pos[i] + s * (self.pos[i + 1] - self.pos[i])
        r = slerp_matrix(self.rot[i], self.rot[i + 1], s)
        # gripper: step-wise (the commanded value of the step being approached)
        return p, r, float(self.grip[i + 1]), False


class Watchdog:
    """Named heartbeats with timeouts; ``check`` returns the first stale one."""

    def __init__(self, timeouts: dict[str, float]):
        self.timeouts = {k: v for k, v in timeouts.items() if v > 0}
        self.last: dict[str, float | None] = {k: None for k in self.timeouts}

    def feed(self, name: str, t: float) -> None:
        if name in self.last:
            self.last[name] = t

    def check(
        self, now: float, names: tuple[str, ...] | None = None, required: tuple[str, ...] = ()
    ) -> str | None:
        for name, timeout in self.timeouts.items():
            if names is not None and name not in names:
                continue
            last = self.last[name]
            if last is None:
                if name in required:
                    return f"no {name} received yet"
                continue
            if now - last > timeout:
                return f"{name} stale for {now - last:.3f} s (timeout {timeout} s)"
        return None


@dataclass
class ArmState:
    stamp_s: float
    joint_pos: np.ndarray  # (7,)
    joint_vel: np.ndarray  # (7,)
    ee_pos: np.ndarray  # (3,)
    ee_quat: np.ndarray  # (4,) x, y, z, w


class FrankaArm:
    """Franka Research 3 through franky: chunk execution, safety, watchdog, recovery, homing."""

    def __init__(
        self,
        cfg: ArmConfig,
        clock: Callable[[], float] = time.time,
        gripper_cb: Callable[[float], Any] | None = None,
        robot: Any = None,
    ):
        self.cfg = cfg
        self.clock = clock
        self.safety = SafetyFilter(cfg.limits)
        self.scheduler = ChunkScheduler(cfg.stale_tolerance_s)
        self.watchdog = Watchdog(
            {"command": cfg.limits.command_timeout_s, "observation": cfg.limits.observation_timeout_s}
        )
        self.gripper_cb = gripper_cb
        self.robot = robot
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._running = False
        self.halted: str | None = "not started"  # reason the arm does not follow the plan
        self.faulted = False
        self.recoveries = 0
        self.sent = 0
        self.last_error: BaseException | None = None
        self._cmd_pos = np.zeros(3)  # setpoint stream (where the filter has got to)
        self._cmd_rot = np.eye(3)
        self._sent_pos = np.zeros(3)  # last target franky was given
        self._sent_rot = np.eye(3)
        self._cmd_grip = 0.0
        self.deferred = 0  # ticks whose setpoint waited because a preemption was not safe
        self.paced = 0  # ticks whose setpoint waited for the robot's clock (see _flush)
        self._sent_robot_t = -np.inf  # robot time of the last send
        # the generator's per-axis translation limits (franky's limit x relative dynamics factor)
        self.gen_accel = 1.0
        self.gen_jerk = 500.0
        self._last_tick: float | None = None
        self._stop_target: np.ndarray | None = None
        self.watch_observations = cfg.limits.observation_timeout_s > 0

    # --- connection --------------------------------------------------------------------
    def _call(self, fn: Callable[[], Any], what: str) -> Any:
        """A blocking franky command with the ``call_timeout_s`` deadline."""
        return call_with_deadline(fn, self.cfg.call_timeout_s, f"arm: {what}")

    def connect(self) -> None:
        """Connects to the robot (ArmTimeout after ``connect_timeout_s`` without an answer)."""
        import franky

        if self.robot is None:
            rt = (
                franky.RealtimeConfig.Enforce
                if self.cfg.realtime == "enforce"
                else franky.RealtimeConfig.Ignore
            )
            host = self.cfg.host

            def construct() -> tuple[Any, Any]:
                return franky.Robot(host, realtime_config=rt), _thread_scheduling()

            self.robot, sched = call_with_deadline(
                construct, self.cfg.connect_timeout_s, f"arm: connect to the robot at {host} (franky.Robot)"
            )
            # libfranka raises the thread that constructs the Robot to its highest scheduling priority
            # (SCHED_FIFO where allowed), and the threads that later move the arm (this driver's control
            # thread, franky's control loop) inherit it from here: the constructing thread was a
            # helper, so this thread takes over what it was given
            _set_thread_scheduling(sched)
        if self.robot.has_errors:
            log.warning("arm reports errors at connect: recovering")
            self._call(self.robot.recover_from_errors, "automatic error recovery at connect")
        self.set_limits(self.cfg.limits)
        self._anchor_to_measured()

    def set_limits(self, limits: SafetyLimits) -> None:
        """Applies limits to the filter, the watchdog and franky's generator (call while the arm
        is not moving: franky refuses to change its limits while in control). The generator's
        velocity limits are the configured speeds in robot time, so they hold even when the robot's
        clock runs slower than ours (a loaded simulator)."""
        with self._lock:
            self.cfg.limits = limits
            self.safety.limits = limits
            self.watchdog = Watchdog(
                {"command": limits.command_timeout_s, "observation": limits.observation_timeout_s}
            )
            r, rdf = self.robot, self.cfg.relative_dynamics_factor
            r.relative_dynamics_factor = rdf
            for lim, value in (
                (r.translation_velocity_limit, limits.max_linear_speed),
                (r.rotation_velocity_limit, limits.max_angular_speed),
            ):
                lim.set(min(float(lim.max), value / rdf))
            self.gen_accel = float(r.translation_acceleration_limit.get()) * rdf
            self.gen_jerk = float(r.translation_jerk_limit.get()) * rdf

    def _commanded_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """Commanded position, velocity, acceleration (the state franky re-plans from), robot time."""
        st = self.robot.state
        return (
            np.asarray(st.O_T_EE_c.matrix, dtype=np.float64)[:3, 3],
            np.asarray(st.O_dP_EE_c.linear, dtype=np.float64).reshape(3),
            np.asarray(st.O_ddP_EE_c.linear, dtype=np.float64).reshape(3),
            float(st.time.to_sec()),
        )

    def _anchor_to_measured(self) -> None:
        self.safety.reset_motion()
        aff = self.robot.current_pose.end_effector_pose
        self._cmd_pos = np.asarray(aff.translation, dtype=np.float64).reshape(3)
        self._cmd_rot = quat_to_matrix(np.asarray(aff.quaternion, dtype=np.float64).reshape(4))
        self._sent_pos, self._sent_rot = self._cmd_pos, self._cmd_rot
        self._sent_robot_t = -np.inf

    def read_state(self) -> ArmState:
        with self._lock:  # one thread at a time in franky's Robot
            js = self.robot.current_joint_state
            aff = self.robot.current_pose.end_effector_pose
        return ArmState(
            stamp_s=self.clock(),
            joint_pos=np.asarray(js.position, dtype=np.float64).reshape(7),
            joint_vel=np.asarray(js.velocity, dtype=np.float64).reshape(7),
            ee_pos=np.asarray(aff.translation, dtype=np.float64).reshape(3),
            ee_quat=np.asarray(aff.quaternion, dtype=np.float64).reshape(4),
        )

    # --- commands ------------------------------------------------------------------------
    def home(self) -> None:
        """Blocking joint motion to ``home_joints`` at ``home_dynamics_factor``; clears the plan.
        ArmTimeout (the motion stopped) when it has not finished after ``home_timeout_s``."""
        import franky

        with self._lock:
            self.scheduler.clear()
            if self.robot.is_in_control:
                self._call(self.robot.stop, "stop the running motion before homing")
            self.robot.move(
                franky.JointMotion(
                    np.asarray(self.cfg.home_joints, dtype=np.float64),
                    relative_dynamics_factor=self.cfg.home_dynamics_factor,
                ),
                asynchronous=True,
            )
            if not self.robot.join_motion(timeout=self.cfg.home_timeout_s):
                msg = (
                    f"arm: homing to {self.cfg.home_joints} did not finish within "
                    f"{self.cfg.home_timeout_s:g} s (arm.home_timeout_s)"
                )
                try:
                    self._call(self.robot.stop, "stop the homing motion after its deadline")
                except Exception as e:
                    msg += f"; stopping it failed too: {e}"
                raise ArmTimeout(msg)
            self._anchor_to_measured()
            self.halted = None
            log.info("arm homed")

    def feed_observation(self, stamp_s: float | None = None) -> None:
        self.watchdog.feed("observation", self.clock() if stamp_s is None else stamp_s)

    def execute_chunk(self, times_s: np.ndarray, actions: np.ndarray) -> int:
        """Queue a chunk (absolute times in the clock's seconds); returns the steps kept.
        Raises ChunkRejected for a chunk the safety filter refuses (nothing of it executes)."""
        pos, rot, grip = decode_actions(actions)
        times_s = np.asarray(times_s, dtype=np.float64).reshape(-1)
        if len(times_s) != len(pos):
            raise ChunkRejected(f"{len(times_s)} times for {len(pos)} action steps")
        pos = self.safety.check_chunk(pos, rot)
        now = self.clock()
        with self._lock:
            kept = self.scheduler.set_plan(
                times_s, pos, rot, grip, now, self._cmd_pos, self._cmd_rot, self._cmd_grip
            )
            if kept:
                self.watchdog.feed("command", now)
                if self.halted and not self.faulted:
                    log.info("resuming after halt (%s)", self.halted)
                    self.halted = None
        return kept

    def execute_target(self, pos: np.ndarray, quat: np.ndarray, grip: float) -> int:
        """A single target (teleoperation), reached ``teleop_lead_s`` from now."""
        a = np.concatenate(
            [
                np.asarray(pos, float).reshape(3),
                quat_to_matrix(np.asarray(quat, float))[:, :2].T.reshape(6),
                [grip],
            ]
        )
        return self.execute_chunk(np.array([self.clock() + self.cfg.teleop_lead_s]), a[None])

    # --- control loop ----------------------------------------------------------------------
    def _halt(self, reason: str) -> None:
        """Drop the plan and stop the arm where its generator can brake to rest: the commanded
        pose plus its braking distance at the generator's acceleration, inside the box."""
        log.error("arm halted: %s", reason)
        self.halted = reason
        self.scheduler.clear()
        lim = self.cfg.limits
        c, v, _, _ = self._commanded_state()
        stop = np.clip(c + v * np.abs(v) / (2.0 * self.gen_accel), lim.lo, lim.hi)
        self.safety.reset_motion()
        self._cmd_pos = self._stop_target = stop

    def _recover(self, err: BaseException) -> None:
        self.last_error = err
        self.scheduler.clear()
        self._stop_target = None
        if self.recoveries >= self.cfg.max_recoveries:
            self.faulted = True
            self.halted = f"faulted after {self.recoveries} recoveries: {err}"
            log.error("arm %s", self.halted)
            return
        self.recoveries += 1
        log.error("arm error (%s): recovering (%d/%d)", err, self.recoveries, self.cfg.max_recoveries)
        try:
            self._call(self.robot.stop, "stop during error recovery")
        except Exception as e:
            log.warning("stop during recovery raised: %s", e)
        try:
            ok = self._call(self.robot.recover_from_errors, "automatic error recovery")
        except ArmTimeout as e:
            self.faulted = True
            self.halted = f"{e}, after: {err}"
            log.error("arm %s", self.halted)
            return
        if not ok:
            self.faulted = True
            self.halted = f"automatic error recovery failed after: {err}"
            log.error("arm %s", self.halted)
            return
        self._anchor_to_measured()
        self.halted = f"recovered from: {err}"  # waits for a new command

    def reset_fault(self) -> None:
        with self._lock:
            self.faulted = False
            self.recoveries = 0
            self._call(self.robot.recover_from_errors, "automatic error recovery (fault reset)")
            self._anchor_to_measured()
            self.halted = "fault reset"

    def _flush(self) -> bool:
        """Sends the setpoint (``_cmd_pos``, ``_cmd_rot``) to franky unless it was sent already or
        preempting the running motion now could carry the arm out of the box. True: franky has
        the setpoint."""
        import franky

        pos, rot = self._cmd_pos, self._cmd_rot
        if (
            np.linalg.norm(pos - self._sent_pos) < 1e-7
            and float(rotation_angle_between(self._sent_rot, rot)) < 1e-7
        ):
            return True
        lim = self.cfg.limits
        c, v, a, t_robot = self._commanded_state()
        if t_robot - self._sent_robot_t < 0.75 / self.cfg.control_hz:
            # the robot's clock runs slower than ours (a loaded simulator): re-planning every few
            # of its ms from its reported velocity (a filtered one in franky-sim) stalls the arm
            self.paced += 1
            return False
        if not preemption_is_safe(c, v, a, lim.lo, lim.hi, self.gen_accel, self.gen_jerk):
            self.deferred += 1
            return False
        try:
            self.robot.move(
                franky.CartesianMotion(franky.Affine(pos, matrix_to_quat(rot))), asynchronous=True
            )
        except Exception as e:
            self._recover(e)
            return False
        self.sent += 1
        self._sent_pos, self._sent_rot, self._sent_robot_t = pos, rot, t_robot
        return True

    def tick(self) -> None:
        """One control step: watchdog, setpoint, safety, send."""
        with self._lock:
            now = self.clock()
            dt = 1.0 / self.cfg.control_hz if self._last_tick is None else max(1e-4, now - self._last_tick)
            self._last_tick = now
            if self.robot.is_in_control:
                c = np.asarray(self.robot.state.O_T_EE_c.matrix)[:3, 3]
                lim = self.cfg.limits
                if np.any(c < lim.lo - lim.guard_margin_m) or np.any(c > lim.hi + lim.guard_margin_m):
                    self.safety._event("guard_stop", f"commanded pose {np.round(c, 4).tolist()} left the box")
                    self.scheduler.clear()
                    try:
                        self._call(self.robot.stop, "stop at the workspace guard")
                    except ArmTimeout as e:
                        self.faulted = True
                        self.halted = f"workspace guard: {e}"
                        log.error("arm %s", self.halted)
                        return
                    self._stop_target = None
                    self.halted = "workspace guard: commanded pose left the box"
                    self._anchor_to_measured()
                    return
            try:
                self.robot.poll_motion()
            except Exception as e:
                if "preempted" not in str(e):  # our own stop/preemption is no fault
                    self._recover(e)
                    return
            if self.halted is None and self.scheduler.active:
                names = ("command", "observation") if self.watch_observations else ("command",)
                reason = self.watchdog.check(now, names=names, required=names[1:])
                if reason is not None:
                    self._halt(reason)
                    return
            if self.halted is not None and self._stop_target is not None:
                if self._flush():  # waits while a preemption is not safe
                    self._stop_target = None
                return
            if self.halted is not None or not self.scheduler.active:
                return
            sp = self.scheduler.setpoint(now)
            if sp is None:
                return
            pos, rot, grip, finished = sp
            self._cmd_pos, self._cmd_rot = self.safety.limit(self._cmd_pos, self._cmd_rot, pos, rot, dt)
            flushed = self._flush()
            if self.halted is not None:  # _flush recovered from an error
                return
            if grip != self._cmd_grip and self.gripper_cb is not None:
                self.gripper_cb(grip)
            self._cmd_grip = grip
            if finished and flushed and np.linalg.norm(self._cmd_pos - self.scheduler.pos[-1]) < 2e-4:
                self.scheduler.clear()

    def _loop(self) -> None:
        period = 1.0 / self.cfg.control_hz
        nxt = time.monotonic()
        while self._running:
            try:
                self.tick()
            except Exception as e:
                log.exception("arm control step failed")
                self.last_error = e
            nxt += period
            now = time.monotonic()
            if nxt < now:  # late (a loaded machine): skip the missed periods, no catch-up burst
                nxt += period * np.ceil((now - nxt) / period)
            time.sleep(max(0.0, nxt - now))

    def start(self) -> None:
        self.halted = None if self.halted == "not started" else self.halted
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="franka-arm", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            if self._thread.is_alive():
                log.error("arm: the control thread did not end within 2 s of stop()")
        # a control thread stuck in a robot call holds the lock: stop the robot regardless then
        locked = self._lock.acquire(timeout=self.cfg.call_timeout_s)
        if not locked:
            log.error(
                "arm: control lock not free within %g s of stop(): stopping anyway", self.cfg.call_timeout_s
            )
        try:
            self.scheduler.clear()
            try:
                if self.robot is not None and self.robot.is_in_control:
                    self._call(self.robot.stop, "stop the arm")
            except Exception as e:
                log.warning("stopping the arm raised: %s", e)
        finally:
            if locked:
                self._lock.release()
