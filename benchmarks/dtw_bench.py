"""DTW positive-pair benchmark: aeon vs dtaidistance vs this engine (not run in CI).

Every measurement runs in its own subprocess, which reports its own peak RSS
(``getrusage(RUSAGE_SELF).ru_maxrss``, including Python and imports) and wall time.
Two data sets, both (N, T=16, D=10) float32:

- ``walk``: independent random walks (the worst case for pruning);
- ``demo``: demonstration-like chunks: smooth trajectories from a handful of behaviours, each
  episode time-warped, offset and noisy, chunked one per step with the last action repeated,
  normalised to [-1, 1] (what ``class_core.data.chunks.similarity_chunks`` produces).

Baselines compute all N(N-1)/2 distances (dense matrix, as the authors' pipeline does) and then
the 2.5 % quantile; when that is too slow, they time a random subset of rows and extrapolate
linearly in the number of pairs (marked ``~``).

    python benchmarks/dtw_bench.py                       # N = 3000 comparison + scaling 10k/30k
    python benchmarks/dtw_bench.py --sizes 10000 30000 100000 --skip-baselines
    python benchmarks/dtw_bench.py --kernel              # the DP kernels alone, 1 thread
    python benchmarks/dtw_bench.py --strip --data walk --sizes 30000   # strip pass vs row group size

``--kernel`` reports CPU time of the calling thread (``time.thread_time``), so it stays meaningful
on a machine shared with other jobs (a busy hyperthread sibling still slows it somewhat).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def walk_chunks(n: int, seed: int = 0, t: int = 16, d: int = 10) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.normal(size=(n, t, d)), axis=1)
    return x.astype(np.float32)


def demo_chunks(n: int, seed: int = 0, t: int = 16, d: int = 10, behaviours: int = 6) -> np.ndarray:
    """Chunks of ~n samples from episodes that follow one of a few smooth behaviours."""
    rng = np.random.default_rng(seed)
    # each behaviour: a smooth path in D dims = a few random low-frequency sinusoids
    freq = rng.uniform(0.3, 1.5, size=(behaviours, 3, d))
    phase = rng.uniform(0, 2 * np.pi, size=(behaviours, 3, d))
    amp = rng.uniform(0.2, 1.0, size=(behaviours, 3, d))
    actions = []
    total = 0
    while total < n:
        b = rng.integers(behaviours)
        length = int(rng.integers(80, 220))
        # a monotone random time warp of [0, 1]
        speed = np.cumsum(rng.uniform(0.5, 1.5, size=length))
        u = (speed - speed[0]) / (speed[-1] - speed[0]) * 2 * np.pi
        path = (
            amp[b][:, None, :] * np.sin(freq[b][:, None, :] * u[None, :, None] + phase[b][:, None, :])
        ).sum(0)
        path += rng.normal(scale=0.05, size=(1, d))  # per-episode offset
        path += rng.normal(scale=0.01, size=path.shape)
        gripper = (np.sin(u * freq[b, 0, 0] + phase[b, 0, 0]) > 0).astype(np.float64)
        path[:, -1] = gripper
        actions.append(path[: min(length, n - total)])
        total += actions[-1].shape[0]
    ends = np.cumsum([a.shape[0] for a in actions])
    act = np.concatenate(actions)
    lo, hi = act.min(0), act.max(0)
    act = 2 * (act - lo) / np.where(hi > lo, hi - lo, 1) - 1
    starts = np.r_[0, ends[:-1]]
    idx = np.empty((act.shape[0], t), dtype=np.int64)
    for s, e in zip(starts, ends, strict=True):
        steps = np.arange(s, e)[:, None] + np.arange(t)[None, :]
        idx[s:e] = np.minimum(steps, e - 1)
    chunks = act[idx]
    chunks[..., 3:9] *= 0.5  # rot6d scaling, as for 10-D end-effector actions
    return chunks.astype(np.float32)


def make_data(kind: str, n: int, seed: int) -> np.ndarray:
    return walk_chunks(n, seed) if kind == "walk" else demo_chunks(n, seed)


# ---------------------------------------------------------------------------------------------------
# workers (run in a subprocess)


def worker(job: dict) -> dict:
    x = make_data(job["data"], job["n"], job["seed"])
    n = x.shape[0]
    m = n * (n - 1) // 2
    q = job["quantile"]
    method = job["method"]
    rows = job.get("rows")  # baselines: time only these anchor rows (pairs j > i) and extrapolate
    out: dict = {"method": method, "data": job["data"], "n": n, "pairs": m}
    if method == "engine":
        os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))
        from class_core.similarity import PairConfig, compute_pairs

        cfg = PairConfig(quantile=q, backend=job.get("backend", "numba"))
        # load every compiled kernel (all-pairs pass, sampled threshold, float64 recompute) outside
        # the timing, as the baselines' JIT compilation is
        compute_pairs(x[:64], PairConfig(quantile=0.5), progress=False)
        compute_pairs(x[:600], PairConfig(quantile=q, sample_pairs=1024), progress=False)
        t0 = time.perf_counter()
        ps = compute_pairs(x, cfg, progress=False)
        out["wall_s"] = time.perf_counter() - t0
        assert ps is not None
        out["k_pairs"] = len(ps)
        out["threshold"] = ps.meta["threshold"]
        out["stats"] = ps.meta["stats"]
        out["extrapolated"] = False
        return out
    xt = np.ascontiguousarray(x.transpose(0, 2, 1))  # aeon: (n, channels, time)
    # a contiguous block of anchor rows against all columns; time per pair is extrapolated to M
    r = n if rows is None or rows >= n else rows
    if method == "aeon":
        from aeon.distances import dtw_pairwise_distance

        dtw_pairwise_distance(xt[:4], n_jobs=job.get("n_jobs", 1))  # JIT compile outside the timing
        t0 = time.perf_counter()
        if r == n:
            dm = dtw_pairwise_distance(xt, n_jobs=job.get("n_jobs", 1))
            d = dm[np.triu_indices(n, 1)]
            done = m
        else:
            dm = dtw_pairwise_distance(xt[:r], xt, n_jobs=job.get("n_jobs", 1))
            d = dm[np.triu_indices(r, 1, n)]
            done = r * n
    elif method == "dtaidistance":
        from dtaidistance import dtw_ndim

        xd = x.astype(np.float64)
        t0 = time.perf_counter()
        if r == n:
            d = np.asarray(dtw_ndim.distance_matrix_fast(xd, parallel=True, compact=True)) ** 2
            done = m
        else:
            # the block's upper-triangle part: rows 0..r against columns > row
            d = (
                np.asarray(
                    dtw_ndim.distance_matrix_fast(xd, block=((0, r), (0, n)), parallel=True, compact=True)
                )
                ** 2
            )
            done = d.size
        # dtaidistance returns the square root of the summed squared costs, hence ** 2
    else:
        raise ValueError(method)
    thr = float(np.quantile(d, q))
    wall = time.perf_counter() - t0
    out["wall_s"] = wall * m / done
    out["measured_s"] = wall
    out["measured_pairs"] = int(done)
    out["extrapolated"] = done < m
    out["threshold"] = thr
    return out


def kernel_bench(reps: int = 20000, rounds: int = 5) -> dict:
    """Pairs per CPU-second of ``dtw_lanes`` alone on one thread (T=16, D=10, float32, data in L1)."""
    os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))
    import numba
    from numba import njit

    from class_core.similarity import dtw

    numba.set_num_threads(1)
    lanes = dtw.LANES
    x = walk_chunks(lanes + 1, seed=0)
    t, d = x.shape[1], x.shape[2]
    a = x[0]
    bt = np.empty((d, t * lanes), dtype=np.float32)
    dtw.pack_lanes(x, np.arange(1, lanes + 1, dtype=np.int64), lanes, bt)
    cst = np.empty(t * lanes, dtype=np.float32)
    prev, cur, out = cst.copy(), cst.copy(), np.empty(lanes, dtype=np.float32)
    zero, inf = np.float32(0.0), np.float32(np.inf)
    kernel = dtw.dtw_lanes

    @njit
    def loop(a, bt, reps, cst, prev, cur, out):  # pragma: no cover - benchmark only
        s = np.float32(0.0)
        for r in range(reps):
            kernel(a, bt, -1, False, inf, zero, inf, cst, prev, cur, out)
            s += out[r % lanes]
        return s

    # the dot-product kernel of dense blocks (all T rows, no abandoning) on the block layout; its
    # anchor is the block's first lane (the layout's centring is per data set)
    xb, _ = dtw.dot_layout(x[1:])
    dp = xb.shape[1] - 1
    a2 = np.ascontiguousarray(-2 * xb[0, :dp, 0::lanes].T)
    na = np.ascontiguousarray(xb[0, dp, 0::lanes])
    kernel_dot = dtw.dtw_lanes_dot

    @njit
    def loop_dot(a2, na, bt, reps, cst, prev, cur, out):  # pragma: no cover - benchmark only
        s = np.float32(0.0)
        for r in range(reps):
            kernel_dot(a2, na, bt, -1, inf, inf, cst, prev, cur, out)
            s += out[r % lanes]
        return s

    # the generated kernels (dot_kernels.py, T = 16, D' = 10) against dot_rows, the loop they
    # replace: the 9 x 9 corner (dot_corner) and the whole DP (as loop_dot above)
    k = dtw.corner_size(t)
    dot_corner, dot_rows = dtw.dot_corner, dtw.dot_rows

    @njit
    def loop_corner(a2, na, bt, reps, cst, prev, cur, out):  # pragma: no cover - benchmark only
        s = np.float32(0.0)
        for r in range(reps):
            dot_corner(a2, na, bt, -1, k, inf, cst, prev, cur, out)
            s += out[r % lanes]
        return s

    @njit
    def loop_rows(a2, na, bt, reps, cst, prev, cur, whole):  # pragma: no cover - benchmark only
        s = np.float32(0.0)
        for r in range(reps):
            if whole:
                dot_rows(a2, na, bt, -1, 0, t, inf, cst, prev, cur, t, False)
            else:
                dot_rows(a2, na, bt, -1, 0, k, inf, cst, prev, cur, k + 1, True)
            s += cst[r % lanes]
        return s

    out_dot = out.copy()
    loop(a, bt, 10, cst, prev, cur, out)
    loop_dot(a2, na, xb[0], 10, cst, prev, cur, out_dot)
    cst_g, prev_g, cur_g, out_g = cst.copy(), cst.copy(), cst.copy(), out.copy()  # own scratch
    loop_corner(a2, na, xb[0], 10, cst_g, prev_g, cur_g, out_g)
    for whole in (False, True):
        loop_rows(a2, na, xb[0], 10, cst_g, prev_g, cur_g, whole)
    ref = np.array([dtw.dtw_distance(a, x[1 + k]) for k in range(lanes)])
    err = float(np.max(np.abs(out - ref) / ref))
    ref_dot = np.array([dtw.dtw_distance(x[1], x[1 + k]) for k in range(lanes)])
    err_dot = float(np.max(np.abs(out_dot - ref_dot)))
    best = np.inf
    best_dot = np.inf
    gen = {"corner_generated": np.inf, "corner_dot_rows": np.inf, "whole_dot_rows": np.inf}
    for _ in range(rounds):  # interleaved, so that all see the same load
        c0 = time.thread_time()
        loop(a, bt, reps, cst, prev, cur, out)
        best = min(best, time.thread_time() - c0)
        c0 = time.thread_time()
        loop_dot(a2, na, xb[0], reps, cst, prev, cur, out_dot)
        best_dot = min(best_dot, time.thread_time() - c0)
        c0 = time.thread_time()
        loop_corner(a2, na, xb[0], reps, cst_g, prev_g, cur_g, out_g)
        gen["corner_generated"] = min(gen["corner_generated"], time.thread_time() - c0)
        for whole in (False, True):
            c0 = time.thread_time()
            loop_rows(a2, na, xb[0], reps, cst_g, prev_g, cur_g, whole)
            key = "whole_dot_rows" if whole else "corner_dot_rows"
            gen[key] = min(gen[key], time.thread_time() - c0)
    ns = best / (reps * lanes) * 1e9
    ns_dot = best_dot / (reps * lanes) * 1e9
    return {
        **{f"{key}_ns_per_pair": v / (reps * lanes) * 1e9 for key, v in gen.items()},
        "ns_per_pair": ns,
        "mpairs_per_s": 1e3 / ns,
        "max_rel_err_vs_float64": err,
        "dot_ns_per_pair": ns_dot,
        "dot_max_abs_err_vs_float64": err_dot,
    }


def strip_bench(data: str, n: int, groups: list[int], rows: int = 32, rounds: int = 6) -> dict:
    """The strip pass alone (the DTW work of a job), 1 thread, thread CPU time, best of ``rounds``,
    for each row group size of ``kernels.strip_candidates`` interleaved (1 = one row at a time,
    the previous visiting order), on ``rows`` rows at 10 %, 40 % and 70 % of the sorted order
    against all their columns. Asserts identical candidates for every group size."""
    os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))
    import numba

    from class_core.similarity import PairConfig, engine, kernels

    numba.set_num_threads(1)
    x = make_data(data, n, 0)
    cfg = PairConfig()
    prep = engine._prepare(x, cfg.seed)
    thr = engine._sample_threshold(prep, cfg, -1, False)
    dot = engine._dot_pays(prep, cfg, thr, False)
    lim = engine._gap_limit(thr * (1 + engine.REL_MARGIN), False)
    jmax = np.minimum(np.searchsorted(prep.s, prep.s + lim, side="right"), n).astype(np.int64)
    kernel = kernels.strip_candidates
    best = dict.fromkeys(groups, np.inf)
    ref = None
    try:
        for r in range(rounds + 1):  # round 0 compiles and checks
            for g in groups:
                kernels.strip_candidates = lambda *args, g=g: kernel(*args, g)
                c0 = time.thread_time()
                out = [
                    engine._strip_numba(prep, r0, r0 + rows, jmax, -1, False, thr, cfg.tile_cols, dot)
                    for r0 in (n // 10, 4 * n // 10, 7 * n // 10)
                ]
                if r:
                    best[g] = min(best[g], time.thread_time() - c0)
                ref = ref or out
                assert all(np.array_equal(a[k], b[k]) for a, b in zip(ref, out, strict=True) for k in "ijd")
    finally:
        kernels.strip_candidates = kernel
    return {"data": data, "n": n, "dense_blocks": dot, "cpu_s": best}


def run_job(job: dict, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", json.dumps(job)]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {**job, "error": f"timeout after {timeout:.0f} s"}
    total = time.perf_counter() - t0
    if p.returncode != 0:
        return {
            **job,
            "error": p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"rc {p.returncode}",
        }
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["process_s"] = total
    return res


def fmt_row(r: dict) -> str:
    if "error" in r:
        return f"| {r['method']} | {r['data']} | {r['n']} | error: {r['error']} | | | |"
    wall = r["wall_s"]
    pps = r["pairs"] / wall
    mark = "~" if r.get("extrapolated") else ""
    rss = f"{r['peak_rss_mb']:.0f}" if r.get("peak_rss_mb") else "n/a"
    extra = ""
    if "stats" in r:
        st = r["stats"]
        extra = f"DTW on {st['pairs_after_lower_bounds'] / r['pairs']:.1%} of pairs"
    return (
        f"| {r['method']} | {r['data']} | {r['n']} | {mark}{wall:.2f} | {mark}{pps / 1e6:.2f} | {rss} | "
        f"{extra} |"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument(
        "--compare-n", type=int, default=3000, help="N of the side-by-side comparison (default 3000)"
    )
    ap.add_argument(
        "--sizes",
        type=int,
        nargs="*",
        default=[10000, 30000],
        help="N values of the engine scaling run (default 10000 30000; add 100000 if RAM allows)",
    )
    ap.add_argument("--data", nargs="+", default=["walk", "demo"], choices=["walk", "demo"])
    ap.add_argument("--quantile", type=float, default=0.025)
    ap.add_argument(
        "--baseline-rows",
        type=int,
        default=300,
        help="rows timed for a baseline when the full matrix is too slow (extrapolated); "
        "0 = always the full job",
    )
    ap.add_argument("--skip-baselines", action="store_true", help="only run this engine")
    ap.add_argument("--skip-slow", action="store_true", help="skip the scaling run (sizes)")
    ap.add_argument("--timeout", type=float, default=1800, help="per job, seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write all results here")
    ap.add_argument("--kernel", action="store_true", help="only the single-thread dtw_lanes micro-benchmark")
    ap.add_argument(
        "--strip", action="store_true", help="only the strip pass, 1 thread, row group sizes 1, 4, 8, 16"
    )
    args = ap.parse_args(argv)
    if args.strip:
        for data in args.data:
            for n in args.sizes:
                r = strip_bench(data, n, [1, 4, 8, 16])
                base = r["cpu_s"][1]
                print(
                    f"strip pass {data} N={n} (dense blocks: {r['dense_blocks']}), 1 thread, 3 x 32 rows, "
                    "CPU s (x vs one row at a time): "
                    + ", ".join(f"group {g}: {v:.4f} ({base / v:.2f}x)" for g, v in r["cpu_s"].items())
                    + f"; load average {os.getloadavg()}"
                )
        return
    if args.kernel:
        r = kernel_bench()
        print(
            f"dtw_lanes, 1 thread, T=16 D=10 float32, 32 lanes: {r['ns_per_pair']:.1f} ns/pair CPU = "
            f"{r['mpairs_per_s']:.2f} M pairs/s per thread (max rel. err vs float64 "
            f"{r['max_rel_err_vs_float64']:.1e}); load average {os.getloadavg()}"
        )
        print(
            f"dtw_lanes_dot (dense blocks, all rows, same harness): {r['dot_ns_per_pair']:.1f} ns/pair CPU "
            f"= {1e3 / r['dot_ns_per_pair']:.2f} M pairs/s per thread (max abs. err vs float64 "
            f"{r['dot_max_abs_err_vs_float64']:.1e}, only used to discard pairs; the generated kernel); "
            f"the same DP by dot_rows, the loop it replaces: {r['whole_dot_rows_ns_per_pair']:.1f} ns/pair"
        )
        print(
            f"corner bound (9 x 9): generated kernel (dot_corner) {r['corner_generated_ns_per_pair']:.1f} "
            f"ns/pair, dot_rows {r['corner_dot_rows_ns_per_pair']:.1f} ns/pair"
        )
        return
    if args.worker:
        res = worker(json.loads(args.worker))
        res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # this job's process
        print(json.dumps(res))
        return

    results = []
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()}")
    print("| method | data | N | wall s (full job) | M pairs/s | peak RSS MB | note |")
    print("|---|---|---|---|---|---|---|")
    for data in args.data:
        base = {"data": data, "n": args.compare_n, "seed": args.seed, "quantile": args.quantile}
        jobs = [{**base, "method": "engine"}]
        if not args.skip_baselines:
            rows = args.baseline_rows if args.baseline_rows > 0 else None
            jobs += [
                {**base, "method": "aeon", "rows": rows},
                {**base, "method": "dtaidistance", "rows": rows},
            ]
        for job in jobs:
            r = run_job(job, args.timeout)
            results.append(r)
            print(fmt_row(r), flush=True)
        eng = next(
            (r for r in results[-len(jobs) :] if r.get("method") == "engine" and "error" not in r), None
        )
        aeon = next(
            (r for r in results[-len(jobs) :] if r.get("method") == "aeon" and "error" not in r), None
        )
        if eng and aeon:
            print(f"  speed-up vs aeon ({data}, N={args.compare_n}): {aeon['wall_s'] / eng['wall_s']:.1f}x")
    if not args.skip_slow and args.sizes:
        for data in args.data:
            pts = []
            for n in args.sizes:
                r = run_job(
                    {"data": data, "n": n, "seed": args.seed, "quantile": args.quantile, "method": "engine"},
                    args.timeout,
                )
                results.append(r)
                print(fmt_row(r), flush=True)
                if "error" not in r:
                    pts.append((n, r["wall_s"]))
            if len(pts) >= 2:
                ln = np.log([p[0] for p in pts])
                lt = np.log([p[1] for p in pts])
                slope = float(np.polyfit(ln, lt, 1)[0])
                print(f"  {data}: wall time grows as N^{slope:.2f} over N = {[p[0] for p in pts]}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
