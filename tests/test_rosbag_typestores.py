"""Recorded bags import on the Humble and on the Jazzy type store (``rosbag_import.typestore``).

The same recording (every recorded topic at 20 Hz, two episodes) is written as each recorder
writes it: our recorder (``RecorderCore``, the recorder_node of teleop_record.launch.py) and
``write_bag``, each with Humble and with Jazzy message definitions; a bag as Humble's
``ros2 bag record`` writes it (sqlite3 schema 3, metadata version 5: no message definitions, no
type hashes, no ros_distro; and its mcap flavour, which embeds Humble's definitions); and, where the
message packages' .msg files are installed, a bag as Jazzy's ``ros2 bag record`` writes it (the
.msg texts, dependencies after ``MSG:`` separators, and ROS's type hashes). Every bag imports to the
same episodes under ``typestore`` auto, humble and jazzy, and ``auto`` names the recording's
distro. ``ros2 bag info`` reads every bag where rosbag2 is installed (not in the pip ROS layer).
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="rosbags (robot extra) reads and writes the bags")

import recording_streams as rs  # noqa: E402
import yaml  # noqa: E402

from class_core import ros_msgs as rm  # noqa: E402
from class_core.data.rosbag_import import RosbagImportConfig, import_bags, scan_bag, write_bag  # noqa: E402
from class_core.data.store import EpisodeStore  # noqa: E402
from class_core.hardware.bag_recorder import RecorderCore  # noqa: E402
from class_core.hardware.recording import RecordingConfig, rosbag2_available  # noqa: E402

NS = 10**9
T0 = 1_800_000_000 * NS
RATE_HZ, DURATION_S = 20.0, 4.5
SCRIPT = [(0.5, "start"), (1.7, "stop"), (2.0, "start"), (3.1, "success")]
WINDOWS = [(0.5, 1.7, False), (2.0, 3.1, True)]
STORES = ("auto", "humble", "jazzy")
# Humble's offered_qos_profiles: a YAML string, durations as sec/nsec
INFINITE = {"sec": 2147483647, "nsec": 4294967295}
HUMBLE_QOS = yaml.safe_dump(
    [{"history": 3, "depth": 0, "reliability": 1, "durability": 2, "deadline": INFINITE, "lifespan": INFINITE,
      "liveliness": 1, "liveliness_lease_duration": INFINITE, "avoid_ros_namespace_conventions": False}]
)  # fmt: skip
# rosbag2_storage_default_plugins (Humble) SqliteStorage, schema version 3
HUMBLE_SQLITE_SCHEMA = """
CREATE TABLE schema(schema_version INTEGER PRIMARY KEY,ros_distro TEXT NOT NULL);
CREATE TABLE metadata(id INTEGER PRIMARY KEY,metadata_version INTEGER NOT NULL,metadata TEXT NOT NULL);
CREATE TABLE topics(id INTEGER PRIMARY KEY,name TEXT NOT NULL,type TEXT NOT NULL,
                    serialization_format TEXT NOT NULL,offered_qos_profiles TEXT NOT NULL);
CREATE TABLE messages(id INTEGER PRIMARY KEY,topic_id INTEGER NOT NULL,timestamp INTEGER NOT NULL,
                      data BLOB NOT NULL);
CREATE INDEX timestamp_idx ON messages (timestamp ASC);
INSERT INTO schema VALUES (3, 'humble');
"""


def recording(f: rm.RosbagsFactory) -> tuple[list[tuple[str, int, Any]], dict[str, list[int]]]:
    """(topic, receive time, message) of the session in time order, and each stream's header stamps."""
    msgs: list[tuple[str, int, Any]] = []
    published: dict[str, list[int]] = {t: [] for t in rs.STREAMS}
    for i in range(int(DURATION_S * RATE_HZ) + 1):
        t = T0 + round(i * NS / RATE_HZ)
        for topic in rs.STREAMS:
            stamp = t - 3_000_000
            msgs.append((topic, t, rs.message(f, topic, len(published[topic]), stamp)))
            published[topic].append(stamp)
    msgs += [(rs.EVENT, T0 + round(te * NS), rm.string_msg(f, ev)) for te, ev in SCRIPT]
    msgs.sort(key=lambda m: m[1])
    return msgs, published


def record(path: Path, distro: str, storage: str) -> Path:
    """The recorder of teleop_record.launch.py (recorder_node's core), fed the session's CDR bytes."""
    f = rm.RosbagsFactory(distro)
    core = RecorderCore(RecordingConfig(storage=storage), path, distro=distro, log=lambda *_: None)
    core.open()
    core.discover({t: [(ty, "RELIABLE", "VOLATILE")] for t, ty in core.topics.items()})
    for topic, t, msg in recording(f)[0]:
        core.on_message(topic, t, f.serialize(msg))
    assert not core.close().error
    return path


def humble_metadata(
    path: Path, file: str, topics: list[tuple[str, str, int, str]], span: tuple[int, int]
) -> None:
    """metadata.yaml as Humble's rosbag2 writes it: version 5, no ros_distro, no type hashes;
    ``topics``: (name, type, message count, offered_qos_profiles)."""
    n = sum(t[2] for t in topics)
    info = {
        "version": 5, "storage_identifier": "sqlite3" if file.endswith(".db3") else "mcap",
        "duration": {"nanoseconds": span[1] - span[0]}, "starting_time": {"nanoseconds_since_epoch": span[0]},
        "message_count": n, "compression_format": "", "compression_mode": "", "relative_file_paths": [file],
        "topics_with_message_count": [
            {"topic_metadata": {"name": name, "type": ty, "serialization_format": "cdr",
                                "offered_qos_profiles": qos}, "message_count": c}
            for name, ty, c, qos in topics
        ],
        "files": [{"path": file, "starting_time": {"nanoseconds_since_epoch": span[0]},
                   "duration": {"nanoseconds": span[1] - span[0]}, "message_count": n}],
    }  # fmt: skip
    (path / "metadata.yaml").write_text(yaml.safe_dump({"rosbag2_bagfile_information": info}))


def humble_sqlite(src: Path, path: Path) -> Path:
    """``src``'s messages in a bag as Humble's ``ros2 bag record -s sqlite3`` writes it."""
    from rosbags.rosbag2 import Reader

    path.mkdir()
    name = f"{path.name}_0.db3"
    db = sqlite3.connect(path / name)
    db.executescript(HUMBLE_SQLITE_SCHEMA)
    with Reader(src) as reader:
        for c in reader.connections:
            db.execute("INSERT INTO topics VALUES (?,?,?,?,?)", (c.id, c.topic, c.msgtype, "cdr", HUMBLE_QOS))
        rows = [(c.id, t, bytes(raw)) for c, t, raw in reader.messages()]
        topics = [(c.topic, c.msgtype, c.msgcount, HUMBLE_QOS) for c in reader.connections]
    db.executemany("INSERT INTO messages (topic_id, timestamp, data) VALUES (?,?,?)", rows)
    db.commit()
    db.close()
    humble_metadata(path, name, topics, (min(r[1] for r in rows), max(r[1] for r in rows)))
    return path


def humble_mcap(src: Path, path: Path) -> Path:
    """``src`` (mcap, Humble definitions embedded) with the metadata.yaml Humble's rosbag2 writes
    (the QoS as the file's channels hold it: the reader matches them)."""
    shutil.copytree(src, path)
    info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    topics = [
        (m["name"], m["type"], t["message_count"], m["offered_qos_profiles"])
        for t in info["topics_with_message_count"]
        for m in [t["topic_metadata"]]
    ]
    t0 = info["starting_time"]["nanoseconds_since_epoch"]
    (path / info["relative_file_paths"][0]).rename(path / (path.name + ".mcap"))
    humble_metadata(path, path.name + ".mcap", topics, (t0, t0 + info["duration"]["nanoseconds"]))
    return path


def _msg_text(share: Path, msgtype: str) -> str:
    pkg, _, name = msgtype.split("/")
    return (share / pkg / "msg" / f"{name}.msg").read_text()


def rosbag2_msgdef(share: Path, msgtype: str) -> str:
    """A type's definition as Jazzy's rosbag2 stores it: the .msg text, then each dependency's
    after a separator line and ``MSG: pkg/msg/Name``."""
    deps: list[str] = []
    todo = [msgtype]
    while todo:
        pkg = todo[0].split("/")[0]
        for line in _msg_text(share, todo.pop(0)).splitlines():
            field = line.split("#", 1)[0].split()
            ty = field[0].split("[")[0] if field else ""
            if ty[:1].isupper() or "/" in ty:
                dep = f"{ty.split('/')[0]}/msg/{ty.split('/')[-1]}" if "/" in ty else f"{pkg}/msg/{ty}"
                if dep not in deps:
                    deps.append(dep)
                    todo.append(dep)
    sep = "=" * 80 + "\n"
    return _msg_text(share, msgtype) + "\n" + "".join(f"{sep}MSG: {d}\n{_msg_text(share, d)}\n" for d in deps)


def jazzy_ros2bag(path: Path, share: Path) -> Path:
    """The session as Jazzy's ``ros2 bag record`` writes it: the installed .msg texts and ROS's
    type hashes (rosbags' RIHS01 equals rclpy's for these types)."""
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    f, store = rm.RosbagsFactory("jazzy"), get_typestore(Stores.ROS2_JAZZY)
    conns: dict[str, Any] = {}
    with Writer(path, version=8) as writer:
        for topic, t, msg in recording(f)[0]:
            ty = msg.__msgtype__
            if topic not in conns:
                conns[topic] = writer.add_connection(
                    topic, ty, msgdef=rosbag2_msgdef(share, ty), rihs01=store.hash_rihs01(ty)
                )
            writer.write(conns[topic], t, f.serialize(msg))
    meta = path / "metadata.yaml"  # Jazzy names itself; rosbags writes its own name
    meta.write_text(meta.read_text().replace("ros_distro: rosbags", "ros_distro: jazzy"))
    return path


def msg_share() -> Path | None:
    """The message packages' share folder (the pip ROS layer installs it into the venv)."""
    for root in (Path(sys.prefix) / "share", *Path("/opt/ros").glob("*/share")):
        if (root / "sensor_msgs" / "msg" / "Image.msg").exists():
            return root
    return None


# bag name -> the distro that recorded it (what typestore auto must pick)
DISTRO = {
    "recorder_humble_sqlite3": "humble",
    "recorder_jazzy_mcap": "jazzy",
    "write_bag_humble_mcap": "humble",
    "write_bag_jazzy_sqlite3": "jazzy",
    "humble_ros2bag_sqlite3": "humble",
    "humble_ros2bag_mcap": "humble",
    "jazzy_ros2bag_sqlite3": "jazzy",
}


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("typestores")
    out = {
        "recorder_humble_sqlite3": record(root / "recorder_humble_sqlite3", "humble", "sqlite3"),
        "recorder_jazzy_mcap": record(root / "recorder_jazzy_mcap", "jazzy", "mcap"),
    }
    for distro, storage in (("humble", "mcap"), ("jazzy", "sqlite3"), ("humble", "sqlite3")):
        name = f"write_bag_{distro}_{storage}"
        out[name] = write_bag(root / name, recording(rm.RosbagsFactory(distro))[0], distro, storage)
    out["humble_ros2bag_sqlite3"] = humble_sqlite(out.pop("write_bag_humble_sqlite3"), root / "humble_sqlite")
    out["humble_ros2bag_mcap"] = humble_mcap(out["write_bag_humble_mcap"], root / "humble_mcap")
    share = msg_share()
    if share is not None:
        out["jazzy_ros2bag_sqlite3"] = jazzy_ros2bag(root / "jazzy_ros2bag", share)
    return out


def import_config(typestore: str) -> RosbagImportConfig:
    c = RosbagImportConfig(
        control_hz=rs.CONTROL_HZ, image_size=rs.IMAGE_SIZE, max_gap=1.0, typestore=typestore
    )
    c.validate()
    return c


def test_humble_bags_are_what_humble_writes(bags):
    """The stand-ins hold what makes a Humble bag different: no definitions in sqlite3, no hashes."""
    from rosbags.interfaces import MessageDefinitionFormat
    from rosbags.rosbag2 import Reader

    for name, defined in (("humble_ros2bag_sqlite3", False), ("humble_ros2bag_mcap", True)):
        info = yaml.safe_load((bags[name] / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        assert info["version"] == 5 and "ros_distro" not in info
        with Reader(bags[name]) as r:
            conns = r.connections
            assert len(conns) == len(rs.STREAMS) + 1
            assert all((c.msgdef.format != MessageDefinitionFormat.NONE) == defined for c in conns), name
            assert not any(c.digest for c in conns), name


@pytest.mark.parametrize("name", list(DISTRO))
def test_bag_imports_on_both_type_stores(bags, name, tmp_path):
    if name not in bags:
        pytest.skip("the message packages' .msg files are not installed (ROS 2 message packages)")
    published = recording(rm.RosbagsFactory("jazzy"))[1]
    for typestore in STORES:
        cfg = import_config(typestore)
        scan = scan_bag(bags[name], cfg)
        assert scan.problems == [], (typestore, scan.problems)
        assert scan.distro == (DISTRO[name] if typestore == "auto" else typestore)
        out = tmp_path / f"{typestore}.zarr"
        res = import_bags([bags[name]], out, cfg)
        eps = EpisodeStore.open(out).root.attrs["episodes"]
        assert [(e["start_ns"] - T0, e["end_ns"] - T0, e["success"]) for e in eps] == [
            (round(a * NS), round(b * NS), ok) for a, b, ok in WINDOWS
        ], (typestore, eps)
        assert res.n_episodes == 2
        store = EpisodeStore.open(out)
        for i, e in enumerate(eps):
            want = rs.expected_episode(published, rs.ticks_of(e))
            rs.check_episode(store.episode(i), want, f"{name} typestore={typestore} episode {i}")


def test_unknown_typestore_names_the_key():
    with pytest.raises(
        ValueError, match=r"rosbag_import\.typestore: must be auto, humble or jazzy, got 'iron'"
    ):
        import_config("iron")


def test_camera_info_builds_in_both_stores():
    """hw_common.camera_info_msg (camera_node's CameraInfo) fills every field, so it also builds the
    ``rosbags`` classes (no defaults there) of either distro, and a bag of it imports."""
    hw_common = pytest.importorskip("class_ros.hw_common", reason="class_ros (ros2_ws) is not built")

    class Intrinsics:
        width, height, fx, fy, ppx, ppy = 640, 480, 615.0, 615.5, 320.5, 240.5
        model, coeffs = "distortion.brown_conrady", [0.1, -0.2, 0.0, 0.0, 0.05]

    for distro in ("humble", "jazzy"):
        f = rm.RosbagsFactory(distro)
        msg = f.roundtrip(hw_common.camera_info_msg(f, Intrinsics(), T0, "camera_color_optical_frame"))
        assert (msg.binning_x, msg.binning_y, msg.roi.width, msg.roi.do_rectify) == (0, 0, 0, False)
        np.testing.assert_allclose(msg.k, [615.0, 0, 320.5, 0, 615.5, 240.5, 0, 0, 1])
        assert list(msg.d) == Intrinsics.coeffs and rm.stamp_ns(msg) == T0


def test_ros2_bag_info_reads_every_bag(bags):
    """``ros2 bag info`` (rosbag2) reads the bags: where it is installed (an apt or Docker ROS 2)."""
    if not rosbag2_available():
        pytest.skip(
            "ros2 bag (rosbag2) is not installed: the pip ROS layer has no rosbag2 (no ros-jazzy-rosbag2* "
            "on PyPI, none in ../shared/ros2/wheels)"
        )
    for name, bag in bags.items():
        r = subprocess.run(["ros2", "bag", "info", str(bag)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"{name}: {r.stdout}\n{r.stderr}"
        n = int(DURATION_S * RATE_HZ + 1) * len(rs.STREAMS) + len(SCRIPT)
        assert f"Messages:          {n}" in r.stdout or str(n) in r.stdout, f"{name}: {r.stdout}"
