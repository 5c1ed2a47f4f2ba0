"""rosbag2 recordings (sqlite3 or mcap; Humble or Jazzy) -> the canonical episode store.

Two passes per run, so that a bad bag costs nothing:
1. ``scan_bag``: every message's time stamp, the low-dimensional values and the episode events
   are read (images are only counted, their stamp is read from the raw CDR header), episodes
   are cut, resampled onto the control-rate grid and checked (missing topics, gaps, clock skew,
   truncated files). Problems of all bags are collected into one report.
2. ``write``: only if no bag has a problem (or the bad ones are skipped on request), the images
   picked by the resampling are decoded, resized and written with ``EpisodeStoreWriter``,
   which renames its output into place at the end - never a half-written store.

Resampling: ticks every ``1 / control_hz`` from the episode start; at each tick every key takes
the latest message at or before the tick (zero-order hold); the action is the commanded target
(``/class/teleop/target`` -> position + rot6d, then the gripper command).

Lead: an episode starts at the first instant (at or after its ``start`` event, or the bag's first
message with ``split: bag``) where every stream is fresh - its latest message at most ``max_gap``
old. Streams that begin a moment after ``start`` (a recorder that starts streaming on ``start``,
a camera warming up) thus cost only that lead, which is reported per episode (``lead_s``). A lead
over ``max_lead`` (event episodes), one that leaves fewer than ``min_steps`` ticks, or a stream
that is never fresh in the episode is an error; a gap after the first tick is an error as before.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from class_core import ros_msgs as rm
from class_core.geometry import matrix_to_rot6d, quat_to_matrix
from class_core.topics import ObsSources, Source, SourceError, parse_sources, resize_center_crop

NS = rm.NS

DEFAULT_OBSERVATIONS: dict[str, Any] = {
    # realsense-ros default names
    "image": {"topic": "/camera/camera/color/image_raw", "kind": "image"},
    "ee_pos": {"topic": "/class/robot/ee_pose", "kind": "pose_position"},
    "ee_rot6d": {"topic": "/class/robot/ee_pose", "kind": "pose_rot6d"},
    "gripper": {"topic": "/class/gripper/state", "kind": "joint_position"},
}
DEFAULT_ACTION: list[dict[str, Any]] = [
    {"topic": "/class/teleop/target", "kind": "pose_pos_rot6d"},
    # gripper command: the VR trigger axis
    {"topic": "/class/teleop/joy", "kind": "joy_axes", "index": [0]},
]


@dataclass
class RosbagImportConfig:
    """The ``rosbag_import`` section of a task config."""

    control_hz: float = 10.0
    image_size: int = 256  # short side resized + centre crop; 0 keeps the recorded size
    # message types of bags without their own definitions (Humble's sqlite3 bags): auto (the bag's
    # ros_distro; metadata older than Iron's, which names none: humble; else jazzy) | humble | jazzy
    typestore: str = "auto"
    time_source: str = "header"  # header stamps (log time for messages without one) | log
    split: str = "auto"  # events | bag (one episode per bag) | auto (events when the bag has any)
    max_gap: float = 0.5  # s; longest a key may go without a message inside an episode
    max_lead: float = 2.0  # s; longest an episode may wait after 'start' for every stream to be fresh
    max_clock_skew: float = 5.0  # s; |header stamp - log time| beyond this is an error
    min_steps: int = 2
    event_topic: str = "/class/episode/event"
    observations: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_OBSERVATIONS))
    action: list[Any] = field(default_factory=lambda: [dict(a) for a in DEFAULT_ACTION])

    def validate(self) -> None:
        def bad(key: str, why: str) -> ValueError:
            return ValueError(f"rosbag_import.{key}: {why}")

        if not self.control_hz > 0:
            raise bad("control_hz", f"must be positive, got {self.control_hz}")
        if self.image_size < 0:
            raise bad("image_size", f"must be >= 0, got {self.image_size}")
        if self.typestore not in ("auto", "humble", "jazzy"):
            raise bad("typestore", f"must be auto, humble or jazzy, got {self.typestore!r}")
        if self.time_source not in ("header", "log"):
            raise bad("time_source", f"must be header or log, got {self.time_source!r}")
        if self.split not in ("auto", "events", "bag"):
            raise bad("split", f"must be auto, events or bag, got {self.split!r}")
        if not self.max_gap > 0 or not self.max_clock_skew > 0 or self.min_steps < 1:
            raise bad("max_gap", "max_gap and max_clock_skew must be positive, min_steps >= 1")
        if not self.max_lead >= 0:
            raise bad("max_lead", f"must be >= 0, got {self.max_lead}")
        if "action" in self.observations:
            raise bad("observations", "'action' is configured in rosbag_import.action, not as an observation")
        self.sources()

    def sources(self) -> ObsSources:
        try:
            return parse_sources({**self.observations, "action": self.action})
        except SourceError as e:
            raise ValueError(f"rosbag_import: {e}") from None


class BagError(RuntimeError):
    """Bags that cannot be imported; ``problems`` lists every (bag, message)."""

    def __init__(self, problems: Sequence[tuple[str, str]]):
        self.problems = list(problems)
        lines = [f"  {bag}: {msg}" for bag, msg in self.problems]
        super().__init__(f"{len(self.problems)} problem(s), nothing was written:\n" + "\n".join(lines))


@dataclass
class EpisodePlan:
    """One episode cut from a bag: its tick times and what to read at each tick."""

    bag: str
    t0: int
    t1: int
    ticks: np.ndarray  # int64 (T,)
    success: bool | None  # None when the bag has no events
    lowdim: dict[str, np.ndarray]  # canonical name -> float32 (T, k)
    image_rows: dict[str, np.ndarray]  # canonical name -> int64 (T,): message index in bag order
    lead_ns: int = 0  # ticks[0] - t0: time trimmed until every stream was fresh


@dataclass
class BagScan:
    path: Path
    episodes: list[EpisodePlan] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    distro: str = ""


@dataclass
class _Topic:
    msgtype: str
    stamps: list[int] = field(default_factory=list)  # header (or log) time, bag order
    logs: list[int] = field(default_factory=list)
    values: dict[Source, list[np.ndarray]] = field(default_factory=dict)
    poses: list[tuple[float, ...]] = field(default_factory=list)  # PoseStamped topics: x y z qx qy qz qw


def _raw_header_stamp(raw: bytes | memoryview) -> int:
    """Header stamp of a stamped message straight from its CDR bytes (header is the first field)."""
    little = raw[1] == 1
    sec, nsec = struct.unpack_from("<iI" if little else ">iI", raw, 4)
    return sec * NS + nsec


def _open_reader(path: Path, distro: str) -> Any:
    """A rosbags AnyReader. A bag that holds its message definitions (every bag rosbags or Iron and
    later write, Humble's mcap bags) is read with those; ``distro``'s type store serves the others."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    stores = {"humble": Stores.ROS2_HUMBLE, "jazzy": Stores.ROS2_JAZZY}
    reader = AnyReader([path], default_typestore=get_typestore(stores.get(distro, Stores.ROS2_JAZZY)))
    reader.open()
    return reader


# rosbag2 metadata names the distro from version 8 (Iron) on; older versions are Humble's (5) and
# its predecessors', whose message types the Humble store holds
_FIRST_VERSION_WITH_DISTRO = 8
_HUMBLE_LIKE = ("foxy", "galactic", "humble")


def _bag_distro(path: Path, cfg: RosbagImportConfig) -> str:
    """The type store for ``path``: the configured one, or (auto) the one of the distro that
    recorded it."""
    if cfg.typestore != "auto":
        return cfg.typestore
    import yaml

    try:
        info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        distro = str(info.get("ros_distro") or "")
        version = int(info.get("version", _FIRST_VERSION_WITH_DISTRO))
    except Exception:  # the reader reports unreadable metadata with a better message
        return "jazzy"
    if not distro:
        return "humble" if version < _FIRST_VERSION_WITH_DISTRO else "jazzy"
    return "humble" if distro in _HUMBLE_LIKE else "jazzy"


def scan_bag(path: str | Path, cfg: RosbagImportConfig) -> BagScan:
    """Pass 1: cut and resample episodes, reading images' stamps only; never raises for bag faults."""
    path = Path(path)
    scan = BagScan(path)
    sources = cfg.sources()
    wanted: dict[str, list[tuple[str, Source]]] = {}
    for key, parts in sources.items():
        for s in parts:
            wanted.setdefault(s.topic, []).append((key, s))
    if not path.exists():
        scan.problems.append("not found")
        return scan
    scan.distro = _bag_distro(path, cfg)
    events: list[tuple[int, str]] = []
    topics: dict[str, _Topic] = {}
    try:
        reader = _open_reader(path, scan.distro)
    except Exception as e:
        scan.problems.append(f"cannot open as a rosbag2 recording ({type(e).__name__}: {e})")
        return scan
    try:
        conns = [c for c in reader.connections if c.topic in wanted or c.topic == cfg.event_topic]
        for c in conns:
            if c.topic == cfg.event_topic:
                continue
            want_type = {s.msgtype for _, s in wanted[c.topic]}.pop()
            if c.msgtype != want_type:
                scan.problems.append(f"topic {c.topic} has type {c.msgtype}, expected {want_type}")
            topics.setdefault(c.topic, _Topic(c.msgtype))
        missing = sorted(t for t in wanted if t not in topics)
        if missing:
            have = sorted({c.topic for c in reader.connections})
            scan.problems.append(f"missing topic(s) {missing}; the bag has {have}")
        if scan.problems:
            return scan
        for conn, log_t, raw in reader.messages(connections=conns):
            if conn.topic == cfg.event_topic:
                events.append((log_t, str(reader.deserialize(raw, conn.msgtype).data).strip()))
                continue
            tp = topics[conn.topic]
            readers = wanted[conn.topic]
            image_only = all(src.kind == "image" for _, src in readers)
            msg = None if image_only else reader.deserialize(raw, conn.msgtype)
            if cfg.time_source == "log":
                stamp = log_t
            elif msg is not None:
                stamp = rm.stamp_ns(msg)
            else:
                stamp = _raw_header_stamp(raw)
            tp.stamps.append(stamp)
            tp.logs.append(log_t)
            if msg is not None:
                try:
                    if tp.msgtype == "geometry_msgs/msg/PoseStamped":
                        # raw pose now, rotations converted in one batch for the picked rows
                        p, o = msg.pose.position, msg.pose.orientation
                        tp.poses.append((p.x, p.y, p.z, o.x, o.y, o.z, o.w))
                    else:
                        for _, src in readers:
                            tp.values.setdefault(src, []).append(src.extract(msg))
                except rm.MessageError as e:
                    raise rm.MessageError(f"{conn.topic} message {len(tp.stamps) - 1}: {e}") from None
    except rm.MessageError as e:
        scan.problems.append(str(e))
        return scan
    except Exception as e:  # rosbags/sqlite3/mcap errors on truncated or corrupt files
        scan.problems.append(f"cannot read messages, truncated or corrupt file? ({type(e).__name__}: {e})")
        return scan
    finally:
        reader.close()
    _cut_episodes(scan, cfg, sources, topics, events)
    return scan


def _episode_windows(
    scan: BagScan, cfg: RosbagImportConfig, events: list[tuple[int, str]], span: tuple[int, int]
) -> list[tuple[int, int, bool | None]]:
    split = cfg.split
    if split == "auto":
        split = "events" if any(e == "start" for _, e in events) else "bag"
    if split == "bag":
        return [(span[0], span[1], None)]
    if not events:
        scan.problems.append(f"split=events but the bag has no messages on {cfg.event_topic}")
        return []
    windows: list[tuple[int, int, bool | None]] = []
    open_at: int | None = None
    just_closed = False
    for t, ev in events:
        if ev == "start":
            if open_at is not None:
                scan.notes.append(
                    f"'start' at {(t - span[0]) / NS:.2f} s while recording: previous episode dropped"
                )
            open_at, just_closed = t, False
        elif ev in ("stop", "success"):
            if open_at is None:
                if ev == "success" and just_closed and windows:
                    # the teleop ends an episode, then labels it: 'stop' then 'success'
                    windows[-1] = (windows[-1][0], windows[-1][1], True)
                    continue
                scan.notes.append(f"'{ev}' at {(t - span[0]) / NS:.2f} s without 'start' ignored")
                continue
            windows.append((open_at, t, ev == "success"))
            open_at, just_closed = None, True
        elif ev == "discard":
            if open_at is not None:
                open_at = None
            elif just_closed and windows:
                windows.pop()
            just_closed = False
        else:
            scan.notes.append(f"unknown event {ev!r} ignored")
    if open_at is not None:
        scan.notes.append("last episode has no 'stop'/'success' event: dropped")
    return windows


def _cut_episodes(
    scan: BagScan,
    cfg: RosbagImportConfig,
    sources: ObsSources,
    topics: dict[str, _Topic],
    events: list[tuple[int, str]],
) -> None:
    dt = round(NS / cfg.control_hz)
    max_gap = round(cfg.max_gap * NS)
    sorted_topics: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, tp in topics.items():
        stamps = np.asarray(tp.stamps, dtype=np.int64)
        if not len(stamps):
            scan.problems.append(f"topic {name} has no messages")
            continue
        skew = np.abs(stamps - np.asarray(tp.logs, dtype=np.int64))
        if cfg.time_source == "header" and np.median(skew) > cfg.max_clock_skew * NS:
            scan.problems.append(
                f"topic {name}: header stamps are {np.median(skew) / NS:.1f} s away from the recording time "
                "(another clock?); set rosbag_import.time_source=log"
            )
        order = np.argsort(stamps, kind="stable")
        sorted_topics[name] = (stamps[order], order)
    if scan.problems:
        return
    firsts = [s[0] for s, _ in sorted_topics.values()]
    lasts = [s[-1] for s, _ in sorted_topics.values()]
    keys_of: dict[str, list[str]] = {}
    for key, parts in sources.items():
        for s in parts:
            if key not in keys_of.setdefault(s.topic, []):
                keys_of[s.topic].append(key)

    def named(topic: str) -> str:
        return f"{topic} ({', '.join(keys_of.get(topic, []))})"

    for t0, t1, success in _episode_windows(scan, cfg, events, (min(firsts), max(lasts))):
        where = f"episode {t0 / NS:.3f}-{t1 / NS:.3f} s"
        end = min(t1, *lasts) if success is None else t1
        n_full = len(range(t0, end + 1, dt))  # a short episode (not a late stream) is dropped
        if n_full < cfg.min_steps:
            scan.notes.append(f"{where}: only {n_full} step(s) < min_steps={cfg.min_steps}, dropped")
            continue
        start, first_fresh = _first_fresh(sorted_topics, t0, end, max_gap)
        never = [n for n, f in first_fresh.items() if f is None]
        if never:
            scan.problems.append(
                f"{where}: no fresh message (max_gap={cfg.max_gap} s) anywhere in the episode on "
                + ", ".join(named(n) for n in never)
            )
            continue
        late = ", ".join(
            f"{named(n)} +{(f - t0) / NS:.3f} s"
            for n, f in sorted(first_fresh.items(), key=lambda nf: -int(nf[1] or 0))
            if f is not None and f > t0
        )
        if start is None:
            scan.problems.append(
                f"{where}: the streams are never fresh (max_gap={cfg.max_gap} s) all at once; each is first "
                f"fresh at: {late}"
            )
            continue
        lead = start - t0
        # the stream(s) that were stale an instant before the start
        waited = ", ".join(
            named(n) for n, (st, _) in sorted_topics.items() if lead and not _fresh(st, start - 1, max_gap)
        )
        opened = "'start'" if success is not None else "the bag's first message"
        if success is not None and lead > round(cfg.max_lead * NS):
            scan.problems.append(
                f"{where}: every stream is fresh only {lead / NS:.3f} s after {opened} "
                f"(> max_lead={cfg.max_lead} s), waited on {waited}; first fresh: {late}"
            )
            continue
        ticks = np.arange(start, end + 1, dt, dtype=np.int64)
        if len(ticks) < cfg.min_steps:
            scan.problems.append(
                f"{where}: trimming the {lead / NS:.3f} s lead after {opened} (waited on {waited}) leaves "
                f"{len(ticks)} step(s) < min_steps={cfg.min_steps}; first fresh: {late}"
            )
            continue
        if lead > 0:
            scan.notes.append(
                f"{where}: lead of {lead / NS:.3f} s trimmed (first tick where every stream is fresh), "
                f"waited on {waited}"
            )
        rows: dict[str, np.ndarray] = {}
        ok = True
        for name, (stamps, order) in sorted_topics.items():
            idx = np.searchsorted(stamps, ticks, side="right") - 1
            age = ticks - stamps[np.maximum(idx, 0)]
            bad = (idx < 0) | (age > max_gap)
            if bad.any():
                k = int(np.argmax(bad))
                gap = "no message yet" if idx[k] < 0 else f"last message {age[k] / NS:.3f} s old"
                scan.problems.append(
                    f"{where}: gap on {name} at {(ticks[k] - t0) / NS:.2f} s into the episode ({gap}, "
                    f"max_gap={cfg.max_gap} s)"
                )
                ok = False
                continue
            rows[name] = order[idx]  # index in bag order
        if not ok:
            continue
        lowdim: dict[str, np.ndarray] = {}
        image_rows: dict[str, np.ndarray] = {}
        for key, parts in sources.items():
            if parts[0].kind == "image":
                image_rows[key] = rows[parts[0].topic]
                continue
            cols = []
            for s in parts:
                tp = topics[s.topic]
                if tp.poses:
                    try:
                        cols.append(_poses_to(s.kind, np.asarray(tp.poses)[rows[s.topic]]))
                    except rm.MessageError as e:
                        scan.problems.append(f"{where}: {s.topic}: {e}")
                        return
                else:
                    vals = tp.values[s]
                    cols.append(np.stack([vals[i] for i in rows[s.topic]]).astype(np.float32))
            lowdim[key] = np.concatenate(cols, axis=1) if len(cols) > 1 else cols[0]
        scan.episodes.append(
            EpisodePlan(str(scan.path), t0, t1, ticks, success, lowdim, image_rows, lead_ns=int(lead))
        )


def _fresh(stamps: np.ndarray, at: Any, max_gap: int) -> Any:
    """Whether the latest of the sorted ``stamps`` at or before ``at`` is at most ``max_gap`` old."""
    idx = np.searchsorted(stamps, at, side="right") - 1
    return (idx >= 0) & (at - stamps[np.maximum(idx, 0)] <= max_gap)


def _first_fresh(
    sorted_topics: Mapping[str, tuple[np.ndarray, np.ndarray]], lo: int, hi: int, max_gap: int
) -> tuple[int | None, dict[str, int | None]]:
    """First instant in ``[lo, hi]`` where every stream's latest message is at most ``max_gap`` old
    (None if there is none), and each stream's own first such instant (None: never fresh)."""

    def fresh(stamps: np.ndarray, at: np.ndarray) -> np.ndarray:
        return _fresh(stamps, at, max_gap)

    own: dict[str, int | None] = {}
    for name, (stamps, _) in sorted_topics.items():
        if fresh(stamps, np.array([lo]))[0]:
            own[name] = lo
        else:  # freshness begins at a message
            k = int(np.searchsorted(stamps, lo, side="right"))
            own[name] = int(stamps[k]) if k < len(stamps) and stamps[k] <= hi else None
    if any(f is None for f in own.values()):
        return None, own
    # all fresh at once: at the latest of the first-fresh instants, or later at some message
    m = max(f for f in own.values() if f is not None)
    if all(fresh(stamps, np.array([m]))[0] for stamps, _ in sorted_topics.values()):
        return m, own
    cands = [np.array([m], dtype=np.int64)]
    for stamps, _ in sorted_topics.values():
        cands.append(
            stamps[np.searchsorted(stamps, m, side="right") : np.searchsorted(stamps, hi, side="right")]
        )
    at = np.unique(np.concatenate(cands))
    ok = np.ones(len(at), dtype=bool)
    for stamps, _ in sorted_topics.values():
        ok &= fresh(stamps, at)
    return (int(at[int(np.argmax(ok))]) if ok.any() else None), own


def _poses_to(kind: str, raw: np.ndarray) -> np.ndarray:
    """(T, 7) x y z qx qy qz qw -> float32 values of a pose ``kind`` (batched Source.extract)."""
    norm = np.linalg.norm(raw[:, 3:], axis=1)
    bad = ~np.isfinite(norm) | (np.abs(norm - 1.0) > 1e-3)
    if bad.any():
        raise rm.MessageError(f"Pose.orientation is not a unit quaternion (norm {norm[bad][0]:.6g})")
    if kind == "pose_xy":
        return raw[:, :2].astype(np.float32)
    if kind == "pose_position":
        return raw[:, :3].astype(np.float32)
    r6 = matrix_to_rot6d(quat_to_matrix(raw[:, 3:]))
    return (r6 if kind == "pose_rot6d" else np.concatenate([raw[:, :3], r6], axis=1)).astype(np.float32)


def _load_images(
    plan_list: list[EpisodePlan], scan: BagScan, cfg: RosbagImportConfig, sources: ObsSources
) -> Iterable[tuple[EpisodePlan, dict[str, np.ndarray]]]:
    """Pass 2 for one bag: decode only the frames the plans use, in bag order, episode by episode."""
    image_keys = [k for k, p in sources.items() if p[0].kind == "image"]
    if not image_keys:
        for plan in plan_list:
            yield plan, {}
        return
    reader = _open_reader(scan.path, scan.distro)
    try:
        by_topic = {k: sources[k][0].topic for k in image_keys}
        conns = [c for c in reader.connections if c.topic in set(by_topic.values())]
        gens = {}
        for topic in set(by_topic.values()):
            gens[topic] = reader.messages(connections=[c for c in conns if c.topic == topic])
        counters = {t: -1 for t in gens}
        last: dict[str, tuple[int, np.ndarray]] = {}  # consecutive ticks often reuse a frame
        for plan in plan_list:
            out: dict[str, np.ndarray] = {}
            for key in image_keys:
                topic = by_topic[key]
                frames = []
                for row in plan.image_rows[key]:
                    row = int(row)
                    if topic not in last or last[topic][0] != row:
                        if row <= counters[topic]:  # header stamps out of recording order: rewind
                            gens[topic] = reader.messages(connections=[c for c in conns if c.topic == topic])
                            counters[topic] = -1
                        while counters[topic] < row:
                            conn, _, raw = next(gens[topic])
                            counters[topic] += 1
                        img = rm.image_to_rgb(reader.deserialize(raw, conn.msgtype))
                        if cfg.image_size:
                            img = resize_center_crop(img, cfg.image_size)
                        last[topic] = (row, img)
                    frames.append(last[topic][1])
                out[key] = np.stack(frames)
            yield plan, out
    finally:
        reader.close()


@dataclass
class ImportResult:
    out: Path
    n_episodes: int
    n_steps: int
    episodes: list[dict[str, Any]]
    skipped: list[tuple[str, str]]
    notes: list[tuple[str, str]]


def import_bags(
    bags: Sequence[str | Path],
    out: str | Path,
    cfg: RosbagImportConfig,
    overwrite: bool = False,
    skip_bad: bool = False,
    extra_attrs: Mapping[str, Any] | None = None,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
) -> ImportResult:
    """Import ``bags`` into the episode store ``out``. Raises ``BagError`` before writing anything
    when a bag has a problem (unless ``skip_bad``, which leaves such bags out and reports them)."""
    from class_core.data.store import EpisodeStoreWriter

    cfg.validate()
    if not bags:
        raise ValueError("no bags given")
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists (pass --overwrite to replace it)")
    prog = progress or (lambda x: x)
    scans = [scan_bag(b, cfg) for b in prog(list(bags))]
    problems = [(str(s.path), p) for s in scans for p in s.problems]
    notes = [(str(s.path), n) for s in scans for n in s.notes]
    if problems and not skip_bad:
        raise BagError(problems)
    good = [s for s in scans if not s.problems]
    if not any(s.episodes for s in good):
        raise BagError(problems + [("(all)", "no episodes to import")] + notes)
    sources = cfg.sources()
    episodes: list[dict[str, Any]] = []
    n_steps = 0
    with EpisodeStoreWriter(out, overwrite=overwrite) as writer:
        for scan in prog(good):
            for plan, images in _load_images(scan.episodes, scan, cfg, sources):
                ep = {**images, **plan.lowdim}
                writer.add_episode(ep)
                n = len(plan.ticks)
                n_steps += n
                episodes.append(
                    {"bag": plan.bag, "start_ns": int(plan.t0), "end_ns": int(plan.t1), "steps": n,
                     "success": plan.success, "lead_s": plan.lead_ns / NS}
                )  # fmt: skip
        writer.set_attrs(source="rosbag2", episodes=episodes, bags=[str(b) for b in bags],
                         skipped=[list(p) for p in problems], **dict(extra_attrs or {}))  # fmt: skip
    return ImportResult(out, len(episodes), n_steps, episodes, problems, notes)


def write_bag(
    path: str | Path,
    messages: Iterable[tuple[str, int, Any]],
    distro: str = "jazzy",
    storage: str = "sqlite3",
    version: int = 8,
) -> Path:
    """Write ``(topic, log time ns, rosbags message)`` tuples as a rosbag2 recording.

    For tests, demos and recording simulated runs; messages come from ``ros_msgs.RosbagsFactory``.
    The bag is built under a temporary name and renamed into place.
    """
    import shutil

    from rosbags.rosbag2 import StoragePlugin, Writer

    from class_core.ros_msgs import RosbagsFactory

    plugins = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
    if storage not in plugins:
        raise ValueError(f"storage must be one of {sorted(plugins)}, got {storage!r}")
    if version not in (8, 9):
        raise ValueError(f"rosbag2 format version must be 8 or 9, got {version}")
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} already exists")
    f = RosbagsFactory(distro)
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    conns: dict[str, Any] = {}
    try:
        with Writer(tmp, version=version, storage_plugin=plugins[storage]) as writer:  # type: ignore[arg-type]
            for topic, log_t, msg in messages:
                if topic not in conns:
                    conns[topic] = writer.add_connection(topic, msg.__msgtype__, typestore=f.typestore)
                writer.write(conns[topic], int(log_t), f.serialize(msg))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # rosbags names the storage file after the folder: keep the final name inside.
    for p in tmp.iterdir():
        if p.name.startswith(tmp.name):
            p.rename(tmp / (path.name + p.name[len(tmp.name) :]))
    meta = tmp / "metadata.yaml"
    meta.write_text(meta.read_text().replace(tmp.name, path.name))
    set_ros_distro(tmp, distro)
    tmp.rename(path)
    return path


def set_ros_distro(bag: Path, distro: str) -> None:
    """metadata.yaml of a bag that ``rosbags`` wrote names ``distro`` (rosbags writes its own name
    there), so that ``typestore: auto`` picks the store the messages were made with."""
    meta = bag / "metadata.yaml"
    text = meta.read_text()
    new = text.replace("ros_distro: rosbags", f"ros_distro: {distro}")
    if new != text:
        tmp = meta.with_suffix(".yaml.tmp")
        tmp.write_text(new)
        tmp.replace(meta)
