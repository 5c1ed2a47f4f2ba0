"""Runs FrankaArm against franky-sim; executed by tests/test_hw_arm.py inside a network
namespace with only loopback (`unshare -n`), because franky-sim binds UDP on 0.0.0.0.

The simulator runs as a child process (`python -m franky_sim.run_server -s mujoco`) in the same
namespace, not embedded: in one process with franky's libfranka client it crashed natively
(SIGSEGV in its own UDP sender thread) in about a third of the runs under heavy CPU load. The
child gets SIGKILL when this process dies (PR_SET_PDEATHSIG) and is terminated on every exit
path, so no simulator outlives a failed or killed run.

A monitor thread samples the simulated robot's own state at about 250 Hz: O_T_EE_c (the pose
the robot was commanded, i.e. what it received) and O_T_EE (measured). Each scenario writes its
trace and the driver's counters to the JSON file given as argv[1]; the test asserts on them.

Every wait has a deadline and fails with a message naming what it waited for; each step prints a
progress line, and past SCENARIO_DEADLINE_S faulthandler prints every thread's stack and exits, so
a stuck run says where it stuck well before the test's own timeout kills it.

Franka Hand moves on franky-sim are never stopped or replaced while they run (``hand_move``): its
gripper server drops the answer to a move that a Stop interrupts (FrankaGripperServer.stop clears
the pending command without replying), libfranka's Gripper::move waits for that answer without a
deadline, and dropping the std::async future of franky's move_async joins that thread, so the
FrankaHandGripper call that drops it (``_send_target`` or ``_close``) blocks forever. Whether the
Stop reached the server before the move's answer was a race that CPU load decided (the hangs of
this test: 2 in 24 runs with three busy loops, stuck in FrankaHandGripper._close).
"""

from __future__ import annotations

import ctypes
import faulthandler
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

import numpy as np

from class_core.geometry import quat_to_matrix
from class_core.hardware.arm import ArmConfig, ChunkRejected, FrankaArm, SafetyLimits, call_with_deadline
from class_core.hardware.gripper import FrankaHandGripper, GripperConfig

SCENARIO_DEADLINE_S = 180.0  # the whole run (about 20 s unloaded); the test kills it at 240 s
_T0 = time.time()


def progress(msg: str) -> None:
    print(f"[{time.time() - _T0:6.1f} s] {msg}", flush=True)


class Monitor:
    def __init__(self, robot, lock):
        self.robot = robot
        self.lock = lock
        self.rows: list[list[float]] = []
        self._run = True
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def _loop(self):
        while self._run:
            with self.lock:  # the driver's lock: franky's Robot is used from one thread at a time
                s = self.robot.state
            c = np.asarray(s.O_T_EE_c.matrix)[:3, 3]
            m = np.asarray(s.O_T_EE.matrix)[:3, 3]
            self.rows.append([time.time(), *c.tolist(), *m.tolist(), s.time.to_sec()])
            time.sleep(0.004)

    def take(self) -> list[list[float]]:
        rows, self.rows = self.rows, []
        return rows

    def close(self, timeout_s: float = 5.0):
        self._run = False
        self._t.join(timeout_s)
        if self._t.is_alive():
            raise TimeoutError(
                f"monitor thread did not end within {timeout_s:g} s (waits for the arm's lock)"
            )


def action(pos, rot, g=0.0):
    return np.concatenate([pos, rot[:, :2].T.reshape(6), [g]])


def chunk(p0, rot, deltas, g=0.0):
    return np.stack([action(p0 + d, rot, g) for d in deltas])


def settle(arm: FrankaArm, what: str, limit_s: float = 20.0) -> None:
    """Waits until the plan is done and the commanded pose is at rest: a loaded simulator runs
    slower than the wall clock the chunks are timed in. TimeoutError after ``limit_s``."""
    t_end = time.time() + limit_s
    while True:
        with arm._lock:
            busy = arm.scheduler.active or arm._stop_target is not None
            v = np.asarray(arm.robot.state.O_dP_EE_c.linear)
        if not busy and np.linalg.norm(v) < 1e-3:
            return
        if time.time() > t_end:
            raise TimeoutError(
                f"{what}: the arm did not come to rest within {limit_s:g} s (plan or stop pending: "
                f"{busy}, commanded speed {np.linalg.norm(v):.4f} m/s, halted: {arm.halted})"
            )
        time.sleep(0.02)


def join_motion(arm: FrankaArm, what: str, timeout_s: float = 10.0) -> None:
    with arm._lock:
        if not arm.robot.join_motion(timeout=timeout_s):
            raise TimeoutError(f"{what}: franky's motion did not end within {timeout_s:g} s (join_motion)")


def hand_move(g: FrankaHandGripper, action: float, timeout_s: float = 20.0) -> float:
    """Sets the gripper action, waits until franky-sim has answered the move it caused (it does
    once the fingers have settled) and returns the width read after that. The next move therefore
    never stops a running one (see the module docstring). TimeoutError names the missing step."""
    target = g.set_action(action)
    t_end = time.monotonic() + timeout_s

    def left() -> float:
        return max(0.0, t_end - time.monotonic())

    while g._sent != target:  # the gripper thread sends it at its next tick
        if not left():
            raise TimeoutError(
                f"Franka Hand: the gripper thread did not send the target {target:.3f} m within "
                f"{timeout_s:g} s (last error: {g.error!r})"
            )
        time.sleep(0.005)
    if not g._future.wait(left()):
        raise TimeoutError(
            f"Franka Hand: franky-sim did not answer the move to {target:.3f} m within {timeout_s:g} s "
            f"(width {g.width_m:.4f} m)"
        )
    t_done = g._clock()
    while g.stamp_s <= t_done:  # a width read after the move ended
        if not left():
            raise TimeoutError(f"Franka Hand: no width read within {timeout_s:g} s of the move's end")
        time.sleep(0.005)
    return g.width_m


def save(res: dict, out_path: str) -> None:
    text = json.dumps(res)  # serialise fully before touching the file
    with open(out_path + ".tmp", "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(out_path + ".tmp", out_path)


SIM_PORTS = (1337, 1338)  # franky-sim's arm and Franka Hand command ports (TCP)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def start_sim(log_path: str, timeout_s: float = 90.0) -> subprocess.Popen:
    """Starts franky-sim on 127.0.0.1 in a child process (faulthandler on, output to log_path)
    and returns once its arm and gripper ports accept connections. A probe connection is
    harmless: the server accepts it, sees it closed and waits for the next client."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-X", "faulthandler", "-u", "-m", "franky_sim.run_server"]
            + ["-s", "mujoco", "--hostname", "127.0.0.1"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
    t_end = time.time() + timeout_s
    pending = list(SIM_PORTS)
    progress(f"franky-sim started (pid {proc.pid}); waiting for ports {pending}")
    try:
        while pending:
            if proc.poll() is not None:
                raise RuntimeError(f"franky-sim exited with {proc.returncode} during startup")
            if time.time() > t_end:
                raise RuntimeError(f"franky-sim did not open port(s) {pending} in {timeout_s:.0f} s")
            try:
                socket.create_connection(("127.0.0.1", pending[0]), timeout=1.0).close()
                pending.pop(0)
            except OSError:
                time.sleep(0.1)
    except BaseException:
        stop_sim(proc)
        raise
    progress("franky-sim accepts connections")
    return proc


def stop_sim(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        print(f"franky-sim had exited with {proc.returncode}", file=sys.stderr)
        return
    proc.terminate()
    try:
        proc.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        proc.kill()
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            print(f"franky-sim (pid {proc.pid}) did not exit within 5 s of SIGKILL", file=sys.stderr)


def main(out_path: str) -> None:
    faulthandler.enable()  # a native crash (franky) names its thread in stderr
    # a run stuck past the deadline prints every thread's stack and exits (the simulator dies
    # with it: PR_SET_PDEATHSIG)
    faulthandler.dump_traceback_later(SCENARIO_DEADLINE_S, exit=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=False, timeout=10)
    t0 = time.time()
    proc = start_sim(out_path + ".sim.log")
    rc = 0
    try:
        run(out_path, t0)
        progress("scenarios done")
        if proc.poll() is not None:  # the results are suspect if the simulator died under them
            raise RuntimeError(f"franky-sim exited with {proc.returncode} during the scenarios")
    except BaseException:
        traceback.print_exc()
        rc = 1
    finally:
        stop_sim(proc)
    # franky's native threads can crash at interpreter teardown; the results are written (or
    # the error printed), so leave without it
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


def run(out_path: str, t0: float) -> None:
    res: dict = {"startup_s": None}
    cfg = ArmConfig(
        host="127.0.0.1",
        realtime="ignore",
        relative_dynamics_factor=0.3,
        home_dynamics_factor=0.3,
        home_timeout_s=60.0,
    )
    arm = FrankaArm(cfg)
    arm.connect()
    progress("arm connected")
    arm.home()
    progress("arm homed")
    res["startup_s"] = time.time() - t0
    home = arm.read_state()
    p0, r0 = home.ee_pos, quat_to_matrix(home.ee_quat)
    res["home_pos"] = p0.tolist()
    # workspace box: 4 cm around home in x and y, so tests can push against it
    lim = SafetyLimits(
        workspace_min=(p0 - [0.04, 0.04, 0.10]).tolist(),
        workspace_max=(p0 + [0.04, 0.04, 0.10]).tolist(),
        max_linear_speed=0.3,
        command_timeout_s=3.0,
        observation_timeout_s=0.3,
    )
    arm.set_limits(lim)
    arm.watch_observations = False
    # 0. Franka Hand through franky's Gripper on the simulator's gripper server
    g = FrankaHandGripper(
        GripperConfig(kind="franka_hand", host="127.0.0.1", open_width_m=0.08, speed_m_s=0.1)
    )
    call_with_deadline(g.start, 30.0, "Franka Hand: connect and homing (FrankaHandGripper.start)")
    widths = [hand_move(g, 0.0), hand_move(g, 1.0)]  # open, then closed; each move runs to its end
    # no move runs now, so stop() has none to stop (see the module docstring)
    call_with_deadline(g.stop, 15.0, "Franka Hand: FrankaHandGripper.stop")
    res["hand"] = {"widths": widths, "ticks": g.ticks}
    progress(f"Franka Hand: widths {np.round(widths, 4).tolist()}")
    mon = Monitor(arm.robot, arm._lock)
    arm.start()
    dt = 0.1
    steps = np.arange(1, 17)

    # 1. a chunk that runs 12 cm out of the box in +x: clipped at the wall
    now = time.time()
    arm.execute_chunk(now + dt * steps, chunk(p0, r0, [[0.0075 * k, 0, 0] for k in steps]))
    time.sleep(2.2)
    settle(arm, "workspace scenario")
    res["workspace"] = {
        "trace": mon.take(),
        "box_max": lim.workspace_max,
        "box_min": lim.workspace_min,
        "events": dict(arm.safety.events),
    }

    save(res, out_path)
    progress("scenario workspace done")

    # 2. refuse mode: a chunk out of the box must not execute at all
    lim.out_of_workspace = "refuse"
    start = arm.read_state().ee_pos
    try:
        arm.execute_chunk(time.time() + dt * steps, chunk(start, r0, [[0, 0.006 * k, 0] for k in steps]))
        refused = False
    except ChunkRejected:
        refused = True
    time.sleep(0.8)
    res["refuse"] = {"refused": refused, "start": start.tolist(), "trace": mon.take()}
    lim.out_of_workspace = "clip"

    save(res, out_path)
    progress("scenario refuse done")

    # 3. a stale chunk (all steps in the past) never executes
    start = arm.read_state().ee_pos
    kept = arm.execute_chunk(
        time.time() - 2.0 + dt * steps, chunk(start, r0, [[-0.003 * k, 0.002 * k, 0] for k in steps])
    )
    time.sleep(1.0)
    res["stale"] = {"kept": kept, "start": start.tolist(), "trace": mon.take()}

    save(res, out_path)
    progress("scenario stale done")

    # 4. waypoints without stopping, then a new chunk replaces the rest of the plan
    start = arm.read_state().ee_pos
    t1 = time.time()
    arm.execute_chunk(t1 + dt * steps, chunk(start, r0, [[-0.004 * k, -0.002 * k, 0] for k in steps]))
    time.sleep(0.6)  # a quarter of A's 6.4 cm done: B replaces the rest
    mid = arm.read_state().ee_pos
    t2 = time.time()
    target_b = mid + [0.0, 0.05, 0.0]
    arm.execute_chunk(t2 + dt * steps, chunk(mid, r0, [[0, 0.05 * k / 16, 0] for k in steps]))
    time.sleep(2.0)
    settle(arm, "replace scenario")
    res["replace"] = {
        "t1": t1,
        "t2": t2,
        "start": start.tolist(),
        "target_b": np.clip(target_b, lim.lo, lim.hi).tolist(),
        "trace": mon.take(),
    }

    save(res, out_path)
    progress("scenario replace done")

    # 5. watchdog: observations stop in the middle of a long chunk
    arm.watch_observations = True
    feeding = threading.Event()
    feeding.set()

    def feed():
        while feeding.is_set():
            arm.feed_observation()
            time.sleep(1 / 30)

    th = threading.Thread(target=feed, daemon=True)
    th.start()
    time.sleep(0.1)
    start = arm.read_state().ee_pos
    long_steps = np.arange(1, 41)
    arm.execute_chunk(
        time.time() + dt * long_steps, chunk(start, r0, [[-0.0015 * k, 0, 0] for k in long_steps])
    )
    time.sleep(1.0)
    feeding.clear()
    t_last_obs = arm.watchdog.last["observation"]
    th.join(5.0)
    if th.is_alive():
        raise TimeoutError("watchdog scenario: the observation feeder thread did not end within 5 s")
    time.sleep(1.5)
    settle(arm, "watchdog scenario (after the halt)")
    res["watchdog"] = {"t_last_obs": t_last_obs, "timeout": 0.3, "halted": arm.halted, "trace": mon.take()}
    arm.watch_observations = False

    save(res, out_path)
    progress("scenario watchdog done")

    # 6. recovery: a real franky error (another control signal type started under our stream)
    import franky

    with arm._lock:
        join_motion(arm, "recovery scenario: the halted stream's last motion")  # it ends at rest
        arm.robot.move(
            franky.JointVelocityMotion(np.zeros(7), duration=franky.Duration(1000)), asynchronous=True
        )
    start = arm.read_state().ee_pos
    arm.execute_chunk(time.time() + dt * steps, chunk(start, r0, [[0.001 * k, 0, 0] for k in steps]))
    time.sleep(0.5)
    rec1 = {"recoveries": arm.recoveries, "halted": arm.halted, "error": repr(arm.last_error)}
    join_motion(arm, "recovery scenario: the motion in progress at the recovery")
    start = arm.read_state().ee_pos
    arm.execute_chunk(time.time() + dt * steps, chunk(start, r0, [[0.0, 0.0, 0.002 * k] for k in steps]))
    time.sleep(2.2)
    settle(arm, "recovery scenario (the chunk after the recovery)")
    res["recovery"] = {
        **rec1,
        "start": start.tolist(),
        "end": arm.read_state().ee_pos.tolist(),
        "halted_after": arm.halted,
        "trace": mon.take(),
    }

    progress("scenario recovery done")
    arm.stop()
    mon.close()
    res["events"] = dict(arm.safety.events)
    res["sent"], res["deferred"], res["paced"] = arm.sent, arm.deferred, arm.paced

    save(res, out_path)


if __name__ == "__main__":
    main(sys.argv[1])
