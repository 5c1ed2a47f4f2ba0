"""``class-export``: write a self-contained policy artifact under ``models/<name>/``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

EPILOG = """\
examples:
  class-export retrieval --config config/pusht.yaml retrieval.checkpoint=runs/pusht_pretrain --name pusht_knn
  class-export retrieval --config config/pusht.yaml retrieval.checkpoint=null \\
      retrieval.encoder_weights=imagenet --name pusht_knn_imagenet        # baseline encoder
  class-export retrieval --config config/pusht.yaml retrieval.index.kind=pca_flat --name pusht_knn_fast
  class-export finetuned --run runs/pusht_dp --name pusht_dp

The artifact (config.json, normalizer.json, weights.safetensors, bank/index for retrieval,
manifest.json with sha256 of every file) is built in a temporary directory and renamed into
place; load it with class_core.policy.load(path).
"""


def retrieval_from_config(
    cfg: Mapping[str, Any], path: str | Path, overwrite: bool = False, progress: bool = True
) -> Path:
    """Build the retrieval bank + index described by the config's ``retrieval`` section and export it."""
    import torch

    from class_core.config import ConfigError, from_dict
    from class_core.data.store import EpisodeStore, KeyMap
    from class_core.nn.encoder import build_encoder
    from class_core.policy.artifact import export_retrieval_policy
    from class_core.policy.base import PolicySpec, resolve_rot6d
    from class_core.policy.retrieval import RetrievalConfig
    from class_core.train.checkpoint import load_encoder

    sec = dict(cfg.get("retrieval") or {})
    if not sec:
        raise ConfigError("config has no 'retrieval' section (add `defaults: [policy_defaults.yaml]`)")
    data = cfg.get("data") or {}
    if not data.get("store"):
        raise ConfigError("data.store: path of the episode store is not set")
    store = EpisodeStore.open(data["store"], KeyMap(data.get("keys") or {}))
    pol = dict(sec.pop("policy", {}) or {})
    checkpoint, weights = sec.pop("checkpoint", None), sec.pop("encoder_weights", "random")
    cameras, batch_size = sec.pop("cameras", None), int(sec.pop("batch_size", 256))
    device = str(sec.pop("device", "auto"))
    init_seed = int(sec.pop("init_seed", 0))
    rcfg = from_dict(RetrievalConfig, sec, where="retrieval")
    try:
        rcfg.validate()
    except ValueError as e:
        raise ConfigError(str(e)) from None
    unknown = set(pol) - {"image_keys", "proprio_keys", "horizon", "n_action_steps", "rot6d"}
    if unknown:
        raise ConfigError(
            f"unknown config key(s) retrieval.policy.{', retrieval.policy.'.join(sorted(unknown))}"
        )
    image_keys = list(pol.get("image_keys", ["image"]))
    proprio_keys = list(pol.get("proprio_keys", []))
    d = int(store.get("action", slice(0, 1)).shape[-1])
    spec = PolicySpec(
        image_keys=image_keys,
        proprio_keys=proprio_keys,
        proprio_dims=[int(store.get(k, slice(0, 1)).reshape(1, -1).shape[1]) for k in proprio_keys],
        action_dim=d,
        horizon=int(pol.get("horizon", 16)),
        n_action_steps=int(pol.get("n_action_steps", 16)),
        n_obs_steps=1,
        rot6d=resolve_rot6d(pol.get("rot6d", "auto"), d),
    )
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    encoder = None
    meta: dict[str, Any] = {"encoder_source": None}
    if image_keys:
        if checkpoint:
            encoder, _ = load_encoder(checkpoint, ema=True)
            meta["encoder_source"] = f"checkpoint {checkpoint} (EMA)"
        else:
            torch.manual_seed(init_seed)  # a random-init baseline is the same encoder on every run
            encoder = build_encoder({"cameras": list(cameras or image_keys), "weights": weights})
            meta["encoder_source"] = f"baseline, {weights} init (seed {init_seed})"
        if list(encoder.cfg.cameras) != image_keys:  # type: ignore[union-attr,arg-type]
            raise ConfigError(
                f"retrieval.policy.image_keys {image_keys} differ from the encoder cameras "
                f"{list(encoder.cfg.cameras)}"  # type: ignore[union-attr,arg-type]
            )
        encoder.eval()
    return export_retrieval_policy(
        path, store, encoder, spec, rcfg, device=device, batch_size=batch_size, overwrite=overwrite,
        progress=progress, meta=meta,
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="class-export",
        description="Export a policy artifact (config, normaliser, safetensors weights, retrieval bank and "
        "faiss index, manifest with checksums) under models/<name>/.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("retrieval", help="encode a dataset into a retrieval bank (non-parametric policy)")
    r.add_argument("--config", required=True, help="task YAML with data.store and a `retrieval` section")
    r.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. retrieval.k=32")
    f = sub.add_parser("finetuned", help="export a class-finetune run (EMA weights of its latest checkpoint)")
    f.add_argument("--run", required=True, help="class-finetune out_dir or one of its checkpoint directories")
    f.add_argument("--no-ema", action="store_true", help="export the raw instead of the EMA weights")
    for s in (r, f):
        s.add_argument("--name", required=True, help="artifact name: written to <out>/<name>/")
        s.add_argument("--out", default="models", help="parent directory of artifacts (default: models)")
        s.add_argument("--overwrite", action="store_true", help="replace an existing artifact of that name")
        s.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from class_core.config import ConfigError, load_config
    from class_core.data.store import StoreError
    from class_core.policy.artifact import ArtifactError, export_parametric_policy
    from class_core.train.checkpoint import CheckpointError

    path = Path(args.out) / args.name
    try:
        if args.what == "retrieval":
            cfg = load_config(args.config, args.overrides)
            out = retrieval_from_config(cfg, path, overwrite=args.overwrite, progress=not args.no_progress)
        else:
            from class_core.train.finetune import policy_from_run

            policy = policy_from_run(args.run, ema=not args.no_ema)
            out = export_parametric_policy(
                path, policy, overwrite=args.overwrite, meta={"run": str(args.run)}
            )
    except (ConfigError, StoreError, CheckpointError, ArtifactError, FileExistsError, FileNotFoundError) as e:
        print(f"class-export: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
