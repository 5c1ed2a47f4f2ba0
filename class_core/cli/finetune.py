"""``class-finetune``: behaviour-cloning fine-tuning of an MLP or diffusion policy head."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, e.g. finetune.head.type=mlp"
    )
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the out_dir")
    p.add_argument("--out", default=None, help="shortcut for finetune.train.out_dir=OUT")
    p.add_argument("--device", default=None, help="shortcut for finetune.train.device (auto, cpu, cuda)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from class_core.config import ConfigError, load_config
    from class_core.data.store import StoreError
    from class_core.train.checkpoint import CheckpointError
    from class_core.train.finetune import finetune

    overrides = list(args.overrides)
    if args.out is not None:
        overrides.append(f"finetune.train.out_dir={args.out}")
    if args.device is not None:
        overrides.append(f"finetune.train.device={args.device}")
    try:
        cfg = load_config(args.config, overrides)
        result = finetune(cfg, resume=args.resume, progress=not args.no_progress)
    except (ConfigError, StoreError, CheckpointError, FileExistsError, FileNotFoundError) as e:
        print(f"class-finetune: error: {e}", file=sys.stderr)
        return 2
    msg = f"done: {result.steps} steps, checkpoint {result.checkpoint}"
    if result.losses:
        msg += f", last loss {result.losses[-1][1]:.4f}"
    if result.artifact is not None:
        msg += f", policy artifact {result.artifact}"
    print(msg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
