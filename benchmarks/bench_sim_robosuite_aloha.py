"""Per-step and rendering cost of the robosuite and Aloha tasks, and scripted-expert success rates.

MUJOCO_GL=egl .venv/bin/python benchmarks/bench_sim_robosuite_aloha.py --tasks lift square --episodes 20
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["lift", "stack", "square"], help="robosuite tasks")
    ap.add_argument("--episodes", type=int, default=10, help="expert episodes per task (seeds 0..n-1)")
    ap.add_argument("--image-size", type=int, default=84, help="rendered image side in pixels")
    ap.add_argument("--steps", type=int, default=50, help="steps timed for step/render cost")
    args = ap.parse_args()
    from sim_bridge.robosuite_experts import run_expert_episode
    from sim_bridge.task import make_task

    print(f"{'task':8} {'step ms':>8} {'render ms':>9} {'expert ok':>10} {'s/episode':>9}")
    for name in args.tasks:
        task = make_task(name, "dyn-cam", image_size=args.image_size)
        task.reset(0)
        hold = task.current_action()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            task.step(hold)
        with_render = (time.perf_counter() - t0) / args.steps
        t0 = time.perf_counter()
        for _ in range(args.steps):
            task.render()
        render = (time.perf_counter() - t0) / args.steps
        task.close()
        blind = make_task(name, "fixed-cam", render=False)
        ok, t0 = 0, time.perf_counter()
        for seed in range(args.episodes):
            ok += run_expert_episode(blind, seed)[1]
        per_ep = (time.perf_counter() - t0) / args.episodes
        blind.close()
        step_ms, render_ms = 1e3 * (with_render - render), 1e3 * render
        print(f"{name:8} {step_ms:8.1f} {render_ms:9.1f} {ok:>4}/{args.episodes:<5} {per_ep:9.2f}")


if __name__ == "__main__":
    main()
