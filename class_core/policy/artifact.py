"""Self-contained policy artifacts under ``models/<name>/`` and their loader.

Layout (every file listed in the manifest with its size and sha256):
```
models/<name>/
  manifest.json        format, version, policy type, library versions, files {name: {sha256, bytes}}
  config.json          policy spec, encoder config, head or retrieval config
  normalizer.json      {"action": MinMaxNormalizer record, "proprio": record or null}
  weights.safetensors  observation encoder (+ head) weights
  bank.safetensors     retrieval only: latents float32 (N, d), chunks float32 (N, T_p, D)
  index.faiss          retrieval with an approximate index: faiss.serialize_index bytes
```
A ``flat`` (exact) index holds nothing but the bank latents, so it is rebuilt from
``bank.safetensors`` at load instead of being stored twice.

Loading never unpickles: JSON, safetensors and faiss's own format only. Every file is checked
against the manifest before it is parsed, so a truncated or tampered artifact fails with an
``ArtifactError`` naming the file. Artifacts are built in a temporary directory and renamed.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from class_core.config import from_dict
from class_core.io import atomic_dir
from class_core.nn.amp import autocast_dtype
from class_core.nn.heads import HeadConfig
from class_core.policy.base import MinMax, ObservationEncoder, Policy, PolicySpec
from class_core.policy.knn import RetrievalPolicy, build_bank
from class_core.policy.parametric import HeadPolicy, PolicyModel, build_policy_model
from class_core.policy.retrieval import KNNIndex, RetrievalConfig

FORMAT = "class-policy"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class ArtifactError(ValueError):
    """A policy artifact is missing, truncated, tampered with or inconsistent; names the file."""


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("class-robot", "torch", "numpy", "faiss-cpu", "safetensors", "diffusers"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _state_bytes(module: nn.Module) -> bytes:
    sd = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    return st_save(sd)


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()


def _encoder_record(image_encoder: nn.Module | None) -> dict[str, Any] | None:
    if image_encoder is None:
        return None
    from class_core.nn.encoder import MultiCameraEncoder, encoder_config_dict

    if not isinstance(image_encoder, MultiCameraEncoder):
        raise TypeError(
            f"artifacts store class_core.nn.encoder.MultiCameraEncoder, got {type(image_encoder).__name__}"
        )
    cfg = encoder_config_dict(image_encoder.cfg)
    init = cfg["weights"]
    cfg["weights"] = "random"  # the trained weights are in weights.safetensors; never download at load
    return {"type": "class_resnet18_gn", "config": cfg, "initialised_from": init}


def _write(tmp: Path, files: Mapping[str, bytes], policy_type: str, meta: Mapping[str, Any] | None) -> None:
    records = {}
    for name, data in files.items():
        (tmp / name).write_bytes(data)
        records[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "policy_type": policy_type,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": _versions(),
        "meta": dict(meta or {}),
        "files": records,
    }
    (tmp / MANIFEST).write_bytes(_json_bytes(manifest))
    for f in tmp.iterdir():  # the rename of the directory is atomic; make its contents durable first
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())


def save_policy(
    policy: Policy,
    path: str | os.PathLike[str],
    overwrite: bool = False,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``policy`` (``RetrievalPolicy`` or ``HeadPolicy``) as an artifact directory at ``path``."""
    path = Path(path)
    files: dict[str, bytes] = {}
    if isinstance(policy, RetrievalPolicy):
        enc = policy.obs_encoder
        config = {
            "policy_type": "retrieval",
            "spec": asdict(policy.spec),
            "encoder": _encoder_record(enc.image_encoder),
            "retrieval": asdict(policy.cfg),
        }
        norm = {
            "action": None,
            "proprio": enc.proprio_norm.to_dict() if enc.proprio_norm is not None else None,
        }
        files["weights.safetensors"] = _state_bytes(enc)
        files["bank.safetensors"] = st_save(
            {"latents": torch.from_numpy(policy.index.latents), "chunks": torch.from_numpy(policy.chunks)}
        )
        if policy.cfg.index_cfg.kind != "flat":
            files["index.faiss"] = policy.index.to_bytes()
        policy_type = "retrieval"
    elif isinstance(policy, HeadPolicy):
        enc = policy.model.obs_encoder
        config = {
            "policy_type": policy.head_cfg.type,
            "spec": asdict(policy.spec),
            "encoder": _encoder_record(enc.image_encoder),
            "head": asdict(policy.head_cfg),
        }
        norm = {
            "action": policy.action_norm.to_dict(),
            "proprio": enc.proprio_norm.to_dict() if enc.proprio_norm is not None else None,
        }
        files["weights.safetensors"] = _state_bytes(policy.model)
        policy_type = policy.head_cfg.type
    else:
        raise TypeError(f"cannot export a {type(policy).__name__}")
    files["config.json"] = _json_bytes(config)
    files["normalizer.json"] = _json_bytes(norm)
    with atomic_dir(path, overwrite=overwrite) as tmp:
        _write(tmp, files, policy_type, meta)
    return path


# -- loading -----------------------------------------------------------------------------------


def _read_verified(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    if not path.is_dir():
        raise ArtifactError(f"{path}: policy artifact directory not found")
    mpath = path / MANIFEST
    try:
        manifest = json.loads(mpath.read_bytes())
    except FileNotFoundError:
        raise ArtifactError(
            f"{mpath}: missing manifest; not a policy artifact (export with class-export)"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{mpath}: manifest is not valid JSON ({e}); the artifact is damaged") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{mpath}: not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{mpath}: format_version {manifest.get('format_version')} is not supported "
            f"(expected {FORMAT_VERSION})"
        )
    records = manifest.get("files")
    if not isinstance(records, dict) or not records:
        raise ArtifactError(f"{mpath}: manifest lists no files")
    data: dict[str, bytes] = {}
    for name, rec in records.items():
        if "/" in name or "\\" in name or name.startswith("."):
            raise ArtifactError(f"{mpath}: invalid file name {name!r} in manifest")
        fpath = path / name
        try:
            blob = fpath.read_bytes()
        except FileNotFoundError:
            raise ArtifactError(f"{fpath}: listed in the manifest but missing") from None
        if len(blob) != rec.get("bytes"):
            raise ArtifactError(
                f"{fpath}: size {len(blob)} bytes, manifest says {rec.get('bytes')} (truncated or modified)"
            )
        if hashlib.sha256(blob).hexdigest() != rec.get("sha256"):
            raise ArtifactError(f"{fpath}: sha256 does not match the manifest (file modified or corrupted)")
        data[name] = blob
    return manifest, data


def _need(data: Mapping[str, bytes], name: str, path: Path) -> bytes:
    if name not in data:
        raise ArtifactError(f"{path / name}: required file not listed in the manifest")
    return data[name]


def _json(data: Mapping[str, bytes], name: str, path: Path) -> Any:
    try:
        return json.loads(_need(data, name, path))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path / name}: invalid JSON ({e})") from None


def _tensors(data: Mapping[str, bytes], name: str, path: Path) -> dict[str, torch.Tensor]:
    try:
        return st_load(_need(data, name, path))
    except ArtifactError:
        raise
    except Exception as e:  # safetensors raises its own error types
        raise ArtifactError(f"{path / name}: not a valid safetensors file ({e})") from None


def _build_image_encoder(record: Mapping[str, Any] | None, where: str) -> nn.Module | None:
    if record is None:
        return None
    if record.get("type") != "class_resnet18_gn":
        raise ArtifactError(f"{where}: unknown encoder type {record.get('type')!r}")
    from class_core.nn.encoder import build_encoder

    try:
        return build_encoder(dict(record["config"]))
    except (ValueError, KeyError, TypeError) as e:
        raise ArtifactError(f"{where}: invalid encoder config ({e})") from None


def _load_state(module: nn.Module, tensors: Mapping[str, torch.Tensor], where: Path) -> None:
    try:
        module.load_state_dict(dict(tensors), strict=True)
    except RuntimeError as e:
        raise ArtifactError(f"{where}: weights do not fit the configured model ({str(e)[:500]})") from None


def load(path: str | os.PathLike[str], device: str | torch.device = "cpu", seed: int | None = 0) -> Policy:
    """Load the artifact at ``path`` and return the right policy (retrieval, mlp or diffusion)."""
    path = Path(path)
    manifest, data = _read_verified(path)
    config = _json(data, "config.json", path)
    norms = _json(data, "normalizer.json", path)
    where = str(path / "config.json")
    ptype = manifest.get("policy_type")
    if not isinstance(config, dict) or config.get("policy_type") != ptype:
        raise ArtifactError(f"{where}: policy_type does not match the manifest ({ptype!r})")
    try:
        spec = from_dict(PolicySpec, config["spec"], where=f"{where}:spec")
        spec.validate()
    except (KeyError, ValueError) as e:
        raise ArtifactError(f"{where}: invalid policy spec ({e})") from None
    nwhere = str(path / "normalizer.json")
    try:
        proprio_norm = (
            MinMax.from_dict(norms["proprio"], where=f"{nwhere}:proprio") if norms.get("proprio") else None
        )
    except (ValueError, AttributeError, KeyError) as e:
        raise ArtifactError(f"{nwhere}: {e}") from None
    image_encoder = _build_image_encoder(config.get("encoder"), where)
    weights = _tensors(data, "weights.safetensors", path)

    if ptype == "retrieval":
        try:
            # artifacts written before retrieval.amp existed built their bank in float32 (only
            # the record: queries run in float32 whatever built the bank)
            rcfg = from_dict(
                RetrievalConfig, {"amp": "none", **config["retrieval"]}, where=f"{where}:retrieval"
            )
            rcfg.validate()
        except (KeyError, ValueError) as e:
            raise ArtifactError(f"{where}: invalid retrieval config ({e})") from None
        obs_encoder = ObservationEncoder(image_encoder, spec, proprio_norm)
        _load_state(obs_encoder, weights, path / "weights.safetensors")
        bank = _tensors(data, "bank.safetensors", path)
        if set(bank) != {"latents", "chunks"}:
            raise ArtifactError(
                f"{path / 'bank.safetensors'}: expected tensors latents and chunks, got {sorted(bank)}"
            )
        latents = bank["latents"].numpy().astype(np.float32, copy=False)
        chunks = bank["chunks"].numpy().astype(np.float32, copy=False)
        if rcfg.index_cfg.kind == "flat":
            index = KNNIndex.build(latents, rcfg.index_cfg)
        else:
            try:
                index = KNNIndex.from_bytes(_need(data, "index.faiss", path), latents, rcfg.index_cfg)
            except ArtifactError:
                raise
            except (RuntimeError, ValueError) as e:
                raise ArtifactError(
                    f"{path / 'index.faiss'}: cannot read the faiss index ({str(e)[:300]})"
                ) from None
        try:
            policy: Policy = RetrievalPolicy(spec, obs_encoder, index, chunks, rcfg).to(device)
        except ValueError as e:
            raise ArtifactError(f"{path}: inconsistent retrieval artifact ({e})") from None
        return policy

    if ptype in ("mlp", "diffusion"):
        try:
            hcfg = from_dict(HeadConfig, config["head"], where=f"{where}:head")
            hcfg.validate(spec.horizon)
            action_norm = MinMax.from_dict(norms["action"], where=f"{nwhere}:action")
        except (KeyError, ValueError, AttributeError) as e:
            raise ArtifactError(f"{where}: invalid head config or action normaliser ({e})") from None
        model: PolicyModel = build_policy_model(spec, image_encoder, proprio_norm, hcfg)
        _load_state(model, weights, path / "weights.safetensors")
        return HeadPolicy(spec, model, action_norm, hcfg, seed=seed).to(device)
    raise ArtifactError(f"{path / MANIFEST}: unknown policy_type {ptype!r}")


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The verified manifest of an artifact (checks every file's checksum)."""
    manifest, _ = _read_verified(Path(path))
    return manifest


# -- exports from training outputs ---------------------------------------------------------------


def export_retrieval_policy(
    path: str | os.PathLike[str],
    store: Any,
    image_encoder: nn.Module | None,
    spec: PolicySpec,
    cfg: RetrievalConfig | None = None,
    proprio_norm: MinMax | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 256,
    overwrite: bool = False,
    progress: bool = True,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Encode every sample of ``store`` (an ``EpisodeStore``), build the index, write the artifact.

    ``image_encoder`` is the (EMA) encoder, e.g. ``load_encoder(ckpt, ema=True)[0]``, or a random
    / ImageNet ``build_encoder(...)`` for the baselines. The proprio normaliser is fitted on the
    store unless given.
    """
    cfg = cfg or RetrievalConfig()
    cfg.validate()
    spec.validate()
    if spec.proprio_keys and proprio_norm is None:
        proprio_norm = fit_proprio_normalizer(store, spec)
    obs_encoder = ObservationEncoder(image_encoder, spec, proprio_norm).to(device).eval()
    latents, chunks = build_bank(store, obs_encoder, spec, cfg.proprio_scale, batch_size, progress, cfg.amp)
    index = KNNIndex.build(latents, cfg.index_cfg)
    policy = RetrievalPolicy(spec, obs_encoder, index, chunks, cfg)
    dev = obs_encoder.device()
    info = {
        "dataset": str(getattr(store, "path", "")),
        "n_samples": int(latents.shape[0]),
        # the precision that built the bank (retrieval.amp resolved on this machine)
        "bank_autocast": str(autocast_dtype(cfg.amp, dev, "retrieval.amp") or "float32").removeprefix(
            "torch."
        ),
    }
    return save_policy(policy, path, overwrite=overwrite, meta={**info, **dict(meta or {})})


def export_parametric_policy(
    path: str | os.PathLike[str],
    policy: HeadPolicy,
    overwrite: bool = False,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write a fine-tuned MLP or diffusion policy (see ``class_core.train.finetune``)."""
    if not isinstance(policy, HeadPolicy):
        raise TypeError(f"expected a HeadPolicy, got {type(policy).__name__}")
    return save_policy(policy, path, overwrite=overwrite, meta=meta)


def fit_proprio_normalizer(store: Any, spec: PolicySpec) -> MinMax:
    parts = []
    for key, dim in zip(spec.proprio_keys, spec.proprio_dims, strict=True):
        v = np.asarray(store.get(key), dtype=np.float64).reshape(store.n_steps, -1)
        if v.shape[1] != dim:
            raise ValueError(f"{store.path}: proprio key {key!r} has {v.shape[1]} dims, the spec says {dim}")
        if not np.isfinite(v).all():
            raise ValueError(f"{store.path}: proprio key {key!r} contains NaN or inf")
        parts.append(v)
    return MinMax.fit(np.concatenate(parts, axis=1))
