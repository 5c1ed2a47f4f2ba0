"""class-eval: seeded rollouts of an exported policy on a sim_bridge task.

Writes ``results.json`` (all numbers, per-episode detail, the resolved arguments) and
``results.md`` (a short table) to ``--out``, and mp4 videos of the chosen episodes.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path
from typing import Any

from sim_bridge.task import PolicyLike, Task


def load_policy(task: Task, path: str, device: str = "cpu", threads: int | None = None) -> PolicyLike:
    """Policy factory run inside each rollout worker."""
    import torch

    from class_core.policy import load

    if threads:
        torch.set_num_threads(threads)
        # numpy's BLAS and FAISS's OpenMP too: a worker keeps to its share of the cores (the
        # flat k-NN product runs on one BLAS thread in any case, retrieval._one_blas_thread)
        from threadpoolctl import threadpool_limits

        from class_core.policy.retrieval import limit_search_threads

        threadpool_limits(threads, user_api="blas")
        limit_search_threads(threads)  # FAISS's OpenMP (pca_flat, hnsw, ivf indexes)
    policy = load(path, device=device)
    missing = [
        k for k in getattr(getattr(policy, "spec", None), "image_keys", ()) if k not in task.image_keys
    ]
    if missing:
        raise ValueError(
            f"{path}: policy needs camera(s) {missing}, task {task.name} has {list(task.image_keys)}"
        )
    return policy


def _parse_indices(text: str) -> list[int]:
    if not text.strip():
        return []
    try:
        return sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise SystemExit(
            f"--video-episodes: expected comma-separated episode indices, got {text!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="class-eval",
        description="Evaluate a policy in simulation: episode i starts from seed SEED+i, success rate with a "
        "95%% Wilson interval, per-call policy latency, optional mp4 videos. Results go to --out as "
        "results.json and results.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--policy",
        required=True,
        help="exported policy artifact folder (models/<name>), or 'scripted' for the task's "
        "scripted demonstrator (a reference upper bound)",
    )
    p.add_argument("--task", required=True, help="task name, e.g. pusht")
    p.add_argument(
        "--variant", default=None, help="task variant, e.g. fixed-color (default: the task's first)"
    )
    p.add_argument("--episodes", type=int, default=50, help="number of rollouts")
    p.add_argument(
        "--seed", type=int, default=100_000, help="seed of episode 0 (kept apart from collection seeds)"
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes (each loads the policy)")
    p.add_argument("--video-episodes", default="", help="comma-separated episode indices to record, e.g. 0,1")
    p.add_argument(
        "--out", default=None, help="output folder (default results/<policy name>/<task>-<variant>)"
    )
    p.add_argument("--device", default="cpu", help="torch device for the policy (cpu, cuda, cuda:1)")
    p.add_argument(
        "--task-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="task constructor argument (repeatable), e.g. max_steps=300",
    )
    p.add_argument(
        "--batch",
        type=int,
        default=1,
        help="run episodes in lockstep blocks of this size, one batched policy call per step "
        "(exported policies only; pays most on a GPU or with a diffusion head; latency is then "
        "per batched call)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    from sim_bridge.cli_collect import parse_kv
    from sim_bridge.rollout import evaluate, scripted_policy
    from sim_bridge.task import task_variants

    try:
        variant = args.variant or task_variants(args.task)[0]
    except KeyError as e:
        print(f"class-eval: error: {e.args[0]}", file=sys.stderr)
        return 2
    factory: Any
    if args.policy == "scripted":
        if args.batch > 1:
            print(
                "class-eval: error: --batch needs an exported policy (the scripted one runs alone)",
                file=sys.stderr,
            )
            return 2
        factory, name = scripted_policy, "scripted"
    else:
        ppath = Path(args.policy)
        if not ppath.is_dir():
            print(f"class-eval: error: --policy {ppath}: no such artifact folder", file=sys.stderr)
            return 2
        threads = max(1, (os.cpu_count() or 1) // args.workers) if args.workers > 1 else None
        factory = functools.partial(load_policy, path=str(ppath), device=args.device, threads=threads)
        name = ppath.name
    out = Path(args.out) if args.out else Path("results") / name / f"{args.task}-{variant}"
    try:
        summary = evaluate(
            args.task,
            variant,
            factory,
            args.episodes,
            seed=args.seed,
            workers=args.workers,
            video_episodes=_parse_indices(args.video_episodes),
            out_dir=out,
            task_kwargs=parse_kv(args.task_arg, "--task-arg"),
            policy_name=name,
            progress=not args.no_progress,
            batch=args.batch,
        )
    except (ValueError, KeyError, FileNotFoundError) as e:
        print(f"class-eval: error: {e}", file=sys.stderr)
        return 2
    from class_core.io import atomic_write_text

    atomic_write_text(out / "eval_args.json", json.dumps(vars(args), indent=2) + "\n")
    print(summary.to_markdown())
    print(f"results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
