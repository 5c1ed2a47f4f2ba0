"""teleop_record.launch.py records a real bag that class-import-bags imports.

``ros2 launch class_bringup teleop_record.launch.py drivers:=false`` starts the recorder only
(``recorder:=auto`` picks class_ros recorder_node here: the pip ROS layer has no rosbag2); the
test's probe node plays the drivers, publishing every recorded topic of the topic table with the
drivers' QoS (best-effort sensor streams included) and an operator's episode events. Then Ctrl-C
(SIGINT to the launch's process group, as a terminal sends it) or SIGTERM ends the launch, and
the bag must be complete: every published message in it, metadata.yaml written, and the
class-import-bags console script must import its episodes with the values that were published.

The drivers are not started (drivers:=false): with use_fake_hardware they need franky-sim and the
arm node, which are tested on their own.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 unavailable: rclpy does not import")
import recording_streams as rs  # noqa: E402
import yaml  # noqa: E402
from rclpy.qos import QoSProfile, qos_profile_sensor_data  # noqa: E402
from ros_helpers import REPO, NodeProcess, msg_class  # noqa: E402

from class_core import ros_msgs as rm  # noqa: E402
from class_core.data.store import EpisodeStore  # noqa: E402
from class_core.hardware.recording import RecordingConfig, record_topics  # noqa: E402

NS = 10**9
RATE_HZ = 20.0
# (seconds after the streams start, event): stop ends an episode, success ends it as a success,
# stop + discard (the teleop's discard while recording) drops it
SCRIPT = [(0.6, "start"), (2.0, "stop"), (2.4, "start"), (3.8, "success"), (4.2, "start"), (5.0, "stop"),
          (5.05, "discard")]  # fmt: skip
DURATION_S = 5.6
# the drivers' QoS (camera_node, arm_node, gripper_node, teleop_node)
BEST_EFFORT = {rs.NATIVE, rs.JOINTS, rs.EE, rs.GRIPPER}
DEPTH = 100


def rclpy_factory() -> rm.MsgFactory:
    return rm.MsgFactory(msg_class, rm.array_sequence, "rclpy", byte_as_bytes=True)


def executable(name: str) -> str:
    path = shutil.which(name) or str(Path(REPO) / ".venv" / "bin" / name)
    assert Path(path).exists(), f"{name} not found on PATH (scripts/ros_env.sh puts .venv/bin there)"
    return path


def play_drivers(probe, pubs, f) -> tuple[dict[str, list[int]], list[tuple[str, int]]]:  # type: ignore[no-untyped-def]
    """Every stream at RATE_HZ for DURATION_S with header stamp = now, events on SCRIPT's times;
    the stamps published per topic, and (event, publish time)."""
    published: dict[str, list[int]] = {t: [] for t in rs.STREAMS}
    sent: list[tuple[str, int]] = []
    events = list(SCRIPT)
    clock = probe.node.get_clock()
    t_start = time.monotonic()
    for i in range(int(DURATION_S * RATE_HZ) + 1):
        wait = t_start + i / RATE_HZ - time.monotonic()
        if wait > 0:
            probe.spin_for(wait)
        elapsed = time.monotonic() - t_start
        while events and events[0][0] <= elapsed:
            ev = events.pop(0)[1]
            sent.append((ev, clock.now().nanoseconds))
            pubs[rs.EVENT].publish(rm.string_msg(f, ev))
        for topic in rs.STREAMS:
            stamp = clock.now().nanoseconds
            pubs[topic].publish(rs.message(f, topic, len(published[topic]), stamp))
            published[topic].append(stamp)
    assert not events, f"events {events} not sent"
    return published, sent


def read_bag(bag: Path) -> tuple[dict, dict[str, int], list[tuple[int, str]]]:
    from rosbags.highlevel import AnyReader

    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    counts: dict[str, int] = {}
    events: list[tuple[int, str]] = []
    with AnyReader([bag]) as reader:
        for conn, t, raw in reader.messages():
            counts[conn.topic] = counts.get(conn.topic, 0) + 1
            if conn.topic == rs.EVENT:
                events.append((t, reader.deserialize(raw, conn.msgtype).data))
    return meta, counts, events


def recorder_pid(launch: NodeProcess) -> int:
    found = re.findall(r"\[recorder_node-\d+\]: process started with pid \[(\d+)\]", launch.output())
    assert len(found) == 1, f"no recorder_node pid in the launch output:\n{launch.output()[-3000:]}"
    return int(found[0])


def end_recording(launch: NodeProcess, how: str) -> int | None:
    """ctrl-c: SIGINT to the launch's process group, as a terminal sends it (ros2 launch passes
    it on too). sigterm: SIGTERM to the recorder alone (what ros2 launch escalates to, or a
    `kill`); the launch then ends by itself. (SIGTERM to ros2 launch orphans its processes, by
    design of launch.)"""
    if how == "ctrl-c":
        return launch.stop(signal.SIGINT, timeout=60)
    os.kill(recorder_pid(launch), signal.SIGTERM)
    return launch.wait(60)


@pytest.mark.parametrize(("storage", "how"), [("sqlite3", "ctrl-c"), ("mcap", "sigterm")])
def test_teleop_record_launch_records_a_bag_that_class_import_bags_imports(
    storage, how, probe, node_processes, tmp_path
):
    data_root = tmp_path / "bags"
    robot = yaml.safe_load((REPO / "config" / "robot.yaml").read_text())
    robot["recording"].update(storage=storage, prefix="take")
    config = tmp_path / "robot.yaml"
    config.write_text(yaml.safe_dump(robot))
    topics = record_topics(RecordingConfig())
    assert set(topics) == {*rs.STREAMS, rs.EVENT}, "the test publishes every recorded topic"

    f = rclpy_factory()
    pubs = {
        t: probe.publisher(t, ty, qos_profile_sensor_data if t in BEST_EFFORT else QoSProfile(depth=DEPTH))
        for t, ty in topics.items()
    }
    launch = NodeProcess(
        [executable("ros2"), "launch", "class_bringup", "teleop_record.launch.py", "drivers:=false",
         f"data_root:={data_root}", f"config:={config}"],
        "teleop_record", tmp_path,
    )  # fmt: skip
    node_processes.append(launch)
    probe.spin_until(
        lambda: all(p.get_subscription_count() >= 1 for p in pubs.values()),
        90,
        f"the recorder's subscriptions on all {len(pubs)} recorded topics",
        [launch],
    )
    published, sent = play_drivers(probe, pubs, f)
    probe.spin_for(0.5)  # the last messages in flight
    rc = end_recording(launch, how)
    log = launch.log_path.read_text(errors="replace")
    assert rc == 0, f"ros2 launch exited {rc} after {how}:\n{log[-4000:]}"
    assert "Traceback" not in log and "process has finished cleanly" in log, log[-4000:]
    assert "2 episode(s) (1 success), 1 discarded" in log, log[-4000:]  # the recorder's summary

    bags = sorted(data_root.glob("*/take_*"))
    assert len(bags) == 1, f"expected one bag under {data_root}, found {bags}:\n{log[-3000:]}"
    bag = bags[0]
    assert (bag / "metadata.yaml").exists(), (
        f"{bag} has no metadata.yaml: the recorder was not closed cleanly"
    )
    meta, counts, events = read_bag(bag)
    assert meta["storage_identifier"] == storage and meta["ros_distro"] == "jazzy"
    want = {t: len(s) for t, s in published.items()} | {rs.EVENT: len(SCRIPT)}
    assert counts == want, f"recorded {counts}, published {want}"
    assert [e for _, e in events] == [e for _, e in SCRIPT]
    # log time = receive time: just after publishing, on the same clock
    for (t_rec, ev), (_, t_pub) in zip(events, sent, strict=True):
        assert 0 <= t_rec - t_pub < 2 * NS, (
            f"event {ev}: recorded {(t_rec - t_pub) / 1e6:.1f} ms after publishing"
        )

    task = rs.write_import_config(tmp_path / "task.yaml", max_gap=2.0, max_lead=5.0)
    out = tmp_path / "demos.zarr"
    cmd = [
        executable("class-import-bags"),
        str(bag),
        "--config",
        str(task),
        "--out",
        str(out),
        "--no-progress",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, f"class-import-bags failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    assert "2 episodes" in r.stdout, r.stdout

    store = EpisodeStore.open(out)
    eps = store.root.attrs["episodes"]
    ev_t = [t for t, _ in events]
    # start..stop and start..success kept; start..stop + discard dropped
    assert [(e["start_ns"], e["end_ns"], e["success"]) for e in eps] == [
        (ev_t[0], ev_t[1], False),
        (ev_t[2], ev_t[3], True),
    ]
    dt = round(NS / rs.CONTROL_HZ)
    for i, e in enumerate(eps):
        lead = round(e["lead_s"] * NS)
        assert 0 <= lead < NS // 2, (
            f"episode {i}: lead {e['lead_s']} s (every stream was running before 'start')"
        )
        assert e["steps"] == len(range(e["start_ns"] + lead, e["end_ns"] + 1, dt)) >= 12
        rs.check_episode(store.episode(i), rs.expected_episode(published, rs.ticks_of(e)), f"episode {i}")
    np.testing.assert_array_equal(store.episode_lengths(), [e["steps"] for e in eps])
