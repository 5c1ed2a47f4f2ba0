"""Task and expert registries: task modules never import their demonstrators (the experts register
beside the tasks), ``task.make_expert`` still builds the same expert classes, and errors name the
task and the kinds it has."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

from sim_bridge import task as task_module  # noqa: E402
from sim_bridge.task import Obs, Task, expert_kinds, make_task, register_expert  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TASK_MODULES = ("sim_bridge.pusht", "sim_bridge.robosuite_tasks", "sim_bridge.aloha")
EXPERT_MODULES = ("sim_bridge.pusht_expert", "sim_bridge.pusht_servo", "sim_bridge.robosuite_experts")
HEAVY = ("robosuite", "mujoco", "pygame", "pymunk", "gym_pusht", "gym_aloha", "dm_control", "torch")


def _imported_modules(source: str, package: str = "sim_bridge") -> set[str]:
    """Every module an ``import``/``from ... import`` anywhere in ``source`` (functions and
    ``TYPE_CHECKING`` blocks included) names, plus module-like string constants
    (``importlib.import_module("...")``). ``from a import b`` counts as ``a`` and ``a.b``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative to the package
                base = f"{package}.{base}" if base else package
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add(node.value)
    return found


def _module_path(module: str) -> Path:
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def test_the_module_tables_cover_the_task_and_expert_modules():
    assert set(TASK_MODULES) == set(task_module._TASK_MODULES.values())
    declared = {m for mods in task_module._EXPERT_MODULES.values() for m in mods}
    assert set(EXPERT_MODULES) == declared - set(TASK_MODULES)
    assert set(task_module._EXPERT_MODULES) == set(task_module._TASK_MODULES)


@pytest.mark.parametrize("module", TASK_MODULES)
def test_task_modules_never_import_expert_modules(module):
    imported = _imported_modules(_module_path(module).read_text())
    assert not imported & set(EXPERT_MODULES), f"{module} imports {sorted(imported & set(EXPERT_MODULES))}"


def test_the_import_check_sees_lazy_and_relative_imports():
    src = (
        "def f():\n    from sim_bridge.pusht_expert import make\n"
        "def g():\n    from . import pusht_servo\n"
        "def h():\n    import importlib\n    importlib.import_module('sim_bridge.robosuite_experts')\n"
    )
    assert set(EXPERT_MODULES) <= _imported_modules(src)


def test_importing_the_package_or_a_task_module_loads_no_expert_or_simulator():
    code = (
        "import sys\n"
        "import sim_bridge, sim_bridge.task\n"
        f"heavy = [m for m in sys.modules if m.split('.')[0] in {HEAVY!r}]\n"
        "assert not heavy, heavy\n"
        "sim_bridge.make_task('pusht').close()\n"
        f"experts = [m for m in {EXPERT_MODULES!r} if m in sys.modules]\n"
        "assert not experts, experts\n"
    )
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "MUJOCO_GL": "egl"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env, timeout=120)


# --- make_expert through the registry -------------------------------------------------------------
class _Named(Task):
    """A task that only has a name (what the registry keys on); never stepped."""

    action_dim, max_steps = 2, 1

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def _reset(self, seed: int | None) -> Obs:
        return {}

    def _step(self, action: np.ndarray) -> tuple[Obs, bool, dict[str, Any]]:
        return {}, False, {}


def test_pusht_expert_kinds_and_classes():
    pytest.importorskip("gym_pusht")
    from sim_bridge.pusht_expert import PushTExpert
    from sim_bridge.pusht_servo import PushTServoExpert

    assert expert_kinds("pusht") == ("planner", "servo")
    with make_task("pusht") as t:
        t.reset(0)
        assert type(t.make_expert(seed=0)) is PushTExpert
        assert type(t.make_expert(seed=0, kind="planner")) is PushTExpert
        assert type(t.make_expert(seed=0, kind="servo", noise=0.0)) is PushTServoExpert
        with pytest.raises(ValueError, match=r"'pusht'.*unknown expert kind 'nope'.*planner, servo"):
            t.make_expert(kind="nope")


@pytest.mark.parametrize("name", ["lift", "stack", "square"])
def test_robosuite_experts_bind_by_task_name(name):
    from sim_bridge.robosuite_experts import EXPERTS, BoundExpert

    assert expert_kinds(name) == ("scripted",)
    expert = _Named(name).make_expert(seed=3, noise=False)  # BoundExpert reads only task.name here
    assert type(expert) is BoundExpert and type(expert.expert) is EXPERTS[name]
    assert expert.expert.noise is False
    with pytest.raises(ValueError, match=rf"'{name}'.*unknown expert kind 'servo'.*scripted"):
        _Named(name).make_expert(kind="servo")


def test_aloha_expert():
    pytest.importorskip("gym_aloha")
    from sim_bridge.aloha import AlohaTransferExpert

    assert expert_kinds("aloha-transfer") == ("scripted",)
    with make_task("aloha-transfer", image_size=32) as t:
        t.reset(0)
        assert type(t.make_expert(seed=0)) is AlohaTransferExpert


def test_a_task_without_experts_names_itself_and_the_tasks_that_have_them():
    with pytest.raises(NotImplementedError, match=r"task 'no-such-task' has no scripted demonstrator") as e:
        _Named("no-such-task").make_expert(seed=0)
    assert "pusht" in str(e.value) and "lift" in str(e.value)
    assert expert_kinds("no-such-task") == ()


def test_register_expert_default_kind(monkeypatch):
    monkeypatch.setattr(task_module, "_EXPERTS", {})
    monkeypatch.setattr(task_module, "_DEFAULT_EXPERT", {})
    made: list[tuple[str, Task, int | None, dict[str, Any]]] = []

    def factory(kind: str):
        def build(task: Task, seed: int | None = None, **kwargs: Any) -> Any:
            made.append((kind, task, seed, kwargs))
            return kind

        return build

    register_expert("toy", "a", factory("a"))
    register_expert("toy", "b", factory("b"))
    assert expert_kinds("toy") == ("a", "b")  # the first registered kind is the default
    register_expert("toy", "c", factory("c"), default=True)
    assert expert_kinds("toy") == ("c", "a", "b")
    toy = _Named("toy")
    assert toy.make_expert(seed=5, gain=2) == "c"
    assert toy.make_expert(kind="a") == "a"
    assert made == [("c", toy, 5, {"gain": 2}), ("a", toy, None, {})]
