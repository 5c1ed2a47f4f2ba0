"""A replayed Quest trace drives the simulated arm (teleop_record.launch.py operator:=vr trace:=<file>).

``ros2 launch class_bringup teleop_record.launch.py sim:=true task:=lift operator:=vr trace:=T``
starts the simulated arm (sim_teleop_node), teleop_node replaying the oculus_reader logcat trace T
(config/lift.yaml: the teleop section's defaults, the arm.limits of the simulator's world) and the
recorder. The trace (written with ``class_core.hardware.teleop.format_line``) waits 1 s, presses A
(``start``: the simulated arm runs an episode), then engages (grip) and moves the controller 15 cm
towards the robot's +x over 10 s. Targets must flow on /class/teleop/target and the arm's
/class/robot/ee_pose must follow them; the recorder records the ``start``; Ctrl-C (SIGINT to the
launch's process group) ends every node cleanly.
"""

from __future__ import annotations

import re
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 unavailable: rclpy does not import")
from ros_helpers import REPO, NodeProcess  # noqa: E402

from class_core.hardware.teleop import ControllerSample, format_line  # noqa: E402

RATE_HZ = 30  # teleop.rate_hz (TeleopConfig default; config/lift.yaml has no teleop section)
WAIT, PRESS, MOVE = 30, 2, 300  # frames: released, A pressed, engaged and moving
TRAVEL = 0.15  # m towards the robot's +x (the headset's -z, teleop.vr_to_robot)
LAUNCH_TIMEOUT_S = 120  # robosuite and the nodes start in 20-40 s on 2 loaded cores
MIN_MOVE = 0.015  # m of ee_pose travel along +x that proves the arm follows


def write_trace(path: Path) -> Path:
    lines = []
    for k in range(WAIT + PRESS + MOVE):
        pose = np.eye(4)
        moved = max(0, k - WAIT - PRESS) / MOVE
        pose[:3, 3] = [0.1, 1.2, -0.3 - TRAVEL * moved]
        pressed = WAIT <= k < WAIT + PRESS
        grip = 1.0 if k >= WAIT + PRESS else 0.0
        lines.append(format_line(ControllerSample(k / RATE_HZ, pose, grip, 0.0, {"A": pressed}), "r"))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_replayed_quest_trace_drives_the_simulated_arm(probe, node_processes, tmp_path):
    from rclpy.qos import qos_profile_sensor_data

    from class_core import ros_msgs as rm

    trace = write_trace(tmp_path / "quest_trace.txt")
    targets = probe.subscribe("/class/teleop/target", "geometry_msgs/msg/PoseStamped", 100)
    poses = probe.subscribe("/class/robot/ee_pose", "geometry_msgs/msg/PoseStamped", qos_profile_sensor_data)
    ros2 = shutil.which("ros2") or str(Path(REPO) / ".venv" / "bin" / "ros2")
    launch = NodeProcess(
        [ros2, "launch", "class_bringup", "teleop_record.launch.py", "sim:=true", "task:=lift",
         "operator:=vr", f"trace:={trace}", f"data_root:={tmp_path / 'bags'}",
         "overrides:=task.kwargs.image_size=32 sim_teleop.rate=10"],
        "sim_teleop_vr_trace", tmp_path,
    )  # fmt: skip
    node_processes.append(launch)
    t0 = time.monotonic()

    def x_travel() -> float:
        """How far ee_pose has gone along +x since the first target (the start of the motion)."""
        if not targets or not poses:
            return 0.0
        first = targets[0][0]
        xs = [rm.pose_to_numpy(m)[0][0] for t, m in poses if t >= first]
        return max(xs) - xs[0] if xs else 0.0

    probe.spin_until(lambda: len(targets) >= 30 and x_travel() >= MIN_MOVE, LAUNCH_TIMEOUT_S,
                     f"30 targets and {MIN_MOVE} m of ee_pose travel along +x", [launch])  # fmt: skip
    flowing_s = time.monotonic() - t0
    tx = [rm.pose_to_numpy(m)[0][0] for _, m in targets]
    assert tx[-1] - tx[0] > 0.01, f"the targets do not move along +x: {tx[0]:.3f} -> {tx[-1]:.3f}"

    rc = launch.stop(signal.SIGINT, timeout=60)
    log = launch.output()
    assert rc == 0, f"ros2 launch exited {rc}:\n{log[-5000:]}"
    assert "Traceback" not in log, log[-5000:]
    assert re.search(r"replaying \d+ frames of .*quest_trace\.txt", log), log[-3000:]
    assert "event 'start'" in log, log[-3000:]  # the trace's A, recorded
    started = re.findall(r"\[(\w+)-\d+\]: process started with pid", log)
    assert sorted(started) == ["recorder_node", "sim_teleop_node", "teleop_node"], started
    for name in started:
        assert re.search(rf"\[{name}-\d+\]: process has finished cleanly", log), f"{name}:\n{log[-5000:]}"
    print(f"targets and motion after {flowing_s:.1f} s; ee_pose travelled {x_travel():.3f} m along +x")
