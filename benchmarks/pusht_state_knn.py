"""Upper bound for retrieval on a Push-T store: kNN over the privileged simulator state.

The retrieval policy of CLASS with a perfect representation: neighbours by the true agent and
block pose (not images), softmax weights, the weighted mean of their 16-step action chunks, T_a
steps executed. If this cannot solve the task, no encoder can with the same demonstrations.

  .venv/bin/python benchmarks/pusht_state_knn.py runs/demo/pusht.zarr --episodes 20
"""

from __future__ import annotations

import argparse

import numpy as np

from class_core.data.chunks import chunk_indices
from class_core.data.store import EpisodeStore
from sim_bridge import make_task


def features(state: np.ndarray) -> np.ndarray:
    """(.., 5) [agent xy, block xy, angle] -> positions on the 512 px scale, angle as cos/sin."""
    s = np.asarray(state, dtype=np.float64)
    return np.concatenate([s[..., :4] / 512.0, np.cos(s[..., 4:5]), np.sin(s[..., 4:5])], axis=-1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store", help="Push-T episode store written by class-collect (needs data/state)")
    p.add_argument("--k", type=int, default=64, help="neighbours")
    p.add_argument("--tau", type=float, default=1e-4, help="softmax temperature on negative squared distance")
    p.add_argument("--action-steps", type=int, default=16, help="T_a: steps executed per query")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=100000, help="first evaluation seed")
    p.add_argument("--variant", default="fixed-color")
    args = p.parse_args()

    store = EpisodeStore.open(args.store)
    bank = features(store.get("state"))
    chunks = store.get("action")[chunk_indices(store.episode_ends, 16)]
    task = make_task("pusht", args.variant)
    successes, coverage = 0, []
    for ep in range(args.episodes):
        task.reset(seed=args.seed + ep)
        success, info, done = False, {}, False
        while not done:
            d = -np.sum((bank - features(task.privileged_state())) ** 2, axis=1)
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
        f"T_a={args.action_steps}: {successes}/{args.episodes} successes, "
        f"mean final coverage {np.mean(coverage):.3f}"
    )


if __name__ == "__main__":
    main()
