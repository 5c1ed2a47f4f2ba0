"""policy.launch.py sim:=true brings up policy_node and sim_bridge_node, for each policy mode
(nonparametric, mlp, diffusion), and action chunks of the right shape and stamps flow.

Runs with `colcon test --packages-select class_bringup` (scripts/colcon_test.sh, inside the
private network namespace of scripts/run_tests.sh; in the Docker image, the default command).
The artifacts are the small real ones of the repository's tests/demo_artifacts.py.
"""

import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS 2 unavailable: needs rclpy")
launch_pytest = pytest.importorskip("launch_pytest", reason="ROS 2 unavailable: needs launch_pytest")

from ament_index_python.packages import get_package_share_directory  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from launch import LaunchDescription  # noqa: E402

# the repository root (this file is ros2_ws/src/class_bringup/test/; symlink installs resolve there)
REPO = Path(os.environ.get("CLASS_REPO", Path(__file__).resolve().parents[4]))
sys.path.insert(0, str(REPO / "tests"))
MODES = ("nonparametric", "mlp", "diffusion")
MODELS = Path(tempfile.mkdtemp(prefix="class_launch_test_"))
T_A = 8  # the demo artifacts' n_action_steps

# DDS stays on this machine: discovery on loopback only, and a domain of these tests' own
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 90 + 10))
_others = sorted(n for _, n in socket.if_nameindex() if n != "lo")
if _others and os.environ.get("CLASS_ROS_TEST_NETWORK") != "own":
    pytest.skip(
        f"ROS 2 test refused: network interfaces {_others} besides lo (run it through "
        "scripts/run_tests.sh, which uses a private network namespace; in a container with a network "
        "of its own set CLASS_ROS_TEST_NETWORK=own)",
        allow_module_level=True,
    )


@launch_pytest.fixture(params=MODES)
def launch_description(request):
    from demo_artifacts import make_demo_artifact

    mode = request.param
    model = make_demo_artifact(MODELS / mode, mode=mode, overwrite=True)
    policy_launch = os.path.join(get_package_share_directory("class_bringup"), "launch", "policy.launch.py")
    return LaunchDescription(
        [
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(policy_launch),
                launch_arguments={
                    "sim": "true",
                    "mode": mode,
                    "model": str(model),
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
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("class_launch_probe", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        chunks = []
        node.create_subscription(JointTrajectory, "/class/policy/action_chunk", chunks.append, 100)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(chunks) < 5:
            executor.spin_once(timeout_sec=0.5)
        assert len(chunks) >= 5, f"only {len(chunks)} action chunks in 120 s on /class/policy/action_chunk"
        for msg in chunks:
            assert list(msg.joint_names) == ["x", "y"]
            assert len(msg.points) == T_A
            ts = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points]
            assert ts == pytest.approx([0.1 * k for k in range(T_A)])
            assert all(len(p.positions) == 2 for p in msg.points)
        stamps = sorted({m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in chunks})
        # lock-step: one chunk per T_a steps of 0.1 s of simulation time (a chunk sent again
        # repeats its stamp)
        gaps = [round(b - a, 6) for a, b in zip(stamps, stamps[1:], strict=False)]
        assert all(g >= T_A * 0.1 - 1e-6 for g in gaps), gaps
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
