"""Simulated teleoperation without rclpy: the sim bridge's teleop core and the scripted operator core
exchange real message objects (rosbags classes, through CDR) on robosuite Lift, and the recording
imports with ``class-import-bags BAG --config config/lift.yaml`` as is."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="rosbags (robot extra) provides the message classes")

from class_core import ros_msgs as rm  # noqa: E402
from class_core.config import from_dict, load_config  # noqa: E402
from class_core.data.rosbag_import import RosbagImportConfig, write_bag  # noqa: E402
from class_core.deploy.scripted_teleop_core import (  # noqa: E402
    ScriptedTeleopConfig,
    ScriptedTeleopCore,
    run_teleop_loopback,
)
from class_core.deploy.sim_teleop_core import (  # noqa: E402
    CAMERA_INFO_TOPIC,
    CROP_IMAGE_TOPIC,
    JOINT_STATES_TOPIC,
    JOY_TOPIC,
    NATIVE_IMAGE_TOPIC,
    STATE_TOPIC,
    TARGET_TOPIC,
    GripperMapping,
    SimTeleopCore,
    decode_state,
    encode_state,
    load_sim_teleop_setup,
)
from class_core.hardware.recording import RecordingConfig, load_robot_config, record_topics  # noqa: E402
from class_core.topics import EVENT_TOPIC, resize_center_crop  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LIFT = REPO / "config" / "lift.yaml"
NS = rm.NS
T0 = 1_700_000_000 * NS  # a wall-clock epoch: the bridge runs in real time
IMAGE = 32  # rendered size in the tests (rendering costs the same at 32 and 84; messages less)
F = rm.RosbagsFactory("jazzy")
EE, GRIPPER = "/class/robot/ee_pose", "/class/gripper/state"


class RecordingTask:
    """Passes everything through to a task and records the actions it executes."""

    def __init__(self, task: Any):
        self._task = task
        self.actions: list[np.ndarray] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task, name)

    def reset(self, seed: int | None = None) -> Any:
        return self._task.reset(seed)

    def step(self, action: np.ndarray) -> Any:
        self.actions.append(np.array(action, dtype=np.float64))
        return self._task.step(action)


def inside(pos: np.ndarray, limits: Any) -> bool:
    return bool(np.all(pos >= limits.lo - 1e-12) and np.all(pos <= limits.hi + 1e-12))


# --- configs (no simulator) -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["lift", "stack"])
def test_task_configs_load_through_the_loaders_the_tools_use(name: str) -> None:
    from class_core.cli.precompute import SimilaritySection
    from class_core.policy.retrieval import RetrievalConfig
    from class_core.train import finetune, pretrain

    path = REPO / "config" / f"{name}.yaml"
    setup = load_sim_teleop_setup(path)
    assert setup.task.name == name and setup.task.variant == "dyn-cam"
    assert setup.operator.task == name and setup.operator.gripper == setup.bridge.gripper
    assert inside(np.array([0.0, 0.0, 1.0]), setup.limits)  # the table centre, above it
    cfg = load_config(path)
    # class-import-bags: the section completed by the defaults, validated
    icfg = from_dict(RosbagImportConfig, cfg["rosbag_import"], where="rosbag_import")
    icfg.validate()
    assert icfg.control_hz == setup.task.kwargs["control_hz"]
    assert icfg.image_size == setup.task.kwargs["image_size"]
    # every topic the import reads is recorded (teleop_record's recorder) ...
    robot = load_robot_config(path)  # what teleop_node / recorder_node read with config:=
    recorded = record_topics(robot["recording"])
    assert {s.topic for parts in icfg.sources().values() for s in parts} <= set(recorded)
    assert robot["arm"].limits == setup.limits
    # class-precompute, class-pretrain, class-finetune, class-export retrieval
    from_dict(SimilaritySection, cfg["similarity"], where="similarity")
    pc = pretrain.parse_config(cfg)
    assert pc.data.store == cfg["data"]["store"] and pc.data.pairs == cfg["similarity"]["out"]
    fc = finetune.parse_config(cfg)
    assert fc.policy.proprio_keys == ["ee_pos", "ee_rot6d", "gripper"]
    sec = {k: v for k, v in cfg["retrieval"].items()}
    for k in ("policy", "checkpoint", "encoder_weights", "cameras", "batch_size", "device", "init_seed"):
        sec.pop(k, None)
    from_dict(RetrievalConfig, sec, where="retrieval").validate()


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    from class_core.config import ConfigError

    with pytest.raises(ConfigError, match="sim_teleop.grip"):
        load_sim_teleop_setup(LIFT, ["+sim_teleop.grip=1"])
    with pytest.raises(ConfigError, match="gripper.input"):
        load_sim_teleop_setup(LIFT, ["sim_teleop.gripper.input=knob"])
    with pytest.raises(ConfigError, match="scripted_teleop.gripper"):
        load_sim_teleop_setup(LIFT, ["+scripted_teleop.gripper={input: trigger}"])
    bare = tmp_path / "bare.yaml"
    bare.write_text("task: {name: lift}\n")
    with pytest.raises(ConfigError, match="arm.limits"):
        load_sim_teleop_setup(bare)


def test_gripper_mapping_and_state_codec() -> None:
    g = GripperMapping()
    assert g.to_task(0.7) == 0.7 and g.to_axis(-1.0) == -1.0  # 'action': passed through
    t = GripperMapping(input="trigger")
    assert t.to_task(0.0) == -1.0 and t.to_task(1.0) == 1.0 and t.to_task(0.25) == -0.5
    assert t.to_axis(1.0) == 1.0 and t.to_axis(-1.0) == 0.0
    values: dict[str, Any] = {
        "episode": 3.0,
        "ee_mat": np.arange(9.0).reshape(3, 3),
        "object.cube_pos": np.array([1, 2, 3.0]),
    }
    msg = F.roundtrip(encode_state(F, values, T0, "sim"))
    back = decode_state(msg)
    assert rm.stamp_ns(msg) == T0 and set(back) == set(values)
    assert back["episode"].shape == () and float(back["episode"]) == 3.0
    np.testing.assert_array_equal(back["ee_mat"], np.arange(9.0))
    np.testing.assert_array_equal(back["object.cube_pos"], [1, 2, 3])


class FakeExpert:
    """Moves 1 cm along x per action from where the view says the grip site is."""

    def __init__(self, view: Any, seed: int):
        self.view, self.seed = view, seed

    def reset(self) -> None:
        pass

    def select_action(self, obs: Any) -> np.ndarray:
        pos, _ = self.view.ee_pose()
        return np.r_[pos + [0.01, 0, 0], 1, 0, 0, 0, 1, 0, 1.0]


def fake_state(stamp: int, episode: int, running: bool = True, success: bool = False, x: float = 0.0) -> Any:
    flags = {"episode": episode, "step": 0, "running": running, "success": success, "truncated": False}
    values: dict[str, Any] = {k: float(v) for k, v in flags.items()}
    values.update(ee_pos=np.array([x, 0, 1.0]), ee_mat=np.eye(3), gripper_width=np.asarray(0.08))
    return F.roundtrip(encode_state(F, values, stamp, "sim"))


def topics_of(msgs: list[tuple[str, Any]]) -> list[str]:
    return [t if t != EVENT_TOPIC else f"event:{m.data}" for t, m in msgs]


def test_operator_protocol_without_a_simulator() -> None:
    """start once the bridge is seen (re-sent if unanswered), one target per new observation of the
    new episode, success held -> target + stop + success, a pause, a forced attempt -> stop + discard."""
    cfg = ScriptedTeleopConfig(task="lift", n_episodes=1, settle_steps=1, pause=0.5, resend_after=1.0)
    cfg.discard_attempts, cfg.abandon_after = [0], 2
    op = ScriptedTeleopCore(F, cfg, make_expert=lambda view, c, seed: FakeExpert(view, seed))
    ms = 50_000_000
    assert topics_of(op.tick(T0)) == [JOY_TOPIC]  # no bridge seen yet: idle Joy only
    assert op.on_message(STATE_TOPIC, fake_state(T0, episode=-1, running=False), T0) == []
    out = op.tick(T0 + ms)
    assert topics_of(out) == [JOY_TOPIC, "event:start"] and list(out[0][1].buttons) == [0, 1, 0, 0]
    assert op.tick(T0 + 2 * ms) == []  # waiting for the bridge's reset
    assert topics_of(op.tick(T0 + ms + NS)) == [JOY_TOPIC, "event:start"] and op.resends == 1
    # states of the old episode (or repeated stamps) are not acted on
    assert op.on_message(STATE_TOPIC, fake_state(T0 + 2 * ms, episode=-1, running=False), T0) == []
    t = T0 + 30 * ms
    out = op.on_message(STATE_TOPIC, fake_state(t, episode=0, x=0.1), t + 7 * ms)  # 7 ms latency
    assert topics_of(out) == [TARGET_TOPIC, JOY_TOPIC] and op.phase == "acting"
    assert rm.stamp_ns(out[0][1]) == rm.stamp_ns(out[1][1]) == t  # the observation's stamp
    assert rm.pose_to_numpy(out[0][1])[0][0] == pytest.approx(0.11) and out[0][1].header.frame_id == "sim"
    assert list(out[1][1].axes) == [1.0, 1.0] and list(out[1][1].buttons) == [1, 0, 0, 0]
    assert op.on_message(STATE_TOPIC, fake_state(t, episode=0, x=0.1), t) == []  # same stamp
    out = op.on_message(STATE_TOPIC, fake_state(t + ms, episode=0, x=0.2), t + ms)
    assert topics_of(out) == [TARGET_TOPIC, JOY_TOPIC]
    # attempt 0 is given up after abandon_after = 2 targets
    out = op.on_message(STATE_TOPIC, fake_state(t + 2 * ms, episode=0, x=0.3), t + 2 * ms)
    assert topics_of(out) == [JOY_TOPIC, "event:stop", "event:discard"]
    assert list(out[0][1].buttons) == [0, 0, 0, 1]  # RJ
    assert op.attempts[0].outcome == "discard" and op.attempts[0].reason == "forced" and op.phase == "idle"
    assert topics_of(op.tick(t + 3 * ms)) == [JOY_TOPIC]  # pausing
    t2 = t + 2 * ms + NS // 2
    assert topics_of(op.tick(t2)) == [JOY_TOPIC, "event:start"]
    out = op.on_message(STATE_TOPIC, fake_state(t2 + ms, episode=1), t2 + ms)
    assert topics_of(out) == [TARGET_TOPIC, JOY_TOPIC] and op.attempts[1].seed == 1
    out = op.on_message(STATE_TOPIC, fake_state(t2 + 2 * ms, episode=1, success=True), t2 + 2 * ms)
    assert topics_of(out) == [TARGET_TOPIC, JOY_TOPIC]  # success must hold settle_steps + 1 times
    out = op.on_message(STATE_TOPIC, fake_state(t2 + 3 * ms, episode=1, success=True), t2 + 3 * ms)
    assert topics_of(out) == [TARGET_TOPIC, JOY_TOPIC, "event:stop", "event:success"]
    assert list(out[1][1].buttons) == [1, 0, 1, 0]
    assert op.finished and [a.outcome for a in op.attempts] == ["discard", "success"]
    assert topics_of(op.tick(t2 + 100 * NS)) == [JOY_TOPIC]  # done: never starts again
    assert rm.diagnostic_values(F.roundtrip(op.diagnostics(t2)))["successes"] == "1"


# --- robosuite Lift -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lift() -> Any:
    pytest.importorskip("robosuite", reason="robosuite (sim extra) runs Lift")
    setup = load_sim_teleop_setup(LIFT, [f"task.kwargs.image_size={IMAGE}"])
    task = setup.make_task()
    yield setup, RecordingTask(task)
    task.close()


@pytest.fixture(scope="module")
def session(lift: Any) -> Any:
    """A failed attempt (given up after 4 steps), then a kept demonstration (a whole Lift episode costs
    about 6 s of rendering here: one is enough)."""
    setup, task = lift
    task.actions.clear()
    op_cfg = dataclasses.replace(
        setup.operator, n_episodes=1, discard_attempts=[0], abandon_after=4, settle_steps=2
    )
    bridge = SimTeleopCore(task, F, setup.bridge, setup.limits)
    operator = ScriptedTeleopCore(F, op_cfg)
    messages: list[tuple[str, int, Any]] = []

    def record(topic: str, msg: Any, now: int) -> None:
        messages.append((topic, now, msg))

    ticks = run_teleop_loopback(bridge, operator, F, T0, 800, on_message=record)
    actions = list(task.actions)
    return SimpleNamespace(
        setup=setup, bridge=bridge, operator=operator, messages=messages, ticks=ticks, actions=actions
    )


def test_scripted_operator_records_episodes_through_the_teleop_topics(session: Any) -> None:
    s = session
    assert s.operator.finished and s.ticks < 800
    outcomes = [(a.outcome, a.reason) for a in s.operator.attempts]
    assert outcomes == [("discard", "forced"), ("success", "success")]
    assert [a.seed for a in s.operator.attempts] == [0, 1] and s.operator.attempts[0].steps == 4
    # the bridge saw the same: seeds 0, 1 of its sequence, labelled as the importer will
    assert [(e.seed, e.outcome) for e in s.bridge.episodes] == [(0, "discard"), (1, "success")]
    events = [m.data for t, _, m in s.messages if t == EVENT_TOPIC]
    assert events == ["start", "stop", "discard", "start", "stop", "success"]
    # every target reached the bridge inside its episode; one executed step per target but the last
    st = s.bridge.stats
    assert st["targets_ignored"] == st["targets_refused"] == st["bad_messages"] == 0
    targets = sum(t == TARGET_TOPIC for t, _, _ in s.messages)
    assert st["targets"] == targets == st["steps"] + 1  # the success's final target is not executed
    assert len(s.actions) == st["steps"]
    # the simulator never received a position outside arm.limits
    assert all(inside(a[:3], s.setup.limits) for a in s.actions)
    # the pause between episodes: at least pause seconds from an end to the next start
    times = [now for t, now, m in s.messages if t == EVENT_TOPIC]
    assert times[3] - times[2] >= NS
    # one Joy per stamp: the importer pairs a target with the gripper command sent with it
    joy_stamps = [now for t, now, _ in s.messages if t == JOY_TOPIC]
    assert len(joy_stamps) == len(set(joy_stamps))
    diag = rm.diagnostic_values(F.roundtrip(s.bridge.diagnostics(T0)))
    assert diag["successes"] == "1" and diag["discarded"] == "1" and diag["task"] == "lift"


def test_observation_messages_are_the_robots(session: Any) -> None:
    s = session
    by_topic: dict[str, list[tuple[int, Any]]] = {}
    for topic, now, msg in s.messages:
        by_topic.setdefault(topic, []).append((now, msg))
    want = {
        NATIVE_IMAGE_TOPIC: "sensor_msgs/msg/Image",
        CAMERA_INFO_TOPIC: "sensor_msgs/msg/CameraInfo",
        CROP_IMAGE_TOPIC: "sensor_msgs/msg/Image",
        JOINT_STATES_TOPIC: "sensor_msgs/msg/JointState",
        EE: "geometry_msgs/msg/PoseStamped",
        GRIPPER: "sensor_msgs/msg/JointState",
        STATE_TOPIC: "sensor_msgs/msg/JointState",
    }
    assert {t: ty for t, ty in s.bridge.publications().items() if t in want} == want
    for topic, msgtype in want.items():
        got = by_topic[topic]
        assert len(got) == s.ticks, topic  # one per control tick, stamped with it
        assert all(m.__msgtype__ == msgtype and rm.stamp_ns(m) == now for now, m in got), topic
    now, img = by_topic[NATIVE_IMAGE_TOPIC][-1]
    assert (img.height, img.width, img.encoding) == (IMAGE, IMAGE, "rgb8")
    assert img.header.frame_id == "camera_color_optical_frame"
    crop = by_topic[CROP_IMAGE_TOPIC][-1][1]
    np.testing.assert_array_equal(rm.image_to_rgb(crop), rm.image_to_rgb(img))  # crop_size 0: as rendered
    info = by_topic[CAMERA_INFO_TOPIC][-1][1]
    f = IMAGE / 2 / np.tan(np.radians(45.0) / 2)  # robosuite's agentview: fovy 45 degrees
    np.testing.assert_allclose(info.k, [f, 0, (IMAGE - 1) / 2, 0, f, (IMAGE - 1) / 2, 0, 0, 1])
    assert (info.width, info.height, info.header.frame_id) == (IMAGE, IMAGE, "camera_color_optical_frame")
    js = by_topic[JOINT_STATES_TOPIC][-1][1]
    assert list(js.name) == [f"panda_joint{i}" for i in range(1, 8)] and len(js.position) == 7
    grip = by_topic[GRIPPER][-1][1]
    assert list(grip.name) == ["gripper_width"] and 0.0 <= grip.position[0] < 0.1
    # ee_pose is the grip site the privileged state shows, in the simulator's frame
    for (_, pose), (_, state) in zip(by_topic[EE][-5:], by_topic[STATE_TOPIC][-5:], strict=True):
        values = decode_state(state)
        pos, quat = rm.pose_to_numpy(pose)
        assert pose.header.frame_id == "sim"
        np.testing.assert_allclose(pos, values["ee_pos"], atol=1e-6)
        rot6d = values["ee_mat"].reshape(3, 3)[:, :2].T.reshape(6)
        np.testing.assert_allclose(rm.pose_to_pos_rot6d(pose)[3:], rot6d, atol=1e-6)
        assert {"object.cube_pos", "object.cube_mat", "table_top", "gripper_width"} <= set(values)


def test_recording_imports_with_the_task_config(session: Any, tmp_path: Path) -> None:
    """What a recorder records (the topic table's topics) imports with config/lift.yaml, no
    overrides: the kept episode only, each observation paired with the target computed from it."""
    from class_core.cli import import_bags
    from class_core.data.store import EpisodeStore

    s = session
    topics = record_topics(RecordingConfig())
    bag = write_bag(tmp_path / "lift_bag", [(t, now, m) for t, now, m in s.messages if t in topics])
    out = tmp_path / "lift.zarr"
    assert import_bags.main([str(bag), "--config", str(LIFT), "--out", str(out), "--no-progress"]) == 0
    store = EpisodeStore.open(str(out))
    eps = store.root.attrs["episodes"]
    assert [e["success"] for e in eps] == [True] and store.n_episodes == 1
    at: dict[str, dict[int, Any]] = {}
    for topic, now, msg in s.messages:
        at.setdefault(topic, {})[now] = msg  # one message per topic and stamp
    dt = s.bridge.dt
    for i, (ep, att) in enumerate(zip(eps, s.operator.attempts[1:], strict=True)):
        assert ep["steps"] == att.steps + 1  # every target of the attempt, the final one included
        t0 = ep["start_ns"] + round(ep["lead_s"] * NS)
        ticks = t0 + dt * np.arange(ep["steps"])
        assert t0 in at[TARGET_TOPIC]  # the episode starts at its first target
        data = store.episode(i)
        want_action = [
            np.r_[rm.pose_to_pos_rot6d(at[TARGET_TOPIC][t]), at[JOY_TOPIC][t].axes[0]] for t in ticks
        ]
        np.testing.assert_allclose(data["action"], want_action, atol=1e-6)
        np.testing.assert_allclose(data["ee_pos"], [rm.pose_to_numpy(at[EE][t])[0] for t in ticks], atol=1e-6)
        img = rm.image_to_rgb(at[NATIVE_IMAGE_TOPIC][int(ticks[-1])])
        np.testing.assert_array_equal(data["image"][-1], resize_center_crop(img, 84))
        assert set(np.unique(data["action"][:, 9])) <= {-1.0, 1.0}  # the task's own gripper commands


# --- safety and transparency ------------------------------------------------------------------


def started_bridge(setup: Any, task: RecordingTask, **over: Any) -> tuple[SimTeleopCore, np.ndarray]:
    """A bridge with its episode 0 started; and the grip-site position it published at the reset."""
    cfg = dataclasses.replace(setup.bridge, **over.pop("cfg", {}))
    bridge = SimTeleopCore(task, F, cfg, dataclasses.replace(setup.limits, **over))
    bridge.tick(T0)
    bridge.on_message(EVENT_TOPIC, rm.string_msg(F, "start"), T0)
    msgs = dict(bridge.tick(T0 + bridge.dt))  # the reset observation; no step yet
    task.actions.clear()
    return bridge, rm.pose_to_numpy(msgs[EE])[0]


def send_target(bridge: SimTeleopCore, pos: Any, now: int, grip: float = -1.0) -> None:
    target = rm.numpy_to_pose_stamped(F, np.asarray(pos, float), np.array([1.0, 0, 0, 0]), now, "sim")
    bridge.on_message(TARGET_TOPIC, F.roundtrip(target), now)
    bridge.on_message(
        JOY_TOPIC, F.roundtrip(rm.numpy_to_joy(F, np.array([grip, 1.0]), np.zeros(4), now)), now
    )


def test_targets_outside_the_workspace_are_clipped_or_refused(lift: Any) -> None:
    setup, task = lift
    lim = setup.limits
    far = [1.0, -0.9, 2.0]  # outside on every axis
    # clip (no setpoint filter, so the executed action is the clipped target itself)
    bridge, _ = started_bridge(setup, task, cfg={"motion_limits": False})
    t = T0 + 2 * bridge.dt
    send_target(bridge, far, t)
    bridge.tick(t)
    np.testing.assert_allclose(task.actions[-1][:3], np.clip(far, lim.lo, lim.hi))
    assert bridge.safety.events["clipped_workspace"] == 1 and bridge.stats["targets"] == 1
    # refuse: the target is dropped, the arm holds the pose it had at the reset
    bridge, hold = started_bridge(setup, task, cfg={"motion_limits": False}, out_of_workspace="refuse")
    send_target(bridge, far, t, grip=1.0)
    bridge.tick(t)
    assert bridge.stats["targets_refused"] == 1 and "outside the workspace" in bridge.last_error
    np.testing.assert_allclose(task.actions[-1][:3], hold, atol=1e-6)
    assert task.actions[-1][9] == 1.0  # the gripper command still applies
    diag = F.roundtrip(bridge.diagnostics(t))
    assert diag.status[0].level == 1 and rm.diagnostic_values(diag)["targets_refused"] == "1"
    # with the arm's setpoint filter: the setpoint walks to the clipped target at <= max speed
    bridge, _ = started_bridge(setup, task)
    for k in range(6):
        now = t + k * bridge.dt
        send_target(bridge, far, now)
        bridge.tick(now)
    steps = np.diff(np.array([a[:3] for a in task.actions]), axis=0)
    assert all(inside(a[:3], lim) for a in task.actions)
    assert np.linalg.norm(steps, axis=1).max() <= lim.max_linear_speed * bridge.dt / NS + 1e-9
    # targets between episodes, or stamped before the episode's start, never move the arm
    bridge.on_message(EVENT_TOPIC, rm.string_msg(F, "stop"), now)
    n = len(task.actions)
    send_target(bridge, [0, 0, 1.0], now + bridge.dt)
    bridge.tick(now + bridge.dt)
    assert len(task.actions) == n and bridge.stats["targets_ignored"] == 1
    bridge.on_message(EVENT_TOPIC, rm.string_msg(F, "start"), now + 3 * bridge.dt)
    send_target(bridge, [0, 0, 1.0], now + 2 * bridge.dt)  # planned before this episode began
    assert bridge.stats["targets_ignored"] == 2 and bridge.running


def test_the_operator_drives_the_demonstrator_exactly(lift: Any) -> None:
    """Without the setpoint filter, the task executes what its demonstrator would do bound to the
    task directly: the topics and the privileged-state view add nothing."""
    setup, task = lift
    k, seed, expert_seed = 12, 5, 7
    bridge = SimTeleopCore(
        task, F, dataclasses.replace(setup.bridge, seed=seed, motion_limits=False), setup.limits
    )
    op_cfg = dataclasses.replace(setup.operator, seed=expert_seed, max_attempts=1, max_steps=k)
    operator = ScriptedTeleopCore(F, op_cfg)
    task.actions.clear()
    run_teleop_loopback(bridge, operator, F, T0, 50)
    assert operator.finished and operator.attempts[0].reason == "step_limit"
    via_topics = np.array(task.actions)
    obs = task.reset(seed)
    expert = task.make_expert(seed=expert_seed)
    direct = []
    for _ in range(k):
        a = np.asarray(expert.select_action(obs), dtype=np.float64)
        direct.append(a)
        obs, _, _ = task.step(a)
    assert via_topics.shape == (k, 10)
    np.testing.assert_allclose(via_topics, np.array(direct), atol=1e-6)
