"""Episode store, chunking, normalisation and importers."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import zarr

from class_core.data.chunks import MinMaxNormalizer, action_chunks, chunk_indices, similarity_chunks
from class_core.data.robomimic import import_robomimic
from class_core.data.store import EpisodeStore, EpisodeStoreWriter, KeySpec, StoreError


def write_dp_pusht_zarr(path, lengths=(5, 3, 7), img=(96, 96)):
    """A zarr written the way Diffusion Policy's ReplayBuffer writes Push-T (zarr v2, Blosc)."""
    rng = np.random.default_rng(0)
    n = sum(lengths)
    root = zarr.open_group(str(path), mode="w")
    data = root.require_group("data")
    meta = root.require_group("meta")
    comp = zarr.Blosc(cname="zstd", clevel=5, shuffle=zarr.Blosc.NOSHUFFLE)
    arrays = {
        "img": rng.integers(0, 255, (n, *img, 3), dtype=np.uint8),
        "state": rng.uniform(0, 512, (n, 5)).astype(np.float32),
        "action": rng.uniform(0, 512, (n, 2)).astype(np.float32),
        "keypoint": rng.uniform(0, 512, (n, 9, 2)).astype(np.float32),
    }
    for k, v in arrays.items():
        data.array(k, v, chunks=(4,) + v.shape[1:], compressor=comp)
    meta.array("episode_ends", np.cumsum(lengths).astype(np.int64), chunks=(len(lengths),), compressor=None)
    return arrays


def test_opens_diffusion_policy_pusht_zarr_lazily(tmp_path):
    arrays = write_dp_pusht_zarr(tmp_path / "pusht.zarr")
    store = EpisodeStore.open(tmp_path / "pusht.zarr", keys={"image": "img", "agent_pos": "state[0:2]"})
    assert store.n_episodes == 3 and store.n_steps == 15
    assert store.keys() == ["action", "img", "keypoint", "state"]
    # Images stay a chunked zarr array: nothing is decoded until indexed.
    img = store.array("image")
    assert isinstance(img, zarr.Array) and img.chunks[0] == 4
    assert store.check_image("image", (96, 96, 3)) == (96, 96, 3)
    np.testing.assert_array_equal(store.get("image", slice(5, 8)), arrays["img"][5:8])
    np.testing.assert_array_equal(store.get("agent_pos"), arrays["state"][:, :2])
    ep = store.episode(1, ["action", "agent_pos"])
    np.testing.assert_array_equal(ep["action"], arrays["action"][5:8])
    np.testing.assert_array_equal(store.episode_index(), [0] * 5 + [1] * 3 + [2] * 7)


def test_writer_round_trip_and_atomicity(tmp_path):
    out = tmp_path / "store.zarr"
    rng = np.random.default_rng(1)
    eps = [
        {
            "image": rng.integers(0, 255, (t, 8, 8, 3), dtype=np.uint8),
            "action": rng.normal(size=(t, 2)).astype(np.float32),
        }
        for t in (4, 6)
    ]
    with pytest.raises(RuntimeError):
        with EpisodeStoreWriter(out) as w:
            w.add_episode(eps[0])
            raise RuntimeError("killed mid-collection")
    assert not out.exists() and not (tmp_path / "store.zarr.tmp").exists()
    with EpisodeStoreWriter(out) as w:
        for e in eps:
            w.add_episode(e)
        w.set_attrs(task="unit")
    store = EpisodeStore.open(out)
    assert list(store.episode_ends) == [4, 10]
    for i, e in enumerate(eps):
        got = store.episode(i)
        for k in e:
            np.testing.assert_array_equal(got[k], e[k])
    assert store.root.attrs["task"] == "unit"
    with pytest.raises(FileExistsError, match="already exists"):
        EpisodeStoreWriter(out)
    fp = store.fingerprint()
    assert fp == EpisodeStore.open(out).fingerprint() and len(fp) == 16


def test_writer_rejects_inconsistent_episodes(tmp_path):
    w = EpisodeStoreWriter(tmp_path / "s.zarr")
    w.add_episode({"action": np.zeros((3, 2), np.float32), "image": np.zeros((3, 4, 4, 3), np.uint8)})
    with pytest.raises(StoreError, match="episode 1 key 'image' is float32"):
        w.add_episode({"action": np.zeros((2, 2), np.float32), "image": np.zeros((2, 4, 4, 3), np.float32)})
    with pytest.raises(StoreError, match="different lengths"):
        w.add_episode({"action": np.zeros((2, 2), np.float32), "image": np.zeros((3, 4, 4, 3), np.uint8)})
    with pytest.raises(StoreError, match="non-finite value at step 1"):
        w.add_episode(
            {"action": np.array([[0, 0], [np.nan, 0]], np.float32), "image": np.zeros((2, 4, 4, 3), np.uint8)}
        )
    w.abort()
    with pytest.raises(StoreError, match="empty dataset"):
        EpisodeStoreWriter(tmp_path / "e.zarr").close()


def _raw_store(path, ends, n_rows, action=None, image=None):
    root = zarr.open_group(str(path), mode="w")
    root.require_group("data").array(
        "action", np.zeros((n_rows, 2), np.float32) if action is None else action
    )
    if image is not None:
        root["data"].array("image", image)
    root.require_group("meta").array("episode_ends", np.asarray(ends, np.int64))
    return path


@pytest.mark.parametrize(
    "ends,rows,match",
    [
        ([3, 2, 6], 6, r"episode_ends\[1\] = 2 is not greater than \[0\] = 3"),
        ([3, 5], 6, r"data/action has 6 rows but meta/episode_ends ends at 5"),
        ([], 0, "empty dataset"),
        ([0, 4], 4, "first episode is empty"),
    ],
)
def test_bad_episode_ends_named(tmp_path, ends, rows, match):
    p = _raw_store(tmp_path / "bad.zarr", ends, rows)
    with pytest.raises(StoreError, match=match) as e:
        EpisodeStore.open(p)
    assert "bad.zarr" in str(e.value)


def test_missing_key_nan_and_image_errors_name_file_key_index(tmp_path):
    action = np.zeros((6, 2), np.float32)
    action[4, 1] = np.nan
    p = _raw_store(tmp_path / "s.zarr", [3, 6], 6, action=action, image=np.zeros((6, 4, 4, 3), np.float32))
    store = EpisodeStore.open(p, keys={"agent_pos": "state[0:2]"})
    with pytest.raises(StoreError, match=r"s.zarr: missing key 'data/state' \(canonical name 'agent_pos'\)"):
        store.get("agent_pos")
    with pytest.raises(
        StoreError, match=r"data/action has a non-finite value at index 4 \(dimension 1, episode 1\)"
    ):
        store.actions()
    with pytest.raises(StoreError, match="data/image: images must be uint8, got float32"):
        store.check_image("image")
    with pytest.raises(StoreError, match="not found"):
        EpisodeStore.open(tmp_path / "nope.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError, match="plain"):
        EpisodeStore.open(tmp_path / "plain")


def test_image_shape_mismatch(tmp_path):
    p = _raw_store(tmp_path / "s.zarr", [2], 2, image=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(StoreError, match=r"expected images of shape \(96, 96, 3\), got \(4, 4, 3\)"):
        EpisodeStore.open(p).check_image("image", (96, 96, 3))


def test_key_spec_parse():
    assert KeySpec.parse("state[0:2]") == KeySpec("state", 0, 2)
    assert KeySpec.parse("state[2:]") == KeySpec("state", 2, None)
    assert str(KeySpec.parse(" img ")) == "img"
    with pytest.raises(StoreError, match="invalid key spec"):
        KeySpec.parse("state[0:2")


def test_chunks_repeat_last_action_past_episode_end():
    ends = np.array([3, 5])
    idx = chunk_indices(ends, 4)
    np.testing.assert_array_equal(idx, [[0, 1, 2, 2], [1, 2, 2, 2], [2, 2, 2, 2], [3, 4, 4, 4], [4, 4, 4, 4]])
    a = np.arange(10, dtype=np.float32).reshape(5, 2)
    c = action_chunks(a, ends, 4)
    assert c.shape == (5, 4, 2)
    np.testing.assert_array_equal(c[1], a[[1, 2, 2, 2]])
    with pytest.raises(ValueError, match="strictly increasing"):
        chunk_indices(np.array([3, 3]), 2)


def test_normalizer_maps_to_unit_range_and_round_trips():
    rng = np.random.default_rng(0)
    x = rng.uniform(-5, 30, (100, 3)).astype(np.float32)
    x[:, 2] = 7.0  # constant dimension
    n = MinMaxNormalizer.fit(x)
    y = n.normalize(x)
    assert np.allclose(y[:, :2].min(0), -1) and np.allclose(y[:, :2].max(0), 1)
    assert np.all(y[:, 2] == 0)
    np.testing.assert_allclose(n.unnormalize(y), x, rtol=1e-5, atol=1e-4)
    n2 = MinMaxNormalizer.from_dict(json.loads(json.dumps(n.to_dict())))
    np.testing.assert_array_equal(n2.normalize(x), y)
    with pytest.raises(ValueError, match="last dimension 3"):
        n.normalize(np.zeros((2, 4)))


def test_similarity_chunks_scale_rot6d_for_10d_actions():
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (20, 10)).astype(np.float32)
    ends = np.array([8, 20])
    c, norm = similarity_chunks(a, ends, horizon=16)
    assert c.shape == (20, 16, 10) and c.dtype == np.float32
    full = action_chunks(norm.normalize(a), ends, 16)
    np.testing.assert_allclose(c[..., 3:9], 0.5 * full[..., 3:9], rtol=1e-6)
    np.testing.assert_allclose(c[..., [0, 1, 2, 9]], full[..., [0, 1, 2, 9]], rtol=1e-6)
    c2, _ = similarity_chunks(a[:, :2], ends, horizon=4)  # Push-T: no rot6d part
    assert np.abs(c2).max() <= 1.0 + 1e-6


def _robomimic_file(path, lengths=(4, 6, 3)):
    rng = np.random.default_rng(2)
    with h5py.File(path, "w") as f:
        for i, t in enumerate(lengths):
            g = f.create_group(f"data/demo_{[0, 10, 2][i]}")
            g["actions"] = rng.normal(size=(t, 7))
            g["obs/agentview_image"] = rng.integers(0, 255, (t, 8, 8, 3), dtype=np.uint8)
            g["obs/robot0_eef_pos"] = rng.normal(size=(t, 3))
    return path


def test_robomimic_import(tmp_path):
    src = _robomimic_file(tmp_path / "demo.hdf5")
    out = import_robomimic(
        src, tmp_path / "rm.zarr", {"image": "agentview_image", "ee_pos": "robot0_eef_pos"}, progress=False
    )
    store = EpisodeStore.open(out)
    # numeric demo order: demo_0 (4), demo_2 (3), demo_10 (6)
    assert list(store.episode_lengths()) == [4, 3, 6]
    with h5py.File(src) as f:
        np.testing.assert_allclose(store.episode(2)["action"], f["data/demo_10/actions"][:], rtol=1e-6)
        np.testing.assert_array_equal(store.episode(1)["image"], f["data/demo_2/obs/agentview_image"][:])
    assert store.get("ee_pos").dtype == np.float32


def test_robomimic_import_errors_name_key(tmp_path):
    src = _robomimic_file(tmp_path / "demo.hdf5")
    with pytest.raises(StoreError, match=r"demo.hdf5: missing key 'data/demo_0/obs/wrist'"):
        import_robomimic(src, tmp_path / "x.zarr", {"wrist": "wrist"}, progress=False)
    assert not (tmp_path / "x.zarr").exists()
    with h5py.File(tmp_path / "nan.hdf5", "w") as f:
        f["data/demo_0/actions"] = np.array([[0.0], [np.nan]])
    with pytest.raises(StoreError, match=r"'data/demo_0/actions' has a non-finite value at index 1"):
        import_robomimic(tmp_path / "nan.hdf5", tmp_path / "y.zarr", {}, progress=False)
    with h5py.File(tmp_path / "empty.hdf5", "w") as f:
        f.create_group("data")
    with pytest.raises(StoreError, match="empty dataset"):
        import_robomimic(tmp_path / "empty.hdf5", tmp_path / "z.zarr", {}, progress=False)
