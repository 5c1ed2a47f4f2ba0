"""Observation -> action chunk latency through ROS 2, beside the ROS-free core's time.

This process is the "robot": an rclpy node that publishes a PoseStamped on /class/robot/ee_pose
and an rgb8 Image on /class/obs/image with the same header stamp, then waits for the chunk on
/class/policy/action_chunk whose stamp equals it (the policy node stamps a chunk with its
observation's stamp). One observation is in flight at a time (closed loop), and observations are
at least one period of ``--rate`` apart. ``policy_node`` runs as a separate process (the
installed executable, as ``ros2 run`` starts it) with ``n_action_steps:=1``, so every observation
is planned from, ``control_hz:=<rate>`` and a ``max_obs_age`` of ``--timeout`` s, so that no slow
plan is skipped as stale.

ROS time: from just before the first publish to the chunk's subscription callback here; it holds
serialisation, Fast DDS transport (shared memory), deserialisation in the node, the node's
PolicyCore and inference, and the way back. Core time: beside each ROS sample (alternately
after and before it), the same rclpy message objects go to a ``PolicyCore`` in this process (same
artifact via ``class_core.policy.load``, same configuration, no DDS): ``on_message(pose)`` +
``on_message(image)`` -> chunk. Interleaved, a change in the machine's load hits both columns.
"middleware" = ROS p50 - core p50.

Artifacts: ``tests/demo_artifacts.make_demo_artifact`` (small real Push-T artifacts, random
CLASS encoder, 96x96 training images) for each mode, built in a temporary folder (or
``--models DIR``, reused when present). The images are random pixels; nothing in the path
depends on their content. The policy path does not resize: an image of another size (640x480)
goes through the encoder at that size (centre crop of the encoder's crop ratio, global pooling),
so its core time grows with the pixels as well, and the middleware column isolates what ROS adds
for the larger message. On the robot, camera_node publishes a 256x256 crop on /class/obs/image
and the native frame on /camera/camera/color/image_raw.

Torch runs with ``--torch-threads`` intra-op threads in both processes (OMP_NUM_THREADS for the
node): on a small shared machine two spinning OpenMP pools make timings erratic.

Network: DDS discovery multicasts out of every interface. The benchmark refuses to run unless its
network namespace holds only loopback, up (or ``--allow-network``, which still forces
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``). ROS 2 must be set up and ros2_ws built:

    . scripts/ros_env.sh && (cd ros2_ws && colcon build --symlink-install) && . scripts/ros_env.sh
    unshare -n sh -c 'ip link set lo up; export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST \\
        ROS_DOMAIN_ID=91; .venv/bin/python benchmarks/ros_latency.py'
    ... benchmarks/ros_latency.py --modes mlp --sizes 96 640x480 --samples 100 --out lat.md

With n samples, p99 is numpy's interpolated 99th percentile: with the default 30, close to the
maximum.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODES = ("nonparametric", "mlp", "diffusion")
IMAGE_TOPIC = "/class/obs/image"
POSE_TOPIC = "/class/robot/ee_pose"
CHUNK_TOPIC = "/class/policy/action_chunk"


class BenchError(RuntimeError):
    """A wait ran out or a process failed; the text names what, with the node's output."""


# --- preconditions ------------------------------------------------------------------------------
def network_refusal() -> str | None:
    """Why DDS traffic could leave this machine from here, or None (only loopback, and it is up).

    The check of tests/conftest.py ``network_leak``."""
    names = sorted(n for _, n in socket.if_nameindex())
    how = (
        "run it in a private network namespace with only loopback up:\n"
        "  . scripts/ros_env.sh; unshare -n sh -c 'ip link set lo up; "
        "export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=91; "
        ".venv/bin/python benchmarks/ros_latency.py ...'\n"
        "or pass --allow-network (discovery is then limited to localhost)"
    )
    if names != ["lo"]:
        return f"network interfaces {names} besides lo: DDS discovery could leave this machine; {how}"
    flags = int(Path("/sys/class/net/lo/flags").read_text(), 16)
    if not flags & 0x1:  # IFF_UP
        return f"loopback is down in this network namespace; {how}"
    return None


def prepare_ros_env(prog: str, allow_network: bool, domain_id: int) -> bool:
    """Refuse (False, the reason printed) outside a loopback-only namespace unless allowed, or
    without ROS 2; otherwise keep DDS discovery on this machine, in ``domain_id``."""
    why = network_refusal()
    if why and not allow_network:
        print(f"{prog}: refused: {why.replace('ros_latency.py', prog + '.py')}", file=sys.stderr)
        return False
    if why:
        print(f"# --allow-network: {why.split(';')[0]}; discovery limited to localhost", file=sys.stderr)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.pop("ROS_LOCALHOST_ONLY", None)
    os.environ.pop("ROS_STATIC_PEERS", None)
    os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    why = ros_refusal()
    if why:
        print(f"{prog}: ROS 2 is not set up: {why}", file=sys.stderr)
        return False
    return True


def ros_refusal() -> str | None:
    build = ". scripts/ros_env.sh && (cd ros2_ws && colcon build --symlink-install) && . scripts/ros_env.sh"
    try:
        import rclpy  # noqa: F401
    except ImportError as e:
        return f"rclpy does not import ({e}); `make setup` installs the pip layer, then: {build}"
    if not os.environ.get("AMENT_PREFIX_PATH"):
        return f"AMENT_PREFIX_PATH is unset: {build}"
    try:
        from ament_index_python.packages import get_package_prefix

        exe = Path(get_package_prefix("class_ros")) / "lib" / "class_ros" / "policy_node"
    except Exception as e:  # PackageNotFoundError, or a broken index
        return f"ros2_ws is not built ({e}): {build}"
    if not exe.exists():
        return f"{exe} is missing: {build}"
    return None


# --- helpers ----------------------------------------------------------------------------------
def parse_size(text: str) -> tuple[int, int]:
    """'96' -> (96, 96); '640x480' (width x height) -> (480, 640) as (H, W)."""
    try:
        if "x" in text:
            w, h = (int(v) for v in text.lower().split("x"))
        else:
            w = h = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"image size {text!r}: use N (square) or WxH (640x480)") from None
    if w < 8 or h < 8:
        raise argparse.ArgumentTypeError(f"image size {text!r} is too small")
    return h, w


def size_name(hw: tuple[int, int]) -> str:
    return f"{hw[1]}x{hw[0]}"


def pct(ms: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(ms), q)) if ms else float("nan")


def load_avg() -> float:
    return os.getloadavg()[0]


def machine_info() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "load_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def artifact_for(mode: str, root: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from demo_artifacts import make_demo_artifact

    path = root / mode
    if (path / "manifest.json").exists():
        return path
    t0 = time.perf_counter()
    out = make_demo_artifact(path, mode=mode)
    print(f"# built {mode} demo artifact {out} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return out


def rclpy_factory() -> Any:
    """class_core.ros_msgs.MsgFactory over the rclpy message classes (as class_ros.msg_factory)."""
    import importlib

    from class_core.ros_msgs import MsgFactory, array_sequence

    def get_class(typename: str) -> Any:
        pkg, sub, name = typename.split("/")
        return getattr(importlib.import_module(f"{pkg}.{sub}"), name)

    return MsgFactory(get_class, array_sequence, "rclpy", byte_as_bytes=True)


def make_observations(f: Any, hw: tuple[int, int], n: int, seed: int) -> list[tuple[Any, Any]]:
    """n (PoseStamped, Image) pairs: random rgb8 pixels, agent position in Push-T's range."""
    from class_core import ros_msgs as rm

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = rng.integers(0, 256, size=(*hw, 3), dtype=np.uint8)
        xy = rng.uniform(20, 490, size=2)
        pose = rm.numpy_to_pose_stamped(f, np.r_[xy, 0.0], np.array([0, 0, 0, 1.0]), 0)
        out.append((pose, rm.numpy_to_image(f, img, 0, "rgb8")))
    return out


def set_stamp(msg: Any, stamp: int) -> None:
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)


# --- one mode -----------------------------------------------------------------------------------
class Robot:
    """The benchmark's rclpy node: observation publishers and the chunk subscription, whose
    callback records (receive time, message) by header stamp."""

    def __init__(self, domain_id: int):
        from rclpy.qos import QoSProfile
        from ros_helpers import Probe, msg_class

        self.probe = Probe("class_bench_robot", domain_id)
        qos = QoSProfile(depth=10)  # reliable, as policy_node subscribes by default (obs_qos)
        self.img_pub = self.probe.publisher(IMAGE_TOPIC, "sensor_msgs/msg/Image", qos)
        self.pose_pub = self.probe.publisher(POSE_TOPIC, "geometry_msgs/msg/PoseStamped", qos)
        self.arrivals: dict[int, tuple[float, Any]] = {}
        self.chunk_sub = self.probe.node.create_subscription(
            msg_class("trajectory_msgs/msg/JointTrajectory"), CHUNK_TOPIC, self._on_chunk, qos
        )

    def _on_chunk(self, msg: Any) -> None:
        t = time.perf_counter()
        s = msg.header.stamp
        self.arrivals[int(s.sec) * 1_000_000_000 + int(s.nanosec)] = (t, msg)

    def close(self) -> None:
        self.probe.close()


def ros_sample(
    robot: Robot, node: Any, pose: Any, img: Any, stamp: int, timeout: float, what: str
) -> tuple[float, float]:
    """Publish the observation, wait for its chunk: (seconds to the chunk, seconds in publish())."""
    t_pub = time.perf_counter()
    robot.pose_pub.publish(pose)
    robot.img_pub.publish(img)
    t_sent = time.perf_counter()
    robot.probe.spin_until(lambda: stamp in robot.arrivals, timeout, what, [node])
    t_recv, chunk = robot.arrivals.pop(stamp)
    if len(chunk.points) != 1:
        raise BenchError(f"{what} has {len(chunk.points)} points, expected 1 (n_action_steps:=1)")
    return t_recv - t_pub, t_sent - t_pub


def core_sample(core: Any, pose: Any, img: Any, stamp: int, what: str) -> float:
    """The same messages to the in-process PolicyCore, no DDS: seconds to the chunk."""
    from class_core import ros_msgs as rm

    t0 = time.perf_counter()
    out = core.on_message(POSE_TOPIC, pose, time.time_ns())
    out += core.on_message(IMAGE_TOPIC, img, time.time_ns())
    dt = time.perf_counter() - t0
    if not [m for t, m in out if t == CHUNK_TOPIC and rm.stamp_ns(m) == stamp]:
        raise BenchError(f"PolicyCore gave no chunk for {what}: status {core.status}, stats {core.stats}")
    return dt


def run_mode(mode: str, model: Path, args: argparse.Namespace, robot: Robot, log_dir: Path) -> list[dict]:
    from ros_helpers import NodeProcess

    from class_core.deploy import PolicyCore, PolicyCoreConfig
    from class_core.policy import load

    f = rclpy_factory()
    probe, arrivals = robot.probe, robot.arrivals
    arrivals.clear()
    params = {
        "mode": mode,
        "model": str(model),
        "n_action_steps": 1,
        "control_hz": repr(float(args.rate)),  # a float literal: the parameters are typed
        "max_obs_age": repr(float(args.timeout)),
        "diagnostics_period": "60.0",
    }
    node = NodeProcess.node("class_ros", "policy_node", log_dir, params=params, name=f"policy_node_{mode}")
    results = []
    failed = False
    try:
        img_pub, pose_pub, sub = robot.img_pub, robot.pose_pub, robot.chunk_sub
        t0 = time.monotonic()
        probe.spin_until(
            lambda: (
                img_pub.get_subscription_count() > 0
                and pose_pub.get_subscription_count() > 0
                and sub.get_publisher_count() > 0
            ),
            args.startup_timeout,
            f"policy_node ({mode}) to load {model} and match {IMAGE_TOPIC}, {POSE_TOPIC}, {CHUNK_TOPIC}",
            [node],
        )
        print(f"# {mode}: policy_node ready after {time.monotonic() - t0:.1f} s", file=sys.stderr)

        cfg = PolicyCoreConfig(
            mode=mode, control_hz=args.rate, n_action_steps=1, max_obs_age=float(args.timeout),
            diagnostics_period=60.0,
        )  # fmt: skip
        core = PolicyCore(load(model), f, cfg, name="bench_core")
        period = 1.0 / args.rate
        last_stamp = 0
        for hw in args.sizes:
            obs = make_observations(f, hw, args.warmup + args.samples, seed=hw[0] * 10_000 + hw[1])
            ros_ms: list[float] = []
            core_ms: list[float] = []
            pub_ms: list[float] = []
            load0 = load_avg()
            next_send = time.perf_counter()
            for i, (pose, img) in enumerate(obs):
                while time.perf_counter() < next_send:
                    probe.executor.spin_once(timeout_sec=max(0.0, next_send - time.perf_counter()))
                # stamps at least one period apart: n_action_steps 1 plans from every observation
                stamp = max(time.time_ns(), last_stamp + round(period * 1e9))
                last_stamp = stamp
                set_stamp(pose, stamp)
                set_stamp(img, stamp)
                what = f"the {mode} chunk for observation {i} ({size_name(hw)}, stamp {stamp})"
                # alternate the order, so that neither side always runs just after the other
                next_send = time.perf_counter() + period
                if i % 2 == 0:
                    ros_s, pub_s = ros_sample(robot, node, pose, img, stamp, args.timeout, what)
                    core_s = core_sample(core, pose, img, stamp, what)
                else:
                    core_s = core_sample(core, pose, img, stamp, what)
                    ros_s, pub_s = ros_sample(robot, node, pose, img, stamp, args.timeout, what)
                if i >= args.warmup:
                    ros_ms.append(ros_s * 1e3)
                    core_ms.append(core_s * 1e3)
                    pub_ms.append(pub_s * 1e3)
                next_send = max(next_send, time.perf_counter())
            row = {
                "mode": mode,
                "image": size_name(hw),
                "image_bytes": hw[0] * hw[1] * 3,
                "n": len(ros_ms),
                "ros_p50_ms": pct(ros_ms, 50),
                "ros_p99_ms": pct(ros_ms, 99),
                "core_p50_ms": pct(core_ms, 50),
                "core_p99_ms": pct(core_ms, 99),
                "middleware_p50_ms": pct(ros_ms, 50) - pct(core_ms, 50),
                "publish_p50_ms": pct(pub_ms, 50),
                "load_1m": [round(load0, 2), round(load_avg(), 2)],
                "ros_ms": [round(v, 3) for v in ros_ms],
                "core_ms": [round(v, 3) for v in core_ms],
            }
            results.append(row)
            print(
                f"# {mode} {row['image']}: ROS p50 {row['ros_p50_ms']:.1f} ms, core p50 "
                f"{row['core_p50_ms']:.1f} ms (load {load0:.2f} -> {load_avg():.2f})",
                file=sys.stderr,
                flush=True,
            )
            del obs
    except BaseException:
        failed = True  # the error in flight names the node's output already
        raise
    finally:
        rc = node.stop(signal.SIGINT, timeout=20)  # SIGKILL if it lingers
        if rc != 0 and not failed:
            raise BenchError(
                f"policy_node ({mode}) ended with {rc} after SIGINT (None: killed after 20 s):\n"
                f"{node.log_path.read_text(errors='replace')[-3000:]}"
            )
    return results


# --- output -------------------------------------------------------------------------------------
def markdown(results: list[dict], meta: dict[str, Any]) -> str:
    m = meta["machine"]
    lines = [
        f"ros_latency: {m['cpu']}, {m['cores']} cores, load (1/5/15 min) at start "
        f"{' '.join(str(v) for v in m['load_1_5_15'])}, at end {' '.join(str(v) for v in meta['load_end'])}; "
        f"{meta['rmw']}, torch threads {meta['torch_threads']}, {meta['rate_hz']:g} Hz, "
        f"{meta['samples']} samples after {meta['warmup']} warm-up, times in ms",
        "",
        "| mode | image | n | ROS p50 | ROS p99 | core p50 | core p99 | middleware p50 | share "
        "| publish p50 | load 1m |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        share = r["middleware_p50_ms"] / r["ros_p50_ms"] * 100 if r["ros_p50_ms"] > 0 else float("nan")
        lines.append(
            f"| {r['mode']} | {r['image']} | {r['n']} | {r['ros_p50_ms']:.1f} | {r['ros_p99_ms']:.1f} | "
            f"{r['core_p50_ms']:.1f} | {r['core_p99_ms']:.1f} | {r['middleware_p50_ms']:.1f} | "
            f"{share:.0f}% | {r['publish_p50_ms']:.2f} | {r['load_1m'][0]:.2f}-{r['load_1m'][1]:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Columns: ROS = observation publish -> chunk received here; core = PolicyCore.on_message "
        "in-process on the same messages; middleware p50 = ROS p50 - core p50 (share: of ROS p50); "
        "publish p50 = the two publish() calls here; load 1m = 1-minute load average before-after.",
    )
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES, help="modes (default: all)")
    p.add_argument(
        "--sizes", nargs="+", type=parse_size, default=[(96, 96), (480, 640)], metavar="SIZE",
        help="camera image sizes, N (square) or WxH (default: 96 640x480)",
    )  # fmt: skip
    p.add_argument("--samples", type=int, default=30, help="timed observations per mode, size (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="untimed observations before them (default 5)")
    p.add_argument(
        "--rate", type=float, default=10.0,
        help="observation rate limit in Hz, also the node's control_hz; the next observation goes out "
        "one period after the last or when its chunk arrived, whichever is later (default 10)",
    )  # fmt: skip
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each chunk (default 30)")
    p.add_argument(
        "--startup-timeout", type=float, default=180.0,
        help="seconds to wait for policy_node to load its model and match the topics (default 180)",
    )  # fmt: skip
    p.add_argument("--torch-threads", type=int, default=1, help="torch threads, both processes (default 1)")
    p.add_argument(
        "--models", type=Path, default=None,
        help="folder of artifacts <mode>/ (built there when missing; default: a temporary folder)",
    )  # fmt: skip
    p.add_argument(
        "--domain-id", type=int, default=int(os.environ.get("ROS_DOMAIN_ID") or 91),
        help="ROS_DOMAIN_ID for both processes (default: $ROS_DOMAIN_ID, else 91)",
    )  # fmt: skip
    p.add_argument(
        "--out", type=Path, default=None, help="also write the results: .json (all samples) or .md"
    )
    p.add_argument(
        "--allow-network", action="store_true",
        help="run outside a loopback-only network namespace (forces ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST)",
    )  # fmt: skip
    args = p.parse_args()
    if args.samples < 1 or args.warmup < 0 or args.rate <= 0 or args.timeout <= 0 or args.torch_threads < 1:
        p.error("--samples >= 1, --warmup >= 0, --rate, --timeout > 0 and --torch-threads >= 1 are required")
    if args.out is not None and args.out.suffix not in (".json", ".md"):
        p.error(f"--out {args.out}: use a .json or .md file")
    if not 0 <= args.domain_id <= 232:
        p.error(f"--domain-id {args.domain_id}: out of range 0..232")

    if not prepare_ros_env("ros_latency", args.allow_network, args.domain_id):
        return 2
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # read by torch at import, here and in the node
        os.environ[var] = str(args.torch_threads)

    import torch

    torch.set_num_threads(args.torch_threads)
    sys.path.insert(0, str(REPO / "tests" / "ros"))
    from rclpy.utilities import get_rmw_implementation_identifier

    work = Path(tempfile.mkdtemp(prefix="ros_latency_"))
    models = args.models or work / "models"
    models.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "machine": machine_info(),
        "rmw": get_rmw_implementation_identifier(),
        "torch_threads": args.torch_threads,
        "rate_hz": args.rate,
        "samples": args.samples,
        "warmup": args.warmup,
        "domain_id": args.domain_id,
        "command": " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }
    results: list[dict] = []
    ok = False
    robot = None
    try:
        artifacts = {m: artifact_for(m, models) for m in args.modes}
        robot = Robot(args.domain_id)
        for mode in args.modes:
            results += run_mode(mode, artifacts[mode], args, robot, work)
        ok = True
    except (AssertionError, BenchError) as e:  # Probe.spin_until raises AssertionError with the logs
        print(f"ros_latency: failed: {e}", file=sys.stderr)
    finally:
        if robot is not None:
            robot.close()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"# node logs and artifacts kept in {work}", file=sys.stderr)
    if not ok:
        return 1
    meta["load_end"] = [round(v, 2) for v in os.getloadavg()]
    text = markdown(results, meta)
    print(text, end="")
    if args.out is not None:
        if args.out.suffix == ".json":
            args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
        else:
            args.out.write_text(text)
        print(f"# written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
