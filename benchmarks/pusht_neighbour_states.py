"""How far, in simulator state, are the retrieval neighbours of a class-demo run? (not run in CI)

For random training samples, the nearest neighbour from *another* demonstration by each exported
bank (CLASS and random-init latents, cosine) and by the privileged state (agent weight 1, or 0.3
as the block metric of docs/simulation.md; 44 px per radian of block angle). Prints the median
agent distance, block-origin distance (px of 512) and block-angle difference (degrees).

    python benchmarks/pusht_neighbour_states.py runs/demo_v5
"""

from __future__ import annotations

import argparse

import numpy as np
from pusht_state_knn import features  # the state metric of the state-kNN study (benchmarks/)
from safetensors.numpy import load_file

from class_core.data.store import EpisodeStore


def report(name: str, state: np.ndarray, q: np.ndarray, nn: np.ndarray) -> None:
    d = state[nn] - state[q]
    agent = np.median(np.hypot(d[:, 0], d[:, 1]))
    block = np.median(np.hypot(d[:, 2], d[:, 3]))
    angle = np.degrees(np.median(np.abs((d[:, 4] + np.pi) % (2 * np.pi) - np.pi)))
    print(f"{name:26s} agent {agent:6.1f} px   block {block:6.1f} px   angle {angle:5.1f} deg")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="class-demo output folder (pusht.zarr and models/<name>/bank.safetensors)")
    p.add_argument("--queries", type=int, default=1000, help="training samples used as queries")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    store = EpisodeStore.open(f"{args.run}/pusht.zarr")
    state = store.get("state").astype(np.float64)  # agent xy, block origin xy, block angle
    ep = store.episode_index()
    q = np.random.default_rng(args.seed).choice(len(state), min(args.queries, len(state)), replace=False)
    same = ep[None, :] == ep[q][:, None]
    for name in ("class_knn", "random_knn"):
        z = load_file(f"{args.run}/models/{name}/bank.safetensors")["latents"]
        sim = z[q] @ z.T
        sim[same] = -np.inf
        report(name, state, q, sim.argmax(1))
    for agent_w in (1.0, 0.3):
        f = features(state, angle_scale=44.0 / 512.0, agent_weight=agent_w)
        dist = (f[q] ** 2).sum(1)[:, None] + (f**2).sum(1)[None] - 2 * f[q] @ f.T
        dist[same] = np.inf
        report(f"state, agent weight {agent_w}", state, q, dist.argmin(1))


if __name__ == "__main__":
    main()
