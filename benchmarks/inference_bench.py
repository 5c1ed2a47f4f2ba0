"""Per-call latency of ``predict_action_chunk`` on CPU, encoder included, for every policy kind.

Policies use the full-size networks (ResNet-18 GN + spatial softmax on a 256x256 image, centre
crop 224; ConditionalUNet1D 256/512/1024) with random weights -- latency does not depend on the
weights. The retrieval bank holds ``--bank`` synthetic L2-normalised latents with an index of
``--index`` kind. Paper figures (A40 GPU, Appendix I): retrieval 5.5 ms, MLP 7.3 ms, DP 84.4 ms.

    python benchmarks/inference_bench.py                    # bank of 30k, 1 and 2 threads
    python benchmarks/inference_bench.py --device cuda      # on a GPU machine
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from class_core.nn.encoder import build_encoder
from class_core.nn.heads import DiffusionConfig, HeadConfig
from class_core.policy import (
    HeadPolicy,
    IndexConfig,
    KNNIndex,
    MinMax,
    ObservationEncoder,
    PolicySpec,
    RetrievalConfig,
    RetrievalPolicy,
    build_policy_model,
)
from class_core.policy.retrieval import l2_normalize

PAPER_MS = {"retrieval": 5.5, "mlp": 7.3, "diffusion": 84.4}


def bench(policy, obs, reps: int, device: str) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    for _ in range(3):
        policy.predict_action_chunk(obs)
    times = []
    for _ in range(reps):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        policy.predict_action_chunk(obs)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    t = np.array(times) * 1e3
    return float(np.percentile(t, 50)), float(np.percentile(t, 90))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bank", type=int, default=30_000, help="retrieval bank size")
    p.add_argument("--index", default="pca_flat", choices=["flat", "pca_flat", "hnsw", "ivf"])
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--ddim-steps", type=int, nargs="+", default=[8, 4])
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    spec = PolicySpec(["image"], ["agent_pos"], [2], 2, 16, 16, 1, None)
    prop_norm = MinMax([0.0, 0.0], [512.0, 512.0])
    enc = build_encoder({"cameras": ["image"], "weights": "random"})
    obs_enc = ObservationEncoder(enc, spec, prop_norm).eval()
    bank = l2_normalize(rng.normal(size=(args.bank, obs_enc.out_dim)))
    chunks = rng.normal(size=(args.bank, 16, 2)).astype(np.float32)
    index = KNNIndex.build(bank, IndexConfig(kind=args.index))
    policies: list[tuple[str, object]] = [
        ("retrieval", RetrievalPolicy(spec, obs_enc, index, chunks, RetrievalConfig(k=64)).to(args.device))
    ]
    act_norm = MinMax([-1.0, -1.0], [1.0, 1.0])
    spec12 = PolicySpec(["image"], ["agent_pos"], [2], 2, 16, 12, 1, None)
    for kind in ("mlp", "diffusion"):
        hc = HeadConfig(type=kind, diffusion=DiffusionConfig(scheduler="ddpm"))
        model = build_policy_model(spec12, build_encoder({"cameras": ["image"]}), prop_norm, hc)
        pol = HeadPolicy(spec12, model, act_norm, hc).to(args.device)
        policies.append((kind if kind == "mlp" else "diffusion DDPM 16", pol))
        if kind == "diffusion":
            for s in args.ddim_steps:
                model2 = build_policy_model(spec12, build_encoder({"cameras": ["image"]}), prop_norm, hc)
                pol2 = HeadPolicy(spec12, model2, act_norm, hc).to(args.device)
                pol2.set_sampler("ddim", s)
                policies.append((f"diffusion DDIM {s}", pol2))
    img = rng.integers(0, 256, size=(args.image_size, args.image_size, 3), dtype=np.uint8)
    obs = {"image": img, "agent_pos": np.array([100.0, 200.0], np.float32)}
    print(
        f"device {args.device}, image {args.image_size}x{args.image_size} (crop 224), "
        f"retrieval bank {args.bank} x {obs_enc.out_dim} ({args.index}); ms per predict_action_chunk"
    )
    print(f"{'policy':<20} {'threads':>7} {'p50':>9} {'p90':>9} {'paper A40':>10}")
    for th in args.threads:
        torch.set_num_threads(th)
        for name, pol in policies:
            p50, p90 = bench(pol, obs, args.reps, args.device)
            paper = PAPER_MS["diffusion" if name.startswith("diffusion") else name]
            print(f"{name:<20} {th:>7} {p50:>9.1f} {p90:>9.1f} {paper:>10.1f}", flush=True)


if __name__ == "__main__":
    main()
