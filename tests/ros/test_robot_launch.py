"""``ros2 launch class_bringup robot.launch.py use_fake_hardware:=true`` as a user runs it: every
driver comes up against its stand-in (software_device camera, franky-sim arm, WSG-50 loopback
gripper, replayed teleop trace), its topics flow, and a Ctrl-C (SIGINT to the process group, as
a terminal sends it) ends every process with exit status 0, no traceback and no orphan."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="ROS 2 unavailable: rclpy does not import")
from ros_helpers import NodeProcess  # noqa: E402

TOPICS = {  # topic -> (type, best effort: the hardware nodes' sensor streams)
    "/camera/camera/color/camera_info": ("sensor_msgs/msg/CameraInfo", False),
    "/class/obs/image": ("sensor_msgs/msg/Image", False),
    "/joint_states": ("sensor_msgs/msg/JointState", True),
    "/class/robot/ee_pose": ("geometry_msgs/msg/PoseStamped", True),
    "/class/gripper/state": ("sensor_msgs/msg/JointState", True),
    "/class/teleop/target": ("geometry_msgs/msg/PoseStamped", False),
    "/class/teleop/joy": ("sensor_msgs/msg/Joy", False),
}
PROCESSES = {  # launch's process name -> what it prints once its hardware is stopped
    "franky_sim": "franky-sim stopped",
    "camera_node": "camera stopped",
    "arm_node": "arm stopped",
    "gripper_node": "gripper stopped",
    "teleop_node": "teleop stopped",
}


def session_members(sid: int) -> list[str]:
    """Processes of session ``sid`` still alive (NodeProcess starts each command in its own)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == sid and fields[0] != "Z":  # fields: state ppid pgrp session ...
            out.append(f"{d.name} {stat[stat.index('(') + 1 : stat.rindex(')')]}")
    return out


def test_robot_launch_with_fake_hardware(probe, node_processes, tmp_path):
    from rclpy.qos import qos_profile_sensor_data

    boxes = {
        t: probe.subscribe(t, ty, qos_profile_sensor_data if be else 10) for t, (ty, be) in TOPICS.items()
    }
    launch = NodeProcess(
        ["ros2", "launch", "class_bringup", "robot.launch.py", "use_fake_hardware:=true"],
        "robot_launch",
        tmp_path,
    )
    node_processes.append(launch)
    # franky-sim starts, then the arm node connects and homes; the teleop node publishes targets
    # once it has the arm's pose
    probe.spin_until(
        lambda: all(len(b) >= 3 for b in boxes.values()),
        180,
        "messages on " + ", ".join(TOPICS),
        [launch],
    )
    assert probe.node.count_publishers("/camera/camera/color/image_raw") == 1
    assert probe.node.count_subscribers("/class/policy/action_chunk") == 1  # the arm executes chunks
    names = set(probe.node.get_node_names())
    assert {"class_camera", "class_arm", "class_gripper", "class_teleop"} <= names, names
    gripper_width = boxes["/class/gripper/state"][-1][1].position[0]
    assert abs(gripper_width - 0.11) < 1e-3, "the fake WSG-50 did not home open"

    launch.send_signal(signal.SIGINT)  # the whole process group, as Ctrl-C in a terminal
    rc = launch.wait(60)
    left = session_members(launch.proc.pid)
    out = launch.output()
    assert rc == 0, f"ros2 launch exited with {rc}:\n{out[-4000:]}"
    assert not left, f"processes left behind by ros2 launch: {left}"
    assert "Traceback" not in out, out[-4000:]
    assert "escalating to" not in out, out[-4000:]  # nothing needed SIGTERM or SIGKILL
    for name, stopped in PROCESSES.items():
        lines = [line for line in out.splitlines() if line.startswith(f"[INFO] [{name}-")]
        assert any("process started" in line for line in lines), f"{name} never started:\n{out[-4000:]}"
        ends = [line for line in lines if "process has" in line]
        assert len(ends) == 1 and "finished cleanly" in ends[0], f"{name}: {ends}\n{out[-4000:]}"
        assert stopped in out, f"{name} did not report {stopped!r}:\n{out[-4000:]}"
