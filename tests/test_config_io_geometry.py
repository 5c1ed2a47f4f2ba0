"""Config resolution, atomic writes and rotation conversions."""

from __future__ import annotations

import dataclasses
import os
from typing import Literal

import numpy as np
import pytest
import yaml

from class_core.config import ConfigError, from_dict, load_config, save_config
from class_core.geometry import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_quat,
    matrix_to_rot6d,
    orthonormalize_rot6d,
    quat_to_matrix,
    rot6d_to_matrix,
    rotation_angle_between,
)
from class_core.io import atomic_dir, atomic_save_npz, atomic_write_text, sha256_file


def test_config_defaults_overrides_and_unknown_keys(tmp_path):
    (tmp_path / "base.yaml").write_text("train: {lr: 0.4, epochs: 100}\ndata: {horizon: 16}\n")
    (tmp_path / "task.yaml").write_text("defaults: [base.yaml]\ntrain: {epochs: 5}\nname: t\n")
    cfg = load_config(tmp_path / "task.yaml", ["train.lr=0.5", "data.horizon=8", "+train.new=[1, 2]"])
    assert cfg == {"train": {"lr": 0.5, "epochs": 5, "new": [1, 2]}, "data": {"horizon": 8}, "name": "t"}
    with pytest.raises(ConfigError, match=r"unknown config key 'train.epoch'; did you mean epochs"):
        load_config(tmp_path / "task.yaml", ["train.epoch=3"])
    with pytest.raises(ConfigError, match="not of the form key=value"):
        load_config(tmp_path / "task.yaml", ["train.lr"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1\n")
    with pytest.raises(ConfigError, match="bad.yaml: invalid YAML"):
        load_config(tmp_path / "bad.yaml")
    save_config(cfg, tmp_path / "out" / "resolved.yaml")
    assert yaml.safe_load((tmp_path / "out" / "resolved.yaml").read_text()) == cfg


@dataclasses.dataclass
class _Opt:
    lr: float = 0.1
    mode: Literal["a", "b"] = "a"


@dataclasses.dataclass
class _Cfg:
    steps: int = 1
    opt: _Opt = dataclasses.field(default_factory=_Opt)
    names: list[str] = dataclasses.field(default_factory=list)
    seed: int | None = None


def test_from_dict_typed_and_strict():
    c = from_dict(_Cfg, {"steps": 3, "opt": {"lr": 1, "mode": "b"}, "names": ["x"]}, where="train")
    assert c == _Cfg(steps=3, opt=_Opt(lr=1.0, mode="b"), names=["x"])
    assert isinstance(c.opt.lr, float)
    with pytest.raises(ConfigError, match=r"unknown config key\(s\): train.stesp \(did you mean steps\?\)"):
        from_dict(_Cfg, {"stesp": 3}, where="train")
    with pytest.raises(ConfigError, match=r"train.opt.mode: 'c' is not one of 'a', 'b'"):
        from_dict(_Cfg, {"opt": {"mode": "c"}}, where="train")
    with pytest.raises(ConfigError, match="train.steps: expected an integer"):
        from_dict(_Cfg, {"steps": "3"}, where="train")


def test_atomic_writes_leave_no_partial_files(tmp_path):
    p = atomic_write_text(tmp_path / "a" / "x.txt", "hello")
    assert p.read_text() == "hello"
    atomic_save_npz(tmp_path / "x.npz", a=np.arange(3))
    assert np.load(tmp_path / "x.npz")["a"].tolist() == [0, 1, 2]
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "d") as d:
            (d / "f").write_text("partial")
            raise RuntimeError
    assert not (tmp_path / "d").exists()
    assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")] == []
    with atomic_dir(tmp_path / "d") as d:
        (d / "f").write_text("done")
    with pytest.raises(FileExistsError):
        with atomic_dir(tmp_path / "d"):
            pass
    with atomic_dir(tmp_path / "d", overwrite=True) as d:
        (d / "g").write_text("new")
    assert sorted(os.listdir(tmp_path / "d")) == ["g"]
    assert len(sha256_file(tmp_path / "d" / "g")) == 64


def _random_rotations(n, seed=0):
    q = np.random.default_rng(seed).normal(size=(n, 4))
    return quat_to_matrix(q)


def test_rotation_round_trips():
    m = _random_rotations(200)
    assert np.allclose(m @ np.swapaxes(m, 1, 2), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(m), 1)
    np.testing.assert_allclose(quat_to_matrix(matrix_to_quat(m)), m, atol=1e-10)
    np.testing.assert_allclose(rot6d_to_matrix(matrix_to_rot6d(m)), m, atol=1e-10)
    np.testing.assert_allclose(axis_angle_to_matrix(matrix_to_axis_angle(m)), m, atol=1e-9)
    # known value: 90 degrees about z
    q = np.array([0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)])
    np.testing.assert_allclose(quat_to_matrix(q), [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(rotation_angle_between(np.eye(3), quat_to_matrix(q)), np.pi / 2)


def test_orthonormalize_rot6d_of_an_average():
    m = _random_rotations(2, seed=3)
    avg = matrix_to_rot6d(m).mean(axis=0)
    r = rot6d_to_matrix(orthonormalize_rot6d(avg))
    assert np.allclose(r @ r.T, np.eye(3), atol=1e-9) and np.isclose(np.linalg.det(r), 1)
    # Gram-Schmidt keeps the direction of the first column
    np.testing.assert_allclose(r[:, 0], avg[:3] / np.linalg.norm(avg[:3]), atol=1e-12)
    with pytest.raises(ValueError, match="parallel"):
        rot6d_to_matrix(np.array([1.0, 0, 0, 2.0, 0, 0]))


def test_inherit_data_source_falls_back_to_top_level_data():
    from class_core.config import inherit_data_source

    @dataclasses.dataclass
    class _Data:
        store: str | None = None
        keys: dict | None = None

    d = _Data()
    inherit_data_source(d, {"data": {"store": "s.zarr", "keys": {"image": "img"}}}, "pretrain")
    assert d == _Data("s.zarr", {"image": "img"})
    own = _Data("own.zarr", {})
    inherit_data_source(own, {"data": {"store": "s.zarr", "keys": {"image": "img"}}}, "finetune")
    assert own == _Data("own.zarr", {})
    with pytest.raises(ConfigError, match=r"finetune.data.store \(or data.store\): path of the"):
        inherit_data_source(_Data(), {}, "finetune")
