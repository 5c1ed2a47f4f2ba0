"""Fixtures of the ROS 2 tests: a domain id of each test's own, an in-process probe node, and node
processes started as ``ros2 launch`` starts them. tests/conftest.py has already checked that ROS 2
is set up and that this process sits in a loopback-only network namespace."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

# Fast DDS derives its ports from the domain id; 0..101 is the portable range. Each test gets
# its own id, so a node left over from one test can never talk to the next.
_domains = itertools.count((os.getpid() * 7) % 90 + 1)


@pytest.fixture(autouse=True)
def ros_domain(monkeypatch: pytest.MonkeyPatch) -> int:
    domain = next(_domains) % 100 + 1
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.delenv("ROS_LOCALHOST_ONLY", raising=False)
    monkeypatch.delenv("ROS_STATIC_PEERS", raising=False)
    return domain


@pytest.fixture
def probe(ros_domain: int) -> Iterator[object]:
    from ros_helpers import Probe

    p = Probe("class_test_probe", ros_domain)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def node_processes(tmp_path) -> Iterator[list]:  # type: ignore[no-untyped-def]
    """A list to append NodeProcess objects to; every one still running is stopped at teardown."""
    procs: list = []
    try:
        yield procs
    finally:
        for p in procs:
            p.stop()


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """mode -> a small real Push-T artifact of that node mode (tests/demo_artifacts.py)."""
    from demo_artifacts import MODES, make_demo_artifact

    root = tmp_path_factory.mktemp("models")
    return {m: make_demo_artifact(root / m, mode=m) for m in MODES}
