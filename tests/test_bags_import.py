"""rosbag2 -> episode store: multi-episode bags with realsense-ros and class topics, round trip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="rosbags (robot extra) reads and writes the test bags")

from class_core import ros_msgs as rm  # noqa: E402
from class_core.data.rosbag_import import (  # noqa: E402
    BagError,
    RosbagImportConfig,
    import_bags,
    scan_bag,
    write_bag,
)
from class_core.data.store import EpisodeStore  # noqa: E402
from class_core.geometry import matrix_to_quat, matrix_to_rot6d  # noqa: E402

NS = 10**9
T0 = 1_700_000_000 * NS  # a realistic wall-clock epoch
RATES = {"image": 30, "ee": 100, "gripper": 50, "target": 50, "joy": 20}
HEADER_LAG = 2_000_000  # log time = header stamp + 2 ms (recording latency)


def _rotz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def ee(t: float) -> tuple[np.ndarray, np.ndarray]:
    return np.array([t, 2 * t, 0.5 - 0.1 * t]), _rotz(0.3 * t)


def target(t: float) -> tuple[np.ndarray, np.ndarray]:
    return np.array([t + 0.01, 2 * t, 0.4]), _rotz(0.3 * t + 0.1)


def frame_value(i: int) -> int:
    return (7 * i) % 256


def make_messages(f: rm.RosbagsFactory, duration: float, events=(), skip=None, drop_topic=None, holes=()):
    """Every topic sampled on its own exact grid; ``skip`` = (topic, t_from, t_to) leaves a hole,
    ``holes`` several (topic or None for every topic)."""
    msgs = []
    holes = list(holes) + ([skip] if skip else [])

    def add(topic, rate, build):
        n = int(duration * rate)
        for i in range(n + 1):
            t_ns = i * NS // rate
            t = t_ns / NS
            if any(h[0] in (None, topic) and h[1] <= t < h[2] for h in holes):
                continue
            if topic != drop_topic:
                msgs.append((topic, T0 + t_ns + HEADER_LAG, build(i, t, T0 + t_ns)))

    def image(i, t, stamp):
        img = np.full((48, 64, 3), frame_value(i), np.uint8)
        img[..., 1] = 255 - frame_value(i)
        return rm.numpy_to_image(f, img, stamp, "rgb8", "camera_color_optical_frame")

    add("/camera/camera/color/image_raw", RATES["image"], image)
    add(
        "/class/robot/ee_pose",
        RATES["ee"],
        lambda i, t, s: rm.numpy_to_pose_stamped(f, ee(t)[0], matrix_to_quat(ee(t)[1]), s),
    )
    add(
        "/class/gripper/state",
        RATES["gripper"],
        lambda i, t, s: rm.numpy_to_joint_state(f, [0.08 - 0.01 * t, 0.5], ["gripper", "other"], s),
    )
    add(
        "/class/teleop/target",
        RATES["target"],
        lambda i, t, s: rm.numpy_to_pose_stamped(f, target(t)[0], matrix_to_quat(target(t)[1]), s),
    )
    add(
        "/class/teleop/joy",
        RATES["joy"],
        lambda i, t, s: rm.numpy_to_joy(f, np.array([min(1.0, 0.1 * t), -0.5]), np.array([1, 0]), s),
    )
    for t, ev in events:
        msgs.append(("/class/episode/event", T0 + round(t * NS) + HEADER_LAG, rm.string_msg(f, ev)))
    msgs.sort(key=lambda m: m[1])
    return msgs


EVENTS = [(1.0, "start"), (3.0, "stop"), (4.0, "start"), (5.5, "success"), (6.0, "start"), (7.0, "discard"),
          (8.0, "start"), (9.0, "stop"), (9.2, "discard")]  # fmt: skip


def latest(t: float, rate: int) -> float:
    """Time of the latest sample at or before ``t`` on a ``rate`` Hz grid (exact integer ns)."""
    t_ns = round(t * NS)
    return (t_ns * rate // NS) * NS // rate / NS


def expected_episode(t_start: float, t_end: float, image_size: int) -> dict[str, np.ndarray]:
    ticks = [t_start + k / 10 for k in range(round((t_end - t_start) * 10) + 1)]
    out: dict[str, list] = {"image": [], "ee_pos": [], "ee_rot6d": [], "gripper": [], "action": []}
    for t in ticks:
        fi = round(latest(t, RATES["image"]) * RATES["image"])
        img = np.full((image_size, image_size, 3), frame_value(fi), np.uint8)
        img[..., 1] = 255 - frame_value(fi)
        out["image"].append(img)
        te = latest(t, RATES["ee"])
        out["ee_pos"].append(ee(te)[0])
        out["ee_rot6d"].append(matrix_to_rot6d(ee(te)[1]))
        out["gripper"].append([0.08 - 0.01 * latest(t, RATES["gripper"])])
        tt = latest(t, RATES["target"])
        trig = min(1.0, 0.1 * latest(t, RATES["joy"]))
        out["action"].append(np.r_[target(tt)[0], matrix_to_rot6d(target(tt)[1]), trig])
    return {k: np.asarray(v) for k, v in out.items()}


def cfg(**over) -> RosbagImportConfig:
    c = RosbagImportConfig(control_hz=10.0, image_size=32)
    c.observations["gripper"] = {
        "topic": "/class/gripper/state",
        "kind": "joint_position",
        "names": ["gripper"],
    }
    for k, v in over.items():
        setattr(c, k, v)
    return c


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("bags")
    jazzy, humble = rm.RosbagsFactory("jazzy"), rm.RosbagsFactory("humble")
    return {
        "events_sqlite": write_bag(
            root / "events_sqlite", make_messages(jazzy, 10.0, EVENTS), "jazzy", "sqlite3"
        ),
        "plain_mcap": write_bag(root / "plain_mcap", make_messages(humble, 2.0), "humble", "mcap"),
        "gap": write_bag(
            root / "gap", make_messages(jazzy, 4.0, EVENTS[:2], skip=("/class/robot/ee_pose", 1.5, 2.3))
        ),  # fmt: skip
        "no_joy": write_bag(root / "no_joy", make_messages(jazzy, 2.0, drop_topic="/class/teleop/joy")),
    }


def check_episode(ep, exp):
    assert len(ep["action"]) == len(exp["action"])
    np.testing.assert_array_equal(ep["image"], exp["image"])
    for k in ("ee_pos", "ee_rot6d", "gripper", "action"):
        np.testing.assert_allclose(ep[k], exp[k], atol=1e-5, err_msg=k)
        assert ep[k].dtype == np.float32


def test_bag_round_trip_events_and_one_per_bag(bags, tmp_path):
    out = tmp_path / "store.zarr"
    res = import_bags([bags["events_sqlite"], bags["plain_mcap"]], out, cfg())
    store = EpisodeStore.open(out)
    # events: [1, 3] stop, [4, 5.5] success, [6, 7] discarded while recording, [8, 9] discarded after stop
    assert store.n_episodes == 3 and res.n_episodes == 3
    np.testing.assert_array_equal(store.episode_lengths(), [21, 16, 21])
    assert [e["success"] for e in res.episodes] == [False, True, None]
    assert sorted(store.keys()) == ["action", "ee_pos", "ee_rot6d", "gripper", "image"]
    check_episode(store.episode(0), expected_episode(1.0, 3.0, 32))
    check_episode(store.episode(1), expected_episode(4.0, 5.5, 32))
    # no events: the whole bag, from the first tick where every topic has spoken
    check_episode(store.episode(2), expected_episode(0.0, 2.0, 32))
    assert store.root.attrs["source"] == "rosbag2"


def test_header_stamps_from_raw_cdr_match_deserialised(bags):
    from class_core.data.rosbag_import import _open_reader, _raw_header_stamp

    reader = _open_reader(bags["plain_mcap"], "humble")
    try:
        for n, (conn, _, raw) in enumerate(reader.messages()):
            assert _raw_header_stamp(raw) == rm.stamp_ns(reader.deserialize(raw, conn.msgtype))
            if n > 50:
                break
    finally:
        reader.close()


def test_gap_missing_topic_and_no_output(bags, tmp_path):
    out = tmp_path / "bad.zarr"
    with pytest.raises(BagError) as e:
        import_bags([bags["events_sqlite"], bags["gap"], bags["no_joy"]], out, cfg())
    text = str(e.value)
    assert "gap on /class/robot/ee_pose at 1.00 s into the episode" in text
    assert "missing topic(s) ['/class/teleop/joy']" in text and str(bags["no_joy"]) in text
    assert "nothing was written" in text
    assert not out.exists() and not list(tmp_path.iterdir())
    # skipping bad bags imports the good one and reports the rest
    res = import_bags([bags["events_sqlite"], bags["gap"], bags["no_joy"]], out, cfg(), skip_bad=True)
    assert res.n_episodes == 2 and {b for b, _ in res.skipped} == {str(bags["gap"]), str(bags["no_joy"])}


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_truncated_bag_is_reported(tmp_path, storage):
    bag = write_bag(
        tmp_path / f"trunc_{storage}", make_messages(rm.RosbagsFactory("jazzy"), 3.0), "jazzy", storage
    )
    data = next(p for p in bag.iterdir() if p.suffix in (".db3", ".mcap"))
    raw = data.read_bytes()
    data.write_bytes(raw[: len(raw) // 2])
    scan = scan_bag(bag, cfg())
    assert scan.problems and not scan.episodes
    assert any(w in scan.problems[0] for w in ("truncated or corrupt", "cannot open")), scan.problems
    out = tmp_path / "out.zarr"
    with pytest.raises(BagError, match=str(bag)):
        import_bags([bag], out, cfg())
    assert not out.exists()


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="rosbag_import.split"):
        cfg(split="per-minute").validate()
    c = cfg()
    c.observations["ee_pos"] = {"topic": "/class/robot/ee_pose", "kind": "image"}
    with pytest.raises(ValueError, match="'ee_pos'.*carries geometry_msgs/msg/PoseStamped"):
        c.validate()


def test_cli_imports_with_config_and_overrides(bags, tmp_path):
    conf = tmp_path / "task.yaml"
    conf.write_text(
        "rosbag_import:\n  control_hz: 10\n  image_size: 32\n"
        "  observations:\n    image: {topic: /camera/camera/color/image_raw, kind: image}\n"
        "    gripper: {topic: /class/gripper/state, kind: joint_position, names: [gripper]}\n"
    )
    out = tmp_path / "cli.zarr"
    cmd = [sys.executable, "-m", "class_core.cli.import_bags", str(bags["events_sqlite"]),
           "--config", str(conf), "--out", str(out), "rosbag_import.control_hz=5"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    store = EpisodeStore.open(out)
    np.testing.assert_array_equal(store.episode_lengths(), [11, 8])  # 5 Hz
    assert sorted(store.keys()) == ["action", "gripper", "image"]
    assert (Path(str(out) + ".import.yaml")).exists()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "already exists" in r.stderr
    bad = [sys.executable, "-m", "class_core.cli.import_bags", str(bags["no_joy"]), "--config", str(conf),
           "--out", str(tmp_path / "x.zarr")]  # fmt: skip
    r = subprocess.run(bad, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "missing topic(s) ['/class/teleop/joy']" in r.stderr
    assert not (tmp_path / "x.zarr").exists()


# --- streams that begin after 'start' ------------------------------------------------------------
TOPIC_RATE = {
    "/camera/camera/color/image_raw": RATES["image"],
    "/class/robot/ee_pose": RATES["ee"],
    "/class/gripper/state": RATES["gripper"],
    "/class/teleop/target": RATES["target"],
    "/class/teleop/joy": RATES["joy"],
}
# a recorder that streams between 'start' and 'stop' only; the camera needs a quarter second
LEADS = {"/camera/camera/color/image_raw": 0.25, "/class/robot/ee_pose": 0.005, "/class/gripper/state": 0.01,
         "/class/teleop/target": 0.02, "/class/teleop/joy": 0.03}  # fmt: skip
LEAD_EVENTS = [(1.0, "start"), (3.0, "stop"), (5.0, "start"), (7.0, "success")]


def streaming_holes(leads=LEADS, windows=((1.0, 3.0), (5.0, 7.0)), end=100.0):
    """Holes outside ``windows``, each topic beginning ``leads[topic]`` after a window opens."""
    holes = []
    for topic, lead in leads.items():
        prev = 0.0
        for a, b in windows:
            holes.append((topic, prev, a + lead))
            prev = b + 0.05  # streams stop a moment after 'stop'
        holes.append((topic, prev, end))
    return holes


def first_sample_ns(topic: str, t: float) -> int:
    """Header stamp (ns after T0) of the first sample of ``topic`` at or after ``t`` s."""
    rate = TOPIC_RATE[topic]
    i = -(-round(t * NS) * rate // NS)
    while i * NS // rate < round(t * NS):
        i += 1
    return i * NS // rate


def expected_at(ticks_ns: np.ndarray, image_size: int) -> dict[str, np.ndarray]:
    """Expected samples at ticks given in exact ns after T0 (header time)."""

    def last(t_ns: int, rate: int) -> tuple[int, float]:
        i = ((t_ns + 1) * rate - 1) // NS  # largest i with i * NS // rate <= t_ns
        return i, (i * NS // rate) / NS

    out: dict[str, list] = {"image": [], "ee_pos": [], "ee_rot6d": [], "gripper": [], "action": []}
    for t in (int(x) for x in ticks_ns):
        fi, _ = last(t, RATES["image"])
        img = np.full((image_size, image_size, 3), frame_value(fi), np.uint8)
        img[..., 1] = 255 - frame_value(fi)
        out["image"].append(img)
        te = last(t, RATES["ee"])[1]
        out["ee_pos"].append(ee(te)[0])
        out["ee_rot6d"].append(matrix_to_rot6d(ee(te)[1]))
        out["gripper"].append([0.08 - 0.01 * last(t, RATES["gripper"])[1]])
        tt = last(t, RATES["target"])[1]
        trig = min(1.0, 0.1 * last(t, RATES["joy"])[1])
        out["action"].append(np.r_[target(tt)[0], matrix_to_rot6d(target(tt)[1]), trig])
    return {k: np.asarray(v) for k, v in out.items()}


def lead_bag(root: Path, name: str, **kw) -> Path:
    kw.setdefault("holes", streaming_holes())
    events = kw.pop("events", LEAD_EVENTS)
    duration = kw.pop("duration", 7.5)
    return write_bag(root / name, make_messages(rm.RosbagsFactory("jazzy"), duration, events, **kw))


def test_streams_starting_after_start_are_trimmed_and_reported(tmp_path):
    bag = lead_bag(tmp_path, "lead")
    out = tmp_path / "lead.zarr"
    res = import_bags([bag], out, cfg())  # old importer: "gap ... at 0.00 s ... last message 1.9 s old"
    store = EpisodeStore.open(out)
    assert res.n_episodes == 2 and [e["success"] for e in res.episodes] == [False, True]
    cam = "/camera/camera/color/image_raw"
    for n, (ep, (a, b)) in enumerate(zip(res.episodes, [(1.0, 3.0), (5.0, 7.0)], strict=True)):
        first = first_sample_ns(cam, a + LEADS[cam])  # the camera is the last stream to speak
        t0 = round(a * NS) + HEADER_LAG  # 'start' at log time
        assert ep["start_ns"] == T0 + t0
        assert ep["lead_s"] == pytest.approx((first - t0) / NS, abs=1e-9)
        assert 0.25 < ep["lead_s"] < 0.3
        ticks = np.arange(first, round(b * NS) + HEADER_LAG + 1, NS // 10)
        assert ep["steps"] == len(ticks) == store.episode_lengths()[n]
        check_episode(store.episode(n), expected_at(ticks, 32))
    assert store.root.attrs["episodes"][1]["lead_s"] == pytest.approx(res.episodes[1]["lead_s"])
    lead_notes = [n for b, n in res.notes if b == str(bag) and "lead of" in n]
    assert len(lead_notes) == 2 and all(n.endswith(f"waited on {cam} (image)") for n in lead_notes), res.notes
    assert f"lead of {res.episodes[1]['lead_s']:.3f} s trimmed" in lead_notes[1]


def test_lead_lasts_until_every_stream_is_fresh_at_once(tmp_path):
    # streams run throughout; around the second 'start' (5 s) the pose stalls from 4.7 s to 5.9 s
    # (still fresh at 'start' on its 4.69 s message) while the camera is off until 5.25 s: the first
    # instant where both are fresh is the pose's 5.9 s message, not the camera's first frame
    cam = "/camera/camera/color/image_raw"
    holes = [("/class/robot/ee_pose", 4.7, 5.9), (cam, 3.5, 5.25)]
    scan = scan_bag(lead_bag(tmp_path, "stall", holes=holes), cfg())
    assert not scan.problems, scan.problems
    first, second = scan.episodes
    assert first.lead_ns == 0 and first.ticks[0] == first.t0  # everything was streaming at 'start'
    assert second.ticks[0] == T0 + first_sample_ns("/class/robot/ee_pose", 5.9)
    assert second.lead_ns == second.ticks[0] - second.t0 == round(0.898 * NS)
    (note,) = [n for n in scan.notes if "lead of" in n]
    assert "lead of 0.898 s trimmed" in note and note.endswith(
        "waited on /class/robot/ee_pose (ee_pos, ee_rot6d)"
    )


def test_cli_prints_the_trimmed_lead(tmp_path):
    bag = lead_bag(tmp_path, "lead")
    conf = tmp_path / "task.yaml"
    conf.write_text(
        "rosbag_import:\n  control_hz: 10\n  image_size: 32\n"
        "  observations:\n    image: {topic: /camera/camera/color/image_raw, kind: image}\n"
    )
    out = tmp_path / "cli.zarr"
    cmd = [sys.executable, "-m", "class_core.cli.import_bags", str(bag), "--config", str(conf), "--out",
           str(out), "--no-progress"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    leads = [e["lead_s"] for e in EpisodeStore.open(out).root.attrs["episodes"]]
    assert "lead_s" in r.stdout and f"{sum(leads):.3f}" in r.stdout, r.stdout
    assert r.stdout.count("lead of ") == 2 and "trimmed" in r.stdout


def test_gap_inside_an_episode_after_a_lead_is_still_an_error(tmp_path):
    # ee_pose starts with the others, then stops for 0.8 s in the middle of the second episode
    holes = streaming_holes() + [("/class/robot/ee_pose", 5.9, 6.7)]
    bag = lead_bag(tmp_path, "lead_gap", holes=holes)
    out = tmp_path / "x.zarr"
    with pytest.raises(BagError) as e:
        import_bags([bag], out, cfg())
    text = str(e.value)
    # ticks run from the camera's first frame (5.2667 s); last pose at 5.89 s, first stale tick 6.4667 s
    assert f"{bag}: episode" in text and "gap on /class/robot/ee_pose at 1.46 s into the episode" in text
    assert "last message 0.577 s old" in text and "1 problem(s)" in text
    assert not out.exists()


def test_stream_never_fresh_in_an_episode_names_topic_key_and_bag(tmp_path):
    # the joystick sends nothing during the second episode (it did during the first)
    holes = streaming_holes() + [("/class/teleop/joy", 4.0, 8.0)]
    bag = lead_bag(tmp_path, "no_joy_ep2", holes=holes)
    with pytest.raises(BagError) as e:
        import_bags([bag], tmp_path / "x.zarr", cfg())
    (line,) = [ln for ln in str(e.value).splitlines() if "no fresh message" in ln]
    assert str(bag) in line and "/class/teleop/joy (action)" in line and "max_gap=0.5 s" in line
    assert "image" not in line  # only the silent stream is named
    assert not (tmp_path / "x.zarr").exists()
    # each stream fresh at some point, never all at once: joy only until 5.2 s, the camera from 5.9 s
    holes = streaming_holes() + [
        ("/class/teleop/joy", 5.2, 8.0),
        ("/camera/camera/color/image_raw", 5.0, 5.9),
    ]
    scan = scan_bag(lead_bag(tmp_path, "apart", holes=holes), cfg())
    (line,) = [p for p in scan.problems if "never fresh" in p]
    assert "all at once" in line and "/camera/camera/color/image_raw (image) +0.898 s" in line, line
    assert len(scan.episodes) == 1


def test_excessive_lead_is_an_error_naming_the_late_stream(tmp_path):
    cam = "/camera/camera/color/image_raw"
    # second episode (5-9 s): the camera comes up 2.5 s after 'start' (> max_lead 2 s)
    events = [(1.0, "start"), (3.0, "stop"), (5.0, "start"), (9.0, "success")]
    late_cam = streaming_holes(windows=((1.0, 3.0), (5.0, 9.0))) + [(cam, 5.0, 7.5)]
    bag = lead_bag(tmp_path, "late_cam", holes=late_cam, events=events, duration=9.5)
    with pytest.raises(BagError) as e:
        import_bags([bag], tmp_path / "x.zarr", cfg())
    (line,) = [ln for ln in str(e.value).splitlines() if "max_lead" in ln]
    assert str(bag) in line and "fresh only 2.498 s after 'start' (> max_lead=2.0 s)" in line
    assert f"waited on {cam} (image);" in line and f"{cam} (image) +2.498 s" in line
    # raising max_lead lets it through if steps remain ...
    res = import_bags([bag], tmp_path / "ok.zarr", cfg(max_lead=3.0))
    assert res.n_episodes == 2 and 2.49 < res.episodes[1]["lead_s"] < 2.54
    # ... but a lead that eats the episode is an error, not a silently dropped episode
    ate = streaming_holes() + [(cam, 5.0, 6.95)]
    bag2 = lead_bag(tmp_path, "ate", holes=ate)
    with pytest.raises(BagError) as e:
        import_bags([bag2], tmp_path / "y.zarr", cfg(max_lead=10.0))
    (line,) = [ln for ln in str(e.value).splitlines() if "min_steps" in ln]
    assert str(bag2) in line and "leaves 1 step(s) < min_steps=2" in line and f"{cam} (image)" in line
    with pytest.raises(ValueError, match="rosbag_import.max_lead"):
        cfg(max_lead=-1.0).validate()


def test_success_right_after_stop_labels_that_episode(tmp_path):
    """The teleop ends an episode, then labels it ('stop', 'success'): the episode is a success."""
    from class_core.data.rosbag_import import BagScan, RosbagImportConfig, _episode_windows

    events = [(1, "start"), (2, "stop"), (2.001, "success"), (3, "start"), (4, "stop"), (5, "success"),
              (5.5, "start"), (6, "stop"), (6.1, "discard"), (6.2, "success")]  # fmt: skip
    scan = BagScan(tmp_path)
    windows = _episode_windows(
        scan, RosbagImportConfig(), [(round(t * NS), e) for t, e in events], (0, 10 * NS)
    )
    # a late 'success' after a discard has nothing to label
    assert windows == [(1 * NS, 2 * NS, True), (3 * NS, 4 * NS, True)]
    assert any("'success'" in n and "without 'start'" in n for n in scan.notes)
