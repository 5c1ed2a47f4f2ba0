"""Behaviour-cloning fine-tuning of an MLP or diffusion head (and the encoder) on an episode store.

Starts from a CLASS pre-training checkpoint (``finetune.init.checkpoint``, EMA encoder weights)
or from scratch (``finetune.init.checkpoint: null``: ``finetune.encoder.weights`` random,
imagenet or a file) for the BC baselines. Paper settings (Appendix C.2, Table 7): AdamW, head
lr 1e-4, encoder lr 1e-5, betas (0.9, 0.99), weight decay 1e-6, cosine with 500 warmup steps,
EMA (power 0.75), batch 64, gradient clip 0.5.

Batches are epoch permutations keyed by ``(seed, epoch)``, and augmentation by ``(seed, step)``,
so ``--resume`` repeats an uninterrupted run. Conventions follow pre-training: resolved config
at ``<out_dir>/config.yaml``, TensorBoard at ``<out_dir>/tb``, checkpoints at
``<out_dir>/checkpoints/step_*`` (``class_core.train.checkpoint``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from class_core.config import ConfigError, from_dict, inherit_data_source, save_config
from class_core.data.chunks import chunk_indices
from class_core.data.store import EpisodeStore, KeyMap
from class_core.nn.encoder import EncoderConfig, build_encoder, encoder_config_dict
from class_core.nn.heads import HeadConfig
from class_core.policy.base import MinMax, PolicySpec, resolve_rot6d
from class_core.policy.parametric import HeadPolicy, PolicyModel, build_policy_model
from class_core.train import checkpoint as ckpt
from class_core.train.ema import EMA, EmaConfig
from class_core.train.schedule import cosine_factor


@dataclass
class FtData:
    store: str | None = None  # null -> top-level data.store
    keys: dict[str, str] | None = None  # null -> top-level data.keys
    cache_images: bool = False
    num_workers: int = 2


@dataclass
class FtInit:
    checkpoint: str | None = None  # CLASS pre-training run/checkpoint dir; null = from scratch
    ema: bool = True  # take the EMA encoder weights of the checkpoint


@dataclass
class FtPolicy:
    image_keys: list[str] = field(default_factory=lambda: ["image"])
    proprio_keys: list[str] = field(default_factory=list)
    horizon: int = 16  # T_p
    n_action_steps: int = 12  # T_a
    n_obs_steps: int = 1  # T_o
    rot6d: Any = "auto"  # auto | null | [start, stop]


@dataclass
class FtOptim:
    lr: float = 1e-4  # head
    encoder_lr: float = 1e-5
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    weight_decay: float = 1e-6
    warmup_steps: int = 500
    min_lr_factor: float = 0.0
    grad_clip: float = 0.5


@dataclass
class FtTrain:
    out_dir: str = "runs/finetune"
    batch_size: int = 64
    epochs: float = 100.0
    max_steps: int | None = None
    seed: int = 0
    device: str = "auto"
    log_every: int = 10
    ckpt_every: int = 1000
    keep_last: int = 2
    threads: int | None = None


@dataclass
class FinetuneConfig:
    data: FtData = field(default_factory=FtData)
    init: FtInit = field(default_factory=FtInit)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)  # used from scratch only
    policy: FtPolicy = field(default_factory=FtPolicy)
    head: HeadConfig = field(default_factory=HeadConfig)
    optim: FtOptim = field(default_factory=FtOptim)
    ema: EmaConfig = field(default_factory=EmaConfig)
    train: FtTrain = field(default_factory=FtTrain)
    export: str | None = None  # write a policy artifact here at the end (e.g. models/pusht_dp)

    def validate(self) -> None:
        t, o = self.train, self.optim
        if t.batch_size < 1:
            raise ConfigError(f"finetune.train.batch_size must be >= 1, got {t.batch_size}")
        if t.max_steps is None and not t.epochs > 0:
            raise ConfigError(f"finetune.train.epochs must be > 0, got {t.epochs}")
        if t.max_steps is not None and t.max_steps < 1:
            raise ConfigError(f"finetune.train.max_steps must be >= 1 or null, got {t.max_steps}")
        for name in ("log_every", "ckpt_every"):
            if getattr(t, name) < 1:
                raise ConfigError(f"finetune.train.{name} must be >= 1, got {getattr(t, name)}")
        if min(o.lr, o.encoder_lr, o.weight_decay, o.grad_clip, o.warmup_steps) < 0:
            raise ConfigError(
                "finetune.optim: lr, encoder_lr, weight_decay, grad_clip, warmup_steps must be >= 0"
            )
        if len(o.betas) != 2 or not all(0 <= b < 1 for b in o.betas):
            raise ConfigError(f"finetune.optim.betas must be two numbers in [0, 1), got {o.betas}")
        try:
            self.head.validate(self.policy.horizon)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if not 1 <= self.policy.n_action_steps <= self.policy.horizon:
            raise ConfigError(
                f"finetune.policy.n_action_steps={self.policy.n_action_steps} must be in [1, horizon]"
            )
        if self.policy.n_obs_steps < 1:
            raise ConfigError(f"finetune.policy.n_obs_steps must be >= 1, got {self.policy.n_obs_steps}")


def parse_config(cfg: Mapping[str, Any]) -> FinetuneConfig:
    if "finetune" not in cfg:
        raise ConfigError("config has no 'finetune' section (add `defaults: [policy_defaults.yaml]`)")
    fc = from_dict(FinetuneConfig, cfg["finetune"], where="finetune")
    inherit_data_source(fc.data, cfg, "finetune")
    fc.validate()
    return fc


# --- data -------------------------------------------------------------------------------------
class BCDataset(Dataset[dict[str, Any]]):
    """``dataset[idx array]`` -> a batch: images uint8 (B, T_o, H, W, 3), proprio (B, T_o, k), raw
    action chunks (B, T_p, D). Observation history is clamped at the episode start."""

    def __init__(self, store_path: str, keys: Mapping[str, str] | None, spec: PolicySpec, cache_images: bool):
        self.store_path, self.keys, self.spec = store_path, dict(keys or {}), spec
        store = EpisodeStore.open(store_path, KeyMap(self.keys))
        self.n = store.n_steps
        for k in spec.image_keys:
            store.check_image(k)
        self.actions = store.actions("action")
        self.chunk_idx = chunk_indices(store.episode_ends, spec.horizon)
        ends = store.episode_ends
        starts = np.repeat(np.concatenate([[0], ends[:-1]]), np.diff(np.concatenate([[0], ends])))
        offs = np.arange(-spec.n_obs_steps + 1, 1)
        self.obs_idx = np.maximum(np.arange(self.n)[:, None] + offs[None, :], starts[:, None])
        self.proprio = proprio_array(store, spec) if spec.proprio_keys else None
        self._cache = (
            {k: np.ascontiguousarray(store.get(k)) for k in spec.image_keys} if cache_images else None
        )
        self._store: EpisodeStore | None = None

    def __len__(self) -> int:
        return self.n

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_store"] = None
        return state

    def _images(self, key: str, rows: np.ndarray) -> np.ndarray:
        if self._cache is not None:
            return self._cache[key][rows]
        if self._store is None:
            self._store = EpisodeStore.open(self.store_path, KeyMap(self.keys))
        uniq, inv = np.unique(rows, return_inverse=True)
        arr = self._store.array(key)
        data = self._store.keys_map.spec(key).apply(np.asarray(arr.oindex[uniq]))
        return data[inv.reshape(-1)]

    def __getitem__(self, idx: np.ndarray) -> dict[str, Any]:
        idx = np.asarray(idx, dtype=np.int64)
        rows = self.obs_idx[idx]  # (B, T_o)
        flat = rows.reshape(-1)
        b, t = rows.shape
        out: dict[str, Any] = {
            "images": {
                k: torch.from_numpy(self._images(k, flat).reshape(b, t, *self._images(k, flat[:1]).shape[1:]))
                for k in self.spec.image_keys
            },
            "actions": torch.from_numpy(self.actions[self.chunk_idx[idx]]),
        }
        if self.proprio is not None:
            out["proprio"] = torch.from_numpy(self.proprio[flat].reshape(b, t, -1))
        return out


def proprio_array(store: EpisodeStore, spec: PolicySpec) -> np.ndarray:
    parts = []
    for key, dim in zip(spec.proprio_keys, spec.proprio_dims, strict=True):
        v = store.get(key).astype(np.float32).reshape(store.n_steps, -1)
        if v.shape[1] != dim:
            raise ConfigError(f"{store.path}: proprio key {key!r} has {v.shape[1]} dims, expected {dim}")
        parts.append(v)
    return np.concatenate(parts, axis=1)


class EpochSampler(Sampler[np.ndarray]):
    """Index arrays of one step each: a permutation per epoch from ``(seed, epoch)``; resumable."""

    def __init__(self, n: int, batch_size: int, total_steps: int, seed: int, start_step: int = 0):
        self.n, self.bs, self.total, self.seed, self.start = (
            n,
            min(batch_size, n),
            total_steps,
            seed,
            start_step,
        )
        self.per_epoch = max(1, n // self.bs)  # drop the ragged tail, as DP's loader does

    def __len__(self) -> int:
        return max(0, self.total - self.start)

    def __iter__(self) -> Iterator[np.ndarray]:
        perm, epoch = None, -1
        for step in range(self.start, self.total):
            e, i = divmod(step, self.per_epoch)
            if e != epoch:
                perm = np.random.default_rng([self.seed, e, 0xF7]).permutation(self.n)
                epoch = e
            assert perm is not None
            yield perm[i * self.bs : (i + 1) * self.bs]


def make_spec(fc: FinetuneConfig, store: EpisodeStore) -> PolicySpec:
    p = fc.policy
    dims = [int(store.get(k, slice(0, 1)).reshape(1, -1).shape[1]) for k in p.proprio_keys]
    d = int(store.get("action", slice(0, 1)).shape[-1])
    spec = PolicySpec(
        image_keys=list(p.image_keys),
        proprio_keys=list(p.proprio_keys),
        proprio_dims=dims,
        action_dim=d,
        horizon=p.horizon,
        n_action_steps=p.n_action_steps,
        n_obs_steps=p.n_obs_steps,
        rot6d=resolve_rot6d(p.rot6d, d),
    )
    try:
        spec.validate()
    except ValueError as e:
        raise ConfigError(f"finetune.policy: {e}") from None
    return spec


# --- training ---------------------------------------------------------------------------------
@dataclass
class FinetuneResult:
    out_dir: Path
    checkpoint: Path | None
    steps: int
    losses: list[tuple[int, float]]
    policy: HeadPolicy
    artifact: Path | None


def pick_device(pref: str) -> torch.device:
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(pref)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"finetune.train.device={pref}: CUDA is not available here (use cpu or auto)")
    return dev


def _image_encoder(fc: FinetuneConfig, spec: PolicySpec) -> tuple[torch.nn.Module | None, dict[str, Any]]:
    if not spec.image_keys:
        return None, {}
    if fc.init.checkpoint:
        enc, ecfg = ckpt.load_encoder(fc.init.checkpoint, ema=fc.init.ema)
        cams = list(enc.cfg.cameras)  # type: ignore[union-attr,arg-type]
        if cams != list(spec.image_keys):
            raise ConfigError(
                f"finetune.policy.image_keys {spec.image_keys} differ from the checkpoint's cameras {cams}"
            )
        return enc.train(), dict(ecfg["encoder"])
    cfg = EncoderConfig(**{**fc.encoder.__dict__, "cameras": list(spec.image_keys)})
    return build_encoder(cfg).train(), encoder_config_dict(cfg)


def build_model(fc: FinetuneConfig, spec: PolicySpec, proprio_norm: MinMax | None) -> PolicyModel:
    enc, _ = _image_encoder(fc, spec)
    return build_policy_model(spec, enc, proprio_norm, fc.head)


def make_policy(model: PolicyModel, spec: PolicySpec, action_norm: MinMax, head: HeadConfig) -> HeadPolicy:
    return HeadPolicy(spec, model, action_norm, head)


def finetune(cfg: Mapping[str, Any], resume: bool = False, progress: bool = True) -> FinetuneResult:
    """Run BC fine-tuning as configured (``cfg``: the full resolved config with a ``finetune`` section)."""
    cfg = dict(cfg)
    fc = parse_config(cfg)
    t = fc.train
    device = pick_device(t.device)
    if t.threads:
        torch.set_num_threads(t.threads)
    out = Path(t.out_dir)
    store = EpisodeStore.open(str(fc.data.store), KeyMap(fc.data.keys or {}))
    spec = make_spec(fc, store)
    action_norm = MinMax.fit(store.actions("action"))
    proprio_norm = MinMax.fit(proprio_array(store, spec)) if spec.proprio_keys else None
    dataset = BCDataset(str(fc.data.store), fc.data.keys, spec, fc.data.cache_images)
    n = dataset.n
    bs = min(t.batch_size, n)
    steps_per_epoch = max(1, n // bs)
    total = t.max_steps if t.max_steps is not None else max(1, math.ceil(t.epochs * steps_per_epoch))

    torch.manual_seed(t.seed)
    model = build_model(fc, spec, proprio_norm).to(device)
    action_norm.to(device)
    enc_params = [p for p in model.obs_encoder.parameters() if p.requires_grad]
    enc_ids = {id(p) for p in enc_params}
    head_params = [p for p in model.parameters() if p.requires_grad and id(p) not in enc_ids]
    groups = [{"params": head_params, "lr": fc.optim.lr, "base_lr": fc.optim.lr}]
    if enc_params:
        groups.append({"params": enc_params, "lr": fc.optim.encoder_lr, "base_lr": fc.optim.encoder_lr})
    opt = torch.optim.AdamW(groups, betas=tuple(fc.optim.betas), weight_decay=fc.optim.weight_decay)  # type: ignore[arg-type]
    ema = (
        EMA(model, fc.ema.power, fc.ema.inv_gamma, fc.ema.min_decay, fc.ema.max_decay)
        if fc.ema.enabled
        else None
    )

    resolved = dict(cfg)
    resolved["finetune"] = asdict(fc)
    norms = {"action": action_norm.to_dict(), "proprio": proprio_norm.to_dict() if proprio_norm else None}
    start = 0
    existing = ckpt.latest_checkpoint(out)
    if existing is not None and not resume:
        raise FileExistsError(
            f"{out} already holds checkpoints (latest {existing.name}); pass --resume to continue "
            "or choose another finetune.train.out_dir"
        )
    if resume and existing is not None:
        start = _restore(existing, model, ema, opt, resolved, device)
    out.mkdir(parents=True, exist_ok=True)
    save_config(resolved, out / "config.yaml")

    sampler = EpochSampler(n, bs, total, t.seed, start)
    loader = DataLoader(
        dataset,
        sampler=sampler,
        batch_size=None,
        num_workers=fc.data.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    writer = _writer(out)
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=start, disable=not progress, desc=f"finetune {fc.head.type}", unit="step")
    losses: list[tuple[int, float]] = []
    step, last = start, (existing if resume else None)
    model.train()
    try:
        for batch in loader:
            factor = cosine_factor(step, total, fc.optim.warmup_steps, fc.optim.min_lr_factor)
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * factor
            torch.manual_seed(int(np.random.SeedSequence([t.seed, step, 0xB0]).generate_state(1)[0]))
            images = {k: v.to(device, non_blocking=True) for k, v in batch["images"].items()}
            proprio = batch["proprio"].to(device) if "proprio" in batch else None
            naction = action_norm.normalize(batch["actions"].to(device).float())
            loss = model.loss(images, proprio, naction, augment=True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if fc.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), fc.optim.grad_clip)
            opt.step()
            if ema is not None:
                ema.update(model)
            step += 1
            lv = float(loss.detach())
            if step % t.log_every == 0 or step == total or step == start + 1:
                losses.append((step, lv))
                if writer is not None:
                    writer.add_scalar("train/loss", lv, step)
                    writer.add_scalar("train/lr_head", opt.param_groups[0]["lr"], step)
                    if ema is not None:
                        writer.add_scalar("train/ema_decay", ema.decay, step)
                bar.set_postfix(loss=f"{lv:.4f}")
            bar.update(1)
            if step % t.ckpt_every == 0 or step == total:
                state = {
                    "ema": ema.state_dict() if ema is not None else None,
                    "normalizers": norms,
                    "spec": asdict(spec),
                }
                last = ckpt.save_checkpoint(
                    out,
                    step,
                    model,
                    resolved,
                    _encoder_cfg(model),
                    ema_model=ema.model if ema is not None else None,
                    optimizer=opt,
                    state=state,
                    keep_last=t.keep_last,
                )
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    final = ema.model if ema is not None else model
    policy = make_policy(final.eval(), spec, action_norm, fc.head)  # type: ignore[arg-type]
    artifact = None
    if fc.export:
        from class_core.policy.artifact import export_parametric_policy

        artifact = export_parametric_policy(
            fc.export,
            policy,
            overwrite=True,
            meta={"run": str(out), "step": step, "dataset": str(fc.data.store)},
        )
    return FinetuneResult(out, last, step, losses, policy, artifact)


def _encoder_cfg(model: PolicyModel) -> dict[str, Any]:
    enc = model.obs_encoder.image_encoder
    return encoder_config_dict(enc.cfg) if enc is not None else {}  # type: ignore[arg-type]


def _writer(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tb"))


# Keys that may change on resume (logging, I/O, length of the run).
_RESUME_FREE = {
    "train.out_dir", "train.log_every", "train.ckpt_every", "train.keep_last", "train.epochs",
    "train.max_steps", "train.threads", "data.num_workers", "data.cache_images", "export",
}  # fmt: skip


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = json.loads(json.dumps(v, default=str))
    return out


def _restore(
    path: Path,
    model: PolicyModel,
    ema: EMA | None,
    opt: torch.optim.Optimizer,
    resolved: dict[str, Any],
    device: torch.device,
) -> int:
    state = ckpt.read_json(path / "state.json")
    old = _flatten(ckpt.read_json(path / "config.json").get("finetune", {}))
    new = _flatten(resolved["finetune"])
    diffs = [
        f"finetune.{k}: {old.get(k)!r} -> {new.get(k)!r}"
        for k in sorted(set(old) | set(new))
        if k not in _RESUME_FREE and old.get(k) != new.get(k)
    ]
    if diffs:
        raise ConfigError(f"--resume from {path}: config differs from the checkpoint's: {'; '.join(diffs)}")
    ckpt.load_into(model, ckpt.load_weights(path / "model.safetensors", device), path / "model.safetensors")
    if ema is not None:
        if state.get("ema") is None:
            raise ckpt.CheckpointError(f"{path}: saved without EMA but finetune.ema.enabled is true")
        ckpt.load_into(
            ema.model, ckpt.load_weights(path / "ema.safetensors", device), path / "ema.safetensors"
        )
        ema.load_state_dict(state["ema"])
    try:
        opt.load_state_dict(torch.load(path / "optimizer.pt", map_location=device, weights_only=True))
    except Exception as e:  # noqa: BLE001
        raise ckpt.CheckpointError(f"{path / 'optimizer.pt'}: cannot load ({e})") from None
    return int(state["step"])


def policy_from_run(run: str | Path, ema: bool = True, device: str | torch.device = "cpu") -> HeadPolicy:
    """Rebuild the fine-tuned policy from a run/checkpoint directory (for class-export)."""
    path = ckpt.resolve_checkpoint(run)
    state = ckpt.read_json(path / "state.json")
    config = ckpt.read_json(path / "config.json")
    if "finetune" not in config or "spec" not in state or "normalizers" not in state:
        raise ckpt.CheckpointError(
            f"{path}: not a fine-tuning checkpoint (no finetune config / spec in state.json)"
        )
    fc = from_dict(FinetuneConfig, config["finetune"], where=f"{path / 'config.json'}:finetune")
    spec = from_dict(PolicySpec, state["spec"], where=f"{path / 'state.json'}:spec")
    norms = state["normalizers"]
    action_norm = MinMax.from_dict(norms["action"], where=f"{path / 'state.json'}:normalizers.action")
    proprio_norm = MinMax.from_dict(norms["proprio"]) if norms.get("proprio") else None
    enc = None
    if spec.image_keys:
        enc_cfg = ckpt.read_json(path / "encoder.json")
        enc = build_encoder({**enc_cfg, "weights": "random"})
    model = build_policy_model(spec, enc, proprio_norm, fc.head)
    wfile = path / (
        "ema.safetensors" if ema and (path / "ema.safetensors").is_file() else "model.safetensors"
    )
    ckpt.load_into(model, ckpt.load_weights(wfile), wfile)
    return HeadPolicy(spec, model.eval(), action_norm, fc.head).to(device)
