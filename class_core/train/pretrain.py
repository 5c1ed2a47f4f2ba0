"""CLASS contrastive pre-training (soft InfoNCE over DTW positives), single process or torchrun/DDP.

Everything random is keyed by ``(seed, step)`` -- the batch indices (sampler) and the crop/noise
generator -- so a resumed run repeats an uninterrupted one exactly. Under DDP every rank draws
the same global batch, loads and encodes its own slice, and the latents are all-gathered (with
gradients) so that the loss sees the whole batch: gradients equal single-process training.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from class_core.config import ConfigError, from_dict, inherit_data_source, save_config
from class_core.data.store import EpisodeStore
from class_core.data.torch_dataset import Csr, PretrainDataset, StepBatchSampler
from class_core.losses import LossStats, soft_info_nce, weight_stats
from class_core.nn.amp import autocast, autocast_dtype
from class_core.nn.encoder import EncoderConfig, MultiCameraEncoder, encoder_config_dict
from class_core.train import checkpoint as ckpt
from class_core.train.ema import EMA, EmaConfig
from class_core.train.lars import LARS
from class_core.train.schedule import cosine_factor, warmup_steps_for
from class_core.train.synthetic import SyntheticConfig, make_synthetic_pairs, make_synthetic_store


@dataclass
class DataSection:
    store: str | None = None  # episode store; null -> top-level data.store
    keys: dict[str, str] | None = None  # KeyMap; null -> top-level data.keys
    pairs: str | None = None  # positive-pair .npz (class-precompute); null -> top-level similarity.out
    cache_images: bool = False  # read every image into RAM once (small datasets)
    num_workers: int = 2
    prefetch_factor: int = 4


@dataclass
class LossSection:
    tau: float = 0.05
    hard: bool = False  # ablation: every positive weighs 1


@dataclass
class OptimSection:
    lr: float = 0.5
    weight_decay: float = 1e-6
    momentum: float = 0.9
    trust_coefficient: float = 0.001
    warmup_steps: int = 500  # warmup = min(warmup_steps, warmup_epochs epochs)
    warmup_epochs: float = 5.0
    min_lr_factor: float = 0.0
    grad_clip: float = 0.5  # max global grad norm after backward; 0 disables


@dataclass
class TrainSection:
    out_dir: str = "runs/pretrain"
    batch_size: int = 160
    epochs: float = 100.0  # an epoch = ceil(N / batch_size) steps
    max_steps: int | None = None  # overrides epochs
    sampling: Literal["uniform", "positive"] = "uniform"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:1
    amp: Literal["auto", "bf16", "fp16", "none"] = "auto"  # auto: bf16 on CUDA if supported and on AMX CPUs
    log_every: int = 10
    ckpt_every: int = 500
    keep_last: int = 2
    threads: int | None = None  # torch CPU threads (null: torch default)


@dataclass
class PretrainConfig:
    data: DataSection = field(default_factory=DataSection)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    loss: LossSection = field(default_factory=LossSection)
    optim: OptimSection = field(default_factory=OptimSection)
    ema: EmaConfig = field(default_factory=EmaConfig)
    train: TrainSection = field(default_factory=TrainSection)
    synthetic: SyntheticConfig | None = None  # build a synthetic store (+ pairs) if data.store is missing

    def validate(self) -> None:
        self.encoder.validate("pretrain.encoder")
        t, o = self.train, self.optim
        if t.batch_size < 2:
            raise ConfigError(f"pretrain.train.batch_size must be >= 2, got {t.batch_size}")
        if t.max_steps is None and not t.epochs > 0:
            raise ConfigError(f"pretrain.train.epochs must be > 0, got {t.epochs}")
        if t.max_steps is not None and t.max_steps < 1:
            raise ConfigError(f"pretrain.train.max_steps must be >= 1 or null, got {t.max_steps}")
        for name in ("log_every", "ckpt_every"):
            if getattr(t, name) < 1:
                raise ConfigError(f"pretrain.train.{name} must be >= 1, got {getattr(t, name)}")
        if not self.loss.tau > 0:
            raise ConfigError(f"pretrain.loss.tau must be > 0, got {self.loss.tau}")
        if o.lr < 0 or o.grad_clip < 0 or o.warmup_steps < 0 or o.warmup_epochs < 0:
            raise ConfigError("pretrain.optim: lr, grad_clip, warmup_steps and warmup_epochs must be >= 0")
        if self.data.num_workers < 0:
            raise ConfigError(f"pretrain.data.num_workers must be >= 0, got {self.data.num_workers}")


def parse_config(cfg: Mapping[str, Any]) -> PretrainConfig:
    """The ``pretrain`` section of a full config, with store/keys/pairs falling back to top level."""
    if "pretrain" not in cfg:
        raise ConfigError("config has no 'pretrain' section")
    pc = from_dict(PretrainConfig, cfg["pretrain"], where="pretrain")
    inherit_data_source(pc.data, cfg, "pretrain")
    if pc.data.pairs is None:
        pc.data.pairs = (cfg.get("similarity") or {}).get("out")
    pc.validate()
    return pc


# --- distributed ----------------------------------------------------------------------------------
@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_pref: str) -> DistInfo:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK: join the group (nccl on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_pref != "cpu"
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local)


def pick_device(pref: str, info: DistInfo) -> torch.device:
    if pref == "auto":
        return torch.device(f"cuda:{info.local_rank}" if torch.cuda.is_available() else "cpu")
    dev = torch.device(pref)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"pretrain.train.device={pref}: CUDA is not available here (use cpu or auto)")
    if dev.type == "cuda" and info.world_size > 1:
        dev = torch.device(f"cuda:{info.local_rank}")
    return dev


# --- data -----------------------------------------------------------------------------------------
def load_csr(pairs_path: str | None, n: int, store_path: str) -> Csr | None:
    if pairs_path is None:
        return None
    from class_core.similarity import load_pairs

    p = Path(pairs_path)
    if not p.is_file():
        raise ConfigError(
            f"pretrain.data.pairs: {p} not found; run `class-precompute --store {store_path} ...` first"
        )
    pairs = load_pairs(p)
    meta_n = pairs.meta.get("n")
    if meta_n is not None and int(meta_n) != n:
        raise ConfigError(f"{p}: pair file is for N = {meta_n} samples but the store {store_path} has {n}")
    return pairs.to_csr(n)


def ensure_synthetic(pc: PretrainConfig, info: DistInfo) -> None:
    """Debug preset: build the synthetic store and its DTW pairs when they do not exist yet."""
    if pc.synthetic is None:
        return
    store = Path(str(pc.data.store))
    if info.main and not store.exists():
        make_synthetic_store(store, pc.synthetic)
    if info.world_size > 1:
        dist.barrier()
    if pc.data.pairs is not None and not Path(pc.data.pairs).exists():
        make_synthetic_pairs(store, pc.data.pairs)  # every rank: the DTW engine shares the work
    if info.world_size > 1:
        dist.barrier()


def _aug_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, step, rank, 0xA06]).generate_state(1, dtype=np.uint64)[0] >> 1)


# --- training -------------------------------------------------------------------------------------
@dataclass
class StepLog:
    step: int
    loss: float
    lr: float
    stats: LossStats
    data_wait_s: float
    step_s: float


@dataclass
class PretrainResult:
    out_dir: Path
    checkpoint: Path | None
    steps: int
    history: list[StepLog]


def _set_lr(
    opt: torch.optim.Optimizer, base_lr: float, step: int, total: int, warmup: int, min_f: float
) -> float:
    lr = base_lr * cosine_factor(step, total, warmup, min_f)
    for g in opt.param_groups:
        g["lr"] = lr
    return lr


def pretrain(cfg: Mapping[str, Any], resume: bool = False, progress: bool = True) -> PretrainResult:
    """Run pre-training as configured (``cfg`` is the full resolved config with a ``pretrain`` section)."""
    cfg = dict(cfg)
    pc = parse_config(cfg)
    info = init_distributed(pc.train.device)
    device = pick_device(pc.train.device, info)
    if pc.train.threads:
        torch.set_num_threads(pc.train.threads)
    out = Path(pc.train.out_dir)
    t = pc.train

    ensure_synthetic(pc, info)
    store_path = str(pc.data.store)
    n = EpisodeStore.open(store_path, pc.data.keys).n_steps
    csr = load_csr(pc.data.pairs, n, store_path)
    dataset = PretrainDataset(store_path, pc.encoder.cameras, pc.data.keys, csr, pc.data.cache_images)

    steps_per_epoch = math.ceil(n / t.batch_size)
    total = t.max_steps if t.max_steps is not None else max(1, math.ceil(t.epochs * steps_per_epoch))
    warmup = warmup_steps_for(steps_per_epoch, pc.optim.warmup_steps, pc.optim.warmup_epochs)

    torch.manual_seed(t.seed)  # same initial weights on every rank
    model = MultiCameraEncoder(pc.encoder).to(device)
    ema = (
        EMA(model, pc.ema.power, pc.ema.inv_gamma, pc.ema.min_decay, pc.ema.max_decay)
        if pc.ema.enabled
        else None
    )
    opt = LARS(
        model.parameters(),
        lr=pc.optim.lr,
        weight_decay=pc.optim.weight_decay,
        momentum=pc.optim.momentum,
        trust_coefficient=pc.optim.trust_coefficient,
    )
    amp = autocast_dtype(t.amp, device, "pretrain.train.amp")
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)

    resolved = dict(cfg)
    resolved["pretrain"] = asdict(pc)
    start = 0
    existing = ckpt.latest_checkpoint(out)
    if existing is not None and not resume:
        raise FileExistsError(
            f"{out} already holds checkpoints (latest {existing.name}); pass --resume to continue "
            "or choose another pretrain.train.out_dir"
        )
    if resume and existing is not None:
        start = _restore(existing, model, ema, opt, scaler, resolved, device)
    if info.main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(resolved, out / "config.yaml")

    ddp: nn.Module = model
    if info.world_size > 1:
        ddp = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    sampler = StepBatchSampler(
        n, t.batch_size, total, t.seed, start, t.sampling, csr, info.rank, info.world_size
    )
    workers = pc.data.num_workers
    loader = DataLoader(
        dataset,
        sampler=sampler,
        batch_size=None,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=pc.data.prefetch_factor if workers > 0 else None,
        persistent_workers=False,
    )
    gen = torch.Generator(device=device)
    writer = _writer(out) if info.main else None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=start, disable=not (progress and info.main), desc="pretrain", unit="step")
    history: list[StepLog] = []
    step = start
    last_ckpt: Path | None = existing if resume else None
    wait_sum, t_run = 0.0, time.perf_counter()
    t_end = time.perf_counter()
    # images/s over the whole log window: a single step's rate swings with checkpoints, the
    # data worker and neighbours on the machine, and hid a 1.15x speed-up
    t_logged, step_logged = t_end, start
    model.train()
    try:
        for batch in loader:
            wait = time.perf_counter() - t_end
            if int(batch["step"]) != step:
                raise RuntimeError(f"sampler out of sync: got step {batch['step']}, expected {step}")
            lr = _set_lr(opt, pc.optim.lr, step, total, warmup, pc.optim.min_lr_factor)
            gen.manual_seed(_aug_seed(t.seed, step, info.rank))
            w = batch["weights"].to(device, non_blocking=True)
            with autocast(device, amp):
                z_local = ddp(batch["images"], augment=True, generator=gen)
            z = _gather(z_local.float(), info)  # the loss in fp32 under autocast
            loss = soft_info_nce(z, w, pc.loss.tau, pc.loss.hard, check_weights=False)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if pc.optim.grad_clip > 0:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), pc.optim.grad_clip)
            scaler.step(opt)
            scaler.update()
            if ema is not None:
                ema.update(model)
            step += 1
            t_now = time.perf_counter()
            step_s, t_end = t_now - t_end, t_now
            wait_sum += wait
            if step % t.log_every == 0 or step == total or step == start + 1:
                stats = weight_stats(batch["weights"])
                rec = StepLog(step, float(loss.detach()), lr, stats, wait, step_s)
                history.append(rec)
                if writer is not None:
                    _log(
                        writer,
                        rec,
                        ema,
                        wait_sum / max(t_now - t_run, 1e-9),
                        t.batch_size * (step - step_logged) / max(t_now - t_logged, 1e-9),
                    )
                t_logged, step_logged = t_now, step
                bar.set_postfix(
                    loss=f"{rec.loss:.4f}", pos=stats.positive_pairs, wait=f"{wait_sum / (t_now - t_run):.0%}"
                )
            bar.update(1)
            if step % t.ckpt_every == 0 or step == total:
                last_ckpt = _save(out, step, model, ema, opt, scaler, resolved, pc, info, t.keep_last)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return PretrainResult(out, last_ckpt, step, history)


def _gather(z: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.world_size == 1:
        return z
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(z.contiguous()), dim=0)


def _writer(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a declared dependency; keep training if it is broken
        return None
    return SummaryWriter(str(out / "tb"))


def _log(writer: Any, rec: StepLog, ema: EMA | None, wait_share: float, img_per_s: float) -> None:
    s = rec.step
    writer.add_scalar("train/loss", rec.loss, s)
    writer.add_scalar("train/lr", rec.lr, s)
    writer.add_scalar("train/positive_pairs_per_batch", rec.stats.positive_pairs, s)
    writer.add_scalar("train/anchor_share_with_positive", rec.stats.anchor_share, s)
    writer.add_scalar("perf/data_wait_share", wait_share, s)
    writer.add_scalar("perf/images_per_s", img_per_s, s)
    if ema is not None:
        writer.add_scalar("train/ema_decay", ema.decay, s)


def _save(
    out: Path,
    step: int,
    model: nn.Module,
    ema: EMA | None,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    resolved: dict[str, Any],
    pc: PretrainConfig,
    info: DistInfo,
    keep_last: int,
) -> Path:
    path = out / "checkpoints" / f"step_{step:08d}"
    if info.main:
        state = {"ema": ema.state_dict() if ema is not None else None, "scaler": scaler.state_dict()}
        path = ckpt.save_checkpoint(
            out,
            step,
            model,
            resolved,
            encoder_config_dict(pc.encoder),
            ema_model=ema.model if ema is not None else None,
            optimizer=opt,
            state=state,
            keep_last=keep_last,
        )
    if info.world_size > 1:
        dist.barrier()
    return path


def _restore(
    path: Path,
    model: nn.Module,
    ema: EMA | None,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    resolved: dict[str, Any],
    device: torch.device,
) -> int:
    state = ckpt.read_json(path / "state.json")
    old_cfg = ckpt.read_json(path / "config.json")
    _check_compatible(old_cfg.get("pretrain", {}), resolved["pretrain"], path)
    ckpt.load_into(model, ckpt.load_weights(path / "model.safetensors", device), path / "model.safetensors")
    if ema is not None:
        if state.get("ema") is None:
            raise ckpt.CheckpointError(f"{path}: saved without EMA but pretrain.ema.enabled is true")
        ckpt.load_into(
            ema.model, ckpt.load_weights(path / "ema.safetensors", device), path / "ema.safetensors"
        )
        ema.load_state_dict(state["ema"])
    try:
        opt_state = torch.load(path / "optimizer.pt", map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise ckpt.CheckpointError(f"{path / 'optimizer.pt'}: cannot load ({e})") from None
    opt.load_state_dict(opt_state)
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    return int(state["step"])


# Keys that may change on resume (logging, I/O, length of the run).
_RESUME_FREE = {
    ("train", "out_dir"),
    ("train", "log_every"),
    ("train", "ckpt_every"),
    ("train", "keep_last"),
    ("train", "epochs"),
    ("train", "max_steps"),
    ("train", "threads"),
    ("data", "num_workers"),
    ("data", "prefetch_factor"),
    ("data", "cache_images"),
}


def _check_compatible(old: Mapping[str, Any], new: Mapping[str, Any], where: Path) -> None:
    diffs = []
    for sec, vals in new.items():
        if not isinstance(vals, Mapping):
            continue
        for k, v in vals.items():
            if (sec, k) in _RESUME_FREE:
                continue
            ov = (old.get(sec) or {}).get(k, v) if isinstance(old.get(sec), Mapping) else v
            if ov != v and not (isinstance(ov, list) and list(v or []) == ov):
                diffs.append(f"pretrain.{sec}.{k}: {ov!r} -> {v!r}")
    if diffs:
        raise ConfigError(f"--resume from {where}: config differs from the checkpoint's: {'; '.join(diffs)}")
