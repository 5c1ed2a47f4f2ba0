"""class-robot-demo's command line without ROS (the whole day runs in tests/ros/test_robot_day.py)."""

from __future__ import annotations

import pytest

from class_core.cli import robot_demo


def test_help_names_every_stage(capsys):
    with pytest.raises(SystemExit) as e:
        robot_demo.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    flat = text.replace("\n", "").replace(" ", "")
    assert "class-robot-demo" in text and ",".join(robot_demo.STAGES) in flat


def test_bad_stage_and_config_are_named(tmp_path):
    with pytest.raises(SystemExit, match=r"unknown stage\(s\) \['train'\]"):
        robot_demo.main(["--out", str(tmp_path / "o"), "--stages", "record,train"])
    cfg = tmp_path / "c.yaml"
    cfg.write_text("task: {name: lift}\n")
    with pytest.raises(SystemExit, match="has no 'robot_day:' section"):
        robot_demo.main(["--config", str(cfg), "--out", str(tmp_path / "o")])


def test_without_ros2_on_path_the_record_stage_says_what_to_source(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no ros2 here
    with pytest.raises(SystemExit, match="'ros2' is not on PATH: source a ROS 2 environment"):
        robot_demo.main(["--out", str(tmp_path / "o"), "--stages", "record"])
