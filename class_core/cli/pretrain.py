"""``class-pretrain``: CLASS contrastive pre-training of the image encoder."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from class_core.cli.training import add_training_arguments, run_training

EPILOG = """\
examples:
  class-pretrain --config config/debug.yaml
  class-pretrain --config config/pusht.yaml pretrain.train.out_dir=runs/pusht_a pretrain.train.epochs=50
  class-pretrain --config config/pusht.yaml pretrain.train.out_dir=runs/pusht_a --resume
  torchrun --nproc_per_node 4 -m class_core.cli.pretrain --config config/pusht.yaml

Overrides are key=value (YAML values) on the config, e.g. pretrain.loss.tau=0.1,
pretrain.encoder.weights=/data/resnet18-f37072fd.pth, pretrain.train.sampling=positive;
prefix a key with + to add one that the file lacks. The resolved config is written to
<out_dir>/config.yaml, TensorBoard logs to <out_dir>/tb, checkpoints to <out_dir>/checkpoints.
The encoder is loaded elsewhere with class_core.train.checkpoint.load_encoder(<out_dir>).
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="class-pretrain",
        description="Pre-train the CLASS image encoder (ResNet-18 + spatial softmax) with the soft "
        "InfoNCE loss over DTW positive pairs (see docs/training.md).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config", required=True, help="task YAML with a `pretrain` section (e.g. config/debug.yaml)"
    )
    add_training_arguments(p, "pretrain", "pretrain.train.epochs=10")
    return p


def _summary(result: Any) -> str:
    msg = f"done: {result.steps} steps, checkpoint {result.checkpoint}"
    if result.history:
        msg += f", last loss {result.history[-1].loss:.4f}"
    return msg


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from class_core.train.pretrain import pretrain

    return run_training("class-pretrain", args, "pretrain", pretrain, _summary)


if __name__ == "__main__":
    sys.exit(main())
