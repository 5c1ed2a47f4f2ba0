"""Push-T scripted demonstrator and env step cost.

    .venv/bin/python benchmarks/pusht_expert.py --episodes 50 --workers 2

Prints the demonstrator's raw success rate (episode ends successful within 300 steps, pushed on
to the expert's finish coverage), steps per episode and CPU seconds per episode (process time,
planning + simulation + rendering), then the env step time with and without image rendering,
next to gym-pusht's own pixel env.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


def _episode(args: tuple[str, int]) -> tuple[int, bool, int, float, float]:
    from sim_bridge import make_task

    variant, seed = args
    task = make_task("pusht", variant)
    t0 = time.process_time()
    obs = task.reset(seed)
    ex = task.make_expert(seed=seed)
    success = False
    while True:
        obs, success, info = task.step(ex.select_action(obs))
        if ex.done or info["truncated"]:
            break
    return seed, success, task.steps, time.process_time() - t0, task.last_coverage


def step_times(n: int = 300) -> dict[str, float]:
    from gym_pusht.envs.pusht import PushTEnv

    from sim_bridge import make_task

    rng = np.random.default_rng(0)
    acts = rng.uniform(50, 450, (n, 2))
    out = {}
    task = make_task("pusht", "rand-color")
    task.reset(0)
    t = time.perf_counter()
    for a in acts:
        task.step(a)
    out["sim_bridge pusht step + 96px image (ms)"] = (time.perf_counter() - t) / n * 1e3
    task.reset(0)
    t = time.perf_counter()
    for a in acts:
        task.env.step(a)
    out["  physics + coverage only (ms)"] = (time.perf_counter() - t) / n * 1e3
    t = time.perf_counter()
    for _ in range(n):
        task.env.render_obs()
    out["  96px image render only (ms)"] = (time.perf_counter() - t) / n * 1e3
    ref = PushTEnv(obs_type="pixels_agent_pos")
    ref.reset(seed=0)
    t = time.perf_counter()
    for a in acts:
        ref.step(a)
    out["gym-pusht pixels_agent_pos step (ms)"] = (time.perf_counter() - t) / n * 1e3
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--variant", default="fixed-color")
    args = p.parse_args()
    from sim_bridge.rollout import wilson_interval

    jobs = [(args.variant, s) for s in range(args.seed, args.seed + args.episodes)]
    t0 = time.perf_counter()
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            res = list(pool.map(_episode, jobs))
    else:
        res = [_episode(j) for j in jobs]
    wall = time.perf_counter() - t0
    ok = [r for r in res if r[1]]
    lo, hi = wilson_interval(len(ok), len(res))
    steps = np.array([r[2] for r in ok]) if ok else np.zeros(1)
    cpu = np.array([r[3] for r in res])
    print("| episodes | success | 95% CI | steps mean / median / max (successes) | CPU s/episode | wall s |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {len(res)} | {len(ok) / len(res):.3f} | [{lo:.3f}, {hi:.3f}] | {steps.mean():.1f} / "
        f"{np.median(steps):.0f} / {steps.max()} | {cpu.mean():.2f} | {wall:.0f} |"
    )
    failed = [r[0] for r in res if not r[1]]
    if failed:
        print("failed seeds:", failed)
    print()
    print("| env step | ms |")
    print("|---|---|")
    for k, v in step_times().items():
        print(f"| {k} | {v:.3f} |")


if __name__ == "__main__":
    main()
