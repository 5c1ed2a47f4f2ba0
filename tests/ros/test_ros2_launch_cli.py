"""`ros2 launch` as a user types it: chunks arrive at the expected rate (`ros2 topic hz`), and
Ctrl-C (SIGINT to the terminal's process group) ends everything cleanly, leaving no process."""

from __future__ import annotations

import re
import signal
import subprocess

import psutil
import pytest

pytest.importorskip("rclpy", reason="ROS 2 unavailable: rclpy does not import")
from ros_helpers import NodeProcess  # noqa: E402

CONTROL_HZ, T_A = 10.0, 8  # policy.yaml's control_hz, the demo artifact's n_action_steps


def test_policy_launch_rate_and_clean_ctrl_c(demo_models, probe, node_processes, tmp_path):
    cmd = [
        "ros2", "launch", "class_bringup", "policy.launch.py", "sim:=true", "clock:=realtime",
        "mode:=nonparametric", f"model:={demo_models['nonparametric']}",
    ]  # fmt: skip
    launch = NodeProcess(cmd, "ros2_launch", tmp_path)
    node_processes.append(launch)
    chunks = probe.subscribe("/class/policy/action_chunk", "trajectory_msgs/msg/JointTrajectory")
    probe.spin_until(lambda: len(chunks) >= 2, 120, "action chunks from `ros2 launch`", [launch])
    children = psutil.Process(launch.proc.pid).children(recursive=True)
    names = " ".join(" ".join(c.cmdline()) for c in children)
    assert "policy_node" in names and "sim_bridge_node" in names, names

    hz = subprocess.run(
        ["timeout", "-s", "INT", "12", "ros2", "topic", "hz", "/class/policy/action_chunk", "--window", "8"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    rates = [float(r) for r in re.findall(r"average rate: ([0-9.]+)", hz.stdout)]
    assert rates, f"`ros2 topic hz` measured nothing:\n{hz.stdout}\n{hz.stderr}"
    # realtime: one chunk every T_a control periods (1.25 Hz), whatever the inference takes
    assert abs(rates[-1] - CONTROL_HZ / T_A) < 0.3, rates

    launch.send_signal(signal.SIGINT)  # Ctrl-C: the whole foreground process group
    rc = launch.wait(60)
    out = launch.output()
    assert rc == 0, out
    assert "Traceback" not in out and "process has died" not in out, out
    assert out.count("process has finished cleanly") == 2, out
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"left behind: {[c.cmdline() for c in alive]}"
