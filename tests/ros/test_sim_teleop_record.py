"""teleop_record.launch.py sim:=true records simulated teleoperation by itself, and the bag imports.

``ros2 launch class_bringup teleop_record.launch.py sim:=true task:=lift episodes:=2`` starts the
simulated arm (sim_teleop_node: robosuite Lift in real time), the scripted operator
(scripted_teleop_node) and the recorder (recorder_node: the pip ROS layer has no rosbag2), and no
driver. The operator gives up its first attempt on purpose (``scripted_teleop.discard_attempts=[0]``:
stop + discard), then records two kept demonstrations and exits; the launch shuts itself down and
exits 0. The bag must hold the dataset topics (the camera under its realsense-ros name) and the
nine episode events, and ``class-import-bags BAG --config config/lift.yaml`` (one override: the
recording's rate, below) must import exactly the two kept episodes with the shapes of
config/lift.yaml.

Speed: the images are rendered at 32x32 (rendering costs about the same at 84, the messages and the
bag less; the import resizes them to the config's 84); the abandoned attempt is given up after 3
steps.

The rate: the bridge executes the latest target at each tick, in real time, as a robot does. On 2
loaded cores a tick (one simulator step and one rendered frame) takes 60-150 ms, so at the task's
20 Hz the ticks run back to back and the operator's answer to an observation misses the next tick
by a tick or two, varying: the scripted demonstrator, a closed loop tuned without that lag, then
needs retries or fails a Lift (1 of 3 attempts in a trial run ran into the 300-step limit). At
sim_teleop.rate=10 the answer is mostly in before the next tick; the simulator then runs at half speed
(each tick is still one 50 ms step of the task), and the import samples at the same 10 Hz: one
sample per simulator step, as the task config's 20 Hz does for a real-time recording. A Lift
demonstration takes 50-80 steps.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 unavailable: rclpy does not import")
import yaml  # noqa: E402
from ros_helpers import REPO, NodeProcess  # noqa: E402

from class_core.data.store import EpisodeStore  # noqa: E402
from class_core.hardware.recording import RecordingConfig, record_topics  # noqa: E402

IMAGE = 32  # rendered size (task.kwargs.image_size); the import stores the config's 84
RATE_HZ = 10  # sim_teleop.rate: the simulator's 20 Hz steps at 10 Hz of wall time (see above)
OVERRIDES = [
    f"task.kwargs.image_size={IMAGE}",
    f"sim_teleop.rate={RATE_HZ}",
    "scripted_teleop.discard_attempts=[0]",  # attempt 0: stop + discard
    "scripted_teleop.abandon_after=3",
]
EVENTS = ["start", "stop", "discard"] + ["start", "stop", "success"] * 2
LAUNCH_TIMEOUT_S = 240  # typically 40-60 s on 2 loaded cores
NATIVE = "/camera/camera/color/image_raw"  # realsense-ros's name of the camera stream


def executable(name: str) -> str:
    path = shutil.which(name) or str(Path(REPO) / ".venv" / "bin" / name)
    assert Path(path).exists(), f"{name} not found on PATH (scripts/ros_env.sh puts .venv/bin there)"
    return path


def read_bag(bag: Path) -> tuple[dict, dict[str, int], list[str]]:
    from rosbags.highlevel import AnyReader

    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    counts: dict[str, int] = {}
    events: list[str] = []
    with AnyReader([bag]) as reader:
        for conn, _, raw in reader.messages():
            counts[conn.topic] = counts.get(conn.topic, 0) + 1
            if conn.topic == "/class/episode/event":
                msg: Any = reader.deserialize(raw, conn.msgtype)
                events.append(msg.data)
    return meta, counts, events


def test_sim_teleop_record_launch_records_two_episodes_by_itself(node_processes, tmp_path):
    data_root = tmp_path / "bags"
    t0 = time.monotonic()
    launch = NodeProcess(
        [executable("ros2"), "launch", "class_bringup", "teleop_record.launch.py", "sim:=true", "task:=lift",
         "episodes:=2", f"data_root:={data_root}", f"overrides:={' '.join(OVERRIDES)}"],
        "sim_teleop_record", tmp_path,
    )  # fmt: skip
    node_processes.append(launch)
    rc = launch.wait(LAUNCH_TIMEOUT_S)
    launch_s = time.monotonic() - t0
    log = launch.output()
    assert rc == 0, f"ros2 launch exited {rc}:\n{log[-5000:]}"
    assert "Traceback" not in log, log[-5000:]
    # the launch ended by itself: the operator finished, then every node stopped cleanly
    assert "done: 2 kept episode(s) in 3 attempt(s)" in log, log[-5000:]
    assert "the scripted operator is done: shutting down" in log, log[-5000:]
    started = re.findall(r"\[(\w+)-\d+\]: process started with pid", log)
    assert sorted(started) == ["recorder_node", "scripted_teleop_node", "sim_teleop_node"], started
    for name in started:
        assert re.search(rf"\[{name}-\d+\]: process has finished cleanly", log), f"{name}:\n{log[-5000:]}"
    assert "2 episode(s) (2 success), 1 discarded" in log, log[-5000:]  # the recorder's summary

    bags = sorted(data_root.glob("*/lift_*"))
    assert len(bags) == 1, f"expected one bag under {data_root}, found {bags}:\n{log[-3000:]}"
    bag = bags[0]
    assert (bag / "metadata.yaml").exists(), (
        f"{bag} has no metadata.yaml: the recorder was not closed cleanly"
    )
    meta, counts, events = read_bag(bag)
    assert meta["storage_identifier"] == "sqlite3"
    assert events == EVENTS
    # the topic table's dataset topics (config/lift.yaml records the native stream), nothing else:
    # not the privileged /class/sim/state
    assert set(counts) == set(record_topics(RecordingConfig(native_image=True))), counts
    assert counts[NATIVE] >= 100 and counts["/class/teleop/target"] >= 100, counts

    out = tmp_path / "lift.zarr"
    cmd = [executable("class-import-bags"), str(bag), "--config", str(REPO / "config" / "lift.yaml"),
           "--out", str(out), "--no-progress", f"rosbag_import.control_hz={RATE_HZ}"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, f"class-import-bags failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    assert "2 episodes" in r.stdout, r.stdout

    store = EpisodeStore.open(out)
    eps = store.root.attrs["episodes"]
    assert [e["success"] for e in eps] == [True, True], eps
    lengths = store.episode_lengths()
    assert all(n >= 20 for n in lengths), lengths  # a Lift demonstration is 55-75 steps at 20 Hz
    for i, n in enumerate(lengths):
        data = store.episode(i)
        shapes = {k: v.shape for k, v in data.items()}
        assert shapes["image"] == (n, 84, 84, 3) and data["image"].dtype == np.uint8, shapes
        assert shapes["ee_pos"] == (n, 3) and shapes["ee_rot6d"] == (n, 6), shapes
        assert shapes["gripper"] == (n, 1) and shapes["action"] == (n, 10), shapes
        assert set(np.unique(data["action"][:, 9])) <= {-1.0, 1.0}  # the task's own gripper commands
    print(f"launch ran {launch_s:.1f} s; episodes of {list(lengths)} steps")
