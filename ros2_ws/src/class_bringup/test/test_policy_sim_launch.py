"""policy.launch.py sim:=true brings up policy_node and sim_bridge_node, and action chunks flow.

Runs in the Docker image (`colcon test --packages-select class_bringup`); skips without ROS 2.
"""

import os
import tempfile
import time

import pytest

rclpy = pytest.importorskip(
    "rclpy", reason="needs ROS 2 (rclpy): run inside the Docker image with colcon test"
)
launch_pytest = pytest.importorskip("launch_pytest", reason="needs ROS 2's launch_pytest")

from ament_index_python.packages import get_package_share_directory  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from launch import LaunchDescription  # noqa: E402

MODEL = os.path.join(tempfile.mkdtemp(prefix="class_launch_test_"), "pusht_demo")


@launch_pytest.fixture
def launch_description():
    from class_core.deploy.demo_artifact import make_demo_artifact

    make_demo_artifact(MODEL, overwrite=True)
    policy_launch = os.path.join(get_package_share_directory("class_bringup"), "launch", "policy.launch.py")
    return LaunchDescription(
        [
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(policy_launch),
                launch_arguments={
                    "sim": "true",
                    "mode": "nonparametric",
                    "model": MODEL,
                    "task": "pusht",
                    "seed": "3",
                    "n_episodes": "0",
                }.items(),
            ),
            launch_pytest.actions.ReadyToTest(),
        ]
    )


@pytest.mark.launch(fixture=launch_description)
def test_action_chunks_flow_between_policy_and_sim_bridge():
    rclpy.init()
    try:
        node = rclpy.create_node("class_launch_probe")
        chunks = []
        node.create_subscription(JointTrajectory, "/class/policy/action_chunk", chunks.append, 10)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(chunks) < 5:
            rclpy.spin_once(node, timeout_sec=0.5)
        assert len(chunks) >= 5, f"only {len(chunks)} action chunks in 120 s"
        for msg in chunks:
            assert list(msg.joint_names) == ["x", "y"]
            assert len(msg.points) == 8  # T_a of the demo artifact
            ts = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points]
            assert ts == pytest.approx([0.1 * k for k in range(8)])
        stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in chunks]
        assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))  # one chunk per observation stamp
        node.destroy_node()
    finally:
        rclpy.shutdown()
