"""Pre-training learns what the actions say: a synthetic task whose right answer is known.

Each frame shows a bar whose orientation encodes a hidden behaviour, under random colours,
shifts, a distractor disc and noise (class_core/train/synthetic.py); the action chunks, hence
the DTW positives, depend only on the behaviour. After a short CLASS pre-training, the nearest
neighbour of a held-out frame (other episodes, other nuisance draws) in the training set must
share its behaviour far above chance and clearly more often than with a random-init encoder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from class_core.config import load_config
from class_core.data.store import EpisodeStore
from class_core.nn.encoder import build_encoder
from class_core.train.checkpoint import load_encoder
from class_core.train.pretrain import pretrain
from class_core.train.synthetic import SyntheticConfig, make_synthetic_pairs, make_synthetic_store

ROOT = Path(__file__).resolve().parents[1]


def _latents(enc: torch.nn.Module, store: EpisodeStore) -> torch.Tensor:
    imgs = store.get("image")
    with torch.no_grad():
        parts = [enc({"image": torch.from_numpy(imgs[i : i + 256])}) for i in range(0, len(imgs), 256)]
    return torch.cat(parts)


def nn_agreement(enc: torch.nn.Module, bank: EpisodeStore, queries: EpisodeStore) -> float:
    """Share of queries whose nearest bank neighbour (cosine) has the same behaviour."""
    zb, zq = _latents(enc, bank), _latents(enc, queries)
    nearest = (zq @ zb.T).argmax(dim=1).numpy()
    return float((bank.get("behaviour")[nearest] == queries.get("behaviour")).mean())


@pytest.mark.slow
def test_pretraining_recovers_the_hidden_behaviour(tmp_path: Path) -> None:
    size = 40  # 35 px crops -> 2x2 ResNet-18 maps: the smallest size the spatial softmax can use
    train = make_synthetic_store(tmp_path / "train.zarr", SyntheticConfig(12, 40, 20, 4, size, seed=0))
    held = make_synthetic_store(tmp_path / "held.zarr", SyntheticConfig(6, 40, 20, 4, size, seed=1))
    pairs = make_synthetic_pairs(train, tmp_path / "pairs.npz", quantile=0.05)
    steps = 30
    cfg = load_config(
        ROOT / "config" / "debug.yaml",
        [
            f"data.store={train}",
            f"pretrain.data.pairs={pairs}",
            f"pretrain.train.out_dir={tmp_path / 'run'}",
            "pretrain.train.batch_size=48",
            f"pretrain.train.max_steps={steps}",
            f"pretrain.train.ckpt_every={steps}",
            "pretrain.train.sampling=positive",
            "pretrain.data.num_workers=0",
            "pretrain.data.cache_images=true",
            # a short run: larger LARS lr than the paper's 0.5 (whose runs take thousands of steps)
            "pretrain.optim.lr=4.0",
            "pretrain.optim.warmup_steps=3",
        ],
    )
    res = pretrain(cfg, progress=False)
    assert res.history[-1].loss < res.history[0].loss

    bank, queries = EpisodeStore.open(train), EpisodeStore.open(held)
    freq = np.bincount(queries.get("behaviour"), minlength=4) / queries.n_steps
    p_bank = np.bincount(bank.get("behaviour"), minlength=4) / bank.n_steps
    chance = float((freq * p_bank).sum())

    trained, _ = load_encoder(tmp_path / "run")  # EMA weights, centre crop
    torch.manual_seed(0)
    random_init = build_encoder(dict(cfg["pretrain"]["encoder"])).eval()
    acc_trained = nn_agreement(trained, bank, queries)
    acc_random = nn_agreement(random_init, bank, queries)
    print(f"chance {chance:.3f}, random init {acc_random:.3f}, pre-trained {acc_trained:.3f}")
    assert acc_trained >= max(0.6, 2 * chance)
    assert acc_trained >= acc_random + 0.12
