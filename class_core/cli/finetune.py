"""``class-finetune``: behaviour-cloning fine-tuning of an MLP or diffusion policy head."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from class_core.cli.training import add_training_arguments, run_training

EPILOG = """\
examples:
  class-finetune --config config/policy_debug.yaml
  class-finetune --config config/pusht.yaml finetune.init.checkpoint=runs/pusht_pretrain \\
      finetune.head.type=diffusion finetune.train.out_dir=runs/pusht_dp finetune.export=models/pusht_dp
  class-finetune --config config/pusht.yaml finetune.init.checkpoint=null \\
      finetune.encoder.weights=imagenet finetune.train.out_dir=runs/pusht_bc     # BC baseline
  class-finetune --config config/pusht.yaml finetune.train.out_dir=runs/pusht_dp --resume

Overrides are key=value (YAML values); prefix a key with + to add one the file lacks. The
resolved config goes to <out_dir>/config.yaml, TensorBoard logs to <out_dir>/tb, checkpoints to
<out_dir>/checkpoints. Export a run later with `class-export finetuned --run <out_dir> --name NAME`.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="class-finetune",
        description="Fine-tune a policy head (MLP U-Net decoder or diffusion U-Net) and the encoder by "
        "behaviour cloning, from a CLASS checkpoint or from scratch (see docs/policies.md).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="task YAML with a `finetune` section")
    add_training_arguments(p, "finetune", "finetune.head.type=mlp")
    return p


def _summary(result: Any) -> str:
    msg = f"done: {result.steps} steps, checkpoint {result.checkpoint}"
    if result.losses:
        msg += f", last loss {result.losses[-1][1]:.4f}"
    if result.artifact is not None:
        msg += f", policy artifact {result.artifact}"
    return msg


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from class_core.train.finetune import finetune

    return run_training("class-finetune", args, "finetune", finetune, _summary)


if __name__ == "__main__":
    sys.exit(main())
