"""The rules of tests/conftest.py for ROS 2 tests: never beside a network interface, and never
silently skipped in CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ros_rules import network_leak

REPO = Path(__file__).resolve().parents[1]


def test_network_leak_names_the_interfaces_and_a_down_loopback():
    why = network_leak(["lo", "eth0"], lo_flags=0x1)
    assert why is not None and "eth0" in why and "unshare -n" in why
    assert "loopback is down" in (network_leak(["lo"], lo_flags=0x0) or "")
    assert network_leak(["lo"], lo_flags=0x1 | 0x8) is None


def _run_skipped_ros_test(ci: str) -> subprocess.CompletedProcess[str]:
    # AMENT_PREFIX_PATH empty: ROS 2 counts as unavailable, so the ROS test skips at setup
    env = {**os.environ, "AMENT_PREFIX_PATH": "", "CI": ci}
    cmd = [sys.executable, "-m", "pytest", "-p", "no:launch_testing", "-p", "no:launch_ros", "-q",
           "tests/ros/test_ros2_launch_cli.py", "-p", "no:cacheprovider"]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_a_skipped_ros_test_fails_a_ci_run_only():
    local = _run_skipped_ros_test("")
    assert local.returncode == 0 and "skipped" in local.stdout, local.stdout + local.stderr
    ci = _run_skipped_ros_test("true")
    assert ci.returncode == 1, ci.stdout + ci.stderr
    assert "ROS 2 test(s) skipped; in CI they must run" in ci.stdout
