"""class-collect: scripted demonstrations of a simulated task into an episode store."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import yaml


def parse_kv(items: list[str], flag: str) -> dict[str, Any]:
    """``key=value`` strings -> dict, values parsed as YAML (``3``, ``0.5``, ``[1, 2]``, ``true``)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"{flag}: expected key=value, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise SystemExit(f"{flag} {key}: cannot parse value {value!r}: {e}") from None
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="class-collect",
        description="Collect successful scripted demonstrations of a sim_bridge task into a zarr episode "
        "store (Diffusion Policy ReplayBuffer layout). Attempts use seeds S, S+1, ...; failed attempts "
        "are dropped and the demonstrator's raw success rate is reported. The store is written to "
        "<out>.tmp and renamed when complete.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--task", required=True, help="task name, e.g. pusht")
    p.add_argument(
        "--variant",
        default=None,
        help="task variant, e.g. fixed-color or rand-color (default: the task's first)",
    )
    p.add_argument("--episodes", type=int, required=True, help="number of successful episodes to keep")
    p.add_argument("--out", required=True, help="output store, e.g. data/pusht_rand.zarr")
    p.add_argument("--seed", type=int, default=0, help="seed of the first attempt")
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument(
        "--max-attempts", type=int, default=None, help="give up after this many attempts (default 2N+20)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing store at --out")
    p.add_argument(
        "--task-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="task constructor argument (repeatable), e.g. image_size=96",
    )
    p.add_argument(
        "--expert-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="scripted demonstrator argument (repeatable), e.g. noise=0.3",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--list-tasks", action="store_true", help="print the registered tasks and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    argv = sys.argv[1:] if argv is None else argv
    if "--list-tasks" in argv:
        from sim_bridge.task import task_names, task_variants

        for name in task_names():
            print(name, ", ".join(task_variants(name)))
        return 0
    args = build_parser().parse_args(argv)
    from sim_bridge.collect import collect

    try:
        res = collect(
            args.task,
            args.variant,
            args.episodes,
            args.out,
            seed=args.seed,
            workers=args.workers,
            task_kwargs=parse_kv(args.task_arg, "--task-arg"),
            expert_kwargs=parse_kv(args.expert_arg, "--expert-arg"),
            max_attempts=args.max_attempts,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except (ValueError, KeyError, FileExistsError, RuntimeError) as e:
        print(f"class-collect: error: {e}", file=sys.stderr)
        return 2
    d = res.to_dict()
    d.pop("kept_seeds")
    print(json.dumps(d, indent=2))
    print(
        f"{res.episodes} episodes ({res.steps} steps) -> {res.path}; demonstrator raw success rate "
        f"{res.raw_success_rate:.3f} ({res.successes_in_attempts}/{res.attempts})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
