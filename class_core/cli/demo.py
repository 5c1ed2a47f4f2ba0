"""class-demo: the whole CLASS pipeline on Push-T, end to end, on a CPU.

Stages (each one is the console script a user would run, printed before it runs):

1. ``class-collect``     scripted demonstrations -> episode store
2. ``class-precompute``  DTW positive pairs with soft weights
3. ``class-pretrain``    CLASS contrastive pre-training of the encoder
4. ``class-export``      retrieval policies: the CLASS encoder, and a random-init baseline
5. ``class-eval``        rollouts of both policies
6. report                success rates, timings, the training-loss curve, nearest neighbours

Re-running continues where the last run stopped: a stage whose output exists is skipped
(pre-training resumes from its last checkpoint). ``--fresh`` starts over.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from class_core.config import load_config, save_config
from class_core.io import atomic_write_text

EPILOG = """\
examples:
  class-demo                                   # the README's main job (16-21 min on 2 idle cores)
  class-demo demo.episodes=20 pretrain.train.max_steps=50 demo.eval_episodes=10   # a quick smoke run
  class-demo --config config/demo_pusht.yaml task.variant=rand-color --out runs/demo_rand

Outputs under --out: the store, the pairs, the pre-training run (TensorBoard logs in tb/),
eval results of both policies (JSON, Markdown, an mp4), report.md, loss.png, neighbours.png.
"""

STAGES = ("collect", "precompute", "pretrain", "export", "eval", "report")


def _cmd(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def as_flags(values: dict[str, Any], flag: str) -> list[str]:
    """``{k: v}`` -> ``[flag, "k=<v as JSON>", ...]`` (class-collect / class-eval options)."""
    return [a for k, v in values.items() for a in (flag, f"{k}={json.dumps(v)}")]


def _show(cmd: Sequence[str]) -> str:
    names = {
        "sim_bridge.cli_collect": "class-collect",
        "class_core.cli.precompute": "class-precompute",
        "class_core.cli.pretrain": "class-pretrain",
        "class_core.cli.export": "class-export",
        "class_core.cli.eval": "class-eval",
        "class_core.cli.import_bags": "class-import-bags",
        "class_core.cli.finetune": "class-finetune",
    }
    args = list(cmd)
    if len(args) > 2 and args[1] == "-m":
        args = [names.get(args[2], args[2])] + args[3:]
    return " ".join(args)


class Demo:
    prog = "class-demo"
    section = "demo"  # the config section of this driver's own settings
    stages: tuple[str, ...] = STAGES
    default_config = "config/demo_pusht.yaml"
    default_out = "runs/demo"
    example_override = "demo.episodes=20"

    def __init__(self, cfg: dict[str, Any], out: Path, config_path: Path):
        self.cfg = cfg
        self.out = out
        self.config_path = config_path
        self.d = cfg[self.section]
        self.task = cfg["task"]
        self.timings: dict[str, float] = {}
        self._banks: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.store = out / "pusht.zarr"
        self.pairs = out / "pairs.npz"
        self.pretrain_dir = out / "pretrain"
        self.models = {name: out / "models" / name for name in ("class_knn", "random_knn")}
        self.eval_dirs = {name: out / f"eval_{name}" for name in self.models}

    # --- helpers -----------------------------------------------------------------------------
    def run(self, stage: str, cmd: Sequence[str]) -> None:
        print(f"\n[{stage}] $ {_show(cmd)}", flush=True)
        t0 = time.perf_counter()
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        rc = subprocess.call(list(cmd), env=env)
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - t0
        if rc != 0:
            raise SystemExit(
                f"{self.prog}: stage {stage!r} failed (exit {rc}); re-run {self.prog} to continue"
            )

    def overrides(self) -> list[str]:
        """Config overrides that point every stage at this demo's outputs."""
        return [
            f"data.store={self.store}",
            f"similarity.out={self.pairs}",
            f"similarity.workdir={self.out / 'pairs.work'}",
            f"pretrain.data.pairs={self.pairs}",
            f"pretrain.train.out_dir={self.pretrain_dir}",
        ]

    def task_args(self, section: str = "kwargs", flag: str = "--task-arg") -> list[str]:
        """``task.kwargs`` of the config (e.g. the paper's success threshold) as ``--task-arg``s;
        ``task_args("expert_kwargs", "--expert-arg")``: the demonstrator's options."""
        return as_flags(self.task.get(section) or {}, flag)

    # --- stages ------------------------------------------------------------------------------
    def collect(self) -> None:
        if self.store.exists():
            print(f"\n[collect] {self.store} exists, skipped")
            return
        self.run(
            "collect",
            _cmd(
                "sim_bridge.cli_collect",
                "--task", str(self.task["name"]),
                "--variant", str(self.task["variant"]),
                "--episodes", str(self.d["episodes"]),
                "--out", str(self.store),
                "--seed", str(self.d["seed"]),
                "--workers", str(self.d["workers"]),
                *self.task_args(),
                *self.task_args("expert_kwargs", "--expert-arg"),
            ),
        )  # fmt: skip

    def precompute(self) -> None:
        self.run(
            "precompute",
            _cmd("class_core.cli.precompute", "--config", str(self.resolved), "--out", str(self.pairs)),
        )

    def pretrain(self) -> None:
        args = ["--config", str(self.resolved)]
        if any(self.pretrain_dir.glob("ckpt*")) or (self.pretrain_dir / "checkpoints").exists():
            args.append("--resume")
        self.run("pretrain", _cmd("class_core.cli.pretrain", *args))

    def export(self) -> None:
        variants = {
            "class_knn": [f"retrieval.checkpoint={self.pretrain_dir}"],
            "random_knn": ["retrieval.checkpoint=null", "retrieval.encoder_weights=random"],
        }
        for name, extra in variants.items():
            path = self.models[name]
            if path.exists():
                print(f"\n[export] {path} exists, skipped")
                continue
            self.run(
                "export",
                _cmd(
                    "class_core.cli.export",
                    "retrieval",
                    "--config",
                    str(self.resolved),
                    *extra,
                    "--out",
                    str(path.parent),
                    "--name",
                    path.name,
                ),  # fmt: skip
            )

    def eval_args(self) -> list[str]:
        """class-eval's arguments beyond the policy, task, seeds and output."""
        return [
            "--workers", str(self.d["workers"]),
            "--batch", str(self.d.get("eval_batch", 1)),
            *self.task_args(),
        ]  # fmt: skip

    def evaluate(self) -> None:
        for name, model in self.models.items():
            out = self.eval_dirs[name]
            if (out / "results.json").exists():
                print(f"\n[eval] {out / 'results.json'} exists, skipped")
                continue
            self.run(
                "eval",
                _cmd(
                    "class_core.cli.eval",
                    "--policy", str(model),
                    "--task", str(self.task["name"]),
                    "--variant", str(self.task["variant"]),
                    "--episodes", str(self.d["eval_episodes"]),
                    "--seed", str(self.d["eval_seed"]),
                    "--video-episodes", "0",
                    "--out", str(out),
                    "--no-progress",
                    *self.eval_args(),
                ),
            )  # fmt: skip

    def report(self) -> dict[str, Any]:
        from class_core.report import markdown_table, plot_curve, read_scalars

        t0 = time.perf_counter()
        results = {n: json.loads((d / "results.json").read_text()) for n, d in self.eval_dirs.items()}
        lines = ["# CLASS demo on Push-T", ""]
        rows = []
        for name, r in results.items():
            err = self.holdout_error(name)
            rows.append(
                [
                    {"class_knn": "CLASS retrieval", "random_knn": "random-init retrieval"}[name],
                    f"{r['successes']}/{r['episodes']}",
                    f"{r['success_rate']:.2f}",
                    f"[{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]",
                    f"{r['mean_max_progress']:.3f}",
                    f"{r['mean_final_progress']:.3f}",
                    f"{err['knn']:.1f} / {err['nn1']:.1f}",
                    f"{r['latency_ms']['mean']:.1f} / {r['latency_ms']['p95']:.1f}",
                ]
            )
        lines.append(
            markdown_table(
                [
                    "policy",
                    "successes",
                    "success rate",
                    "95 % interval (Wilson)",
                    "mean max coverage",
                    "mean final coverage",
                    "held-out chunk error, k-NN / 1-NN",
                    "policy ms per step, mean / p95",
                ],
                rows,
            )
        )
        if {"class_knn", "random_knn"} <= results.keys():
            lines.append("\n" + self.comparison_line(results["class_knn"], results["random_knn"]))
        lines.append(
            "\nHeld-out chunk error: for 1000 training samples, the mean absolute difference (in action "
            "units, Push-T: pixels of 512) between the chunk retrieved from the *other* demonstrations "
            "and the sample's own chunk - the quality of the representation without rollouts."
        )
        lines.append("")
        figures: list[str] = []
        try:
            steps, loss = read_scalars(self.pretrain_dir / "tb", "train/loss")
            plot_curve(steps, loss, self.out / "loss.png", "CLASS pre-training (soft InfoNCE)", "loss")
            figures.append("![training loss](loss.png)")
        except (FileNotFoundError, KeyError) as e:
            lines.append(f"(no loss curve: {e})")
        try:
            self.neighbour_grid(self.out / "neighbours.png")
            figures.append("![nearest neighbours](neighbours.png)")
        except Exception as e:  # a report without the grid is still a report
            lines.append(f"(no neighbour grid: {type(e).__name__}: {e})")
        lines += figures + [""]
        self.timings["report"] = time.perf_counter() - t0
        lines.append(markdown_table(["stage", "wall s"], [[k, f"{v:.0f}"] for k, v in self.timings.items()]))
        lines.append(f"\ntotal: {sum(self.timings.values()):.0f} s on {os.cpu_count()} CPU cores")
        lines.append("")
        lines.append(self.scale_note())
        text = "\n".join(lines) + "\n"
        atomic_write_text(self.out / "report.md", text)
        atomic_write_text(self.out / "timings.json", json.dumps(self.timings, indent=2))
        print("\n" + text)
        return results

    @staticmethod
    def comparison_line(cls_r: dict[str, Any], rnd_r: dict[str, Any]) -> str:
        """CLASS against random-init on the shared seeds: paired tests, one-sided (CLASS better)."""
        from sim_bridge.rollout import paired_comparison

        c = paired_comparison(cls_r["episodes_detail"], rnd_r["episodes_detail"])
        text = (
            f"CLASS against random-init on the same {c['episodes']} seeds (one-sided, CLASS better): "
            f"{c['success_only_a']} episodes solved by CLASS only, {c['success_only_b']} by random-init "
            f"only (exact McNemar p = {c['mcnemar_p']:.3g}; unpaired Fisher p = {c['fisher_p']:.3g})"
        )
        if "sign_p" in c:
            text += (
                f"; maximum coverage higher with CLASS in {c['progress_wins']} episodes, lower in "
                f"{c['progress_losses']} (sign test p = {c['sign_p']:.3g})"
            )
        return text + "."

    def scale_note(self) -> str:
        from class_core.data.store import EpisodeStore

        store = EpisodeStore.open(self.store)
        train = self.cfg["pretrain"]["train"]
        return (
            f"Scale: {store.n_episodes} scripted demonstrations ({store.n_steps} samples) of Push-T "
            f"{self.task['variant']}; pre-training for {train['max_steps']} steps of batch "
            f"{train['batch_size']} (about {train['max_steps'] * train['batch_size'] / store.n_steps:.1f} "
            "epochs; the paper: 200 human demonstrations, 100 epochs of batch 160 on a GPU); "
            f"{self.d['eval_episodes']} evaluation episodes per policy (the paper: 50 episodes x 3 seeds); "
            f"task options {json.dumps(self.task.get('kwargs') or {})} (the paper: success at IoU > 0.90 "
            "within 500 steps)."
        )

    def bank(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Retrieval latents and chunks of an exported policy, in store order (read once: the
        report's held-out error and neighbour grid both use the CLASS bank)."""
        from safetensors.numpy import load_file

        if name not in self._banks:
            bank = load_file(str(self.models[name] / "bank.safetensors"))
            self._banks[name] = bank["latents"], bank["chunks"]
        return self._banks[name]

    def holdout_error(self, name: str) -> dict[str, float]:
        from class_core.data.store import EpisodeStore
        from class_core.policy.retrieval import holdout_chunk_error

        latents, chunks = self.bank(name)
        r = self.cfg["retrieval"]
        return holdout_chunk_error(
            latents, chunks, EpisodeStore.open(self.store).episode_index(), r["k"], r["tau_nn"]
        )

    def neighbour_grid(self, path: Path, n_queries: int = 6, k: int = 5) -> None:
        """Query images from different episodes and their nearest neighbours in the CLASS
        retrieval latent (the exported bank: what the policy retrieves)."""
        from class_core.data.store import EpisodeStore
        from class_core.report import image_grid

        store = EpisodeStore.open(self.store)
        z, _ = self.bank("class_knn")
        images = store.get("image")
        episode = store.episode_index()
        rng = np.random.default_rng(0)
        queries = rng.choice(len(z), size=n_queries, replace=False)
        rows, labels = [], []
        for q in queries:
            sim = z @ z[q]
            sim[episode == episode[q]] = -np.inf  # neighbours from other demonstrations only
            nn = np.argsort(-sim)[:k]
            rows.append([images[q]] + [images[j] for j in nn])
            labels.append(f"ep {episode[q]} t {q - store.episode_starts[episode[q]]}")
        image_grid(
            rows,
            path,
            row_labels=labels,
            col_labels=["query"] + [f"nn {i + 1}" for i in range(k)],
            title="CLASS retrieval latent: nearest neighbours from other demonstrations",
        )

    # --- driver ------------------------------------------------------------------------------
    def steps(self) -> dict[str, Callable[[], Any]]:
        return {
            "collect": self.collect,
            "precompute": self.precompute,
            "pretrain": self.pretrain,
            "export": self.export,
            "eval": self.evaluate,
            "report": self.report,
        }

    def __call__(self, stages: Sequence[str]) -> int:
        self.out.mkdir(parents=True, exist_ok=True)
        self.resolved = self.out / "config.yaml"
        cfg = load_config(None, self.overrides(), base=self.cfg)
        save_config(cfg, self.resolved)
        t0 = time.perf_counter()
        steps = self.steps()
        # a resumed run reports every stage's time: the earlier runs' for the stages it skips
        previous = self.out / "timings.json"
        if previous.exists():
            self.timings = {k: v for k, v in json.loads(previous.read_text()).items() if k not in stages}
        for s in stages:
            steps[s]()
        print(f"{self.prog}: done in {time.perf_counter() - t0:.0f} s; report at {self.out / 'report.md'}")
        return 0


def build_parser(
    driver: type[Demo] | None = None, description: str | None = None, epilog: str = EPILOG
) -> argparse.ArgumentParser:
    """The command line of a demo driver (``Demo`` or a subclass: its prog, section, stages and
    defaults)."""
    d = driver or Demo
    p = argparse.ArgumentParser(
        prog=d.prog,
        description=description or __doc__,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", type=Path, default=Path(d.default_config), help=f"{d.section} config YAML")
    p.add_argument(
        "--out", type=Path, default=Path(d.default_out), help=f"output folder (default {d.default_out})"
    )
    p.add_argument("--fresh", action="store_true", help="delete --out first and start over")
    p.add_argument(
        "--stages",
        default=",".join(d.stages),
        help=f"comma-separated subset of {','.join(d.stages)} (default: all)",
    )
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help=f"config overrides, e.g. {d.example_override}"
    )
    return p


def run_driver(driver: type[Demo], parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in driver.stages]
    if unknown:
        raise SystemExit(f"{driver.prog}: unknown stage(s) {unknown}; stages: {', '.join(driver.stages)}")
    cfg = load_config(args.config, args.overrides)
    if driver.section not in cfg:
        raise SystemExit(f"{driver.prog}: {args.config} has no '{driver.section}:' section")
    if args.fresh and args.out.exists():
        shutil.rmtree(args.out)
    return driver(cfg, args.out, args.config)(stages)


def main(argv: Sequence[str] | None = None) -> int:
    return run_driver(Demo, build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
