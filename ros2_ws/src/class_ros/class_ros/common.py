"""Small helpers shared by the nodes: parameters in, messages out."""

from __future__ import annotations

import faulthandler
import signal
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import rclpy
import yaml
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data

from class_ros.msg_factory import msg_class

RELIABLE = QoSProfile(depth=10)
# A reliable KEEP_LAST writer overwrites samples a slow reader has not acknowledged. The lock-step
# bridge publishes up to T_a steps in a burst; a recorder or a probe that lags more than the
# depth behind would silently lose observations, so it keeps more (96 px images: ~3 MB).
RELIABLE_DEEP = QoSProfile(depth=100)
# best effort subscribers accept reliable and best-effort publishers (a camera driver's choice),
# but may drop messages: lock-step simulation needs RELIABLE.
SENSOR = qos_profile_sensor_data

N = TypeVar("N", bound=Node)

# Stopping the hardware and tearing the node down must end: past this, every thread's stack is
# printed and the process exits 1 (launch would otherwise escalate to SIGKILL with no clue where
# it hung). Longer than the arm's worst stop (2 s join + 10 s lock + 10 s stop call); shorter than
# the ROS tests' 30 s wait, so its dump lands in the log they print.
SHUTDOWN_DEADLINE_S = 25.0


def run_node(
    make: Callable[[], N],
    name: str,
    on_exit: Callable[[N], None] | None = None,
    args: list[str] | None = None,
) -> int:
    """A node's ``main``: init, build (a bad parameter or missing file exits 2 with one line),
    spin until SIGINT, SIGTERM or SystemExit, then ``on_exit`` (stop the hardware) first, destroy
    and shut down: exit 0 without a traceback.

    rclpy's own handlers turn SIGINT and SIGTERM (what ``ros2 launch`` sends on Ctrl-C and on its
    way down) into a shutdown of the context, which ``spin`` reports as
    ``ExternalShutdownException``; a signal during start-up (the policy node loads torch and the
    model for seconds) ends the node the same way.
    """
    # `kill -USR1 <pid>` prints every thread's Python stack (also when a thread holds the GIL)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    rclpy.init(args=args)
    node: N | None = None
    try:
        node = make()
        rclpy.spin(node)
    except (ValueError, KeyError, FileNotFoundError) as e:
        if node is None and rclpy.ok():
            print(f"{name}: error: {e}", file=sys.stderr)
            rclpy.try_shutdown()
            return 2
        raise
    except (KeyboardInterrupt, SystemExit, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
        # the context was shut down by a signal while the node was being built
    finally:
        # Ctrl-C in a terminal signals the whole process group and launch forwards it once more:
        # a second signal must not interrupt stopping the hardware or tearing down the node
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        faulthandler.dump_traceback_later(SHUTDOWN_DEADLINE_S, exit=True)
        if node is not None:
            if on_exit is not None:
                on_exit(node)
            node.destroy_node()
        rclpy.try_shutdown()
        faulthandler.cancel_dump_traceback_later()
    return 0


def declare(node: Node, defaults: dict[str, Any]) -> dict[str, Any]:
    """Declare parameters with defaults (types follow the defaults) and return their values."""
    out = {}
    for name, default in defaults.items():
        node.declare_parameter(name, default)
        out[name] = node.get_parameter(name).value
    return out


def yaml_param(node: Node, name: str, text: str) -> dict[str, Any]:
    """A mapping given as a YAML string parameter (ROS parameters cannot hold nested maps)."""
    if not text:
        return {}
    value = yaml.safe_load(text)
    if not isinstance(value, dict):
        raise ValueError(f"parameter {name!r} must be a YAML mapping, got {text!r}")
    return value


class Publishers:
    """topic -> publisher, created on first use from the type table."""

    def __init__(
        self,
        node: Node,
        types: dict[str, str],
        sensor_topics: set[str] = frozenset(),
        reliable: QoSProfile = RELIABLE,
    ):
        self.pubs = {
            t: node.create_publisher(msg_class(ty), t, SENSOR if t in sensor_topics else reliable)
            for t, ty in types.items()
        }

    def publish(self, out: list[tuple[str, Any]]) -> None:
        for topic, msg in out:
            self.pubs[topic].publish(msg)

    def flush(self, timeout_s: float = 2.0) -> bool:
        """Wait until every subscriber acknowledged what the reliable publishers sent: a node that
        ends itself must not take its last messages with it (a loaded reader acknowledges late)."""
        deadline = time.monotonic() + timeout_s
        return all(
            pub.wait_for_all_acked(Duration(seconds=max(0.0, deadline - time.monotonic())))
            for pub in self.pubs.values()
        )
