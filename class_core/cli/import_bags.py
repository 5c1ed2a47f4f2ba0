"""``class-import-bags``: rosbag2 recordings -> the canonical episode store."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EPILOG = """\
examples:
  class-import-bags bags/demo_* --config config/real.yaml --out data/two_stack.zarr
  class-import-bags bags/*.mcap.d --config config/real.yaml --out data/x.zarr rosbag_import.control_hz=15
  class-import-bags bags/* --config config/real.yaml --out data/x.zarr --skip-bad

The config's `rosbag_import` section (keys missing there take the defaults below) says which
topics feed which keys:
  control_hz 10, image_size 256 (short side resize + centre crop; 0 keeps the size),
  typestore auto|humble|jazzy, time_source header|log, split auto|events|bag,
  max_gap 0.5 s, max_lead 2 s, max_clock_skew 5 s, min_steps 2, event_topic /class/episode/event,
  observations {image: /camera/camera/color/image_raw, ee_pos/ee_rot6d: /class/robot/ee_pose,
                gripper: /class/gripper/state},
  action [/class/teleop/target -> pos + rot6d, /class/teleop/joy axes[0] -> gripper command].

Episodes: split=events cuts at /class/episode/event (start ... stop|success; discard drops the
episode being recorded, or the one just ended); split=bag makes one episode per bag; auto uses
events when a bag has any. An episode starts at the first instant where every stream is fresh
(latest message at most max_gap old); the lead trimmed after 'start' is printed per episode
(a note) and per bag (lead_s), and may not exceed max_lead. Every key is resampled to
control_hz (latest message at or before each tick). A bag with a missing topic, a gap longer
than max_gap inside an episode, a stream never fresh in an episode, a lead over max_lead or a
truncated/corrupt file is reported and nothing is written (exit status 1); --skip-bad imports
the others instead.
The resolved config is written to <out>.import.yaml.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="class-import-bags",
        description="Import rosbag2 recordings (sqlite3 or mcap, ROS 2 Humble or Jazzy) into an episode "
        "store (zarr, Diffusion Policy ReplayBuffer layout) for offline training.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="BAG | key=value",
        help="rosbag2 folders (with metadata.yaml), then optional config overrides such as "
        "rosbag_import.control_hz=15",
    )
    p.add_argument("--config", required=True, help="task YAML with a `rosbag_import` section (see below)")
    p.add_argument("--out", required=True, help="output episode store, e.g. data/two_stack.zarr")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--skip-bad", action="store_true", help="leave out bags with problems instead of failing")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    from class_core.config import ConfigError, apply_override, from_dict, load_config, save_config
    from class_core.data.rosbag_import import BagError, RosbagImportConfig, import_bags

    bags = [a for a in args.inputs if "=" not in a or Path(a).exists()]
    overrides = [a for a in args.inputs if a not in bags]
    prog = "class-import-bags"
    try:
        cfg = load_config(args.config)
        section = cfg.setdefault("rosbag_import", {})
        if not isinstance(section, dict):
            raise ConfigError(f"{args.config}: rosbag_import must be a mapping")
        for fld in dataclasses.fields(RosbagImportConfig):
            if fld.name not in section:
                section[fld.name] = getattr(RosbagImportConfig(), fld.name)
        for o in overrides:
            apply_override(cfg, o)
        icfg = from_dict(RosbagImportConfig, section, where="rosbag_import")
        icfg.validate()
    except (ConfigError, ValueError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    if not bags:
        print(f"{prog}: error: no bag given", file=sys.stderr)
        return 2
    progress = None
    if not args.no_progress:
        from tqdm import tqdm

        def progress(x: Any) -> Any:
            return tqdm(x, desc="bags", unit="bag", file=sys.stderr)

    try:
        res = import_bags(bags, args.out, icfg, overwrite=args.overwrite, skip_bad=args.skip_bad,
                          extra_attrs={"config": str(args.config)}, progress=progress)  # fmt: skip
    except BagError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    save_config(cfg, str(res.out) + ".import.yaml")
    per_bag: dict[str, list[tuple[int, float]]] = {}
    for ep in res.episodes:
        per_bag.setdefault(ep["bag"], []).append((ep["steps"], ep["lead_s"]))
    width = max(len(b) for b in per_bag)
    print(f"{'bag':<{width}}  episodes  steps  lead_s")
    for b, eps in per_bag.items():
        print(f"{b:<{width}}  {len(eps):>8}  {sum(n for n, _ in eps):>5}  {sum(x for _, x in eps):>6.3f}")
    for b, why in res.skipped:
        print(f"skipped {b}: {why}")
    for b, note in res.notes:
        print(f"note {b}: {note}")
    print(f"wrote {res.out}: {res.n_episodes} episodes, {res.n_steps} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
