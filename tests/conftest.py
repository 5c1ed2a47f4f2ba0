"""Suite-wide rules, above all for the ROS 2 tests (every test under tests/ros/, marker ``ros``).

A ROS 2 test runs only where ROS 2 is set up (scripts/ros_env.sh) *and* inside a private network
namespace whose only interface is loopback (scripts/run_tests.sh runs the suite under
``unshare -n``): Fast DDS discovery otherwise multicasts out of every interface, and no test may
send DDS traffic off this machine. Anywhere else it skips with the reason, and a CI run
(``CI=true``) in which any ROS test skipped fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# the shared builders (demo_artifacts, policy_fixtures, ros_rules) import from every test folder
sys.path.insert(0, str(TESTS))

from ros_rules import in_ci, network_leak, ros_unavailable  # noqa: E402

ROS_DIR = TESTS / "ros"
_ros_skips: list[str] = []


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
