"""class-robot-demo: a lab's first day with the robot, in simulation, through ROS 2.

The same loop as on the Franka, with robosuite behind the robot's topics instead of the drivers
(each stage is the command a user types, printed before it runs):

1. ``record``      ros2 launch class_bringup teleop_record.launch.py sim:=true ...
                   the scripted operator teleoperates the simulated arm; rosbags of N kept episodes
2. ``import``      class-import-bags: bags -> episode store
3. ``precompute``  class-precompute: DTW positive pairs
4. ``pretrain``    class-pretrain: CLASS pre-training of the encoder
5. ``export``      class-export retrieval (and, with robot_day.diffusion, class-finetune + export)
6. ``deploy``      ros2 launch class_bringup policy.launch.py sim:=true ...: M episodes through
                   ROS 2 in lock-step; the bridge writes every outcome and the latency
7. ``eval``        class-eval: the same artifact on the same seeds without ROS; must agree
8. ``report``      report.md: episodes recorded and discarded, bag sizes, the import, the pairs,
                   the training curve, success with 95 % intervals, agreement, latency, timings

Needs a ROS 2 environment (``ros2`` on PATH, class_bringup built: see docs/ros2.md). Unless
ROS_AUTOMATIC_DISCOVERY_RANGE is set, DDS discovery stays on this machine (LOCALHOST): the
simulated day talks to no one else. Re-running continues where the last run stopped (a finished
stage is skipped, pre-training resumes); ``--fresh`` starts over.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from class_core.cli.demo import Demo, _cmd, as_flags, run_driver
from class_core.cli.demo import build_parser as demo_parser
from class_core.io import atomic_write_text

EPILOG = """\
examples:
  class-robot-demo                                 # the default scale (docs/robot-day.md)
  class-robot-demo robot_day.episodes=5 robot_day.eval_episodes=2 pretrain.train.max_steps=20
  class-robot-demo robot_day.diffusion=true        # also fine-tune and deploy a diffusion head
  class-robot-demo --stages deploy,eval,report     # again with the artifact already trained

Outputs under --out: bags/ (rosbags), record.log, the store, the pairs, pretrain/ (TensorBoard in
tb/), models/, deploy_<policy>/results.json (+ launch.log), eval_<policy>/results.json, report.md,
loss.png, timings.json.
"""

STAGES = ("record", "import", "precompute", "pretrain", "export", "deploy", "eval", "report")
EVENT_TOPIC = "/class/episode/event"


def _ros2() -> str:
    exe = shutil.which("ros2")
    if exe is None:
        raise SystemExit(
            "class-robot-demo: 'ros2' is not on PATH: source a ROS 2 environment first "
            "(`. scripts/ros_env.sh` in this repository, or /opt/ros/<distro>/setup.bash; docs/ros2.md)"
        )
    return exe


def bag_summary(bags: Sequence[Path]) -> dict[str, Any]:
    """Episode events and sizes of recorded bags: what the operator kept and discarded."""
    from rosbags.highlevel import AnyReader

    events: list[str] = []
    size = 0
    for bag in bags:
        size += sum(f.stat().st_size for f in bag.iterdir() if f.is_file())
        with AnyReader([bag]) as reader:
            conns = [c for c in reader.connections if c.topic == EVENT_TOPIC]
            for conn, _, raw in reader.messages(connections=conns):
                msg: Any = reader.deserialize(raw, conn.msgtype)
                events.append(msg.data)
    return {
        "bags": [str(b) for b in bags],
        "bytes": size,
        "starts": events.count("start"),
        "kept": events.count("success"),
        "discarded": events.count("discard"),
    }


class RobotDay(Demo):
    """class-demo's stages and report pieces, with the robot's ROS 2 launch files at both ends."""

    prog = "class-robot-demo"
    section = "robot_day"
    stages = STAGES
    default_config = "config/robot_day_lift.yaml"
    default_out = "runs/robot_day"
    example_override = "robot_day.episodes=5"

    def __init__(self, cfg: dict[str, Any], out: Path, config_path: Path):
        super().__init__(cfg, out, config_path)
        self.store = out / f"{self.task['name']}.zarr"
        self.bags = out / "bags"
        self.policies = ["class_knn"] + (["class_dp"] if self.d.get("diffusion") else [])
        self.models = {name: out / "models" / name for name in self.policies}
        self.modes = {"class_knn": "nonparametric", "class_dp": "diffusion"}
        self.deploy_dirs = {name: out / f"deploy_{name}" for name in self.policies}
        self.eval_dirs = {name: out / f"eval_{name}" for name in self.policies}
        self.finetune_dir = out / "finetune"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def launch(self, stage: str, args: list[str], log: Path, timeout: float) -> None:
        """``ros2 launch class_bringup ARGS``, its output into ``log`` (and a line per episode on
        the console); fails the stage when the launch fails or outlives ``timeout`` s."""
        cmd = [_ros2(), "launch", "class_bringup", *args]
        print(f"\n[{stage}] $ ros2 {' '.join(cmd[1:])}", flush=True)
        print(f"[{stage}] log: {log}", flush=True)
        log.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with open(log, "w", buffering=1) as fh:  # line-buffered: follow it with tail -f
            proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env()
            )
            assert proc.stdout is not None
            try:
                for line in proc.stdout:
                    fh.write(line)
                    if "episode" in line and ("attempt" in line or "seed=" in line):
                        print(f"[{stage}] {line.split(']: ')[-1].strip()}", flush=True)
                    if time.perf_counter() - t0 > timeout:
                        raise TimeoutError
                rc = proc.wait()
            except (TimeoutError, KeyboardInterrupt) as e:
                proc.send_signal(2)  # SIGINT: launch stops its nodes, the recorder closes its bag
                proc.wait(60)
                if isinstance(e, KeyboardInterrupt):
                    raise
                raise SystemExit(
                    f"class-robot-demo: stage {stage!r} ran over {timeout:.0f} s; see {log}"
                ) from None
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - t0
        if rc != 0:
            raise SystemExit(f"class-robot-demo: stage {stage!r} failed (exit {rc}); see {log}")

    # --- stages ------------------------------------------------------------------------------
    def record(self) -> None:
        done = self.out / "record.json"
        if done.exists():
            print(f"\n[record] {done} exists, skipped")
            return
        if self.bags.exists():  # an interrupted recording: its episodes are not counted, start over
            shutil.rmtree(self.bags)
        args = [
            "teleop_record.launch.py", "sim:=true", f"task:={self.task['name']}",
            f"variant:={self.task['variant']}", f"episodes:={self.d['episodes']}",
            f"config:={self.resolved}", f"data_root:={self.bags}",
        ]  # fmt: skip
        self.launch("record", args, self.out / "record.log", float(self.d["record_timeout"]))
        summary = bag_summary(self.recorded_bags())
        if summary["kept"] < int(self.d["episodes"]):
            raise SystemExit(
                f"class-robot-demo: recorded {summary['kept']} kept episodes, wanted {self.d['episodes']}"
            )
        atomic_write_text(done, json.dumps(summary, indent=2))

    def recorded_bags(self) -> list[Path]:
        return sorted(p.parent for p in self.bags.glob("*/*/metadata.yaml"))

    def import_bags(self) -> None:
        if self.store.exists():
            print(f"\n[import] {self.store} exists, skipped")
            return
        bags = [str(b) for b in self.recorded_bags()]
        if not bags:
            raise SystemExit(f"class-robot-demo: no bags under {self.bags}: run the record stage")
        rate = self.cfg["sim_teleop"]["rate"] or self.task["kwargs"]["control_hz"]
        self.run(
            "import",
            _cmd("class_core.cli.import_bags", *bags, "--config", str(self.resolved),
                 "--out", str(self.store), "--no-progress", f"rosbag_import.control_hz={rate}"),
        )  # fmt: skip

    def export(self) -> None:
        path = self.models["class_knn"]
        if path.exists():
            print(f"\n[export] {path} exists, skipped")
        else:
            self.run(
                "export",
                _cmd("class_core.cli.export", "retrieval", "--config", str(self.resolved),
                     f"retrieval.checkpoint={self.pretrain_dir}", "--out", str(path.parent),
                     "--name", path.name),
            )  # fmt: skip
        if "class_dp" not in self.models or self.models["class_dp"].exists():
            return
        args = ["--config", str(self.resolved), "--out", str(self.finetune_dir), "--no-progress",
                f"finetune.init.checkpoint={self.pretrain_dir}", "finetune.head.type=diffusion"]  # fmt: skip
        if (self.finetune_dir / "checkpoints").exists():
            args.append("--resume")
        self.run("finetune", _cmd("class_core.cli.finetune", *args))
        dp = self.models["class_dp"]
        self.run(
            "export",
            _cmd("class_core.cli.export", "finetuned", "--run", str(self.finetune_dir),
                 "--out", str(dp.parent), "--name", dp.name),
        )  # fmt: skip

    def eval_task_kwargs(self) -> dict[str, Any]:
        """The task's options for deploy and eval alike (the same scenes, renders and step limit)."""
        kwargs = dict(self.task.get("kwargs") or {})
        if int(self.d.get("eval_max_steps") or 0) > 0:
            kwargs["max_steps"] = int(self.d["eval_max_steps"])
        return kwargs

    def deploy(self) -> None:
        n = int(self.d["eval_episodes"])
        for name in self.policies:
            out = self.deploy_dirs[name]
            results = out / "results.json"
            if results.exists() and json.loads(results.read_text())["episodes"] >= n:
                print(f"\n[deploy] {results} exists, skipped")
                continue
            args = [
                "policy.launch.py", f"mode:={self.modes[name]}", "sim:=true", f"task:={self.task['name']}",
                f"variant:={self.task['variant']}", f"model:={self.models[name]}",
                f"seed:={self.d['eval_seed']}", f"n_episodes:={n}", f"results:={results}",
                f"control_hz:={self.task['kwargs']['control_hz']}",
                f"task_kwargs:={json.dumps(self.eval_task_kwargs())}",
            ]  # fmt: skip
            self.launch("deploy", args, out / "launch.log", float(self.d["deploy_timeout"]))
            if not results.exists():
                raise SystemExit(
                    f"class-robot-demo: the sim bridge wrote no {results}; see {out / 'launch.log'}"
                )

    def eval_args(self) -> list[str]:
        return as_flags(self.eval_task_kwargs(), "--task-arg")

    def evaluate(self) -> None:
        if self.d.get("check_eval", True):
            super().evaluate()

    def report(self) -> dict[str, Any]:
        from class_core.data.store import EpisodeStore
        from class_core.report import markdown_table, plot_curve, read_scalars
        from class_core.similarity.pairs import load_pairs

        t0 = time.perf_counter()
        rec = json.loads((self.out / "record.json").read_text())
        store = EpisodeStore.open(self.store)
        lengths = store.episode_lengths()
        pairs = len(load_pairs(self.pairs))
        lines = [f"# CLASS robot day in simulation: {self.task['name']} {self.task['variant']}", ""]
        lines.append("## Recording (teleop_record.launch.py sim:=true, scripted operator)\n")
        lines.append(
            f"{rec['starts']} attempts: {rec['kept']} kept, {rec['discarded']} discarded; "
            f"{len(rec['bags'])} bag(s), {rec['bytes'] / 2**20:.1f} MiB."
        )
        lines.append(
            f"\nImported: {store.n_episodes} episodes, {store.n_steps} samples "
            f"(episode length {min(lengths)}-{max(lengths)}, mean {sum(lengths) / len(lengths):.0f}); "
            f"{pairs} positive pairs (DTW, quantile {self.cfg['similarity']['quantile']})."
        )
        lines.append("\n## Policies through ROS 2 (policy.launch.py sim:=true, lock-step)\n")
        rows, results = [], {}
        for name in self.policies:
            ros = json.loads((self.deploy_dirs[name] / "results.json").read_text())
            direct_path = self.eval_dirs[name] / "results.json"
            direct = json.loads(direct_path.read_text()) if direct_path.exists() else None
            agree = "not run"
            if direct is not None:
                a = {e["seed"]: (e["success"], e["steps"]) for e in ros["episodes_detail"]}
                b = {int(e["seed"]): (bool(e["success"]), int(e["steps"])) for e in direct["episodes_detail"]}
                same = sum(a.get(s) == v for s, v in b.items())
                agree = f"{same}/{len(b)} episodes identical"
            lat = ros["latency_ms"]
            rows.append([
                name, self.modes[name], f"{ros['successes']}/{ros['episodes']}", f"{ros['success_rate']:.2f}",
                f"[{ros['ci95'][0]:.2f}, {ros['ci95'][1]:.2f}]",
                f"{direct['success_rate']:.2f}" if direct else "-", agree,
                f"{lat.get('p50', float('nan')):.0f} / {lat.get('p95', float('nan')):.0f} / "
                f"{lat.get('p99', float('nan')):.0f}",
            ])  # fmt: skip
            results[name] = {"ros": ros, "direct": direct, "agreement": agree}
        lines.append(
            markdown_table(
                [
                    "policy",
                    "mode",
                    "successes",
                    "success rate",
                    "95 % interval (Wilson)",
                    "class-eval, same seeds",
                    "ROS vs class-eval",
                    "obs -> chunk ms through ROS, p50 / p95 / p99",
                ],
                rows,
            )  # fmt: skip
        )
        lines.append(
            "\nLatency: wall time from the bridge publishing an observation that waits for a plan to the "
            "plan's arrival (encoder + retrieval or head, and DDS both ways)."
        )
        try:
            steps, loss = read_scalars(self.pretrain_dir / "tb", "train/loss")
            plot_curve(steps, loss, self.out / "loss.png", "CLASS pre-training (soft InfoNCE)", "loss")
            lines += ["", "![training loss](loss.png)"]
            lines.append(f"\nloss: {loss[0]:.3f} (step {steps[0]}) -> {loss[-1]:.3f} (step {steps[-1]})")
        except (FileNotFoundError, KeyError) as e:
            lines.append(f"\n(no loss curve: {e})")
        self.timings["report"] = time.perf_counter() - t0
        lines.append("")
        lines.append(markdown_table(["stage", "wall s"], [[k, f"{v:.0f}"] for k, v in self.timings.items()]))
        lines.append(f"\ntotal: {sum(self.timings.values()):.0f} s on {os.cpu_count()} CPU cores")
        text = "\n".join(lines) + "\n"
        atomic_write_text(self.out / "report.md", text)
        atomic_write_text(self.out / "timings.json", json.dumps(self.timings, indent=2))
        print("\n" + text)
        return results

    def steps(self) -> dict[str, Any]:
        return {
            "record": self.record,
            "import": self.import_bags,
            "precompute": self.precompute,
            "pretrain": self.pretrain,
            "export": self.export,
            "deploy": self.deploy,
            "eval": self.evaluate,
            "report": self.report,
        }


def build_parser() -> argparse.ArgumentParser:
    return demo_parser(RobotDay, __doc__, EPILOG)


def main(argv: Sequence[str] | None = None) -> int:
    return run_driver(RobotDay, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
