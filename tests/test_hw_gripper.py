"""WSG-50 protocol (frames, Weiss CRC) and gripper control against the loopback stand-in."""

from __future__ import annotations

import struct
import time

import pytest

from class_core.hardware.gripper import GripperConfig, WSG50Gripper, action_to_width, width_to_action
from class_core.hardware.wsg50 import (
    Cmd,
    FrameDecoder,
    ProtocolError,
    Status,
    WSG50Client,
    WSG50LoopbackServer,
    crc16,
    encode_frame,
)


def crc_bitwise(data: bytes, crc: int = 0xFFFF) -> int:
    """Independent reference: Weiss' table update written out bit by bit (table entry =
    CCITT 0x1021 MSB-first CRC of the index byte, combined reflected-style)."""
    for b in data:
        idx = (crc ^ b) & 0xFF
        t = idx << 8
        for _ in range(8):
            t = ((t << 1) ^ 0x1021) & 0xFFFF if t & 0x8000 else (t << 1) & 0xFFFF
        crc = t ^ (crc >> 8)
    return crc


def test_crc_matches_weiss_constants():
    # Weiss' receive code starts from 0x50F5, "checksum over preamble (0xaa 0xaa 0xaa)"
    assert crc16(b"\xaa\xaa\xaa") == 0x50F5
    # the first entries of Weiss' CCITT table, reached from crc = 0 with a single byte
    assert [crc16(bytes([i]), 0) for i in (0, 1, 2, 16, 255)] == [0x0000, 0x1021, 0x2042, 0x1231, 0x1EF0]
    for data in (b"", b"\x21\x09\x00", bytes(range(256))):
        assert crc16(data) == crc_bitwise(data)


def test_frame_layout_and_residue():
    payload = struct.pack("<Bff", 0, 50.0, 100.0)
    f = encode_frame(Cmd.MOVE, payload)
    assert f[:3] == b"\xaa\xaa\xaa" and f[3] == 0x21 and f[4:6] == b"\x09\x00" and f[6:15] == payload
    assert struct.unpack("<H", f[-2:])[0] == crc_bitwise(f[:-2])
    assert crc16(f) == 0  # a frame checked with its CRC leaves zero (what Weiss' receiver tests)


def test_decoder_resyncs_splits_and_rejects_bad_crc():
    a, b = encode_frame(Cmd.GET_WIDTH, b"\x00\x00\x00"), encode_frame(Cmd.STOP)
    d = FrameDecoder()
    stream = b"\x13\xaa\x00" + a + b
    out = []
    for i in range(len(stream)):  # byte by byte
        out += d.feed(stream[i : i + 1])
    assert [(m.cmd, m.payload) for m in out] == [(0x43, b"\x00\x00\x00"), (0x22, b"")]
    bad = bytearray(a)
    bad[7] ^= 1
    with pytest.raises(ProtocolError, match="checksum error in frame 0x43"):
        FrameDecoder().feed(bytes(bad))


def test_client_commands_against_loopback():
    with WSG50LoopbackServer() as srv:
        c = WSG50Client("127.0.0.1", srv.port)
        c.connect()
        try:
            m = c.request(Cmd.MOVE, struct.pack("<Bff", 0, 30.0, 100.0), wait=True)
            assert m.status == Status.E_NOT_INITIALIZED  # not homed yet
            c.homing()
            assert c.get_width() == pytest.approx(110.0)
            t0 = time.monotonic()
            c.move(40.0, 200.0)  # waits through E_CMD_PENDING to the final status
            assert time.monotonic() - t0 > 0.25  # 70 mm at 200 mm/s
            assert c.get_width() == pytest.approx(40.0)
            c.grasp(10.0, 100.0)
            assert c.get_width() == pytest.approx(10.0)
            with pytest.raises(Exception, match="E_RANGE_ERROR"):
                c.move(500.0, 100.0)
            assert c.request(0x7E, wait=False).status == Status.E_CMD_UNKNOWN
        finally:
            c.close()
        assert srv.crc_errors == 0
        assert [m.cmd for m in srv.received][:3] == [Cmd.MOVE, Cmd.HOMING, Cmd.GET_WIDTH]


def test_action_width_mapping():
    cfg = GripperConfig(open_width_m=0.1, closed_width_m=0.01)
    assert action_to_width(0.0, cfg) == pytest.approx(0.1)
    assert action_to_width(1.0, cfg) == pytest.approx(0.01)
    assert action_to_width(2.0, cfg) == pytest.approx(0.01)  # clipped
    assert width_to_action(action_to_width(0.3, cfg), cfg) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="gripper.closed_width_m"):
        GripperConfig(open_width_m=0.01, closed_width_m=0.02)


def test_wsg_gripper_follows_actions_at_30hz():
    with WSG50LoopbackServer() as srv:
        # 0.1 m/s: one 7 mm step of the ramp below takes 70 ms, longer than the 33 ms between
        # targets, so every new target must abort a running move whatever the machine's load
        cfg = GripperConfig(host="127.0.0.1", port=srv.port, open_width_m=0.11, speed_m_s=0.1, rate_hz=30)
        g = WSG50Gripper(cfg)
        g.start()
        try:
            t0 = time.monotonic()
            # a teleoperator closing the trigger over 0.5 s, then opening halfway: every new
            # target aborts the running move instead of queueing behind it
            for k in range(16):
                g.set_action(k / 15)
                time.sleep(1 / 30)
            time.sleep(1.5)  # the rest of the 0.11 m close at 0.1 m/s
            closed = g.width_m
            g.set_action(0.5)
            time.sleep(1.0)  # 55 mm at 0.1 m/s
            half = g.width_m
            elapsed = time.monotonic() - t0
        finally:
            g.stop()
        assert closed == pytest.approx(0.0, abs=1e-3)
        assert half == pytest.approx(0.055, abs=1e-3)
        assert g.error is None and g.ticks / elapsed > 20  # about 30 Hz
        aborted = [m for m in srv.received if m.cmd == Cmd.STOP]
        assert aborted, "running moves were not stopped before new targets"
        assert srv.crc_errors == 0
