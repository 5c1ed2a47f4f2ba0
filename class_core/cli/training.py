"""What ``class-pretrain`` and ``class-finetune`` share: the same arguments (config, overrides,
``--resume``, ``--out``/``--device`` shortcuts, ``--no-progress``) and the same error handling."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any


def add_training_arguments(p: argparse.ArgumentParser, section: str, override_example: str) -> None:
    """Arguments after ``--config`` for a trainer whose config section is ``section``."""
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help=f"config overrides, e.g. {override_example}"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help=f"continue from the latest checkpoint in {section}.train.out_dir (exactly as if never stopped)",
    )
    p.add_argument("--out", default=None, help=f"shortcut for {section}.train.out_dir=OUT")
    p.add_argument(
        "--device", default=None, help=f"shortcut for {section}.train.device (auto, cpu, cuda, cuda:1)"
    )
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")


def run_training(
    prog: str,
    args: argparse.Namespace,
    section: str,
    train: Callable[..., Any],
    summary: Callable[[Any], str],
) -> int:
    """Load the config with the overrides and shortcuts, run ``train(cfg, resume=, progress=)``
    and print ``summary(result)``; a bad config, store or checkpoint exits 2 with one line."""
    from class_core.config import ConfigError, load_config
    from class_core.data.store import StoreError
    from class_core.train.checkpoint import CheckpointError

    overrides: Sequence[str] = list(args.overrides)
    if args.out is not None:
        overrides = [*overrides, f"{section}.train.out_dir={args.out}"]
    if args.device is not None:
        overrides = [*overrides, f"{section}.train.device={args.device}"]
    try:
        cfg = load_config(args.config, overrides)
        result = train(cfg, resume=args.resume, progress=not args.no_progress)
    except (ConfigError, StoreError, CheckpointError, FileExistsError, FileNotFoundError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    print(summary(result))
    return 0
