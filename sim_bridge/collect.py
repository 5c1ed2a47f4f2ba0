"""Scripted demonstration collection into the episode store (class-collect's core).

Each attempt resets the task with seed ``seed + k`` and lets the task's scripted demonstrator
act until success (and, where the expert says so, its own finish criterion) or the step limit.
Only successful episodes are written. Attempts run in worker processes when ``workers > 1``;
results are taken in seed order, so the store is the same for any number of workers.

Stored keys per step t (observation before action t): every image key (uint8 HWC), every proprio
key (float32), ``state`` (float32, privileged simulator state) and ``action`` (float32): the
expert's action; an expert with a ``perturb_action(action)`` method (DART-style execution noise)
has the perturbed action executed while the clean one is recorded.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sim_bridge.task import Task, make_task

COLLECT_VERSION = 1


@dataclass
class Attempt:
    seed: int
    success: bool
    steps: int
    seconds: float
    episode: dict[str, np.ndarray] | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class CollectResult:
    path: str
    task: str
    variant: str
    episodes: int
    attempts: int
    successes_in_attempts: int
    raw_success_rate: float
    steps: int
    mean_episode_steps: float
    seconds: float
    cpu_seconds_per_attempt: float
    kept_seeds: list[int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_expert_episode(task: Task, seed: int, expert_kwargs: Mapping[str, Any] | None = None) -> Attempt:
    """One demonstration attempt; keeps the arrays only when it succeeds."""
    t0 = time.process_time()
    obs = task.reset(seed)
    expert = task.make_expert(seed=seed, **dict(expert_kwargs or {}))
    expert.reset()
    rows: dict[str, list[np.ndarray]] = {
        k: [] for k in (*task.image_keys, *task.proprio_keys, "state", "action")
    }
    success = False
    while True:
        state = task.privileged_state()
        action = np.asarray(expert.select_action(obs), dtype=np.float64)
        for k in (*task.image_keys, *task.proprio_keys):
            rows[k].append(obs[k])
        rows["state"].append(state)
        rows["action"].append(action)
        # an expert may execute a perturbed action (DART-style noise) while the clean one is recorded
        perturb = getattr(expert, "perturb_action", None)
        obs, success, info = task.step(action if perturb is None else np.asarray(perturb(action)))
        if (success and getattr(expert, "done", True)) or info["truncated"]:
            break
    episode = None
    if success:
        episode = {k: np.stack(v) for k, v in rows.items()}
        for k in (*task.proprio_keys, "state", "action"):
            episode[k] = episode[k].astype(np.float32)
    return Attempt(seed, success, task.steps, time.process_time() - t0, episode, task.episode_info())


# --- worker processes ---------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(name: str, variant: str, task_kwargs: dict[str, Any], expert_kwargs: dict[str, Any]) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _WORKER["task"] = make_task(name, variant, **task_kwargs)
    _WORKER["expert_kwargs"] = expert_kwargs


def _worker_attempt(seed: int) -> Attempt:
    return run_expert_episode(_WORKER["task"], seed, _WORKER["expert_kwargs"])


def _attempts_in_order(
    name: str,
    variant: str,
    seeds: Iterator[int],
    workers: int,
    task_kwargs: dict[str, Any],
    expert_kwargs: dict[str, Any],
) -> Iterator[Attempt]:
    """Attempt results in seed order; with workers, a window of attempts runs ahead."""
    if workers <= 1:
        with make_task(name, variant, **task_kwargs) as task:
            for s in seeds:
                yield run_expert_episode(task, s, expert_kwargs)
        return
    ctx = mp.get_context("spawn")  # fork after torch/pygame initialisation is unsafe
    with ProcessPoolExecutor(
        workers,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(name, variant, task_kwargs, expert_kwargs),
    ) as pool:
        window: list[Future[Attempt]] = []
        try:
            for s in seeds:
                window.append(pool.submit(_worker_attempt, s))
                if len(window) >= 2 * workers:
                    yield window.pop(0).result()
            while window:
                yield window.pop(0).result()
        finally:
            for f in window:
                f.cancel()


def collect(
    task_name: str,
    variant: str | None,
    episodes: int,
    out: str | os.PathLike[str],
    seed: int = 0,
    workers: int = 1,
    task_kwargs: Mapping[str, Any] | None = None,
    expert_kwargs: Mapping[str, Any] | None = None,
    max_attempts: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> CollectResult:
    """Collect ``episodes`` successful scripted demonstrations into the store at ``out``."""
    from class_core.data.store import EpisodeStoreWriter

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    task_kwargs = dict(task_kwargs or {})
    expert_kwargs = dict(expert_kwargs or {})
    max_attempts = max_attempts if max_attempts is not None else 2 * episodes + 20
    if max_attempts < episodes:
        raise ValueError(f"max_attempts ({max_attempts}) must be >= episodes ({episodes})")
    # build one task here: fails early on a bad name/variant/kwarg, and gives the variant name
    with make_task(task_name, variant, **task_kwargs) as probe:
        variant = probe.variant
        probe.reset(seed)
        probe.make_expert(seed=seed, **expert_kwargs)  # validates expert kwargs

    out = Path(out)
    t0 = time.perf_counter()
    kept: list[int] = []
    infos: list[dict[str, Any]] = []
    n_attempts = n_success = n_steps = 0
    cpu = 0.0
    bar = tqdm(total=episodes, desc=f"collect {task_name}/{variant}", unit="ep", disable=not progress)
    with EpisodeStoreWriter(out, overwrite=overwrite) as writer:
        seeds = iter(range(seed, seed + max_attempts))
        for att in _attempts_in_order(task_name, variant, seeds, workers, task_kwargs, expert_kwargs):
            n_attempts += 1
            cpu += att.seconds
            if att.success and att.episode is not None:
                n_success += 1
                writer.add_episode(att.episode)
                kept.append(att.seed)
                infos.append({"seed": att.seed, "steps": att.steps, **att.info})
                n_steps += att.steps
                bar.update(1)
            bar.set_postfix(raw_success=f"{n_success / n_attempts:.2f}", attempts=n_attempts)
            if len(kept) >= episodes:
                break
        bar.close()
        if len(kept) < episodes:
            writer.abort()
            raise RuntimeError(
                f"only {len(kept)} of {episodes} episodes succeeded in {n_attempts} attempts "
                f"(seeds {seed}..{seed + n_attempts - 1}); raise max_attempts or check the demonstrator"
            )
        result = CollectResult(
            path=str(out),
            task=task_name,
            variant=variant,
            episodes=len(kept),
            attempts=n_attempts,
            successes_in_attempts=n_success,
            raw_success_rate=n_success / n_attempts,
            steps=n_steps,
            mean_episode_steps=n_steps / len(kept),
            seconds=time.perf_counter() - t0,
            cpu_seconds_per_attempt=cpu / n_attempts,
            kept_seeds=kept,
        )
        writer.set_attrs(
            collect=json.loads(
                json.dumps(
                    {
                        "version": COLLECT_VERSION,
                        "task": task_name,
                        "variant": variant,
                        "task_kwargs": task_kwargs,
                        "expert_kwargs": expert_kwargs,
                        "seed": seed,
                        "workers": workers,
                        "attempts": n_attempts,
                        "raw_success_rate": result.raw_success_rate,
                        "episodes": infos,
                    },
                    default=str,
                )
            )
        )
    return result
