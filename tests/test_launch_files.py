"""Static check of every launch file without ROS: parsed with ast, never executed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LAUNCH = sorted((REPO / "launch").glob("*.launch.py"))
REQUIRED = {
    "policy.launch.py": {"mode", "model", "sim", "use_fake_hardware"},
    "sim.launch.py": {"task", "variant", "seed"},
    "teleop_record.launch.py": {
        "data_root",
        "config",
        "overrides",
        "sim",
        "task",
        "operator",
        "episodes",
        "trace",
    },
    "robot.launch.py": {"use_fake_hardware"},
}


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _fname(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def _const(node: ast.expr | None):
    return node.value if isinstance(node, ast.Constant) else None


def _share_path(node: ast.expr | None) -> Path | None:
    """os.path.join(SHARE, "config", "ros", "x.yaml") -> the repository file it installs from."""
    if isinstance(node, ast.Call) and _fname(node) == "join" and node.args:
        parts = [_const(a) for a in node.args[1:]]
        if all(isinstance(p, str) for p in parts):
            return REPO.joinpath(*parts)
    return None


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _fname(n) == name]


def declared(tree: ast.AST) -> dict[str, ast.Call]:
    out = {}
    for c in _calls(tree, "DeclareLaunchArgument"):
        name = _const(c.args[0]) if c.args else _const(_kw(c, "name"))
        assert isinstance(name, str), f"line {c.lineno}: argument name must be a literal"
        assert name not in out, f"argument {name!r} declared twice"
        out[name] = c
    return out


def entry_points(package: str) -> set[str]:
    tree = ast.parse((REPO / "ros2_ws" / "src" / package / "setup.py").read_text())
    scripts = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and " = " in node.value:
            scripts.add(node.value.split(" = ")[0].strip())
    return scripts


def node_defaults(executable: str) -> set[str]:
    src = REPO / "ros2_ws" / "src" / "class_ros" / "class_ros" / f"{executable}.py"
    tree = ast.parse(src.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "DEFAULTS":
            return {k.value for k in node.value.keys}  # type: ignore[union-attr]
    raise AssertionError(f"{src}: no DEFAULTS")


def test_all_launch_files_are_present():
    assert {p.name for p in LAUNCH} >= set(REQUIRED)


@pytest.mark.parametrize("path", LAUNCH, ids=lambda p: p.name)
def test_launch_file_is_consistent(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    doc = ast.get_docstring(tree) or ""
    assert ":=" in doc, f"{path.name}: the docstring should show the name:=value form"
    args = declared(tree)
    assert REQUIRED.get(path.name, set()) <= set(args), (
        f"{path.name}: missing {REQUIRED[path.name] - set(args)}"
    )
    for name, call in args.items():
        default = _kw(call, "default_value")
        assert default is not None, f"{path.name}: argument {name!r} has no default"
        assert _kw(call, "description") is not None, f"{path.name}: argument {name!r} has no description"
        choices = _kw(call, "choices")
        if choices is not None:
            values = [_const(e) for e in choices.elts]  # type: ignore[attr-defined]
            assert _const(default) in values, f"{path.name}: default of {name!r} not in its choices {values}"
        cfg = _share_path(default)
        if cfg is not None:
            assert cfg.exists(), f"{path.name}: default of {name!r} is {cfg}, which does not exist"
    # every LaunchConfiguration refers to a declared argument
    for c in _calls(tree, "LaunchConfiguration"):
        assert _const(c.args[0]) in args, (
            f"{path.name}:{c.lineno}: LaunchConfiguration({_const(c.args[0])!r}) undeclared"
        )
    # nodes: executables exist; parameter overrides are parameters the node declares
    for c in _calls(tree, "Node"):
        pkg, exe, node_name = _const(_kw(c, "package")), _const(_kw(c, "executable")), _const(_kw(c, "name"))
        assert exe in entry_points(pkg), f"{path.name}: {pkg} has no executable {exe!r}"
        params = _kw(c, "parameters")
        for p in params.elts if isinstance(params, ast.List) else []:
            if isinstance(p, ast.Dict):
                keys = {_const(k) for k in p.keys} - {"use_sim_time"}
                unknown = keys - node_defaults(exe)
                assert not unknown, f"{path.name}: {exe} does not declare parameter(s) {unknown}"
            elif isinstance(p, ast.Call) and _fname(p) == "LaunchConfiguration":
                cfg = _share_path(_kw(args[_const(p.args[0])], "default_value"))
                assert cfg is not None
                data = yaml.safe_load(cfg.read_text())
                assert node_name in data, f"{cfg.name}: no section for node {node_name!r}"
                keys = set(data[node_name]["ros__parameters"])
                assert keys == node_defaults(exe), (
                    f"{cfg.name} vs {exe} DEFAULTS: {keys ^ node_defaults(exe)}"
                )
    # included launch files exist and declare the arguments passed to them
    for c in _calls(tree, "IncludeLaunchDescription"):
        target = next((_const(n) for n in ast.walk(c) if isinstance(_const(n), str) and
                       str(_const(n)).endswith(".launch.py")), None)  # fmt: skip
        assert target and (REPO / "launch" / target).exists(), f"{path.name}: includes missing {target}"
        passed = _kw(c, "launch_arguments")
        names = (
            {_const(k) for n in ast.walk(passed) if isinstance(n, ast.Dict) for k in n.keys}
            if passed
            else set()
        )
        inner = declared(ast.parse((REPO / "launch" / target).read_text()))
        assert names <= set(inner), f"{path.name}: passes {names - set(inner)} that {target} does not declare"


def test_teleop_record_passes_the_trace_to_the_vr_operator():
    """sim:=true operator:=vr trace:=<file>: the simulated arm's teleop_node replays the trace: its
    ``trace`` parameter is a variable assigned from the launch argument (default: the headset)."""
    tree = ast.parse((REPO / "launch" / "teleop_record.launch.py").read_text())
    sim = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_sim_nodes")
    teleop = [c for c in _calls(sim, "Node") if _const(_kw(c, "executable")) == "teleop_node"]
    assert len(teleop) == 1, "the vr operator is one teleop_node"
    params = [d for d in _kw(teleop[0], "parameters").elts if isinstance(d, ast.Dict)]  # type: ignore[attr-defined]
    value = next(
        (v for d in params for k, v in zip(d.keys, d.values, strict=True) if _const(k) == "trace"), None
    )
    assert isinstance(value, ast.Name), "teleop_node gets no trace parameter"
    sources = [
        _const(c.args[0])
        for n in ast.walk(sim)
        if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == value.id for t in n.targets)
        for c in _calls(n.value, "LaunchConfiguration")
    ]
    assert sources == ["trace"], f"teleop_node's trace ({value.id}) comes from {sources}"
    assert _const(_kw(declared(tree)["trace"], "default_value")) == "", "trace must default to the headset"
    assert "trace" in node_defaults("teleop_node")


def test_bringup_installs_launch_and_config():
    tree = ast.parse((REPO / "ros2_ws" / "src" / "class_bringup" / "setup.py").read_text())
    patterns = {_const(c.args[0]) for c in _calls(tree, "rel")}
    assert {"launch/*.launch.py", "config/ros/*.yaml"} <= patterns
    for pkg in ("class_ros", "class_bringup"):
        root = REPO / "ros2_ws" / "src" / pkg
        assert (root / "resource" / pkg).exists() and (root / "setup.cfg").exists()
        assert f"<name>{pkg}</name>" in (root / "package.xml").read_text()
        assert "<build_type>ament_python</build_type>" in (root / "package.xml").read_text()
