"""Shared by the hardware nodes: robot.yaml loading, CameraInfo, and the stand-ins that
``robot.launch.py use_fake_hardware:=true`` runs instead of hardware.

The stand-ins are real components driven through the same code paths as the hardware:

- camera: ``FakeRealSense``, a pyrealsense2 ``software_device`` fed with synthetic frames at the
  configured size and rate (device clock, frame numbers), read by ``RealSenseCamera``;
- arm (and Franka Hand): franky-sim, a simulated FR3 speaking libfranka's protocol on 127.0.0.1,
  run by ``python -m class_ros.hw_common franky-sim`` (``run_franky_sim``);
- WSG-50 gripper: ``class_core.hardware.wsg50.WSG50LoopbackServer`` in the gripper node;
- Quest teleoperation: ``TraceReplay`` of oculus_reader logcat lines, one frame per teleop tick.

Everything below ``robot_config`` and ``now_ns`` is ROS-free.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
from rclpy.node import Node

from class_core.hardware.recording import load_robot_config
from class_ros.common import declare


def robot_config(node: Node, defaults: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Declare ``defaults`` (a node's DEFAULTS, which must hold ``config`` and ``overrides``) and
    return (parameter values, robot.yaml resolved with the overrides)."""
    params = declare(node, defaults)
    overrides = [o for o in params["overrides"] if o]
    return params, load_robot_config(params["config"], overrides)


def now_ns(node: Node) -> int:
    return node.get_clock().now().nanoseconds


def exit_logger(node: Node) -> Any:
    """A logger for what a node reports while it shuts down: after SIGINT/SIGTERM its context is
    gone and the node's own logger would fail to publish to /rosout."""
    import rclpy.logging

    return rclpy.logging.get_logger(f"{node.get_logger().name}.exit")


# --- camera ---------------------------------------------------------------------------------


def camera_info_msg(f: Any, intrinsics: Any, stamp_ns: int, frame_id: str) -> Any:
    """sensor_msgs/CameraInfo from pyrealsense2 intrinsics, as realsense-ros fills it: K from
    fx, fy, ppx, ppy; D = the device's coefficients ("plumb_bob", or "equidistant" with 4 for
    Kannala-Brandt); R = identity; P = [K | 0] (a colour stream is its own rectified frame); no
    binning, an empty ROI (every field set: the ``rosbags`` classes have no defaults)."""
    fx, fy, cx, cy = (
        float(intrinsics.fx),
        float(intrinsics.fy),
        float(intrinsics.ppx),
        float(intrinsics.ppy),
    )
    coeffs = [float(c) for c in intrinsics.coeffs]
    equidistant = "kannala" in str(intrinsics.model).lower()
    return f.new(
        "sensor_msgs/msg/CameraInfo",
        header=f.header(stamp_ns, frame_id),
        height=int(intrinsics.height),
        width=int(intrinsics.width),
        distortion_model="equidistant" if equidistant else "plumb_bob",
        d=f.seq(np.asarray(coeffs[:4] if equidistant else coeffs[:5]), "float64"),
        k=np.array([fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]),
        r=np.eye(3).reshape(9),
        p=np.array([fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]),
        binning_x=0,
        binning_y=0,
        roi=f.new(
            "sensor_msgs/msg/RegionOfInterest", x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        ),
    )


class FakeRealSense:
    """A pyrealsense2 ``software_device`` with one colour sensor that offers exactly the configured
    ``width x height @ fps`` rgb8 stream (D435-like intrinsics: about 70 degrees horizontal
    field of view, no distortion) and a thread that feeds it synthetic frames at ``fps``: a colour
    gradient with a bar that moves one step per frame, stamped by a device clock (milliseconds
    since an arbitrary origin, ``hardware_clock`` domain) that ``RealSenseCamera`` maps to host
    time as it does for a real camera. Frame numbers count up; a late feeder skips ticks
    (the reader sees the gap as dropped frames) instead of bursting."""

    SERIAL = "FAKE0001"

    def __init__(self, width: int, height: int, fps: int):
        import pyrealsense2 as rs

        self.rs = rs
        self.width, self.height, self.fps = int(width), int(height), int(fps)
        self.device = rs.software_device()
        self._sensor = self.device.add_sensor("Color")
        vs = rs.video_stream()
        vs.type, vs.index, vs.uid = rs.stream.color, 0, 0
        vs.width, vs.height, vs.fps, vs.bpp, vs.fmt = self.width, self.height, self.fps, 3, rs.format.rgb8
        intr = rs.intrinsics()
        intr.width, intr.height = self.width, self.height
        intr.fx = intr.fy = 0.71 * self.width
        intr.ppx, intr.ppy = (self.width - 1) / 2.0, (self.height - 1) / 2.0
        intr.model = rs.distortion.brown_conrady
        intr.coeffs = [0.0] * 5
        vs.intrinsics = intr
        self.intrinsics = intr
        self._profile = self._sensor.add_video_stream(vs).as_video_stream_profile()
        self.device.register_info(rs.camera_info.serial_number, self.SERIAL)
        self.device.register_info(rs.camera_info.name, "Fake RealSense (software_device)")
        y = np.linspace(0, 255, self.height, dtype=np.float32)[:, None]
        x = np.linspace(0, 255, self.width, dtype=np.float32)[None, :]
        self._base = np.stack(
            [np.broadcast_to(x, (self.height, self.width)), np.broadcast_to(y, (self.height, self.width)),
             np.full((self.height, self.width), 96.0, np.float32)], axis=-1,
        ).astype(np.uint8)  # fmt: skip
        self.frames = 0
        self._run = False
        self._thread: threading.Thread | None = None

    def frame(self, k: int) -> np.ndarray:
        img = self._base.copy()
        bar = max(1, self.width // 64)
        x0 = (k * bar) % self.width
        img[:, x0 : x0 + bar] = 255
        return img

    def _feed(self) -> None:
        rs = self.rs
        period = 1.0 / self.fps
        nxt = time.monotonic()
        k = 0
        while self._run:
            f = rs.software_video_frame()
            f.pixels, f.bpp, f.stride = self.frame(k), 3, self.width * 3
            f.timestamp = time.monotonic() * 1e3  # the device's clock, in ms
            f.domain = rs.timestamp_domain.hardware_clock
            f.frame_number = k
            f.profile = self._profile
            self._sensor.on_video_frame(f)  # copies the pixels
            self.frames += 1
            nxt += period
            now = time.monotonic()
            if nxt < now:  # late: skip the missed ticks
                missed = int((now - nxt) / period) + 1
                nxt += missed * period
                k += missed
            else:
                k += 1
            time.sleep(max(0.0, nxt - time.monotonic()))

    def start(self) -> FakeRealSense:
        self._run = True
        self._thread = threading.Thread(target=self._feed, name="fake-realsense", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._run = False
        if self._thread is not None:
            self._thread.join(timeout=2.0)


# --- teleoperation ----------------------------------------------------------------------------


class TraceReplay:
    """Controller frames from a recorded oculus_reader logcat trace, parsed by the same codec as
    ``LogcatReader``. ``latest()`` returns the next frame on every call (the teleop node calls it
    once per tick), looping at the end, so a replay is the same sequence of frames whatever the
    machine's load: no button press of the trace can fall between two ticks."""

    def __init__(self, lines: Iterable[str], hand: str = "r"):
        from class_core.hardware.teleop import parse_line

        self.samples = [s for s in (parse_line(line, hand, t=0.0) for line in lines) if s is not None]
        if not self.samples:
            raise ValueError(f"the teleop trace has no frame of controller {hand!r}")
        self.frames = 0

    def latest(self) -> Any:
        s = self.samples[self.frames % len(self.samples)]
        self.frames += 1
        return s

    def stop(self) -> None:
        pass


def builtin_trace_lines(rate_hz: float, hand: str = "r", seconds: float = 6.0) -> list[str]:
    """The trace that fake hardware replays when none is given: grip released for half a second
    (so every loop engages anew), then engaged while the controller draws a 3 cm circle and the
    trigger closes and opens. No button is pressed, so it never emits an episode event (a policy
    run with fake hardware is not paused by it)."""
    from class_core.hardware.teleop import ControllerSample, format_line

    n = max(2, int(round(seconds * rate_hz)))
    lines = []
    for k in range(n):
        phase = 2.0 * np.pi * k / n
        pose = np.eye(4)
        pose[:3, 3] = [0.1 + 0.03 * np.sin(phase), 1.2, -0.3 + 0.03 * (1.0 - np.cos(phase))]
        grip = 0.0 if k < rate_hz / 2 else 1.0
        trigger = 0.5 * (1.0 - np.cos(phase))
        lines.append(format_line(ControllerSample(k / rate_hz, pose, grip, trigger, {}), hand))
    return lines


# --- franky-sim ---------------------------------------------------------------------------------


def run_franky_sim(argv: list[str] | None = None) -> int:
    """franky-sim (MuJoCo) for ``use_fake_hardware:=true``: a simulated FR3 with a Franka Hand
    on ``--hostname`` (TCP 1337/1338; its UDP socket binds 0.0.0.0, so use an isolated network).

    Unlike the ``franky-sim`` script it outlives a Ctrl-C, which the terminal sends to the whole
    process group at once, until its clients have disconnected (at most ``--grace`` seconds): the
    arm node stops the simulated arm before the simulator goes, as it would stop a real one.
    SIGTERM ends it at once. Prints ``franky-sim ready on <host>`` once it accepts connections;
    exits 0.
    """
    import argparse
    import signal

    from franky_sim import SimulationServer
    from franky_sim.run_server import load_simulator

    ap = argparse.ArgumentParser(prog="python -m class_ros.hw_common franky-sim")
    ap.add_argument("--hostname", default="127.0.0.1")
    ap.add_argument("-s", "--simulator", default="mujoco")
    ap.add_argument("--grace", type=float, default=15.0, help="s to wait for clients after SIGINT")
    args = ap.parse_args(argv)
    interrupted: list[float] = []
    terminated: list[bool] = []
    signal.signal(signal.SIGINT, lambda *_: interrupted.append(time.monotonic()))
    signal.signal(signal.SIGTERM, lambda *_: terminated.append(True))
    simulator, _ = load_simulator(args.simulator)

    def clients(server: Any) -> bool:
        for rs in server.robot_servers:
            if rs.tcp_connected or (rs.gripper_server is not None and rs.gripper_server.tcp_connected):
                return True
        return False

    with simulator(enable_visualization=False) as sim:
        sim.add_robot()
        with SimulationServer(sim, hostname_candidates=[args.hostname]) as server:
            print(f"franky-sim ready on {args.hostname}", flush=True)
            while not terminated:
                server.run_once()
                if interrupted and (not clients(server) or time.monotonic() - interrupted[0] > args.grace):
                    break
        # Ctrl-C reaches us twice (the terminal's process group, then launch): a late one must not
        # kill the interpreter while it finalises (it restores SIG_DFL for Python handlers, not
        # for SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("franky-sim stopped", flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["franky-sim"]:
        sys.exit(run_franky_sim(sys.argv[2:]))
    sys.exit(
        f"usage: python -m class_ros.hw_common franky-sim [--hostname H] [--grace S]; got {sys.argv[1:]}"
    )
