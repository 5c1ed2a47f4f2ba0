"""Seeded policy rollouts on sim_bridge tasks (class-eval's core).

The engine takes any policy-like object (``reset()``, ``select_action(obs) -> (D,)``), built in
each worker by a picklable ``policy_factory(task)``; it knows nothing of how a policy is made.
Episode ``i`` uses seed ``seed + i``, so results do not depend on the number of workers.
Latency is the wall time of each ``select_action`` call (a policy with an action queue shows
cheap calls between its chunk predictions; the max and p95 show the prediction calls).
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sim_bridge.task import PolicyLike, Task, make_task

PolicyFactory = Callable[[Task], PolicyLike]


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95 % for the default z)."""
    if n <= 0:
        raise ValueError(f"wilson_interval: n must be > 0, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"wilson_interval: successes must be in [0, {n}], got {successes}")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def binomial_upper_tail(k: int, n: int, p: float = 0.5) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if not 0 <= k <= n + 1:
        raise ValueError(f"binomial_upper_tail: k must be in [0, {n + 1}], got {k}")
    return min(1.0, sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1)))


def fisher_greater(successes_a: int, n_a: int, successes_b: int, n_b: int) -> float:
    """One-sided Fisher exact test that A's success rate is above B's (unpaired samples):
    P(X >= successes_a) for X hypergeometric with the margins of the 2 x 2 table."""
    for name, k, n in (("a", successes_a, n_a), ("b", successes_b, n_b)):
        if n < 1 or not 0 <= k <= n:
            raise ValueError(f"fisher_greater: successes_{name}={k} must be in [0, n_{name}={n}]")
    total, hits = n_a + n_b, successes_a + successes_b
    denom = math.comb(total, n_a)
    upper = min(hits, n_a)
    return min(
        1.0,
        sum(math.comb(hits, x) * math.comb(total - hits, n_a - x) for x in range(successes_a, upper + 1))
        / denom,
    )


def paired_comparison(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Compare two policies rolled out from the same seeds (``results.json`` episodes_detail).

    Paired tests use the shared seeds, which makes them more sensitive than comparing two rates:
    success by the exact McNemar test (one-sided, A better: the episodes only A solves against
    those only B solves) and, where present, the episode-maximum progress by the sign test
    (one-sided, ties dropped). Also the unpaired one-sided Fisher exact p of the success rates.
    """
    by_seed = {int(r["seed"]): r for r in b}
    pairs = [(r, by_seed[int(r["seed"])]) for r in a if int(r["seed"]) in by_seed]
    if not pairs:
        raise ValueError("paired_comparison: the two evaluations share no episode seed")
    only_a = sum(bool(x["success"]) and not bool(y["success"]) for x, y in pairs)
    only_b = sum(bool(y["success"]) and not bool(x["success"]) for x, y in pairs)
    out: dict[str, Any] = {
        "episodes": len(pairs),
        "successes": [sum(bool(x["success"]) for x, _ in pairs), sum(bool(y["success"]) for _, y in pairs)],
        "success_only_a": only_a,
        "success_only_b": only_b,
        "mcnemar_p": binomial_upper_tail(only_a, only_a + only_b),
    }
    out["fisher_p"] = fisher_greater(out["successes"][0], len(pairs), out["successes"][1], len(pairs))
    prog = [
        (float(x["max_progress"]), float(y["max_progress"]))
        for x, y in pairs
        if x.get("max_progress") is not None and y.get("max_progress") is not None
    ]
    if len(prog) == len(pairs):
        wins = sum(u > v for u, v in prog)
        losses = sum(u < v for u, v in prog)
        out.update(
            progress_wins=wins,
            progress_losses=losses,
            progress_ties=len(prog) - wins - losses,
            sign_p=binomial_upper_tail(wins, wins + losses),
        )
    return out


@dataclass
class EpisodeResult:
    index: int
    seed: int
    success: bool
    steps: int
    latencies_ms: list[float]
    seconds: float
    video: str | None = None
    final_info: dict[str, Any] = field(default_factory=dict)
    episode_info: dict[str, Any] = field(default_factory=dict)
    #: episode maximum of the task's ``progress_key`` (None when the task has none)
    max_progress: float | None = None

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        lat = d.pop("latencies_ms")
        d["latency_ms_mean"] = float(np.mean(lat)) if lat else None
        d["latency_ms_max"] = float(np.max(lat)) if lat else None
        return d


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002 - policies may draw from the global stream
    torch = sys.modules.get("torch")  # seed torch only if the policy brought it in
    if torch is not None:
        torch.manual_seed(seed)


class _Episode:
    """One rollout's bookkeeping: reset, steps, progress, frames, and its ``EpisodeResult``."""

    def __init__(
        self, task: Task, seed: int, index: int, record_video: bool, video_dir: str | os.PathLike[str] | None
    ) -> None:
        self.task, self.seed, self.index = task, seed, index
        self.video_dir = video_dir
        self.t0 = time.perf_counter()
        self.obs = task.reset(seed)
        self.frames = [task.render()] if record_video else None
        self.latencies: list[float] = []
        self.success = False
        self.done = False
        self.info: dict[str, Any] = {}
        self.best: float | None = None

    def step(self, action: Any, latency_ms: float, policy: Any = None) -> None:
        """``policy``: the one that chose ``action``; if it will not read the next observation
        (``reads_observation()`` False), the task may skip rendering it."""
        task = self.task
        self.latencies.append(latency_ms)
        observe = policy is None or not hasattr(policy, "reads_observation") or policy.reads_observation()
        self.obs, self.success, self.info = task.step(np.asarray(action), observe=observe)
        if task.progress_key is not None:
            value = float(self.info[task.progress_key])
            self.best = value if self.best is None else max(self.best, value)
        if self.frames is not None:
            self.frames.append(task.render())
        self.done = bool(self.success or self.info["truncated"])

    def result(self) -> EpisodeResult:
        video = None
        if self.frames is not None:
            from sim_bridge.video import write_mp4

            vdir = Path(self.video_dir) if self.video_dir is not None else Path(".")
            name = f"episode_{self.index:03d}_seed{self.seed}_{'success' if self.success else 'failure'}.mp4"
            video = str(write_mp4(vdir / name, self.frames, fps=self.task.control_hz))
        final = {k: v for k, v in self.info.items() if isinstance(v, int | float | bool | str)}
        return EpisodeResult(
            self.index,
            self.seed,
            self.success,
            self.task.steps,
            self.latencies,
            time.perf_counter() - self.t0,
            video,
            final,
            self.task.episode_info(),
            self.best,
        )


def run_episode(
    task: Task,
    policy: PolicyLike,
    seed: int,
    index: int = 0,
    record_video: bool = False,
    video_dir: str | os.PathLike[str] | None = None,
) -> EpisodeResult:
    """Roll out one episode until success or the task's step limit."""
    _seed_everything(seed)
    ep = _Episode(task, seed, index, record_video, video_dir)
    if hasattr(policy, "reseed"):
        policy.reseed(seed)
    policy.reset()
    while not ep.done:
        t = time.perf_counter()
        action = policy.select_action(ep.obs)
        ep.step(action, (time.perf_counter() - t) * 1e3, policy)
    return ep.result()


def run_lockstep(
    tasks: Sequence[Task],
    policy: Any,
    seeds: Sequence[int],
    indices: Sequence[int],
    record: Sequence[bool] = (),
    video_dir: str | os.PathLike[str] | None = None,
) -> list[EpisodeResult]:
    """Roll out ``len(seeds)`` episodes side by side, one task each, with one batched policy
    call per step (``policy.fork()`` / ``policy.select_actions``, class_core's Policy API).

    Episode ``i`` resets with ``seeds[i]``; global RNGs and a diffusion head's noise are seeded
    with ``seeds[0]``, so a block's results depend on its seeds only. A lockstep step's latency is
    that of the batched call, recorded for every episode still running."""
    if not hasattr(policy, "select_actions") or not hasattr(policy, "fork"):
        raise ValueError(
            f"{type(policy).__name__} cannot run episodes in lockstep (no fork/select_actions): use batch=1"
        )
    if not len(tasks) >= len(seeds) == len(indices) >= 1:
        raise ValueError(f"run_lockstep: {len(tasks)} tasks for {len(seeds)} seeds, {len(indices)} indices")
    _seed_everything(seeds[0])
    if hasattr(policy, "reseed"):
        policy.reseed(seeds[0])
    record = list(record) or [False] * len(seeds)
    eps = [
        _Episode(task, seed, index, rec, video_dir)
        for task, seed, index, rec in zip(tasks, seeds, indices, record, strict=False)
    ]
    forks = [policy.fork() for _ in eps]
    for f in forks:
        f.reset()
    while True:
        live = [i for i, ep in enumerate(eps) if not ep.done]
        if not live:
            break
        t = time.perf_counter()
        actions = policy.select_actions([forks[i] for i in live], [eps[i].obs for i in live])
        ms = (time.perf_counter() - t) * 1e3
        for i, action in zip(live, actions, strict=True):
            eps[i].step(action, ms, forks[i])
    return [ep.result() for ep in eps]


@dataclass
class EvalSummary:
    task: str
    variant: str
    policy: str
    episodes: int
    seed: int
    workers: int
    successes: int
    success_rate: float
    ci95: tuple[float, float]
    mean_steps: float
    latency_ms: dict[str, float]
    seconds: float
    task_kwargs: dict[str, Any]
    results: list[EpisodeResult]
    #: the task's progress measure (e.g. ``coverage``) and its mean episode maximum / final value
    progress_key: str | None = None
    mean_max_progress: float | None = None
    mean_final_progress: float | None = None
    #: episodes per lockstep block (1: one at a time); latencies are then per batched call
    batch: int = 1

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "results"}
        d["ci95"] = list(self.ci95)
        d["episodes_detail"] = [r.summary() for r in self.results]
        return d

    def to_markdown(self) -> str:
        lo, hi = self.ci95
        lat = self.latency_ms
        lines = [
            f"# Evaluation: {self.policy} on {self.task} / {self.variant}",
            "",
            "| episodes | success | 95 % CI (Wilson) | mean steps | latency mean / p50 / p95 / max (ms) |",
            "|---|---|---|---|---|",
            f"| {self.episodes} | {self.success_rate:.3f} ({self.successes}/{self.episodes}) "
            f"| [{lo:.3f}, {hi:.3f}] | {self.mean_steps:.1f} "
            f"| {lat['mean']:.2f} / {lat['p50']:.2f} / {lat['p95']:.2f} / {lat['max']:.2f} |",
        ]
        if self.progress_key is not None:
            lines += [
                "",
                f"Mean {self.progress_key}: episode maximum {self.mean_max_progress:.3f}, "
                f"final {self.mean_final_progress:.3f}.",
            ]
        lines += [
            "",
            f"Seeds {self.seed}..{self.seed + self.episodes - 1}, "
            f"{self.workers} worker(s), {self.seconds:.1f} s"
            + (f", lockstep blocks of {self.batch} (latency per batched call)." if self.batch > 1 else "."),
        ]
        videos = [r.video for r in self.results if r.video]
        if videos:
            lines += ["", "Videos: " + ", ".join(Path(v).name for v in videos)]
        return "\n".join(lines) + "\n"


# --- workers ------------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(
    name: str, variant: str, task_kwargs: dict[str, Any], policy_factory: PolicyFactory, threads: int
) -> None:
    os.environ["OMP_NUM_THREADS"] = str(threads)
    task = make_task(name, variant, **task_kwargs)
    _WORKER.update(tasks=[task], spec=(name, variant, task_kwargs), policy=policy_factory(task))


def _worker_tasks(n: int) -> list[Task]:
    tasks: list[Task] = _WORKER["tasks"]
    name, variant, kwargs = _WORKER["spec"]
    while len(tasks) < n:  # lockstep blocks need one simulator per episode
        tasks.append(make_task(name, variant, **kwargs))
    return tasks


def _run_block(
    tasks: Sequence[Task],
    policy: Any,
    indices: list[int],
    seeds: list[int],
    record: list[bool],
    video_dir: str | None,
) -> list[EpisodeResult]:
    """One block of episodes: alone (``run_episode``) or in lockstep, one task per episode."""
    if len(indices) == 1:
        return [run_episode(tasks[0], policy, seeds[0], indices[0], record[0], video_dir)]
    return run_lockstep(tasks, policy, seeds, indices, record, video_dir)


def _worker_block(
    indices: list[int], seeds: list[int], record: list[bool], video_dir: str | None
) -> list[EpisodeResult]:
    return _run_block(_worker_tasks(len(indices)), _WORKER["policy"], indices, seeds, record, video_dir)


def evaluate(
    task_name: str,
    variant: str | None,
    policy_factory: PolicyFactory,
    episodes: int,
    seed: int = 100_000,
    workers: int = 1,
    video_episodes: Sequence[int] = (),
    out_dir: str | os.PathLike[str] | None = None,
    task_kwargs: Mapping[str, Any] | None = None,
    policy_name: str = "policy",
    progress: bool = True,
    batch: int = 1,
) -> EvalSummary:
    """Run ``episodes`` seeded rollouts; write results.json / results.md (and videos) to out_dir.

    ``batch > 1`` runs consecutive episodes in blocks of ``batch`` side by side with one batched
    policy call per step (``run_lockstep``); blocks are fixed by episode index, so the results do
    not depend on ``workers``."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    bad = [i for i in video_episodes if not 0 <= i < episodes]
    if bad:
        raise ValueError(f"video episode index {bad[0]} is outside 0..{episodes - 1}")
    if video_episodes and out_dir is None:
        raise ValueError("videos need an output folder (out_dir / --out)")
    task_kwargs = dict(task_kwargs or {})
    videos = set(video_episodes)
    out = Path(out_dir) if out_dir is not None else None
    vdir = str(out / "videos") if out is not None else None
    t0 = time.perf_counter()
    results: list[EpisodeResult] = []
    bar = tqdm(total=episodes, desc=f"eval {task_name}/{variant}", unit="ep", disable=not progress)

    def note(r: EpisodeResult) -> None:
        results.append(r)
        bar.update(1)
        bar.set_postfix(success=f"{sum(x.success for x in results)}/{len(results)}")

    blocks = [list(range(lo, min(episodes, lo + batch))) for lo in range(0, episodes, batch)]
    if workers == 1:
        with make_task(task_name, variant, **task_kwargs) as task:
            variant = task.variant
            progress_key = task.progress_key
            policy = policy_factory(task)
            tasks = [task] + [
                make_task(task_name, variant, **task_kwargs) for _ in range(min(batch, episodes) - 1)
            ]
            try:
                for b in blocks:
                    for r in _run_block(
                        tasks, policy, b, [seed + i for i in b], [i in videos for i in b], vdir
                    ):
                        note(r)
            finally:
                for extra in tasks[1:]:
                    extra.close()
    else:
        with make_task(task_name, variant, **task_kwargs) as probe:  # early errors, variant name
            variant = probe.variant
            progress_key = probe.progress_key
        threads = max(1, (os.cpu_count() or 1) // workers)
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(
            workers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(task_name, variant, task_kwargs, policy_factory, threads),
        ) as pool:
            futures = [
                pool.submit(_worker_block, b, [seed + i for i in b], [i in videos for i in b], vdir)
                for b in blocks
            ]
            for f in as_completed(futures):
                for r in f.result():
                    note(r)
    bar.close()
    results.sort(key=lambda r: r.index)
    lat = np.concatenate([r.latencies_ms for r in results]) if results else np.zeros(1)
    k = sum(r.success for r in results)
    best = [r.max_progress for r in results if r.max_progress is not None]
    key = progress_key or ""
    final = [float(r.final_info[key]) for r in results if key in r.final_info]
    summary = EvalSummary(
        task=task_name,
        variant=str(variant),
        policy=policy_name,
        episodes=episodes,
        seed=seed,
        workers=workers,
        successes=k,
        success_rate=k / episodes,
        ci95=wilson_interval(k, episodes),
        mean_steps=float(np.mean([r.steps for r in results])),
        latency_ms={
            "mean": float(lat.mean()),
            "p50": float(np.percentile(lat, 50)),
            "p95": float(np.percentile(lat, 95)),
            "max": float(lat.max()),
        },
        seconds=time.perf_counter() - t0,
        task_kwargs=task_kwargs,
        results=results,
        progress_key=progress_key,
        mean_max_progress=float(np.mean(best)) if best else None,
        mean_final_progress=float(np.mean(final)) if final else None,
        batch=batch,
    )
    if out is not None:
        from class_core.io import atomic_write_text

        atomic_write_text(out / "results.json", json.dumps(summary.to_dict(), indent=2, default=str) + "\n")
        atomic_write_text(out / "results.md", summary.to_markdown())
    return summary


def scripted_policy(task: Task, **expert_kwargs: Any) -> PolicyLike:
    """Policy factory for the task's scripted demonstrator (``functools.partial`` for kwargs)."""
    return task.make_expert(**expert_kwargs)
