"""Upper bound for retrieval on a Push-T store: kNN over the privileged simulator state.

The retrieval policy of CLASS with a perfect representation: neighbours by the true agent and
block pose (not images), softmax weights, the weighted mean of their 16-step action chunks, T_a
steps executed. If this cannot solve the task, no encoder can with the same demonstrations.

  .venv/bin/python benchmarks/pusht_state_knn.py runs/demo/pusht.zarr --episodes 20
  .venv/bin/python benchmarks/pusht_state_knn.py runs/demo/pusht.zarr --threshold 0.9 --max-steps 500
"""

from __future__ import annotations

import argparse

import numpy as np

from class_core.data.chunks import chunk_indices
from class_core.data.store import EpisodeStore
from sim_bridge import make_task


def features(state: np.ndarray, angle_scale: float = 1.0, agent_weight: float = 1.0) -> np.ndarray:
    """(.., 5) [agent xy, block xy, angle] -> positions on the 512 px scale (the agent's times
    ``agent_weight``), angle as cos/sin times ``angle_scale`` (1: one radian weighs as much as
    512 px; 44 / 512 = 0.086 weighs it as the mean displacement of the T's area, about 44 px per
    radian)."""
    s = np.asarray(state, dtype=np.float64)
    ang = s[..., 4:5]
    return np.concatenate(
        [
            agent_weight * s[..., :2] / 512.0,
            s[..., 2:4] / 512.0,
            angle_scale * np.cos(ang),
            angle_scale * np.sin(ang),
        ],
        axis=-1,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store", help="Push-T episode store written by class-collect (needs data/state)")
    p.add_argument("--k", type=int, default=64, help="neighbours")
    p.add_argument("--tau", type=float, default=1e-4, help="softmax temperature on negative squared distance")
    p.add_argument("--action-steps", type=int, default=16, help="T_a: steps executed per query")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=100000, help="first evaluation seed")
    p.add_argument("--variant", default="fixed-color")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="success coverage (default gym-pusht's 0.95; the paper: 0.90)",
    )
    p.add_argument("--max-steps", type=int, default=300, help="episode step limit (the paper: 500)")
    p.add_argument(
        "--angle-scale",
        type=float,
        default=1.0,
        help="weight of the angle's cos/sin features (see features())",
    )
    p.add_argument("--agent-weight", type=float, default=1.0, help="weight of the agent's position features")
    args = p.parse_args()

    store = EpisodeStore.open(args.store)
    bank = features(store.get("state"), args.angle_scale, args.agent_weight)
    chunks = store.get("action")[chunk_indices(store.episode_ends, 16)]
    task = make_task("pusht", args.variant, max_steps=args.max_steps)
    if args.threshold is not None:
        task.env.success_threshold = float(args.threshold)  # type: ignore[attr-defined]
    successes, coverage = 0, []
    for ep in range(args.episodes):
        task.reset(seed=args.seed + ep)
        success, info, done = False, {}, False
        while not done:
            d = -np.sum(
                (bank - features(task.privileged_state(), args.angle_scale, args.agent_weight)) ** 2, axis=1
            )
            nn = np.argpartition(-d, args.k)[: args.k] if args.k < len(d) else np.arange(len(d))
            w = np.exp((d[nn] - d[nn].max()) / args.tau)
            chunk = np.tensordot(w / w.sum(), chunks[nn], axes=1)
            for a in chunk[: args.action_steps]:
                _, success, info = task.step(a)
                if success or info["truncated"]:
                    done = True
                    break
        successes += int(success)
        coverage.append(info.get("coverage", 0.0))
    print(
        f"{store.n_episodes} demonstrations ({store.n_steps} samples); state kNN k={args.k} tau={args.tau} "
        f"angle_scale={args.angle_scale} agent_weight={args.agent_weight} "
        f"T_a={args.action_steps} (success: coverage > {task.env.success_threshold} within {args.max_steps} "  # type: ignore[attr-defined]
        f"steps): {successes}/{args.episodes} successes, "
        f"mean final coverage {np.mean(coverage):.3f}"
    )


if __name__ == "__main__":
    main()
