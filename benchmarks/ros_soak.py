"""Soak test through ROS 2: continuous real-time Push-T episodes, reported window by window.

``policy_node`` and ``sim_bridge_node`` run as separate processes (the installed executables, as
``ros2 run`` starts them): the bridge with ``clock:=realtime`` (stamps and ticks on the wall
clock, as on the robot), ``n_episodes:=0`` (continuous: a new episode starts as soon as one
ends), ``rate:=<--rate>``; the policy with ``control_hz:=<--rate>``. This process holds an rclpy
probe that listens to ``/class/policy/action_chunk`` and ``/diagnostics``. Timing starts
``--settle`` s (default 5) after the policy answered its first observation (torch's first
inferences are not a soak figure); then, for each window of ``--period`` seconds (a minute by
default), it records:

- **RSS** of each node process: ``VmRSS`` of ``/proc/<pid>/status``, read once a second, of the
  node's own process (the installed script re-executes itself once, in place, for
  LD_LIBRARY_PATH, so the pid is the node's; checked against the command line). A window's
  figure is the median of its samples (max beside it). **Growth** = a window's median minus the
  median of the last warm-up window (``--warmup-windows``, default 1): the first window absorbs
  allocator pools, torch caches and DDS history filling up.
- **Missed control deadlines**, counted by the bridge (class_core/deploy/sim_bridge_core.py) and
  published on /diagnostics (``missed_deadlines``, ``late_ticks``, ``starved_ticks``): a tick of
  a running episode is late when it comes more than 1.5 periods after the previous tick (the
  control loop lost a period), starved when no received chunk point is due within 1.5 periods
  of it (the chunk planned from an observation did not reach the bridge within one period of
  that observation's stamp, so the bridge held an older target); missed = late or starved.
  A window's count is the difference of the cumulative counters between the first bridge
  diagnostics at or after the window's start and at or after its end (``diagnostics_period``
  1 s), so every tick is counted in exactly one window.
- **Latency observation -> chunk**, measured here: the probe's wall clock when a chunk arrives
  minus the chunk's header stamp, which the policy copies from the observation it planned from,
  which the bridge stamps at the tick that produced it. It holds the bridge's simulation step and
  render, both DDS hops (bridge -> policy, policy -> probe; the bridge itself is a subscriber
  like the probe) and the policy's inference. p50, p99 and max per window (numpy percentiles).
- **Episodes** the bridge completed (``episodes_done`` on /diagnostics) and chunks received.

Targets (exit status 1 when one fails): no missed deadline (``--max-missed``, default 0) in any
window, RSS growth of every node at most ``--max-rss-growth-mb`` in every window after the
warm-up, both nodes alive to the end and exiting 0 on SIGINT. Exit 2: refused (network, ROS not
set up, arguments); 3: the run itself failed (a node died, no chunk came).

Network: like benchmarks/ros_latency.py (whose checks this imports), it refuses to run unless its
network namespace holds only loopback, up (``--allow-network`` overrides and still forces
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``). Torch runs with ``--torch-threads`` (default 1)
intra-op threads in the policy node. ``--out FILE.json`` is rewritten atomically after every
window, so a long run that is stopped keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # when imported, not run as a script
from ros_latency import artifact_for, machine_info, pct, prepare_ros_env  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODES = ("nonparametric", "mlp", "diffusion")
CHUNK_TOPIC = "/class/policy/action_chunk"
DIAG_TOPIC = "/diagnostics"
BRIDGE = "class_sim_bridge"  # DiagnosticStatus names
POLICY = "class_policy"
BRIDGE_COUNTERS = ("episodes_done", "successes", "missed_deadlines", "late_ticks", "starved_ticks")
POLICY_COUNTERS = ("published", "stale_skipped", "unsynced_skipped", "errors")
EXAMPLE = """\
example (an hour at 10 Hz, the project's targets):
  . scripts/ros_env.sh; unshare -n sh -c 'ip link set lo up; \\
    export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=92; \\
    .venv/bin/python benchmarks/ros_soak.py --minutes 60 --out runs/ros_soak.json'
CI runs a one-minute version in three 20 s windows (tests/ros/test_ros_soak.py):
  ... benchmarks/ros_soak.py --minutes 1 --period 20 --model MODEL_DIR
"""


class SoakError(RuntimeError):
    """The run itself failed (a node died, nothing came); the text names what."""


def node_pid(proc: Any, executable: str) -> int:
    """The pid whose memory is the node's: the started process when its command line names the
    executable (the venv's bootstrapper re-executes in place), else a child that does."""

    def cmdline(pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return ""

    if executable in cmdline(proc.pid):
        return int(proc.pid)
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    except OSError:
        children = []
    for c in children:
        if executable in cmdline(int(c)):
            return int(c)
    raise SoakError(f"no process of {executable} under pid {proc.pid}: {cmdline(proc.pid)!r}")


def niceness(pid: int) -> int:
    """The nice value of a process (field 19 of /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])


def set_group_nice(pid: int, nice: int) -> None:
    """With autogroup scheduling (kernel.sched_autogroup_enabled) a nice value ranks threads only
    within their session, and each node runs in a session of its own: give the session's group
    the value too, or a busy session elsewhere still takes half the CPU."""
    path = Path(f"/proc/{pid}/autogroup")
    if path.exists():
        try:
            path.write_text(str(nice))
        except OSError as e:
            raise SoakError(f"--nice {nice}: cannot set the autogroup nice of pid {pid}: {e}") from None


def rss_mb(pid: int) -> float:
    """VmRSS of a process in MiB (NaN once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


class Monitor:
    """The probe: chunk arrival latencies and the latest cumulative diagnostics of each node.

    Nothing accumulates over the run: latencies go to the current window's list, diagnostics
    keep only the latest message per node (with its arrival time)."""

    def __init__(self, domain_id: int):
        from rclpy.qos import QoSProfile
        from ros_helpers import Probe, msg_class

        self.probe = Probe("class_soak_probe", domain_id)
        qos = QoSProfile(depth=50)  # reliable, as the nodes publish
        self.latencies_ms: list[float] = []
        self.chunks = 0
        self.diag: dict[str, tuple[float, dict[str, str], str]] = {}  # node -> (arrival, values, level)
        node = self.probe.node
        self._subs = [
            node.create_subscription(
                msg_class("trajectory_msgs/msg/JointTrajectory"), CHUNK_TOPIC, self._on_chunk, qos
            ),
            node.create_subscription(
                msg_class("diagnostic_msgs/msg/DiagnosticArray"), DIAG_TOPIC, self._on_diag, qos
            ),
        ]

    def _on_chunk(self, msg: Any) -> None:
        now = time.time_ns()
        s = msg.header.stamp
        self.latencies_ms.append((now - (int(s.sec) * 1_000_000_000 + int(s.nanosec))) / 1e6)
        self.chunks += 1

    def _on_diag(self, msg: Any) -> None:
        t = time.monotonic()
        for st in msg.status:
            for who in (BRIDGE, POLICY):
                if st.name.startswith(who):
                    values = {kv.key: kv.value for kv in st.values}
                    level = st.level[0] if isinstance(st.level, (bytes, bytearray)) else int(st.level)
                    self.diag[who] = (t, values, f"{level} {st.message}")

    def counters(self, who: str, keys: tuple[str, ...]) -> dict[str, int]:
        _, values, _ = self.diag[who]
        missing = [k for k in keys if k not in values]
        if missing:
            raise SoakError(f"{who} diagnostics lack {missing} (is ros2_ws built from this tree?)")
        return {k: int(values[k]) for k in keys}

    def close(self) -> None:
        self.probe.close()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def wait_diag_after(mon: Monitor, t: float, timeout: float, nodes: list[Any]) -> None:
    """Spin until both nodes' diagnostics arrived at or after monotonic time ``t``."""
    mon.probe.spin_until(
        lambda: all(who in mon.diag and mon.diag[who][0] >= t for who in (BRIDGE, POLICY)),
        timeout,
        "/diagnostics of both nodes",
        nodes,
    )


def run(args: argparse.Namespace, model: Path, log_dir: Path, report: dict[str, Any]) -> None:
    """Start the nodes, measure every window into ``report["windows"]``, stop the nodes."""
    from ros_helpers import NodeProcess, package_executable, ros_args

    def start(executable: str, params: dict[str, Any]) -> Any:
        cmd = [package_executable("class_ros", executable), *ros_args(params)]
        if args.nice:  # nice(1) execs the node: its pid, and every thread it starts, are the node's
            cmd = ["nice", "-n", str(args.nice), *cmd]
        node = NodeProcess(cmd, executable, log_dir, env)
        if args.nice:
            set_group_nice(node.proc.pid, args.nice)
        return node

    n_windows = round(args.minutes * 60 / args.period)
    env = {"OMP_NUM_THREADS": str(args.torch_threads), "MKL_NUM_THREADS": str(args.torch_threads)}
    mon = Monitor(args.domain_id)
    # rclpy.init installed handlers that only shut the probe's context down: Ctrl-C or SIGTERM
    # must end the run (the nodes are stopped below, the windows so far are written)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    nodes: dict[str, Any] = {}
    failed = False
    try:
        nodes["policy_node"] = start(
            "policy_node", {"mode": args.mode, "model": str(model), "control_hz": repr(float(args.rate))}
        )
        nodes["sim_bridge_node"] = start(
            "sim_bridge_node",
            {"task": args.task, "seed": args.seed, "n_episodes": 0, "clock": "realtime",
             "rate": repr(float(args.rate)), "max_steps": args.max_steps},
        )  # fmt: skip
        procs = list(nodes.values())
        t_start = time.monotonic()
        mon.probe.spin_until(lambda: mon.chunks > 0, args.startup_timeout, "the first action chunk", procs)
        pids = {name: node_pid(p.proc, name) for name, p in nodes.items()}  # both are up by now
        report["pids"] = pids
        report["nice"] = {name: niceness(pid) for name, pid in pids.items()}
        if any(v != args.nice for v in report["nice"].values()):
            raise SoakError(f"--nice {args.nice}: the nodes run at {report['nice']} (not permitted?)")
        print(f"# first chunk after {time.monotonic() - t_start:.1f} s; pids {pids}", file=sys.stderr)
        settle_end = time.monotonic() + args.settle  # the first inferences warm torch up: not counted
        while time.monotonic() < settle_end:
            mon.probe.executor.spin_once(timeout_sec=0.05)
        t0 = time.monotonic()
        wait_diag_after(mon, t0, 10, procs)
        prev_b = mon.counters(BRIDGE, BRIDGE_COUNTERS)
        prev_p = mon.counters(POLICY, POLICY_COUNTERS)
        mon.latencies_ms.clear()
        chunks0 = mon.chunks
        print(header(list(nodes)), flush=True)
        next_rss = time.monotonic()
        for k in range(n_windows):
            end = t0 + (k + 1) * args.period
            rss: dict[str, list[float]] = {name: [] for name in nodes}
            while time.monotonic() < end:
                if time.monotonic() >= next_rss:
                    next_rss += args.rss_interval
                    for name, pid in pids.items():
                        rss[name].append(rss_mb(pid))
                for name, p in nodes.items():
                    if p.poll() is not None:
                        raise SoakError(
                            f"{name} exited ({p.poll()}) in window {k + 1}:\n{p.output()[-3000:]}"
                        )
                mon.probe.executor.spin_once(timeout_sec=min(0.05, max(0.0, end - time.monotonic())))
            lat, mon.latencies_ms = mon.latencies_ms, []
            chunks, chunks0 = mon.chunks - chunks0, mon.chunks
            wait_diag_after(mon, end, 10, procs)
            b = mon.counters(BRIDGE, BRIDGE_COUNTERS)
            p = mon.counters(POLICY, POLICY_COUNTERS)
            window = {
                "window": k + 1,
                "t_end_s": round(end - t0, 1),
                "episodes": b["episodes_done"] - prev_b["episodes_done"],
                "successes": b["successes"] - prev_b["successes"],
                "chunks": chunks,
                "missed_deadlines": b["missed_deadlines"] - prev_b["missed_deadlines"],
                "late_ticks": b["late_ticks"] - prev_b["late_ticks"],
                "starved_ticks": b["starved_ticks"] - prev_b["starved_ticks"],
                "policy": {key: p[key] - prev_p[key] for key in POLICY_COUNTERS},
                "latency_ms": {
                    "n": len(lat),
                    "p50": round(pct(lat, 50), 2),
                    "p99": round(pct(lat, 99), 2),
                    "max": round(max(lat), 2) if lat else float("nan"),
                },
                "rss_mb": {name: round(statistics.median(v), 1) for name, v in rss.items() if v},
                "rss_max_mb": {name: round(max(v), 1) for name, v in rss.items() if v},
                "rss_samples": {name: len(v) for name, v in rss.items()},
                "load_1m": round(os.getloadavg()[0], 2),
                "bridge_status": mon.diag[BRIDGE][2],
                "policy_status": mon.diag[POLICY][2],
            }
            prev_b, prev_p = b, p
            report["windows"].append(window)
            evaluate(report, args)
            print(row(window, list(nodes), report), flush=True)
            if args.out is not None:
                write_json(args.out, report)
    except BaseException:
        failed = True
        raise
    finally:
        mon.close()
        codes = {name: p.stop(signal.SIGINT, timeout=30) for name, p in nodes.items()}
        report["exit_codes"] = codes
        if not failed and any(rc != 0 for rc in codes.values()):
            logs = "".join(f"\n--- {n} ---\n{p.output()[-2000:]}" for n, p in nodes.items())
            report["errors"].append(f"a node did not exit 0 on SIGINT: {codes}{logs}")


def evaluate(report: dict[str, Any], args: argparse.Namespace) -> None:
    """The targets over the windows so far: ``report["targets"]`` and ``report["pass"]``."""
    windows = report["windows"]
    missed = sum(w["missed_deadlines"] for w in windows)
    growth: dict[str, float] = {}
    if len(windows) > args.warmup_windows:
        base = windows[args.warmup_windows - 1]["rss_mb"]
        for name, v in base.items():
            growth[name] = round(max(w["rss_mb"][name] - v for w in windows[args.warmup_windows :]), 1)
    lat = [w["latency_ms"] for w in windows if w["latency_ms"]["n"]]
    report["summary"] = {
        "windows": len(windows),
        "episodes": sum(w["episodes"] for w in windows),
        "chunks": sum(w["chunks"] for w in windows),
        "missed_deadlines": missed,
        "late_ticks": sum(w["late_ticks"] for w in windows),
        "starved_ticks": sum(w["starved_ticks"] for w in windows),
        "latency_p50_ms_max": max((x["p50"] for x in lat), default=float("nan")),
        "latency_p99_ms_max": max((x["p99"] for x in lat), default=float("nan")),
        "rss_growth_mb": growth,
    }
    targets = {
        f"missed deadlines <= {args.max_missed}": missed <= args.max_missed,
        f"RSS growth after warm-up <= {args.max_rss_growth_mb:g} MiB": bool(growth)
        and all(g <= args.max_rss_growth_mb for g in growth.values()),
    }
    report["targets"] = targets
    report["pass"] = all(targets.values()) and not report["errors"]


def header(names: list[str]) -> str:
    rss = " | ".join(f"RSS {n.removesuffix('_node')} MiB (growth)" for n in names)
    return (
        "| window | t (s) | episodes | chunks | missed (late/starved) | latency p50 | p99 | max (ms) | "
        f"{rss} | load 1m |\n|" + "---:|" * (8 + len(names)) + "---:|"
    )


def row(w: dict[str, Any], names: list[str], report: dict[str, Any]) -> str:
    warm = report["args"]["warmup_windows"]
    cells = []
    for n in names:
        if w["window"] <= warm:
            note = "warm-up"
        else:
            note = f"{w['rss_mb'][n] - report['windows'][warm - 1]['rss_mb'][n]:+.1f}"
        cells.append(f"{w['rss_mb'].get(n, float('nan')):.1f} ({note})")
    lat = w["latency_ms"]
    return (
        f"| {w['window']} | {w['t_end_s']:.0f} | {w['episodes']} | {w['chunks']} | "
        f"{w['missed_deadlines']} ({w['late_ticks']}/{w['starved_ticks']}) | {lat['p50']:.1f} | "
        f"{lat['p99']:.1f} | {lat['max']:.1f} | {' | '.join(cells)} | {w['load_1m']:.2f} |"
    )


def write_json(path: Path, report: dict[str, Any]) -> None:
    from class_core.io import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report, indent=1) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="ros_soak.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLE,
    )
    p.add_argument("--minutes", type=float, default=10.0, help="length of the measured run (default 10)")
    p.add_argument(
        "--period", type=float, default=60.0,
        help="seconds per reported window (default 60: one row a minute); --minutes * 60 must be a "
        "whole number of periods",
    )  # fmt: skip
    p.add_argument(
        "--rate", type=float, default=10.0, help="control rate in Hz, bridge and policy (default 10)"
    )
    p.add_argument(
        "--mode", choices=MODES, default="nonparametric", help="policy mode (default nonparametric)"
    )
    p.add_argument(
        "--model", type=Path, default=None,
        help="policy artifact of that mode (default: build a small demo artifact with "
        "tests/demo_artifacts.make_demo_artifact in a temporary folder)",
    )  # fmt: skip
    p.add_argument("--task", default="pusht", help="sim_bridge task (default pusht)")
    p.add_argument("--seed", type=int, default=0, help="first episode's seed (default 0)")
    p.add_argument(
        "--max-steps", type=int, default=0, help="episode step limit, 0 = the task's (Push-T: 300)"
    )
    p.add_argument(
        "--warmup-windows", type=int, default=1,
        help="windows before the RSS baseline (default 1); growth = window median - the median of "
        "the last warm-up window",
    )  # fmt: skip
    p.add_argument(
        "--max-rss-growth-mb", type=float, default=32.0,
        help="largest RSS growth of any node in any window after the warm-up, MiB (default 32)",
    )  # fmt: skip
    p.add_argument("--max-missed", type=int, default=0, help="missed deadlines allowed in all (default 0)")
    p.add_argument("--rss-interval", type=float, default=1.0, help="seconds between RSS samples (default 1)")
    p.add_argument(
        "--torch-threads", type=int, default=1, help="torch threads of the policy node (default 1)"
    )
    p.add_argument(
        "--settle", type=float, default=5.0,
        help="seconds after the first chunk before the first window, counted nowhere (default 5)",
    )  # fmt: skip
    p.add_argument(
        "--nice", type=int, default=0,
        help="nice value of both nodes (default 0; a negative one needs CAP_SYS_NICE): -10 gives the "
        "control loop the CPU when other work competes, as a robot's control processes get it",
    )  # fmt: skip
    p.add_argument(
        "--startup-timeout", type=float, default=180.0,
        help="seconds to wait for the first chunk (policy_node loads torch and the model; default 180)",
    )  # fmt: skip
    p.add_argument(
        "--domain-id", type=int, default=int(os.environ.get("ROS_DOMAIN_ID") or 92),
        help="ROS_DOMAIN_ID of the nodes and the probe (default: $ROS_DOMAIN_ID, else 92)",
    )  # fmt: skip
    p.add_argument("--out", type=Path, default=None, help="JSON report, rewritten after every window")
    p.add_argument("--keep-logs", action="store_true", help="keep the node logs (always kept on failure)")
    p.add_argument(
        "--allow-network", action="store_true",
        help="run outside a loopback-only network namespace (forces ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST)",
    )  # fmt: skip
    args = p.parse_args(argv)
    n = args.minutes * 60 / args.period if args.period > 0 else 0
    if args.minutes <= 0 or args.period <= 0 or abs(n - round(n)) > 1e-6:
        p.error("--minutes and --period must be positive, and --minutes * 60 a whole number of periods")
    if round(n) <= args.warmup_windows or args.warmup_windows < 1:
        p.error(f"{round(n)} window(s): --warmup-windows must be >= 1 and leave at least one window after it")
    if args.rate <= 0 or args.rss_interval <= 0 or args.torch_threads < 1 or args.max_steps < 0:
        p.error("--rate, --rss-interval > 0, --torch-threads >= 1 and --max-steps >= 0 are required")
    if not 0 <= args.domain_id <= 232:
        p.error(f"--domain-id {args.domain_id}: out of range 0..232")
    if args.model is not None and not args.model.exists():
        p.error(f"--model {args.model} does not exist")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not prepare_ros_env("ros_soak", args.allow_network, args.domain_id):
        return 2
    sys.path.insert(0, str(REPO / "tests" / "ros"))

    work = Path(tempfile.mkdtemp(prefix="ros_soak_"))
    report: dict[str, Any] = {
        "machine": machine_info(),
        "command": " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "definitions": {
            "rss_mb": "median of the window's VmRSS samples (/proc/<pid>/status) of the node's process",
            "rss_growth_mb": "max over windows after the warm-up of (window rss_mb - last warm-up window's)",
            "missed_deadlines": "bridge ticks of a running episode that were late (> 1.5 periods after the "
            "previous tick) or starved (no chunk point due within 1.5 periods); see sim_bridge_core.py",
            "latency_ms": "probe wall clock at a chunk's arrival - the chunk's stamp (the observation's)",
        },
        "windows": [],
        "errors": [],
    }
    rc = 3
    try:
        model = args.model or artifact_for(args.mode, work / "models")
        report["model"] = str(model)
        run(args, model, work, report)
        evaluate(report, args)
        rc = 0 if report["pass"] else 1
    except (AssertionError, SoakError) as e:  # Probe.spin_until raises AssertionError with the logs
        report["errors"].append(str(e))
        report["pass"] = False
        print(f"ros_soak: failed: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        report["errors"].append("interrupted")
        report["pass"] = False
        print("ros_soak: interrupted", file=sys.stderr)
    finally:
        report["load_end"] = [round(v, 2) for v in os.getloadavg()]
        if args.out is not None:
            write_json(args.out, report)
            print(f"# written to {args.out}", file=sys.stderr)
        if rc == 0 and not args.keep_logs:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"# node logs kept in {work}", file=sys.stderr)
    if "summary" in report:
        s = report["summary"]
        print(
            f"\nepisodes {s['episodes']}, chunks {s['chunks']}, missed deadlines {s['missed_deadlines']} "
            f"(late {s['late_ticks']}, starved {s['starved_ticks']}), worst window p50/p99 "
            f"{s['latency_p50_ms_max']:.1f}/{s['latency_p99_ms_max']:.1f} ms, RSS growth (MiB) "
            f"{s['rss_growth_mb']}"
        )
        for name, ok in report.get("targets", {}).items():
            print(f"{'PASS' if ok else 'FAIL'}  {name}")
    for e in report["errors"]:
        print(f"ERROR  {e[:2000]}", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
