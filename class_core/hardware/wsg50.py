"""Schunk/Weiss WSG-50 binary command protocol over TCP (the UMI gripper), and a loopback stand-in.

Frame: preamble 0xAA 0xAA 0xAA, command id (1 byte), payload length (uint16 little endian),
payload, CRC16 (little endian). The CRC is Weiss' variant: table of the CCITT polynomial 0x1021
(x^16 + x^12 + x^5 + 1), initial value 0xFFFF, over preamble + id + length + payload, but
updated reflected-style: ``crc = TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)`` (Weiss' own source
calls it "NOT according to CCITT standard"). Its value over the bare preamble is 0x50F5, and a
CRC over a whole received frame including its CRC bytes is 0.

Responses start with a uint16 status code (0 = E_SUCCESS, 26 = E_CMD_PENDING: a motion command
was accepted, its final status follows when it ends). Widths in mm, speeds in mm/s, forces in N,
as IEEE float32 little endian.
"""

from __future__ import annotations

import enum
import logging
import queue
import socket
import struct
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

PREAMBLE = b"\xaa\xaa\xaa"


class Cmd(enum.IntEnum):
    LOOP = 0x06
    DISCONNECT = 0x07
    HOMING = 0x20
    MOVE = 0x21  # pre-position fingers
    STOP = 0x22
    FAST_STOP = 0x23
    ACK_FAULT = 0x24
    GRASP = 0x25
    RELEASE = 0x26
    SET_ACCELERATION = 0x30
    SET_FORCE_LIMIT = 0x32
    SYSTEM_STATE = 0x40
    GRASPING_STATE = 0x41
    GET_WIDTH = 0x43
    GET_SPEED = 0x44
    GET_FORCE = 0x45


class Status(enum.IntEnum):
    E_SUCCESS = 0
    E_NOT_AVAILABLE = 1
    E_NO_SENSOR = 2
    E_NOT_INITIALIZED = 3
    E_ALREADY_RUNNING = 4
    E_FEATURE_NOT_SUPPORTED = 5
    E_INCONSISTENT_DATA = 6
    E_TIMEOUT = 7
    E_READ_ERROR = 8
    E_WRITE_ERROR = 9
    E_INSUFFICIENT_RESOURCES = 10
    E_CHECKSUM_ERROR = 11
    E_NO_PARAM_EXPECTED = 12
    E_NOT_ENOUGH_PARAMS = 13
    E_CMD_UNKNOWN = 14
    E_CMD_FORMAT_ERROR = 15
    E_ACCESS_DENIED = 16
    E_ALREADY_OPEN = 17
    E_CMD_FAILED = 18
    E_CMD_ABORTED = 19
    E_INVALID_HANDLE = 20
    E_NOT_FOUND = 21
    E_NOT_OPEN = 22
    E_IO_ERROR = 23
    E_INVALID_PARAMETER = 24
    E_INDEX_OUT_OF_BOUNDS = 25
    E_CMD_PENDING = 26
    E_OVERRUN = 27
    E_RANGE_ERROR = 28
    E_AXIS_BLOCKED = 29
    E_FILE_EXISTS = 30


def _make_table() -> list[int]:
    table = []
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else (c << 1)
        table.append(c & 0xFFFF)
    return table


_TABLE = _make_table()


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """Weiss' CRC16 (see the module docstring)."""
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def encode_frame(cmd: int, payload: bytes = b"") -> bytes:
    if not 0 <= cmd <= 0xFF:
        raise ValueError(f"command id must fit one byte, got {cmd}")
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload too long for a WSG frame: {len(payload)} bytes")
    head = PREAMBLE + struct.pack("<BH", cmd, len(payload))
    return head + payload + struct.pack("<H", crc16(head + payload))


class ProtocolError(RuntimeError):
    pass


@dataclass(frozen=True)
class Message:
    cmd: int
    payload: bytes

    @property
    def status(self) -> Status:
        if len(self.payload) < 2:
            raise ProtocolError(
                f"response to 0x{self.cmd:02X} has no status code ({len(self.payload)} bytes)"
            )
        code = struct.unpack_from("<H", self.payload)[0]
        try:
            return Status(code)
        except ValueError:
            raise ProtocolError(f"response to 0x{self.cmd:02X} has unknown status {code}") from None


class FrameDecoder:
    """Incremental stream parser: feed bytes, get complete frames. Resynchronises on the preamble
    (as the serial interface requires); a frame with a bad CRC raises ProtocolError."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buf.extend(data)
        out: list[Message] = []
        while True:
            start = self._buf.find(PREAMBLE)
            if start < 0:
                del self._buf[: max(0, len(self._buf) - 2)]  # keep a possible partial preamble
                return out
            del self._buf[:start]
            if len(self._buf) < 6:
                return out
            cmd, length = struct.unpack_from("<BH", self._buf, 3)
            total = 6 + length + 2
            if len(self._buf) < total:
                return out
            frame = bytes(self._buf[:total])
            del self._buf[:total]
            if crc16(frame) != 0:
                raise ProtocolError(
                    f"checksum error in frame 0x{cmd:02X} (length {length}): got "
                    f"0x{struct.unpack_from('<H', frame, total - 2)[0]:04X}, expected "
                    f"0x{crc16(frame[:-2]):04X}"
                )
            out.append(Message(cmd, frame[6:-2]))


class WSG50Error(RuntimeError):
    pass


class WSG50Client:
    """TCP client (default port 1000). A reader thread sorts responses by command id, so status
    polls (GET_WIDTH) and the final status of a running motion do not block each other."""

    def __init__(self, host: str, port: int = 1000, timeout_s: float = 2.0):
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._sock: socket.socket | None = None
        self._queues: dict[int, queue.Queue[Message]] = {}
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self._running = False
        self.error: BaseException | None = None

    def connect(self) -> None:
        try:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        except OSError as e:
            raise WSG50Error(f"cannot connect to WSG-50 at {self.host}:{self.port}: {e}") from e
        self._sock.settimeout(0.2)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._running = True
        self._reader = threading.Thread(target=self._read_loop, name="wsg50-reader", daemon=True)
        self._reader.start()

    def _q(self, cmd: int) -> queue.Queue[Message]:
        with self._lock:
            return self._queues.setdefault(cmd, queue.Queue())

    def _read_loop(self) -> None:
        dec = FrameDecoder()
        assert self._sock is not None
        while self._running:
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError as e:
                self.error = e
                break
            if not data:
                self.error = WSG50Error("WSG-50 closed the connection")
                break
            try:
                for m in dec.feed(data):
                    self._q(m.cmd).put(m)
            except ProtocolError as e:
                log.error("WSG-50: %s", e)
                self.error = e

    def send(self, cmd: int, payload: bytes = b"") -> None:
        if self._sock is None:
            raise WSG50Error("not connected: call connect() first")
        self._sock.sendall(encode_frame(cmd, payload))

    def receive(self, cmd: int, timeout_s: float | None = None) -> Message:
        try:
            return self._q(cmd).get(timeout=self.timeout_s if timeout_s is None else timeout_s)
        except queue.Empty:
            raise WSG50Error(
                f"no response to command 0x{cmd:02X} within {self.timeout_s} s"
                + (f" (reader: {self.error})" if self.error else "")
            ) from None

    def drain(self, cmd: int) -> list[Message]:
        q, out = self._q(cmd), []
        while True:
            try:
                out.append(q.get_nowait())
            except queue.Empty:
                return out

    def request(self, cmd: int, payload: bytes = b"", wait: bool = True, timeout_s: float = 10.0) -> Message:
        """Send and return the first response; with ``wait`` skip E_CMD_PENDING up to the final one."""
        self.drain(cmd)
        self.send(cmd, payload)
        deadline = time.monotonic() + timeout_s
        while True:
            m = self.receive(cmd, max(0.01, min(self.timeout_s, deadline - time.monotonic())))
            if not (wait and m.status == Status.E_CMD_PENDING):
                return m
            if time.monotonic() > deadline:
                raise WSG50Error(f"command 0x{cmd:02X} still pending after {timeout_s} s")

    @staticmethod
    def check(m: Message, what: str) -> Message:
        if m.status not in (Status.E_SUCCESS, Status.E_CMD_PENDING):
            raise WSG50Error(f"WSG-50 {what} failed: {m.status.name}")
        return m

    # --- commands ------------------------------------------------------------------------
    def homing(self, direction: int = 0, timeout_s: float = 20.0) -> None:
        self.check(self.request(Cmd.HOMING, bytes([direction]), timeout_s=timeout_s), "homing")

    def move(self, width_mm: float, speed_mm_s: float, wait: bool = True) -> None:
        payload = struct.pack("<Bff", 0, float(width_mm), float(speed_mm_s))
        self.check(self.request(Cmd.MOVE, payload, wait=wait), "move")

    def stop(self) -> None:
        self.check(self.request(Cmd.STOP, wait=False), "stop")

    def ack_fault(self) -> None:
        self.check(self.request(Cmd.ACK_FAULT, b"ack", wait=False), "fault acknowledge")

    def grasp(self, width_mm: float, speed_mm_s: float, wait: bool = True) -> None:
        self.check(self.request(Cmd.GRASP, struct.pack("<ff", width_mm, speed_mm_s), wait=wait), "grasp")

    def release(self, width_mm: float, speed_mm_s: float, wait: bool = True) -> None:
        self.check(self.request(Cmd.RELEASE, struct.pack("<ff", width_mm, speed_mm_s), wait=wait), "release")

    def set_force_limit(self, force_n: float) -> None:
        self.check(self.request(Cmd.SET_FORCE_LIMIT, struct.pack("<f", force_n), wait=False), "force limit")

    def get_width(self) -> float:
        """Opening width in mm (no auto update)."""
        m = self.check(self.request(Cmd.GET_WIDTH, b"\x00\x00\x00", wait=False), "get width")
        if len(m.payload) != 6:
            raise ProtocolError(f"GET_WIDTH response has {len(m.payload)} bytes, expected 6")
        return float(struct.unpack_from("<f", m.payload, 2)[0])

    def close(self) -> None:
        self._running = False
        if self._sock is not None:
            try:
                self._sock.sendall(encode_frame(Cmd.DISCONNECT))
            except OSError:
                pass
            self._sock.close()
            self._sock = None
        if self._reader is not None:
            self._reader.join(timeout=1.0)


class WSG50LoopbackServer:
    """A protocol-level WSG-50 stand-in on 127.0.0.1: parses frames, checks CRCs, answers with
    the documented status codes and simulates the finger width moving at the commanded speed.
    For tests and dry runs without the gripper; it is not a physics model (no objects)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        max_width_mm: float = 110.0,
        object_width_mm: float | None = None,
    ):
        self.max_width = max_width_mm
        self.object_width = object_width_mm  # a grasp stops here if set
        self.width = 0.0
        self.homed = False
        self._target = 0.0
        self._speed = 0.0
        self._pending: int | None = None
        self.received: list[Message] = []
        self.crc_errors = 0
        self._srv = socket.create_server((host, port))
        self._srv.settimeout(0.2)
        self.port = self._srv.getsockname()[1]
        self._running = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> WSG50LoopbackServer:
        self._running = True
        self._thread = threading.Thread(target=self._serve, name="wsg50-loopback", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._srv.close()

    def __enter__(self) -> WSG50LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        while self._running:
            try:
                conn, _ = self._srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(0.005)
                self._session(conn)

    def _reply(self, conn: socket.socket, cmd: int, status: Status, data: bytes = b"") -> None:
        conn.sendall(encode_frame(cmd, struct.pack("<H", status) + data))

    def _session(self, conn: socket.socket) -> None:
        dec = FrameDecoder()
        last = time.monotonic()
        while self._running:
            try:
                data = conn.recv(4096)
                if not data:
                    return
            except TimeoutError:
                data = b""
            except OSError:
                return
            now = time.monotonic()
            self._advance(conn, now - last)
            last = now
            try:
                msgs = dec.feed(data)
            except ProtocolError:
                self.crc_errors += 1
                dec = FrameDecoder()
                continue
            for m in msgs:
                with self._lock:
                    self.received.append(m)
                if m.cmd == Cmd.DISCONNECT:
                    self._reply(conn, m.cmd, Status.E_SUCCESS)
                    return
                self._handle(conn, m)

    def _start_motion(self, conn: socket.socket, cmd: int, target: float, speed: float) -> None:
        if self._pending is not None:  # a new motion aborts the running one
            self._reply(conn, self._pending, Status.E_CMD_ABORTED)
        self._target = min(max(target, 0.0), self.max_width)
        self._speed = max(speed, 1e-3)
        self._pending = cmd
        self._reply(conn, cmd, Status.E_CMD_PENDING)

    def _handle(self, conn: socket.socket, m: Message) -> None:
        p = m.payload
        if m.cmd == Cmd.HOMING:
            self.homed = True
            self._start_motion(conn, m.cmd, self.max_width, 200.0)
        elif m.cmd in (Cmd.MOVE, Cmd.GRASP, Cmd.RELEASE):
            n = 9 if m.cmd == Cmd.MOVE else 8
            if len(p) != n:
                self._reply(conn, m.cmd, Status.E_CMD_FORMAT_ERROR)
                return
            if not self.homed:
                self._reply(conn, m.cmd, Status.E_NOT_INITIALIZED)
                return
            width, speed = struct.unpack_from("<ff", p, n - 8)
            if m.cmd == Cmd.RELEASE:
                width = self.width + width  # release opens by the given distance
            elif m.cmd == Cmd.GRASP and self.object_width is not None:
                width = max(width, self.object_width)
            if not (0.0 <= width <= self.max_width):
                self._reply(conn, m.cmd, Status.E_RANGE_ERROR)
                return
            self._start_motion(conn, m.cmd, width, speed)
        elif m.cmd in (Cmd.STOP, Cmd.FAST_STOP):
            if self._pending is not None:
                self._reply(conn, self._pending, Status.E_CMD_ABORTED)
                self._pending = None
            self._target = self.width
            self._reply(conn, m.cmd, Status.E_SUCCESS)
        elif m.cmd == Cmd.GET_WIDTH:
            if len(p) != 3:
                self._reply(conn, m.cmd, Status.E_CMD_FORMAT_ERROR)
                return
            self._reply(conn, m.cmd, Status.E_SUCCESS, struct.pack("<f", self.width))
        elif m.cmd in (Cmd.ACK_FAULT, Cmd.SET_FORCE_LIMIT, Cmd.SET_ACCELERATION):
            self._reply(conn, m.cmd, Status.E_SUCCESS)
        else:
            self._reply(conn, m.cmd, Status.E_CMD_UNKNOWN)

    def _advance(self, conn: socket.socket, dt: float) -> None:
        step = self._speed * dt
        err = self._target - self.width
        self.width = self._target if abs(err) <= step else self.width + step * (1 if err > 0 else -1)
        if self._pending is not None and self.width == self._target:
            self._reply(conn, self._pending, Status.E_SUCCESS)
            self._pending = None
