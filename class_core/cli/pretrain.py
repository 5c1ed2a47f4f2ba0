"""``class-pretrain``: CLASS contrastive pre-training of the image encoder."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, e.g. pretrain.train.epochs=10"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the latest checkpoint in pretrain.train.out_dir (exactly as if never stopped)",
    )
    p.add_argument("--out", default=None, help="shortcut for pretrain.train.out_dir=OUT")
    p.add_argument(
        "--device", default=None, help="shortcut for pretrain.train.device (auto, cpu, cuda, cuda:1)"
    )
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from class_core.config import ConfigError, load_config
    from class_core.train.pretrain import pretrain

    overrides = list(args.overrides)
    if args.out is not None:
        overrides.append(f"pretrain.train.out_dir={args.out}")
    if args.device is not None:
        overrides.append(f"pretrain.train.device={args.device}")
    try:
        cfg = load_config(args.config, overrides)
        result = pretrain(cfg, resume=args.resume, progress=not args.no_progress)
    except (ConfigError, FileExistsError, FileNotFoundError) as e:
        print(f"class-pretrain: error: {e}", file=sys.stderr)
        return 2
    last = result.history[-1] if result.history else None
    msg = f"done: {result.steps} steps, checkpoint {result.checkpoint}"
    if last is not None:
        msg += f", last loss {last.loss:.4f}"
    print(msg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
