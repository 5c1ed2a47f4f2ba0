"""Helpers of the ROS 2 tests: a probe node in its own rclpy context, and node processes.

Every wait has a deadline and fails with a message that names what it waited for.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rclpy
from class_ros.msg_factory import msg_class
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile

REPO = Path(__file__).resolve().parents[2]


class Probe:
    """A node of the test's own: subscribe, publish, spin until a condition holds."""

    def __init__(self, name: str, domain_id: int):
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received: dict[str, list[tuple[float, Any]]] = {}
        self._pubs: dict[str, Any] = {}

    def subscribe(self, topic: str, typename: str, qos: QoSProfile | int = 10) -> list[tuple[float, Any]]:
        """Messages on ``topic`` as (monotonic receive time, message), appended as they come."""
        box = self.received.setdefault(topic, [])
        self.node.create_subscription(
            msg_class(typename), topic, lambda m: box.append((time.monotonic(), m)), qos
        )
        return box

    def publisher(self, topic: str, typename: str, qos: QoSProfile | int = 10) -> Any:
        if topic not in self._pubs:
            self._pubs[topic] = self.node.create_publisher(msg_class(typename), topic, qos)
        return self._pubs[topic]

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=min(0.05, max(0.0, end - time.monotonic())))

    def spin_until(
        self,
        condition: Callable[[], bool],
        timeout: float,
        what: str,
        processes: list[NodeProcess] | None = None,
    ) -> None:
        """Spin until ``condition()``; fail after ``timeout`` s naming ``what``, with the output of
        ``processes`` (and fail at once if one of them has died)."""
        end = time.monotonic() + timeout
        while not condition():
            for p in processes or []:
                if p.poll() is not None:
                    raise AssertionError(
                        f"{p.name} exited ({p.poll()}) while waiting for {what}:\n{p.output()}"
                    )
            if time.monotonic() > end:
                logs = "".join(f"\n--- {p.name} ---\n{p.output()[-3000:]}" for p in processes or [])
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{logs}")
            self.executor.spin_once(timeout_sec=0.05)

    def wait_for_subscribers(self, topic: str, n: int, timeout: float) -> None:
        pub = self._pubs[topic]
        self.spin_until(lambda: pub.get_subscription_count() >= n, timeout, f"{n} subscriber(s) on {topic}")

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def package_executable(package: str, executable: str) -> str:
    """The installed script ``ros2 run package executable`` would start."""
    from ament_index_python.packages import get_package_prefix

    path = Path(get_package_prefix(package)) / "lib" / package / executable
    if not path.exists():
        raise FileNotFoundError(f"{path} (is ros2_ws built? scripts/run_tests.sh builds it)")
    return str(path)


def ros_args(params: dict[str, Any] | None = None, name: str | None = None) -> list[str]:
    out = ["--ros-args"]
    for k, v in (params or {}).items():
        value = str(v).lower() if isinstance(v, bool) else str(v)
        out += ["-p", f"{k}:={value}"]
    if name:
        out += ["-r", f"__node:={name}"]
    return out


class NodeProcess:
    """A process in a session of its own, its output in a file; ``stop`` signals it, then kills."""

    def __init__(self, cmd: list[str], name: str, log_dir: Path, env: dict[str, str] | None = None):
        self.name = name
        self.log_path = Path(log_dir) / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            start_new_session=True,
        )

    @classmethod
    def node(
        cls,
        package: str,
        executable: str,
        log_dir: Path,
        params: dict[str, Any] | None = None,
        name: str | None = None,
        env: dict[str, str] | None = None,
    ) -> NodeProcess:
        cmd = [package_executable(package, executable), *ros_args(params)]
        return cls(cmd, name or executable, log_dir, env)

    def poll(self) -> int | None:
        return self.proc.poll()

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def send_signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} did not exit within {timeout:.0f} s:\n{self.output()[-3000:]}"
            ) from None

    def dump_stacks(self) -> None:
        """Where a hung node is, into its log: every thread's Python stack (faulthandler on
        SIGUSR1, see class_ros.common.run_node) and, where py-spy is installed, the native frames."""
        self._log.write(b"\n--- hung: stacks (SIGUSR1 / py-spy dump --native) ---\n")
        self._log.flush()
        try:
            os.kill(self.proc.pid, signal.SIGUSR1)
        except ProcessLookupError:
            return
        time.sleep(1.0)
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if Path(spy).exists():
            r = subprocess.run([spy, "dump", "--native", "--pid", str(self.proc.pid)],
                               capture_output=True, timeout=60, check=False)  # fmt: skip
            self._log.write(r.stdout + r.stderr)
            self._log.flush()

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20.0) -> int | None:
        """Signal the process group, wait, then SIGKILL whatever is left; the exit code of the
        first signal's wait (None if it had to be killed)."""
        rc: int | None = self.proc.poll()
        if rc is None:
            self.send_signal(sig)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                rc = None
                self.dump_stacks()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # children left behind, if any
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(10)
        self._log.close()
        return rc
