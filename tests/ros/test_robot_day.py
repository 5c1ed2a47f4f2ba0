"""The robot day, small: ``class-robot-demo`` records, trains and deploys Lift through ROS 2.

One run of the console script at a tiny scale (config/robot_day_lift.yaml with overrides), each
stage checked for what the next one needs:

- record: ``teleop_record.launch.py sim:=true task:=lift`` (sim_teleop_node, scripted_teleop_node,
  recorder_node: the pip ROS layer has no rosbag2) records one forced discard
  (``scripted_teleop.discard_attempts=[0]``) and two kept demonstrations, then shuts itself down;
  the bag holds the dataset topics (the camera under its realsense-ros name, never the privileged
  /class/sim/state) and the nine episode events;
- import: ``class-import-bags`` -> a store of exactly the two kept episodes, with the shapes of
  config/lift.yaml;
- precompute -> a pair file over the store's samples; pretrain -> a checkpoint; export -> an
  artifact whose manifest lists its files;
- deploy: ``policy.launch.py mode:=nonparametric sim:=true task:=lift`` runs one episode in
  lock-step; the bridge executed chunks (steps > 0) and wrote its results file;
- eval: ``class-eval`` on the same seed gives the same outcome and step count;
- report.md and timings.json name every stage.

A plumbing test, not a success test: success rates at the default scale are in docs/robot-day.md.
Speed: 3 attempts take 30-50 s to record at sim_teleop.rate=10 (why 10: docs/ros2.md, "Simulated
teleoperation"); the abandoned attempt is given up after 3 steps; 5 pre-training steps of batch 16.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 unavailable: rclpy does not import")
pytest.importorskip("robosuite", reason="robosuite (sim extra) runs Lift")
import yaml  # noqa: E402
from ros_helpers import REPO, NodeProcess  # noqa: E402

from class_core.data.store import EpisodeStore  # noqa: E402
from class_core.hardware.recording import RecordingConfig, record_topics  # noqa: E402
from class_core.similarity.pairs import load_pairs  # noqa: E402

OVERRIDES = [
    "robot_day.episodes=2",
    "robot_day.eval_episodes=1",
    "robot_day.record_timeout=240",
    "robot_day.deploy_timeout=240",
    "robot_day.eval_max_steps=80",  # a failed episode ends sooner (a demonstration takes 50-80)
    "scripted_teleop.discard_attempts=[0]",  # attempt 0: stop + discard
    "scripted_teleop.abandon_after=3",
    "pretrain.train.max_steps=5",
    "pretrain.train.batch_size=16",
    "pretrain.optim.warmup_steps=1",
    "pretrain.train.ckpt_every=5",
]
EVENTS = ["start", "stop", "discard"] + ["start", "stop", "success"] * 2
DEMO_TIMEOUT_S = 600  # typically 150-200 s on 2 loaded cores
NATIVE = "/camera/camera/color/image_raw"  # realsense-ros's name of the camera stream


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


def test_robot_day_records_trains_and_deploys_through_ros(tmp_path):
    exe = shutil.which("class-robot-demo") or str(REPO / ".venv" / "bin" / "class-robot-demo")
    out = tmp_path / "day"
    t0 = time.monotonic()
    demo = NodeProcess(
        [exe, "--config", str(REPO / "config" / "robot_day_lift.yaml"), "--out", str(out), *OVERRIDES],
        "robot_demo", tmp_path,
    )  # fmt: skip
    try:
        rc = demo.wait(DEMO_TIMEOUT_S)
    finally:
        demo.stop()
    log = demo.output()
    wall = time.monotonic() - t0
    assert rc == 0, f"class-robot-demo exited {rc}:\n{log[-6000:]}"

    # record: the launch ended by itself, every node cleanly
    record_log = (out / "record.log").read_text()
    assert "done: 2 kept episode(s) in 3 attempt(s)" in record_log, record_log[-4000:]
    assert "the scripted operator is done: shutting down" in record_log, record_log[-4000:]
    for name in ("recorder_node", "scripted_teleop_node", "sim_teleop_node"):
        assert f"[{name}-" in record_log and "process has finished cleanly" in record_log, name
    assert "2 episode(s) (2 success), 1 discarded" in record_log, record_log[-4000:]
    bags = sorted(p.parent for p in (out / "bags").glob("*/lift_*/metadata.yaml"))
    assert len(bags) == 1, bags
    meta, counts, events = read_bag(bags[0])
    assert meta["storage_identifier"] == "sqlite3"
    assert events == EVENTS
    assert set(counts) == set(record_topics(RecordingConfig(native_image=True))), counts
    assert counts[NATIVE] >= 60 and counts["/class/teleop/target"] >= 60, counts
    recorded = json.loads((out / "record.json").read_text())
    assert (recorded["kept"], recorded["discarded"], recorded["starts"]) == (2, 1, 3), recorded

    # import: the two kept episodes at the config's shapes
    store = EpisodeStore.open(out / "lift.zarr")
    assert [e["success"] for e in store.root.attrs["episodes"]] == [True, True]
    lengths = store.episode_lengths()
    assert all(n >= 20 for n in lengths), lengths  # a Lift demonstration is 50-80 steps
    for i, n in enumerate(lengths):
        data = store.episode(i)
        shapes = {k: v.shape for k, v in data.items()}
        assert shapes["image"] == (n, 84, 84, 3) and data["image"].dtype == np.uint8, shapes
        assert shapes["ee_pos"] == (n, 3) and shapes["ee_rot6d"] == (n, 6), shapes
        assert shapes["gripper"] == (n, 1) and shapes["action"] == (n, 10), shapes
        assert set(np.unique(data["action"][:, 9])) <= {-1.0, 1.0}  # the task's own gripper commands

    # precompute, pretrain, export
    pairs = load_pairs(out / "pairs.npz")
    assert len(pairs) > 0 and int(max(pairs.i.max(), pairs.j.max())) < store.n_steps
    assert list((out / "pretrain" / "checkpoints").glob("step_*")), "no pre-training checkpoint"
    manifest = json.loads((out / "models" / "class_knn" / "manifest.json").read_text())
    assert manifest["policy_type"] == "retrieval", manifest
    assert manifest["meta"]["n_samples"] == store.n_steps, manifest
    assert {"config.json", "weights.safetensors"} <= set(manifest["files"]), manifest["files"]

    # deploy through ROS, and the same seed without ROS
    ros = json.loads((out / "deploy_class_knn" / "results.json").read_text())
    assert ros["task"] == "lift" and ros["variant"] == "dyn-cam" and ros["episodes"] == 1, ros
    assert 0 < ros["episodes_detail"][0]["steps"] <= 80 and ros["latency_ms"]["n"] > 0, ros
    assert ros["rejected_chunks"] == 0, ros
    deploy_log = (out / "deploy_class_knn" / "launch.log").read_text()
    assert "the sim bridge is done: shutting down" in deploy_log, deploy_log[-4000:]
    direct = json.loads((out / "eval_class_knn" / "results.json").read_text())
    got = [(e["seed"], e["success"], e["steps"]) for e in ros["episodes_detail"]]
    want = [(int(e["seed"]), bool(e["success"]), int(e["steps"])) for e in direct["episodes_detail"]]
    assert got == want, (got, want)

    report = (out / "report.md").read_text()
    assert "1/1 episodes identical" in report, report
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings) >= {"record", "import", "precompute", "pretrain", "export", "deploy", "eval"}, timings
    print(f"robot day ran {wall:.0f} s; stages {timings}")
