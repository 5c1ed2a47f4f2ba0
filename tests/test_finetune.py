"""BC fine-tuning: runs from a CLASS checkpoint, resumes exactly, exports a loadable policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from policy_fixtures import make_store, one_torch_thread, small_encoder  # noqa: F401

import class_core.policy as cp
from class_core.config import ConfigError, load_config
from class_core.nn.encoder import encoder_config_dict
from class_core.train import checkpoint as ckpt
from class_core.train.finetune import finetune, policy_from_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("ft")
    store = make_store(tmp / "s.zarr", n_episodes=3, length=10, size=64)
    enc = small_encoder()
    run = tmp / "pretrain"
    ckpt.save_checkpoint(run, 1, enc, {"pretrain": {}}, encoder_config_dict(enc.cfg), ema_model=enc)
    return {"tmp": tmp, "store": store, "pretrain": run}


def cfg_for(s: dict[str, Any], out: Path, *extra: str) -> dict[str, Any]:
    return load_config(
        ROOT / "config" / "policy_defaults.yaml",
        [
            f"+data.store={s['store'].path}",
            f"finetune.init.checkpoint={s['pretrain']}",
            "finetune.policy.proprio_keys=[agent_pos]",
            "finetune.head.type=mlp",
            "finetune.head.unet.down_dims=[16,32]",
            "finetune.head.unet.step_embed_dim=16",
            "finetune.data.num_workers=0",
            "finetune.data.cache_images=true",
            "finetune.optim.warmup_steps=1",
            "finetune.train.batch_size=4",
            "finetune.train.device=cpu",
            "finetune.train.log_every=1",
            "finetune.train.ckpt_every=2",
            f"finetune.train.out_dir={out}",
            *extra,
        ],
    )


def test_finetune_resume_matches_uninterrupted_run_and_exports(setup: dict[str, Any]) -> None:
    tmp = setup["tmp"]
    cfg = cfg_for(setup, tmp / "full", "finetune.train.max_steps=4", f"finetune.export={tmp / 'm'}")
    full = finetune(cfg, progress=False)
    assert full.steps == 4 and all(np.isfinite(v) for _, v in full.losses)
    assert (tmp / "full" / "config.yaml").is_file() and (tmp / "full" / "tb").is_dir()

    finetune(cfg_for(setup, tmp / "part", "finetune.train.max_steps=2"), progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        finetune(cfg_for(setup, tmp / "part", "finetune.train.max_steps=4"), progress=False)
    with pytest.raises(ConfigError, match="finetune.optim.lr"):
        finetune(cfg_for(setup, tmp / "part", "finetune.train.max_steps=4", "finetune.optim.lr=0.5"),
                 resume=True, progress=False)  # fmt: skip
    resumed = finetune(
        cfg_for(setup, tmp / "part", "finetune.train.max_steps=4"), resume=True, progress=False
    )
    assert resumed.steps == 4
    a = ckpt.load_weights(tmp / "full" / "checkpoints" / "step_00000004" / "ema.safetensors")
    b = ckpt.load_weights(tmp / "part" / "checkpoints" / "step_00000004" / "ema.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)

    # the exported artifact and the run's checkpoint give the same actions
    obs = {"image": setup["store"].get("image", 3), "agent_pos": setup["store"].get("agent_pos", 3)}
    art = cp.load(tmp / "m")
    assert art.kind == "mlp" and art.n_action_steps == 12
    from_run = policy_from_run(tmp / "full")
    np.testing.assert_allclose(art.predict_action_chunk(obs), from_run.predict_action_chunk(obs), atol=1e-6)
    # actions come back in raw units, inside the data range (normaliser inside the policy)
    acts = setup["store"].actions()
    chunk = art.predict_action_chunk(obs)
    assert chunk.shape == (16, 2) and np.all(chunk > acts.min(0) - 1) and np.all(chunk < acts.max(0) + 1)


def test_finetune_config_errors(setup: dict[str, Any]) -> None:
    tmp = setup["tmp"]
    with pytest.raises(ConfigError, match="stride"):
        finetune(cfg_for(setup, tmp / "e1", "finetune.policy.horizon=15"), progress=False)
    with pytest.raises(ConfigError, match="finetune.optimm|unknown config key"):
        load_config(ROOT / "config" / "policy_defaults.yaml", ["finetune.optimm.lr=1"])


def test_cli_help() -> None:
    from class_core.cli import export
    from class_core.cli import finetune as ft_cli

    for mod in (ft_cli, export):
        with pytest.raises(SystemExit) as e:
            mod.main(["--help"])
        assert e.value.code == 0
