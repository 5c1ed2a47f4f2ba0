"""Message conversion by field names, on the rosbags message classes (CDR round trips)."""

from __future__ import annotations

import array

import numpy as np
import pytest

from class_core import ros_msgs as rm
from class_core.geometry import quat_to_rot6d

pytest.importorskip("rosbags", reason="rosbags (robot extra) provides the message classes")

DISTROS = ["humble", "jazzy"]


@pytest.fixture(params=DISTROS)
def f(request):
    return rm.RosbagsFactory(request.param)


def _rclpy_style(f: rm.RosbagsFactory) -> rm.MsgFactory:
    """rosbags classes filled with rclpy's containers (array.array, bytes for byte fields)."""
    return rm.MsgFactory(f.cls, rm.array_sequence, "rclpy-style", byte_as_bytes=True)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8"])
def test_image_round_trip(f, encoding):
    rng = np.random.default_rng(0)
    shape = (5, 7, 3) if encoding != "mono8" else (5, 7)
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    msg = f.roundtrip(rm.numpy_to_image(f, img, 1_500_000_123, encoding, "cam"))
    assert msg.encoding == encoding and msg.height == 5 and msg.width == 7
    assert msg.header.frame_id == "cam" and rm.stamp_ns(msg) == 1_500_000_123
    np.testing.assert_array_equal(rm.image_to_numpy(msg), img)
    rgb = rm.image_to_rgb(msg)
    expected = {"rgb8": img, "bgr8": img[..., ::-1] if img.ndim == 3 else img,
                "mono8": np.repeat(img[..., None], 3, -1)}[encoding]  # fmt: skip
    np.testing.assert_array_equal(rgb, expected)
    assert rgb.shape == (5, 7, 3)


def test_image_row_padding_is_removed(f):
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    padded = np.zeros((2, 12), np.uint8)  # step 12 > 9
    padded[:, :9] = img.reshape(2, 9)
    msg = f.new("sensor_msgs/msg/Image", header=f.header(1), height=2, width=3, encoding="rgb8",
                is_bigendian=0, step=12, data=padded.reshape(-1))  # fmt: skip
    np.testing.assert_array_equal(rm.image_to_numpy(f.roundtrip(msg)), img)


def test_image_from_rclpy_style_containers(f):
    g = _rclpy_style(f)
    img = np.random.default_rng(1).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    msg = rm.numpy_to_image(g, img, 7)
    assert isinstance(msg.data, array.array)
    np.testing.assert_array_equal(rm.image_to_numpy(msg), img)
    msg.data = bytes(msg.data)  # rclpy may also hand out bytes
    np.testing.assert_array_equal(rm.image_to_numpy(msg), img)


def _image(f, **over):
    fields = dict(header=f.header(1), height=2, width=3, encoding="rgb8", is_bigendian=0, step=9,
                  data=np.zeros(18, np.uint8))  # fmt: skip
    fields.update(over)
    return f.new("sensor_msgs/msg/Image", **fields)


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"encoding": "16UC1"}, "encoding '16UC1' is not supported"),
        ({"encoding": "rgba8"}, "not supported"),
        ({"data": np.zeros(17, np.uint8)}, "17 bytes, expected step \\* height = 9 \\* 2"),
        ({"step": 8, "data": np.zeros(16, np.uint8)}, "step 8 is smaller than width \\* channels"),
        ({"height": 0, "data": np.zeros(0, np.uint8)}, "empty size"),
    ],
)
def test_image_rejects_bad_messages(f, over, match):
    with pytest.raises(rm.MessageError, match=match):
        rm.image_to_numpy(_image(f, **over))


def test_numpy_to_image_rejects_bad_arrays(f):
    with pytest.raises(rm.MessageError, match="must be uint8"):
        rm.numpy_to_image(f, np.zeros((2, 2, 3), np.float32), 0)
    with pytest.raises(rm.MessageError, match=r"must be \(H, W, 3\)"):
        rm.numpy_to_image(f, np.zeros((2, 2), np.uint8), 0, "rgb8")
    with pytest.raises(rm.MessageError, match="not supported"):
        rm.numpy_to_image(f, np.zeros((2, 2, 3), np.uint8), 0, "yuv422")
    with pytest.raises(rm.MessageError, match="negative time"):
        rm.numpy_to_image(f, np.zeros((2, 2, 3), np.uint8), -1)


def test_joint_state_by_names(f):
    msg = f.roundtrip(rm.numpy_to_joint_state(f, np.array([0.1, 0.2, 0.3]), ["a", "b", "c"], 42))
    assert rm.stamp_ns(msg) == 42
    np.testing.assert_array_equal(rm.joint_state_to_numpy(msg), [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(rm.joint_state_to_numpy(msg, ["c", "a"]), [0.3, 0.1])
    with pytest.raises(rm.MessageError, match=r"lacks joint\(s\) \['d'\]"):
        rm.joint_state_to_numpy(msg, ["a", "d"])
    with pytest.raises(rm.MessageError, match="2 names for 3 positions"):
        rm.numpy_to_joint_state(f, np.zeros(3), ["a", "b"], 0)
    g = _rclpy_style(f)
    np.testing.assert_array_equal(rm.joint_state_to_numpy(rm.numpy_to_joint_state(g, [1.5], ["w"], 0)), [1.5])


def test_pose_conversions_match_geometry(f):
    rng = np.random.default_rng(2)
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    pos = rng.normal(size=3)
    msg = f.roundtrip(rm.numpy_to_pose_stamped(f, pos, q, 10**9 + 5, "base"))
    p2, q2 = rm.pose_to_numpy(msg)
    np.testing.assert_allclose(p2, pos)
    assert min(np.abs(q2 - q).max(), np.abs(q2 + q).max()) < 1e-12
    v = rm.pose_to_pos_rot6d(msg)
    np.testing.assert_allclose(v[3:], quat_to_rot6d(q), atol=1e-12)
    back = rm.pose_to_pos_rot6d(rm.pos_rot6d_to_pose_stamped(f, v, 0))
    np.testing.assert_allclose(back, v, atol=1e-12)
    bad = rm.numpy_to_pose_stamped(f, pos, q, 0)
    bad.pose.orientation.w = 5.0
    with pytest.raises(rm.MessageError, match="not a unit quaternion"):
        rm.pose_to_numpy(bad)


def test_joint_trajectory_round_trip(f):
    chunk = np.random.default_rng(3).normal(size=(16, 10)).astype(np.float32)
    names = ["x", "y", "z", "r0", "r1", "r2", "r3", "r4", "r5", "gripper"]
    dt = 100_000_000
    msg = f.roundtrip(rm.chunk_to_joint_trajectory(f, chunk, names, 3 * 10**9 + 7, dt))
    assert list(msg.joint_names) == names and len(msg.points) == 16
    assert rm.duration_ns(msg.points[5].time_from_start) == 5 * dt
    tc = rm.joint_trajectory_to_chunk(msg, names)
    assert tc.stamp == 3 * 10**9 + 7
    np.testing.assert_array_equal(tc.offsets, np.arange(16) * dt)
    np.testing.assert_array_equal(tc.actions.astype(np.float32), chunk)  # float32 -> float64 is exact
    np.testing.assert_array_equal(tc.times, tc.stamp + tc.offsets)
    picked = rm.joint_trajectory_to_chunk(msg, ["gripper", "x"])
    np.testing.assert_array_equal(picked.actions, tc.actions[:, [9, 0]])
    with pytest.raises(rm.MessageError, match=r"lacks joint_names \['q'\]"):
        rm.joint_trajectory_to_chunk(msg, ["x", "q"])
    msg.points[3].time_from_start = f.duration(2 * dt)
    with pytest.raises(rm.MessageError, match=r"points\[3\].time_from_start is not after points\[2\]"):
        rm.joint_trajectory_to_chunk(msg)
    with pytest.raises(rm.MessageError, match="3 action names for an action chunk of dimension 10"):
        rm.chunk_to_joint_trajectory(f, chunk, names[:3], 0, dt)
    with pytest.raises(rm.MessageError, match="non-finite"):
        rm.chunk_to_joint_trajectory(f, np.full((2, 2), np.nan), ["a", "b"], 0, dt)


def test_string_joy_clock_diagnostics(f):
    assert f.roundtrip(rm.string_msg(f, "start")).data == "start"
    joy = f.roundtrip(rm.numpy_to_joy(f, np.array([0.5, -1.0]), np.array([1, 0, 1]), 9))
    axes, buttons = rm.joy_to_numpy(joy)
    np.testing.assert_array_equal(axes, np.float32([0.5, -1.0]))
    np.testing.assert_array_equal(buttons, [1, 0, 1])
    assert rm.stamp_ns(f.roundtrip(rm.clock_msg(f, 2 * 10**9 + 1)).clock) == 2 * 10**9 + 1
    values = {"published": 3, "latency_ms": "1.5"}
    d = f.roundtrip(rm.diagnostic_array(f, 5, "policy", "warn", "stale", values))
    assert d.status[0].level == 1 and d.status[0].name == "policy"
    assert rm.diagnostic_values(d) == {"published": "3", "latency_ms": "1.5"}
    with pytest.raises(rm.MessageError, match="diagnostic level"):
        rm.diagnostic_array(f, 0, "p", "fatal", "", {})
    with pytest.raises(rm.MessageError, match="unknown message type"):
        f.new("nope_msgs/msg/Nothing")
    with pytest.raises(rm.MessageError, match="unknown ROS distro"):
        rm.RosbagsFactory("rolling-2031")
