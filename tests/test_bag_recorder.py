"""The recorder core of teleop_record.launch.py (class_core.hardware.bag_recorder), without ROS:
its decisions, and bags it writes from CDR bytes that class-import-bags imports."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("rosbags", reason="rosbags (robot extra) writes the bags")

import recording_streams as rs  # noqa: E402
import yaml  # noqa: E402

from class_core import ros_msgs as rm  # noqa: E402
from class_core.data.rosbag_import import RosbagImportConfig  # noqa: E402
from class_core.data.store import EpisodeStore  # noqa: E402
from class_core.hardware import recording  # noqa: E402
from class_core.hardware.bag_recorder import (  # noqa: E402
    BAG_VERSION,
    Backlog,
    BagWriter,
    EpisodeLog,
    QosSpec,
    RecorderCore,
    decode_string,
    receive_stamp,
    subscription_qos,
)
from class_core.hardware.recording import RecordingConfig, record_command, record_topics  # noqa: E402
from class_core.topics import TOPICS  # noqa: E402

NS = 10**9
T0 = 1_800_000_000 * NS
REL, BE = ("RELIABLE", "VOLATILE"), ("BEST_EFFORT", "VOLATILE")


def collect_log():
    lines: list[tuple[str, str]] = []
    return lines, lambda level, text: lines.append((level, text))


def test_topics_storage_and_recorder_choice(tmp_path, monkeypatch):
    full = record_topics(RecordingConfig())
    assert full == {t: ty for t, ty in TOPICS.items() if t != "/class/policy/action_chunk"}
    small = record_topics(RecordingConfig(native_image=False))
    assert rs.NATIVE not in small and set(full) - set(small) == {rs.NATIVE}
    # both recorders record the same topics
    assert record_command(RecordingConfig(native_image=False), tmp_path)[7:] == list(small)
    with pytest.raises(ValueError, match="recording.storage"):
        RecordingConfig(storage="bag")  # type: ignore[arg-type]
    monkeypatch.setattr(recording, "rosbag2_available", lambda: False)
    assert recording.choose_recorder("auto") == "node" and recording.choose_recorder("ros2bag") == "ros2bag"
    monkeypatch.setattr(recording, "rosbag2_available", lambda: True)
    assert recording.choose_recorder("auto") == "ros2bag" and recording.choose_recorder("node") == "node"
    with pytest.raises(ValueError, match="auto, ros2bag or node"):
        recording.choose_recorder("rosbag")


def test_qos_follows_the_publishers_and_stamps_are_receive_times():
    assert subscription_qos([], 10) is None  # nobody publishes: wait
    assert subscription_qos([REL, REL], 10) == QosSpec("reliable", "volatile", 10)
    # one best-effort (or unknown) publisher: a reliable subscription would never hear it
    assert subscription_qos([REL, BE], 10).reliability == "best_effort"
    assert subscription_qos([("SYSTEM_DEFAULT", "VOLATILE")], 10).reliability == "best_effort"
    assert subscription_qos([("RELIABLE", "TRANSIENT_LOCAL")] * 2, 5) == QosSpec(
        "reliable", "transient_local", 5
    )
    assert subscription_qos([("RELIABLE", "TRANSIENT_LOCAL"), REL], 5).durability == "volatile"
    assert receive_stamp(123, 456, use_sim_time=False) == 123
    assert receive_stamp(0, 456, use_sim_time=False) == 456  # no middleware time
    assert receive_stamp(123, 456, use_sim_time=True) == 456  # simulated clock


def test_discovery_subscribes_once_downgrades_and_warns(tmp_path):
    lines, log = collect_log()
    core = RecorderCore(
        RecordingConfig(native_image=False), tmp_path / "bag", depth=7, warn_after_s=5.0, log=log
    )
    core.open()
    try:
        t = core._t_open
        subs = core.discover(
            {
                rs.EE: [("geometry_msgs/msg/PoseStamped", *BE)],
                rs.EVENT: [("std_msgs/msg/String", *REL)],
                rs.JOY: [("std_msgs/msg/String", *REL)],
            },
            t,
        )
        assert {s.topic: s.qos for s in subs} == {
            rs.EE: QosSpec("best_effort", "volatile", 7),
            rs.EVENT: QosSpec("reliable", "volatile", 7),
        }
        assert any("/class/teleop/joy is published as ['std_msgs/msg/String']" in x for _, x in lines)
        # nothing new: no subscription; a best-effort publisher joining downgrades, once
        assert core.discover({rs.EVENT: [("std_msgs/msg/String", *REL)]}, t + 1) == []
        subs = core.discover({rs.EVENT: [("std_msgs/msg/String", *REL), ("std_msgs/msg/String", *BE)]}, t + 1)
        assert [(s.topic, s.qos.reliability) for s in subs] == [(rs.EVENT, "best_effort")]
        assert core.discover({rs.EVENT: [("std_msgs/msg/String", *REL)]}, t + 2) == []  # never upgraded
        assert not any("no publisher yet" in x for _, x in lines)
        core.discover({}, t + 6)
        core.discover({}, t + 7)
        pending = [x for _, x in lines if "no publisher yet" in x]
        assert len(pending) == 1 and rs.GRIPPER in pending[0] and rs.EE not in pending[0]
        assert rs.NATIVE not in core.topics  # native_image: false
    finally:
        core.close()


def test_episode_log_cuts_as_the_importer_does():
    log = EpisodeLog()
    seq = [
        (1, "start"),
        (2, "stop"),
        (3, "start"),
        (4, "success"),
        (5, "start"),
        (6, "stop"),
        (7, "discard"),
        (8, "stop"),
        (9, "start"),
        (10, "start"),
        (11, "discard"),
        (12, "jump"),
        (13, "start"),
        (14, "stop"),
        (15, "success"),
        (16, "start"),
    ]
    levels = [log.on_event(t * NS, ev) for t, ev in seq]
    # (13, stop) then (15, success): the teleop's "end, then label" makes episode 3 a success
    assert log.kept == [(1 * NS, 2 * NS, False), (3 * NS, 4 * NS, True), (13 * NS, 14 * NS, True)]
    assert log.discarded == 2 and log.dropped == 1 and log.open_since == 16 * NS
    warns = [text for (level, text), (_, ev) in zip(levels, seq, strict=True) if level == "warn"]
    assert len(warns) == 3, warns  # stop without start, start while open, unknown
    assert log.custom_data() == {
        "class.episodes": "3",
        "class.episodes_success": "2",
        "class.episodes_discarded": "2",
        "class.episode_open_at_end": "true",
    }
    # the same sequence through the importer's own cutter
    from class_core.data.rosbag_import import BagScan, _episode_windows

    windows = _episode_windows(
        BagScan(Path("x")), RosbagImportConfig(), [(t * NS, e) for t, e in seq], (0, 20 * NS)
    )
    assert windows == log.kept


def test_backlog_is_bounded_in_bytes_but_never_refuses_events():
    b = Backlog(100)
    assert b.put(("msg", "a", 0, b"x" * 60), 60, "a") and b.put(("msg", "a", 1, b"x" * 40), 40, "a")
    assert not b.put(("msg", "a", 2, b"x"), 1, "a")  # full
    assert b.put(("msg", "e", 3, b"ev"), 2, "e", essential=True)
    assert b.dropped == {"a": 1} and b.bytes == 102 and len(b) == 3
    assert b.get(0.1)[2] == 0 and b.bytes == 42
    assert b.put(("msg", "a", 4, b"x" * 50), 50, "a")
    assert [b.get(0.1)[2] for _ in range(3)] == [1, 3, 4] and b.bytes == 0
    assert b.get(0.01) is None


def test_decode_event_string():
    f = rm.RosbagsFactory("jazzy")
    for text in ("start", "discard", ""):
        assert decode_string(f.serialize(rm.string_msg(f, text))) == text
    with pytest.raises(ValueError):
        decode_string(b"\x00\x01")


def session(
    core: RecorderCore,
    f: rm.RosbagsFactory,
    script: list[tuple[float, str]],
    duration: float,
    rate: float = 20.0,
) -> dict[str, list[int]]:
    """Feed ``core`` every stream at ``rate`` Hz for ``duration`` s (header stamp = receive time -
    3 ms) and the events of ``script`` (time, event); the header stamps published per topic."""
    published: dict[str, list[int]] = {t: [] for t in rs.STREAMS}
    events = sorted(script)
    for i in range(int(duration * rate) + 1):
        t = T0 + round(i * NS / rate)
        while events and T0 + round(events[0][0] * NS) <= t:
            te, ev = events.pop(0)
            core.on_message(rs.EVENT, T0 + round(te * NS), f.serialize(rm.string_msg(f, ev)))
        for topic in rs.STREAMS:
            if topic in core.topics:
                stamp = t - 3_000_000
                core.on_message(topic, t, f.serialize(rs.message(f, topic, len(published[topic]), stamp)))
                published[topic].append(stamp)
    return published


SCRIPT = [
    (0.5, "start"),
    (1.7, "stop"),
    (2.0, "start"),
    (3.1, "success"),
    (3.4, "start"),
    (3.9, "stop"),
    (3.95, "discard"),
]


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_recorded_session_imports_episode_by_episode(storage, tmp_path):
    f = rm.RosbagsFactory("jazzy")
    lines, log = collect_log()
    bag = tmp_path / "2030-01-01" / "demo_120000"
    core = RecorderCore(RecordingConfig(storage=storage), bag, log=log)
    core.open()
    assert bag.is_dir() and not (bag / "metadata.yaml").exists()  # the folder appears at once
    offers = {t: [(ty, *REL)] for t, ty in core.topics.items()}
    assert len(core.discover(offers)) == len(core.topics) == 8
    published = session(core, f, SCRIPT, 4.5)
    summary = core.close()
    assert core.close() is summary  # idempotent

    n = len(published[rs.EE])
    assert summary.counts == {**{t: n for t in rs.STREAMS}, rs.EVENT: len(SCRIPT)} and not summary.dropped
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == BAG_VERSION and meta["storage_identifier"] == storage
    assert meta["ros_distro"] == "jazzy" and meta["message_count"] == n * len(rs.STREAMS) + len(SCRIPT)
    assert meta["custom_data"] == {
        "class.episodes": "2",
        "class.episodes_success": "1",
        "class.episodes_discarded": "1",
        "class.episode_open_at_end": "false",
    }
    qos = {
        x["topic_metadata"]["name"]: x["topic_metadata"]["offered_qos_profiles"]
        for x in meta["topics_with_message_count"]
    }
    assert "reliability: 1" in qos[rs.EE]  # the publishers' offers, for ros2 bag play
    assert [x for x in lines if x[0] != "info"] == []
    assert any("episode 2 ended (success)" in x for _, x in lines)

    cfg_path = rs.write_import_config(tmp_path / "task.yaml")
    out = tmp_path / "demo.zarr"
    from class_core.cli.import_bags import main

    assert main([str(bag), "--config", str(cfg_path), "--out", str(out), "--no-progress"]) == 0
    store = EpisodeStore.open(out)
    eps = store.root.attrs["episodes"]
    assert [e["success"] for e in eps] == [False, True]
    assert [(e["start_ns"] - T0, e["end_ns"] - T0) for e in eps] == [
        (5 * NS // 10, 17 * NS // 10),
        (2 * NS, 31 * NS // 10),
    ]
    assert [e["steps"] for e in eps] == [13, 12] and [e["lead_s"] for e in eps] == [0.0, 0.0]
    for i, e in enumerate(eps):
        rs.check_episode(store.episode(i), rs.expected_episode(published, rs.ticks_of(e)), f"episode {i}")


def test_sqlite_commits_while_recording(tmp_path):
    f = rm.RosbagsFactory("jazzy")
    w = BagWriter(tmp_path / "bag", "sqlite3", flush_period_s=0.05).open()
    try:
        w.add_topic(rs.EVENT, "std_msgs/msg/String")
        for k in range(5):
            assert w.write(rs.EVENT, T0 + k, f.serialize(rm.string_msg(f, "start")))
        db = tmp_path / "bag" / "bag.db3"
        deadline = time.monotonic() + 20
        seen = 0
        while seen < 5:  # another connection sees the committed rows before close
            assert time.monotonic() < deadline, f"only {seen} of 5 messages committed in {db} after 20 s"
            time.sleep(0.05)
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            try:
                seen = con.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
            except sqlite3.OperationalError:  # table not committed yet
                seen = 0
            finally:
                con.close()
    finally:
        summary = w.close()
    assert summary.counts == {rs.EVENT: 5} and (tmp_path / "bag" / "metadata.yaml").exists()
    assert not w.write(rs.EVENT, T0, b"\0\1\0\0\0\0\0\0")  # closed


def test_writer_refuses_existing_folder_and_unknown_topics(tmp_path):
    (tmp_path / "bag").mkdir()
    with pytest.raises(FileExistsError, match="never writes into an existing folder"):
        BagWriter(tmp_path / "bag").open()
    with pytest.raises(ValueError, match="recording.storage"):
        BagWriter(tmp_path / "x", "bag")
    w = BagWriter(tmp_path / "new").open()
    assert not w.write("/never/added", T0, b"data")
    assert w.close().counts == {}


EXIT_SCRIPT = """
import sys
from class_core import ros_msgs as rm
from class_core.hardware.bag_recorder import BagWriter
f = rm.RosbagsFactory("jazzy")
w = BagWriter(sys.argv[1], "mcap").open()
w.add_topic("/class/episode/event", "std_msgs/msg/String")
for k in range(3):
    w.write("/class/episode/event", 10**18 + k, f.serialize(rm.string_msg(f, "stop")))
raise KeyboardInterrupt  # escapes: no close() by the program
"""


def test_an_exit_without_close_still_leaves_a_complete_bag(tmp_path):
    bag = tmp_path / "bag"
    r = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, str(bag)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert r.returncode != 0 and "KeyboardInterrupt" in r.stderr, r.stderr
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["message_count"] == 3 and meta["storage_identifier"] == "mcap"
    from rosbags.highlevel import AnyReader

    with AnyReader([bag]) as reader:
        assert [reader.deserialize(raw, c.msgtype).data for c, _, raw in reader.messages()] == ["stop"] * 3


def test_custom_distro_and_unknown_fall_back(tmp_path):
    w = BagWriter(tmp_path / "h", distro="humble").open()
    w.close()
    assert "ros_distro: humble" in (tmp_path / "h" / "metadata.yaml").read_text()
    assert BagWriter(tmp_path / "r", distro="rolling").distro == "jazzy"
