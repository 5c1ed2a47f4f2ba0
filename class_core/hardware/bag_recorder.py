"""The recorder of teleop_record.launch.py where ``ros2 bag record`` is missing (ROS-free core).

The ROS node (``class_ros.recorder_node``) only subscribes: raw (serialized CDR) subscriptions,
each message handed to ``RecorderCore.on_message`` with its receive time. Every decision lives
here:

- **Topics**: ``record_topics`` (recording.py): ARCHITECTURE.md's table less the policy's
  output, less the native camera stream with ``recording.native_image: false``.
- **Subscription QoS** (``subscription_qos``), as ``ros2 bag record`` adapts it: a topic is
  subscribed once a publisher of the table's type appears; reliable only if every publisher
  offers reliable (a reliable subscription never hears a best-effort publisher), transient-local
  only if every publisher is. A best-effort publisher joining later downgrades the subscription;
  it is never upgraded again. The offered profiles go to the bag's metadata.
- **Time stamps**: the receive time (``receive_stamp``): the middleware's reception time on the
  system clock, or the node's clock under ``use_sim_time`` - what ``ros2 bag record`` stores.
- **One bag per session**, as with ``ros2 bag record``: opened when the node starts (the folder
  appears at once), closed when it ends (SIGINT/SIGTERM -> ``close``, which writes
  metadata.yaml). Every message of every topic is kept, between episodes too; the importer
  (``class-import-bags``) cuts the episodes at the ``/class/episode/event`` messages, which are
  recorded like any topic.
- **Episode events** are not acted upon beyond being recorded: ``EpisodeLog`` follows them the way
  the importer will cut them, logs each one, warns about sequences the importer drops or
  ignores, and writes the tally into the bag's metadata ``custom_data`` (``class.*`` keys).
- **Writing** happens on a thread of its own (``BagWriter``) so that a slow disk never stalls the
  subscriptions; the backlog is bounded in bytes (``max_backlog_bytes``), messages over it are
  dropped and counted per topic. sqlite3 commits every ``flush_period_s``, so a killed recorder
  (SIGKILL, power loss) keeps what was committed (the bag then lacks metadata.yaml: rebuild it
  with ``ros2 bag reindex``). ``close`` is idempotent, ignores further SIGINT/SIGTERM while it
  runs, and is also registered with ``atexit``, so any ordinary exit of the process leaves a
  complete bag.
- **Format**: rosbag2 version 8 metadata through the ``rosbags`` writer, sqlite3 or mcap
  (``recording.storage``); ``ros_distro`` in metadata.yaml is the recording's distro, which the
  importer's ``typestore: auto`` reads.
"""

from __future__ import annotations

import atexit
import collections
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from class_core.hardware.recording import RecordingConfig, record_topics
from class_core.topics import EVENT_TOPIC, EVENTS

NS = 1_000_000_000
BAG_VERSION = 8  # rosbag2 metadata version written (Jazzy reads 8 and 9)
STORAGES = ("sqlite3", "mcap")

Log = Callable[[str, str], None]  # (level: info | warn | error, text)


def _print_log(level: str, text: str) -> None:
    print(f"[{level}] {text}", flush=True)


# ---------------------------------------------------------------------------------------------
# small decisions


@dataclass(frozen=True)
class QosSpec:
    """The part of a QoS profile the recorder decides on (strings, so it is ROS-free)."""

    reliability: str = "reliable"  # reliable | best_effort
    durability: str = "volatile"  # volatile | transient_local
    depth: int = 100

    def __post_init__(self) -> None:
        if self.reliability not in ("reliable", "best_effort"):
            raise ValueError(f"reliability must be reliable or best_effort, got {self.reliability!r}")
        if self.durability not in ("volatile", "transient_local"):
            raise ValueError(f"durability must be volatile or transient_local, got {self.durability!r}")


def normalise_policy(name: str) -> str:
    """An rclpy policy name (``RELIABLE``, ``BEST_EFFORT``, ``TRANSIENT_LOCAL``, ...) -> lower case;
    anything else (system default, unknown, best available) -> ``unknown``."""
    n = str(name).rsplit(".", 1)[-1].lower()
    return n if n in ("reliable", "best_effort", "volatile", "transient_local") else "unknown"


def subscription_qos(offered: Sequence[tuple[str, str]], depth: int) -> QosSpec | None:
    """The subscription that hears every publisher of ``offered`` ((reliability, durability)
    pairs as ``normalise_policy`` names them); None while there is no publisher."""
    if not offered:
        return None
    reliable = all(normalise_policy(r) == "reliable" for r, _ in offered)
    latched = all(normalise_policy(d) == "transient_local" for _, d in offered)
    return QosSpec(
        "reliable" if reliable else "best_effort", "transient_local" if latched else "volatile", depth
    )


def receive_stamp(received_ns: int, clock_ns: int, use_sim_time: bool) -> int:
    """A message's time in the bag: the middleware's reception time (system clock), or the node's
    clock when it runs on simulated time or the middleware gives none."""
    if use_sim_time or received_ns <= 0:
        return int(clock_ns)
    return int(received_ns)


# ---------------------------------------------------------------------------------------------
# episode events


@dataclass
class EpisodeLog:
    """Follows ``/class/episode/event`` as the importer will cut episodes (``start`` ... ``stop`` |
    ``success``; ``discard`` drops the open episode or the one just ended)."""

    open_since: int | None = None
    kept: list[tuple[int, int, bool]] = field(default_factory=list)  # (start, end, success)
    discarded: int = 0
    dropped: int = 0  # restarted while open
    _just_closed: bool = False

    def on_event(self, t_ns: int, text: str) -> tuple[str, str]:
        """(log level, line) for one event."""
        ev = text.strip()
        if ev == "start":
            level, line = "info", f"episode {len(self.kept) + 1} started"
            if self.open_since is not None:
                self.dropped += 1
                level, line = "warn", "'start' while an episode is open: the importer drops the open one"
            self.open_since, self._just_closed = t_ns, False
            return level, line
        if ev in ("stop", "success"):
            if self.open_since is None:
                if ev == "success" and self._just_closed and self.kept:
                    # the teleop ends an episode, then labels it: 'stop' then 'success'
                    self.kept[-1] = (self.kept[-1][0], self.kept[-1][1], True)
                    return "info", f"episode {len(self.kept)} labelled a success"
                return "warn", f"'{ev}' without 'start': the importer ignores it"
            self.kept.append((self.open_since, t_ns, ev == "success"))
            self.open_since, self._just_closed = None, True
            dur = (t_ns - self.kept[-1][0]) / NS
            return "info", f"episode {len(self.kept)} ended ({ev}) after {dur:.1f} s"
        if ev == "discard":
            if self.open_since is not None:
                self.open_since = None
                self.discarded += 1
                return "info", "open episode discarded"
            if self._just_closed and self.kept:
                self.kept.pop()
                self.discarded += 1
                self._just_closed = False
                return "info", "last episode discarded"
            return "warn", "'discard' with no episode to discard: the importer ignores it"
        return "warn", f"unknown event {ev!r} (expected one of {EVENTS}): the importer ignores it"

    def summary(self) -> str:
        n_ok = sum(1 for *_, s in self.kept if s)
        out = f"{len(self.kept)} episode(s) ({n_ok} success), {self.discarded} discarded"
        if self.dropped:
            out += f", {self.dropped} restarted"
        if self.open_since is not None:
            out += ", 1 still open (no stop: the importer drops it)"
        return out

    def custom_data(self) -> dict[str, str]:
        return {
            "class.episodes": str(len(self.kept)),
            "class.episodes_success": str(sum(1 for *_, s in self.kept if s)),
            "class.episodes_discarded": str(self.discarded),
            "class.episode_open_at_end": str(self.open_since is not None).lower(),
        }


def decode_string(raw: bytes | memoryview) -> str:
    """std_msgs/msg/String from its CDR bytes (4 bytes encapsulation, uint32 length, text, NUL)."""
    import struct

    b = bytes(raw)
    if len(b) < 8:
        raise ValueError(f"std_msgs/String CDR too short ({len(b)} bytes)")
    n = struct.unpack_from("<I" if b[1] == 1 else ">I", b, 4)[0]
    return b[8 : 8 + n].rstrip(b"\0").decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------------------------
# the writer


class Backlog:
    """A FIFO bounded in bytes: ``put`` refuses (and counts per topic) what would exceed it."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self.dropped: collections.Counter[str] = collections.Counter()
        self._q: collections.deque[tuple[Any, ...]] = collections.deque()
        self._cv = threading.Condition()

    def put(self, item: tuple[Any, ...], size: int = 0, topic: str = "", essential: bool = False) -> bool:
        """Queue ``item`` of ``size`` bytes; an ``essential`` item is never refused."""
        with self._cv:
            if not essential and size and self.bytes + size > self.max_bytes:
                self.dropped[topic] += 1
                return False
            self._q.append((size, item))
            self.bytes += size
            self._cv.notify()
            return True

    def get(self, timeout: float) -> tuple[Any, ...] | None:
        """The oldest item (its size is released), or None after ``timeout`` s."""
        with self._cv:
            if not self._q and not self._cv.wait_for(lambda: bool(self._q), timeout):
                return None
            size, item = self._q.popleft()
            self.bytes -= size
            return item

    def __len__(self) -> int:
        with self._cv:
            return len(self._q)


@dataclass
class BagSummary:
    path: Path
    storage: str
    counts: dict[str, int]
    dropped: dict[str, int]
    start_ns: int
    end_ns: int
    error: str = ""

    @property
    def n_messages(self) -> int:
        return sum(self.counts.values())

    def lines(self) -> list[str]:
        dur = max(0, self.end_ns - self.start_ns) / NS if self.n_messages else 0.0
        out = [f"bag {self.path} ({self.storage}): {self.n_messages} messages over {dur:.1f} s"]
        out += [
            f"  {t}: {n}" + (f" ({self.dropped[t]} dropped)" if self.dropped.get(t) else "")
            for t, n in sorted(self.counts.items())
        ]
        if self.error:
            out.append(f"  write error: {self.error}")
        return out


class BagWriter:
    """A rosbag2 folder written by a thread that owns the ``rosbags`` writer.

    ``open`` creates the folder (an error surfaces here); ``add_topic`` and ``write`` queue work
    and return at once; ``close`` drains the queue, writes metadata.yaml and returns a summary.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        storage: str = "sqlite3",
        distro: str = "jazzy",
        max_backlog_bytes: int = 1 << 30,
        flush_period_s: float = 1.0,
        log: Log = _print_log,
    ):
        if storage not in STORAGES:
            raise ValueError(f"recording.storage must be one of {STORAGES}, got {storage!r}")
        self.path = Path(path).expanduser()
        self.storage = storage
        self.distro = distro if distro in ("humble", "jazzy") else "jazzy"
        self.flush_period_s = float(flush_period_s)
        self.log = log
        self.backlog = Backlog(max_backlog_bytes)
        self.counts: dict[str, int] = {}
        self.start_ns = 2**63 - 1
        self.end_ns = 0
        self.error: BaseException | None = None
        self.custom_data: dict[str, str] = {}
        self._topics: set[str] = set()
        self._thread: threading.Thread | None = None
        self._opened = threading.Event()
        self._summary: BagSummary | None = None
        self._close_lock = threading.Lock()

    # -- caller side ---------------------------------------------------------------------------
    def open(self, timeout: float = 30.0) -> BagWriter:
        if self.path.exists():
            raise FileExistsError(
                f"{self.path} already exists; a recording never writes into an existing folder"
            )
        self._thread = threading.Thread(target=self._run, name="bag-writer", daemon=True)
        self._thread.start()
        if not self._opened.wait(timeout):
            raise TimeoutError(f"opening {self.path} took over {timeout} s")
        if self.error is not None:
            raise OSError(f"cannot create the bag {self.path}: {self.error}") from self.error
        atexit.register(self.close)
        return self

    @property
    def is_open(self) -> bool:
        return self._thread is not None and self._summary is None

    def add_topic(self, topic: str, msgtype: str, offered: Sequence[QosSpec] = ()) -> None:
        """Register ``topic`` (once; later calls are ignored) before its first ``write``."""
        if topic in self._topics or not self.is_open:
            return
        self._topics.add(topic)
        self.backlog.put(("topic", topic, msgtype, tuple(offered)))

    def write(self, topic: str, t_ns: int, data: bytes | memoryview, essential: bool = False) -> bool:
        """Queue one serialized message; False if refused (backlog full, closed, unknown topic,
        or the writer has failed). ``essential`` messages (episode events) pass a full backlog."""
        if not self.is_open or self.error is not None or topic not in self._topics:
            return False
        return self.backlog.put(("msg", topic, int(t_ns), bytes(data)), len(data), topic, essential)

    def close(self, timeout: float | None = None) -> BagSummary:
        """Drain, write metadata.yaml, return the summary; idempotent. SIGINT and SIGTERM are
        ignored meanwhile (a second Ctrl-C must not leave a bag without metadata)."""
        with self._close_lock:
            if self._summary is not None:
                return self._summary
            restore = _ignore_signals()
            try:
                if self._thread is not None:
                    self.backlog.put(("close",))
                    self._thread.join(timeout)
                    if self._thread.is_alive():
                        self.error = self.error or TimeoutError(f"closing took over {timeout} s")
                self._summary = BagSummary(
                    self.path,
                    self.storage,
                    dict(self.counts),
                    dict(self.backlog.dropped),
                    self.start_ns,
                    self.end_ns,
                    "" if self.error is None else str(self.error),
                )
            finally:
                restore()
            try:
                atexit.unregister(self.close)
            except Exception:  # noqa: S110 - interpreter shutting down
                pass
            return self._summary

    # -- writer thread -------------------------------------------------------------------------
    def _run(self) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        store = get_typestore(Stores.ROS2_HUMBLE if self.distro == "humble" else Stores.ROS2_JAZZY)
        plugin = StoragePlugin.SQLITE3 if self.storage == "sqlite3" else StoragePlugin.MCAP
        try:
            writer = Writer(self.path, version=BAG_VERSION, storage_plugin=plugin)  # type: ignore[arg-type]
            writer.open()
        except BaseException as e:  # noqa: BLE001 - reported by open()
            self.error = e
            self._opened.set()
            return
        self._opened.set()
        conns: dict[str, Any] = {}
        last_flush = time.monotonic()
        try:
            while True:
                item = self.backlog.get(timeout=min(0.2, self.flush_period_s))
                if item is not None and item[0] == "close":
                    break
                if item is not None and self.error is None:
                    try:
                        if item[0] == "topic":
                            _, topic, msgtype, offered = item
                            conns[topic] = writer.add_connection(
                                topic, msgtype, typestore=store, offered_qos_profiles=_rosbags_qos(offered)
                            )
                            self.counts.setdefault(topic, 0)
                        else:
                            _, topic, t, data = item
                            writer.write(conns[topic], t, data)
                            self.counts[topic] += 1
                            self.start_ns, self.end_ns = min(self.start_ns, t), max(self.end_ns, t)
                    except Exception as e:  # disk full, ...: stop writing, keep the bag closable
                        self.error = e
                        self.log(
                            "error", f"writing {self.path} failed, recording stopped: {type(e).__name__}: {e}"
                        )
                if time.monotonic() - last_flush >= self.flush_period_s:
                    self._flush(writer)
                    last_flush = time.monotonic()
        finally:
            for k, v in self.custom_data.items():
                writer.set_custom_data(k, v)
            try:
                writer.close()
                self._set_distro()
            except Exception as e:
                self.error = self.error or e
                self.log("error", f"closing {self.path} failed: {type(e).__name__}: {e}")

    def _flush(self, writer: Any) -> None:
        """Commit what sqlite3 holds (rosbags commits only at close)."""
        conn = getattr(getattr(writer, "storage", None), "conn", None)
        if conn is not None and hasattr(conn, "commit"):
            try:
                conn.commit()
            except Exception as e:
                self.log("warn", f"periodic commit of {self.path} failed: {e}")

    def _set_distro(self) -> None:
        from class_core.data.rosbag_import import set_ros_distro

        set_ros_distro(self.path, self.distro)


def _rosbags_qos(offered: Iterable[QosSpec]) -> list[Any]:
    from rosbags.interfaces import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )

    zero = QosTime(0, 0)
    return [
        Qos(
            QosHistory.UNKNOWN,
            0,
            QosReliability.RELIABLE if q.reliability == "reliable" else QosReliability.BEST_EFFORT,
            QosDurability.TRANSIENT_LOCAL if q.durability == "transient_local" else QosDurability.VOLATILE,
            zero,
            zero,
            QosLiveliness.AUTOMATIC,
            zero,
            False,
        )
        for q in offered
    ]


def _ignore_signals() -> Callable[[], None]:
    """Ignore SIGINT/SIGTERM (main thread only); returns the function that restores them."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in old:
        signal.signal(s, signal.SIG_IGN)

    def restore() -> None:
        for s, h in old.items():
            if h is not None:
                signal.signal(s, h)

    return restore


# ---------------------------------------------------------------------------------------------
# the recorder


@dataclass
class Subscribe:
    """What the node is to do for a topic: (re)subscribe with ``qos``."""

    topic: str
    msgtype: str
    qos: QosSpec


class RecorderCore:
    """The recorder node's decisions: which topics, when and how to subscribe, what to write,
    the episode tally. The node calls ``discover`` from a timer with what it sees of each
    topic's publishers, ``on_message`` from the subscriptions, ``close`` on its way out."""

    def __init__(
        self,
        cfg: RecordingConfig,
        out: str | os.PathLike[str],
        distro: str = "jazzy",
        depth: int = 100,
        max_backlog_bytes: int = 1 << 30,
        flush_period_s: float = 1.0,
        warn_after_s: float = 10.0,
        log: Log = _print_log,
    ):
        self.cfg = cfg
        self.topics: dict[str, str] = record_topics(cfg)
        self.depth = int(depth)
        self.warn_after_s = float(warn_after_s)
        self.log = log
        self.writer = BagWriter(out, cfg.storage, distro, max_backlog_bytes, flush_period_s, log)
        self.episodes = EpisodeLog()
        self.qos: dict[str, QosSpec] = {}  # topics subscribed, with their subscription's QoS
        self._warned: set[tuple[str, str]] = set()
        self._refused = 0
        self._t_open = 0.0

    @property
    def path(self) -> Path:
        return self.writer.path

    def open(self) -> None:
        self.writer.open()
        self._t_open = time.monotonic()
        self.log("info", f"recording {len(self.topics)} topics into {self.path} ({self.cfg.storage})")

    def pending(self) -> list[str]:
        """Topics not subscribed yet (no publisher seen)."""
        return [t for t in self.topics if t not in self.qos]

    def discover(
        self, publishers: Mapping[str, Sequence[tuple[str, str, str]]], now_s: float | None = None
    ) -> list[Subscribe]:
        """``publishers``: topic -> [(type, reliability, durability)] of its publishers now.
        Returns the subscriptions to create (or replace); warns once about a wrong type and, after
        ``warn_after_s``, about topics nobody publishes."""
        out: list[Subscribe] = []
        for topic, msgtype in self.topics.items():
            pubs = list(publishers.get(topic, ()))
            wrong = sorted({ty for ty, _, _ in pubs if ty != msgtype})
            if wrong:
                self._warn_once(
                    (topic, "type"),
                    f"{topic} is published as {wrong}, expected {msgtype}: those publishers are not recorded",
                )
            offered = [(r, d) for ty, r, d in pubs if ty == msgtype]
            want = subscription_qos(offered, self.depth)
            if want is None:
                continue
            have = self.qos.get(topic)
            if have is None:
                new = want
            elif have.reliability == "reliable" and want.reliability == "best_effort":
                new = QosSpec("best_effort", "volatile", self.depth)  # downgrade only, never back
                self.log("warn", f"{topic}: a best-effort publisher joined, subscription now best-effort")
            elif have.durability == "transient_local" and want.durability == "volatile":
                new = QosSpec(have.reliability, "volatile", self.depth)
            else:
                continue
            self.qos[topic] = new
            self.writer.add_topic(
                topic,
                msgtype,
                [QosSpec(normalise_or(r, "reliable"), normalise_or(d, "volatile")) for r, d in offered],
            )
            out.append(Subscribe(topic, msgtype, new))
        now_s = time.monotonic() if now_s is None else now_s
        if self._t_open and now_s - self._t_open >= self.warn_after_s:
            missing = self.pending()
            if missing:
                self._warn_once(("pending", ",".join(missing)), f"no publisher yet on {missing}")
        return out

    def on_message(self, topic: str, t_ns: int, raw: bytes | memoryview) -> None:
        if not self.writer.write(topic, t_ns, raw, essential=topic == EVENT_TOPIC):
            self._refused += 1
            if self.writer.error is None and self._refused in (1, 10, 100, 1000, 10000):
                self.log(
                    "warn",
                    f"{self._refused} message(s) not recorded so far (backlog over "
                    f"{self.writer.backlog.max_bytes} bytes: is the disk too slow?)",
                )
        if topic == EVENT_TOPIC:
            try:
                text = decode_string(raw)
            except ValueError as e:
                self.log("warn", f"unreadable event: {e}")
                return
            level, line = self.episodes.on_event(t_ns, text)
            self.log(level, f"event '{text}': {line}")

    def close(self) -> BagSummary:
        self.writer.custom_data.update(self.episodes.custom_data())
        summary = self.writer.close()
        for line in summary.lines():
            self.log("info", line)
        self.log("info", f"events: {self.episodes.summary()}")
        silent = [t for t in self.topics if not summary.counts.get(t)]
        if silent:
            self.log("warn", f"no message recorded on {silent}: class-import-bags needs the topics it maps")
        if summary.error:
            self.log("error", f"the bag may be incomplete: {summary.error}")
        return summary

    def _warn_once(self, key: tuple[str, str], text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.log("warn", text)


def normalise_or(name: str, default: str) -> str:
    n = normalise_policy(name)
    return default if n == "unknown" else n
