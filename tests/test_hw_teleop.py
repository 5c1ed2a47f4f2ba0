"""VR teleoperation: logcat codec, DROID-style mapping replayed from traces, calibration,
episode events, and the robot.yaml / recording contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from class_core.geometry import axis_angle_to_matrix, quat_to_matrix, rotation_angle_between
from class_core.hardware.recording import (
    RECORD_TOPICS,
    RecordingConfig,
    bag_dir,
    load_robot_config,
    record_command,
)
from class_core.hardware.teleop import (
    VR_TO_ROBOT_DEFAULT,
    ControllerSample,
    LogcatReader,
    TeleopConfig,
    TeleopMapper,
    calibrate_rotation,
    format_line,
    heading_calibration,
    parse_line,
)

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "quest_logcat_trace.txt"


def pose(p, r=None):
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = np.eye(3) if r is None else r, p
    return m


def make_trace(n=60, hz=30.0):
    """Engage with the grip, draw 10 cm along the headset's -z (forward) and yaw 30 degrees,
    squeeze the trigger, release, press A then B."""
    out = []
    for k in range(n):
        s = min(max((k - 10) / 30, 0.0), 1.0)
        p = np.array([0.1, 1.2, -0.3]) + s * np.array([0.0, 0.0, -0.10])
        r = axis_angle_to_matrix(np.array([0.0, s * np.pi / 6, 0.0]))  # about the headset's up
        grip = 1.0 if 5 <= k < 45 else 0.0
        buttons = {"A": 50 <= k < 53, "B": 56 <= k < 58}
        out.append(ControllerSample(k / hz, pose(p, r), grip, trigger=s, buttons=buttons))
    return out


def write_fixture(path: Path) -> None:
    lines = [f"11-27 12:00:00.000  1234  1250 I {'wE9ryARX'}: {format_line(s)}" for s in make_trace()]
    path.write_text("\n".join(lines) + "\n")


def test_fixture_is_what_the_code_writes():
    """The committed fixture is regenerable: same bytes as format_line on the trace."""
    if not FIXTURE.exists():
        write_fixture(FIXTURE)
    tmp = FIXTURE.with_suffix(".regen")
    write_fixture(tmp)
    try:
        assert tmp.read_text() == FIXTURE.read_text()
    finally:
        tmp.unlink()


def test_parse_line_roundtrip_and_errors():
    s = make_trace()[20]
    got = parse_line("prefix wE9ryARX: " + format_line(s))
    assert got is not None and np.allclose(got.pose, s.pose, atol=1e-6)
    assert got.grip == pytest.approx(s.grip) and got.trigger == pytest.approx(s.trigger, abs=1e-4)
    assert got.buttons["A"] is False and got.buttons["RG"] is False
    assert parse_line("some other logcat line") is None
    assert parse_line(format_line(s), hand="l") is None  # no left controller in the frame
    with pytest.raises(ValueError, match="15 values"):
        parse_line("r:" + " ".join(["1"] * 15) + "&R")


def test_replayed_fixture_maps_to_targets_and_events():
    reader = LogcatReader(source=FIXTURE.read_text().splitlines(keepends=True)).start()
    reader._thread.join()  # the source is finite
    assert reader.frames == 60 and reader.errors == 0
    lines = FIXTURE.read_text().splitlines()
    mapper = TeleopMapper(TeleopConfig())
    robot_p, robot_q = np.array([0.5, 0.0, 0.3]), np.array([1.0, 0.0, 0.0, 0.0])  # gripper down
    outs = [mapper.step(parse_line(line), robot_p, robot_q) for line in lines]
    assert outs[0].pos is None and not outs[0].engaged
    assert outs[5].engaged and np.allclose(outs[5].pos, robot_p, atol=1e-6)  # engage: no jump
    # 10 cm along the headset's forward (-z) is 10 cm along the robot's +x
    end = outs[44]
    assert np.allclose(end.pos, robot_p + [0.10, 0.0, 0.0], atol=1e-5)
    # 30 degrees about the headset's up is 30 degrees about the robot's z, applied in the base frame
    want = axis_angle_to_matrix(np.array([0.0, 0.0, np.pi / 6])) @ quat_to_matrix(robot_q)
    assert rotation_angle_between(quat_to_matrix(end.quat), want) < 1e-5
    assert end.gripper == pytest.approx(1.0, abs=1e-3)
    # releasing the grip freezes the target
    assert not outs[50].engaged and np.allclose(outs[50].pos, end.pos)
    events = [e for o in outs for e in o.events]
    assert events == ["start", "stop", "success"]


def test_reengage_continues_from_last_target_and_clip_applies():
    box_hi = np.array([0.55, 0.2, 0.5])
    mapper = TeleopMapper(TeleopConfig(position_scale=2.0), clip=lambda p: np.minimum(p, box_hi))
    rp, rq = np.array([0.5, 0.0, 0.3]), np.array([0.0, 0.0, 0.0, 1.0])
    s = lambda z, g: ControllerSample(0.0, pose([0.0, 1.0, z]), g, 0.0, {})  # noqa: E731
    mapper.step(s(0.0, 1.0), rp, rq)
    o = mapper.step(s(-0.02, 1.0), rp, rq)
    assert np.allclose(o.pos, [0.54, 0.0, 0.3])  # scaled by 2
    mapper.step(s(-0.02, 0.0), rp, rq)  # release, move the hand back, engage again
    mapper.step(s(0.3, 1.0), np.array([9.0, 9.0, 9.0]), rq)  # robot pose ignored on re-engage
    o = mapper.step(s(0.25, 1.0), rp, rq)
    assert np.allclose(o.pos, [0.55, 0.0, 0.3])  # 0.54 + 0.10 clipped to the box


def test_calibration():
    rng = np.random.default_rng(0)
    r_true = axis_angle_to_matrix(np.array([0.0, 0.0, 0.4])) @ VR_TO_ROBOT_DEFAULT
    v = rng.normal(size=(8, 3))
    r_pts = (r_true @ v.T).T + [0.3, -0.1, 0.2] + rng.normal(scale=1e-4, size=(8, 3))
    assert rotation_angle_between(calibrate_rotation(v, r_pts), r_true) < 1e-3
    with pytest.raises(ValueError, match="collinear"):
        calibrate_rotation(np.outer(np.arange(4.0), [1, 0, 0]), np.outer(np.arange(4.0), [0, 1, 0]))
    # controller pointing along the robot's +y (yawed 90 degrees): heading calibration undoes it
    yawed = pose([0, 0, 0], axis_angle_to_matrix(np.array([0.0, np.pi / 2, 0.0])))
    r_cal = heading_calibration(yawed)
    fwd = r_cal @ (yawed[:3, :3] @ [0.0, 0.0, -1.0])
    assert np.allclose(fwd, [1.0, 0.0, 0.0], atol=1e-9)


def test_teleop_config_errors():
    with pytest.raises(ValueError, match="teleop.rate_hz"):
        TeleopConfig(rate_hz=100)
    with pytest.raises(ValueError, match="teleop.buttons.A"):
        TeleopConfig(buttons={"A": "jump"})


def test_robot_yaml_and_recording_contract(tmp_path):
    cfg = load_robot_config(REPO / "config" / "robot.yaml", ["arm.limits.max_linear_speed=0.1"])
    assert cfg["arm"].limits.max_linear_speed == 0.1 and cfg["camera"].width == 1280
    with pytest.raises(Exception, match="arm.limits.max_lin_speed"):
        load_robot_config(REPO / "config" / "robot.yaml", ["arm.limits.max_lin_speed=1"])
    # topic names agree with ARCHITECTURE.md's table
    arch = REPO.parent / "shared" / "design" / "ARCHITECTURE.md"
    if arch.exists():
        text = arch.read_text()
        for t in RECORD_TOPICS:
            assert f"`{t}`" in text, t
    rc = RecordingConfig(data_root=str(tmp_path))
    import datetime as dt

    now = dt.datetime(2026, 1, 2, 3, 4, 5)
    d = bag_dir(rc, now)
    assert d == tmp_path / "2026-01-02" / "demo_030405"
    d.mkdir(parents=True)
    assert bag_dir(rc, now).name == "demo_030405_1"
    cmd = record_command(rc, d)
    assert cmd[:6] == ["ros2", "bag", "record", "-s", "sqlite3", "-o"] and "/class/episode/event" in cmd
