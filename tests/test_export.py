"""Policy artifacts: export -> load gives the same actions; damaged artifacts are rejected by name."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from policy_fixtures import make_store, one_torch_thread, small_encoder  # noqa: F401

import class_core.policy as cp
from class_core.nn.heads import HeadConfig
from class_core.nn.unet1d import UNet1DConfig
from class_core.policy import ArtifactError, IndexConfig, MinMax, PolicySpec, RetrievalConfig

SMALL = UNet1DConfig(down_dims=[16, 32], kernel_size=5, n_groups=8, step_embed_dim=16)


@pytest.fixture(scope="module")
def ee_store(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return make_store(tmp_path_factory.mktemp("ee") / "ee.zarr", n_episodes=3, length=12, size=64, ee=True)


def ee_spec(t_a: int = 16) -> PolicySpec:
    return PolicySpec(["image"], ["ee_pos", "gripper"], [3, 1], 10, 16, t_a, 1, [3, 9])


def obs_at(store, i: int) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    return {
        "image": store.get("image", i),
        "ee_pos": store.get("ee_pos", i),
        "gripper": store.get("gripper", i),
    }


@pytest.fixture(scope="module")
def retrieval_artifact(ee_store, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("models") / "ret"
    cfg = RetrievalConfig(
        k=8, tau_nn=0.01, amp="none", index=IndexConfig(kind="pca_flat", pca_dim=16, candidates=32)
    )
    cp.export_retrieval_policy(path, ee_store, small_encoder(), ee_spec(), cfg, progress=False)
    return path


def test_retrieval_round_trip_and_behaviour(retrieval_artifact: Path, ee_store) -> None:  # type: ignore[no-untyped-def]
    manifest = cp.read_manifest(retrieval_artifact)
    assert manifest["policy_type"] == "retrieval"
    assert set(manifest["files"]) == {
        "config.json", "normalizer.json", "weights.safetensors", "bank.safetensors", "index.faiss"
    }  # fmt: skip
    policy = cp.load(retrieval_artifact)
    assert isinstance(policy, cp.RetrievalPolicy)
    # a training observation retrieves itself first (cos = 1)
    sims, idx = policy.neighbours([obs_at(ee_store, 5)])
    assert idx[0, 0] == 5 and sims[0, 0] == pytest.approx(1.0, abs=1e-5)
    # the chunk equals an independent weighted mean over the exact top-k of the stored bank
    bank = policy.index.latents
    q = policy.encode([obs_at(ee_store, 5)])[0]
    cos = bank @ q
    top = np.argsort(-cos)[:8]
    w = np.exp((cos[top] - cos[top].max()) / 0.01)
    w /= w.sum()
    ref = np.einsum("k,ktd->td", w, policy.chunks[top])
    chunk = policy.predict_action_chunk(obs_at(ee_store, 5))
    assert chunk.shape == (16, 10) and chunk.dtype == np.float32
    np.testing.assert_allclose(chunk[:, :3], ref[:, :3], atol=1e-5)
    np.testing.assert_allclose(chunk[:, 9], ref[:, 9], atol=1e-5)
    m1, m2 = chunk[:, 3:6], chunk[:, 6:9]
    np.testing.assert_allclose(np.linalg.norm(m1, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(m2, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.sum(m1 * m2, axis=1), 0, atol=1e-5)
    # loading again gives identical actions
    again = cp.load(retrieval_artifact)
    np.testing.assert_array_equal(
        again.predict_action_chunk(obs_at(ee_store, 7)), policy.predict_action_chunk(obs_at(ee_store, 7))
    )


def test_select_action_queue(retrieval_artifact: Path, ee_store) -> None:  # type: ignore[no-untyped-def]
    policy = cp.load(retrieval_artifact)
    chunk = policy.predict_action_chunk(obs_at(ee_store, 0))
    policy.reset()
    got = [policy.select_action(obs_at(ee_store, 0 if k == 0 else 20)) for k in range(16)]
    np.testing.assert_array_equal(np.stack(got), chunk)  # T_a = 16 steps from the first observation
    nxt = policy.select_action(obs_at(ee_store, 20))
    np.testing.assert_array_equal(nxt, policy.predict_action_chunk(obs_at(ee_store, 20))[0])


def test_bad_observations_named(retrieval_artifact: Path, ee_store) -> None:  # type: ignore[no-untyped-def]
    policy = cp.load(retrieval_artifact)
    obs = obs_at(ee_store, 0)
    with pytest.raises(KeyError, match="gripper"):
        policy.select_action({k: v for k, v in obs.items() if k != "gripper"})
    with pytest.raises(ValueError, match="uint8"):
        policy.select_action({**obs, "image": obs["image"].astype(np.float32)})
    with pytest.raises(ValueError, match="ee_pos.*3 values"):
        policy.select_action({**obs, "ee_pos": np.zeros(4, np.float32)})


def _head_policy(kind: str, store) -> cp.HeadPolicy:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    spec = ee_spec(t_a=12)
    prop = np.concatenate([store.get("ee_pos"), store.get("gripper")], axis=1)
    model = cp.build_policy_model(spec, small_encoder(), MinMax.fit(prop), HeadConfig(type=kind, unet=SMALL))
    return cp.HeadPolicy(spec, model, MinMax.fit(store.actions()), HeadConfig(type=kind, unet=SMALL), seed=3)


@pytest.mark.parametrize("kind", ["mlp", "diffusion"])
def test_head_policy_round_trip(kind: str, ee_store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    policy = _head_policy(kind, ee_store)
    path = cp.export_parametric_policy(tmp_path / kind, policy)
    loaded = cp.load(path, seed=3)
    assert isinstance(loaded, cp.HeadPolicy) and loaded.kind == kind
    policy.seed(3)
    a = policy.predict_action_chunk(obs_at(ee_store, 4))
    b = loaded.predict_action_chunk(obs_at(ee_store, 4))
    assert a.shape == (16, 10)
    np.testing.assert_allclose(a, b, atol=1e-6)
    r = a[:, 3:9]
    np.testing.assert_allclose(np.linalg.norm(r[:, :3], axis=1), 1, atol=1e-5)
    # T_a = 12 queued steps
    loaded.reset()
    loaded.seed(3)
    steps = [loaded.select_action(obs_at(ee_store, 4)) for _ in range(12)]
    np.testing.assert_allclose(np.stack(steps), b[:12], atol=1e-6)


def test_corrupted_artifacts_are_rejected(retrieval_artifact: Path, tmp_path: Path) -> None:
    import shutil

    def copy(name: str) -> Path:
        dst = tmp_path / name
        shutil.copytree(retrieval_artifact, dst)
        return dst

    p = copy("flip")
    w = p / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="weights.safetensors.*sha256"):
        cp.load(p)

    p = copy("trunc")
    b = p / "bank.safetensors"
    b.write_bytes(b.read_bytes()[:-100])
    with pytest.raises(ArtifactError, match="bank.safetensors.*truncated"):
        cp.load(p)

    p = copy("missing")
    (p / "index.faiss").unlink()
    with pytest.raises(ArtifactError, match="index.faiss.*missing"):
        cp.load(p)

    p = copy("manifest")
    (p / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="manifest.json"):
        cp.load(p)

    # a consistent manifest over a tampered config still fails by name, never silently
    p = copy("config")
    cfg = json.loads((p / "config.json").read_text())
    cfg["spec"]["action_dim"] = 7
    raw = json.dumps(cfg).encode()
    (p / "config.json").write_bytes(raw)
    man = json.loads((p / "manifest.json").read_text())
    import hashlib

    man["files"]["config.json"] = {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}
    (p / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ArtifactError, match="config.json|rot6d"):
        cp.load(p)

    with pytest.raises(ArtifactError, match="not found"):
        cp.load(tmp_path / "nope")
    assert not any(x.name.endswith(".tmp") for x in retrieval_artifact.parent.iterdir())


def test_retrieval_amp_bank_and_queries_agree(ee_store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """bf16 autocast builds the bank; queries run in float32 and still find their own sample."""
    from class_core.config import ConfigError

    banks = {}
    for amp in ("none", "bf16"):
        path = tmp_path / amp
        cfg = RetrievalConfig(k=4, tau_nn=0.01, amp=amp)
        cp.export_retrieval_policy(path, ee_store, small_encoder(), ee_spec(), cfg, progress=False)
        meta = cp.read_manifest(path)["meta"]
        assert meta["bank_autocast"] == {"none": "float32", "bf16": "bfloat16"}[amp]
        policy = cp.load(path)
        sims, idx = policy.neighbours([obs_at(ee_store, 3)])
        assert idx[0, 0] == 3 and sims[0, 0] == pytest.approx(1.0, abs={"none": 1e-5, "bf16": 1e-3}[amp])
        banks[amp] = policy.index.latents
    # an artifact from before retrieval.amp (no key) built its bank in float32 and loads so
    old = tmp_path / "none"
    config = json.loads((old / "config.json").read_text())
    del config["retrieval"]["amp"]
    data = json.dumps(config).encode()
    (old / "config.json").write_bytes(data)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["files"]["config.json"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert cp.load(old).cfg.amp == "none"
    cos = np.sum(banks["none"] * banks["bf16"], axis=1)
    assert cos.min() > 0.99 and not np.array_equal(banks["none"], banks["bf16"])
    with pytest.raises(ConfigError, match="retrieval.amp='half'"):
        cp.export_retrieval_policy(
            tmp_path / "bad",
            ee_store,
            small_encoder(),
            ee_spec(),
            RetrievalConfig(amp="half"),
            progress=False,
        )
