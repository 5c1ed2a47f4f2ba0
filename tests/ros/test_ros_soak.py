"""The soak benchmark's CI version, and the bridge's missed-deadline counters it relies on.

``benchmarks/ros_soak.py --minutes 1``: policy_node and sim_bridge_node (real-time clock, 10 Hz,
continuous Push-T episodes) as separate processes for one minute, in four 15 s windows; the
benchmark itself asserts the targets (exit 0) and this test checks its report: at most 1 % missed
control deadlines (MAX_MISSED below), chunks at 10 Hz / T_a, episodes completed, RSS growth of both nodes
within bounds after the warm-up, clean exit on SIGINT.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 unavailable: rclpy does not import")
from ros_helpers import REPO  # noqa: E402

from class_core import ros_msgs as rm  # noqa: E402

MS = 1_000_000

# RSS bound after the warm-up, MiB, for growth measured over ~30 s (windows 3-4 against window
# 2, after the policy's 256-message history has filled). Measured (docs/ros2.md, "Soak"):
# sim_bridge_node moves by at most 0.5 MiB; policy_node (torch's allocator) by up to 8.4 MiB from one
# 15 s window to the next on a loaded machine, which a bound of 6 failed once in 3 runs. So this
# minute catches gross leaks only (one 640x480 frame per tick: 270 MiB in 30 s); small ones (one
# 96x96 frame per tick: 8 MiB) are the hour run's job.
MAX_RSS_GROWTH_MB = 24.0
# Missed control deadlines allowed in the minute (600 ticks at 10 Hz): 1 %. The hour run's target
# is 0, but on 2 shared cores the chunk's budget is one period (100 ms) and the p99 latency sits
# near it: a fresh-clone CI run at load 0.5-1 with --nice -10 had 3 starved ticks (p99 115 ms) where
# other runs had none. A stalled policy or a lost chunk stream misses far more than 6.
MAX_MISSED = 6


def test_realtime_bridge_counts_missed_deadlines():
    pytest.importorskip("gym_pusht", reason="gym-pusht (sim extra) runs Push-T")
    from class_ros.msg_factory import rclpy_factory

    from class_core.deploy import SimBridgeConfig, SimBridgeCore
    from sim_bridge.task import make_task

    f = rclpy_factory()
    cfg = SimBridgeConfig(task="pusht", seed=3, clock="realtime", rate=10.0)
    bridge = SimBridgeCore(make_task("pusht", "fixed-color", max_steps=100), f, cfg)
    dt = 100 * MS

    def counts():
        return bridge.missed_deadlines, bridge.late_ticks, bridge.starved_ticks

    def chunk(stamp):
        return rm.chunk_to_joint_trajectory(f, np.full((8, 2), 200.0), ["x", "y"], stamp, dt)

    bridge.tick(1000 * MS)  # the episode starts: its first observation, stamped 1000 ms
    bridge.tick(1100 * MS)  # no chunk yet, one period later: starved
    assert counts() == (1, 0, 1)
    bridge.on_message("/class/policy/action_chunk", chunk(1100 * MS), 1150 * MS)  # points 1100..1800
    for t in range(1200, 1900, 100):
        bridge.tick(t * MS)  # a point due at every tick
    bridge.tick(1900 * MS)  # holds the 1800 ms point: the planning rule's one-period hold, not counted
    assert counts() == (1, 0, 1)
    bridge.on_message("/class/policy/action_chunk", chunk(1900 * MS), 1960 * MS)  # in time
    bridge.tick(2000 * MS)
    bridge.tick(2060 * MS)  # early or jittered: fine
    assert counts() == (1, 0, 1)
    bridge.tick(2300 * MS)  # 240 ms after the previous tick: late (the 2300 ms point is due)
    assert counts() == (2, 1, 1)
    bridge.tick(2400 * MS)
    for t in range(2500, 2900, 100):
        bridge.tick(t * MS)  # the chunk's last point is 2600 ms: 2700 holds it, 2800 is starved
    assert counts() == (3, 1, 2)
    values = rm.diagnostic_values(bridge.diagnostics(2800 * MS))
    assert (values["missed_deadlines"], values["late_ticks"], values["starved_ticks"]) == ("3", "1", "2")


def test_soak_one_minute_meets_the_targets(demo_models, ros_domain, tmp_path):
    out = tmp_path / "soak.json"
    cmd = [
        sys.executable, str(REPO / "benchmarks" / "ros_soak.py"),
        "--minutes", "1", "--period", "15", "--warmup-windows", "2", "--nice", "-10",
        "--model", str(demo_models["nonparametric"]), "--rate", "10",
        "--max-rss-growth-mb", str(MAX_RSS_GROWTH_MB), "--max-missed", str(MAX_MISSED),
        "--domain-id", str(ros_domain), "--out", str(out),
    ]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    log = f"{r.stdout}\n{r.stderr[-6000:]}"
    assert out.exists(), log
    report = json.loads(out.read_text())
    assert r.returncode == 0, log
    assert report["pass"] and not report["errors"], log
    windows = report["windows"]
    assert len(windows) == 4, log
    for w in windows:
        assert w["chunks"] >= 15, log  # 10 Hz / T_a 8 = 1.25 chunks/s: 18-19 in 15 s
        assert w["latency_ms"]["n"] == w["chunks"], log
        assert set(w["rss_mb"]) == {"policy_node", "sim_bridge_node"}, log
    assert sum(w["missed_deadlines"] for w in windows) <= MAX_MISSED, log
    assert sum(w["episodes"] for w in windows) >= 1, log  # Push-T: 300 steps = 30 s
    growth = report["summary"]["rss_growth_mb"]
    assert set(growth) == {"policy_node", "sim_bridge_node"}, log
    assert all(g <= MAX_RSS_GROWTH_MB for g in growth.values()), log
    assert report["exit_codes"] == {"policy_node": 0, "sim_bridge_node": 0}, log
