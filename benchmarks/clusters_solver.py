"""Speed of the exact lowered-isothermal solver against astro-limepy, side by side.

Measures, on the same random grid of isotropic models (W0 in [1, 12], g in [0, 1.5]):
- compile time of dastro's solve (first call) and of the vmapped batch;
- time per model: dastro (jit, after compilation, one model per call) and astro-limepy
  (default tolerances 1e-7 and tight 1e-10);
- time for a batch of 1000 models in one vmapped call (after compilation);
- accuracy of rt against tight astro-limepy on the timed models.
Prints a table and writes benchmarks/results/clusters_solver.json.

Run: python benchmarks/clusters_solver.py [--n-batch 1000] [--n-limepy 100]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import numpy as np

from dastro.clusters import solve, solve_batch

OUT = Path(__file__).parent / "results" / "clusters_solver.json"


def _time(fn, repeat=1):
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        jax.block_until_ready(out)
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-batch", type=int, default=1000)
    parser.add_argument("--n-limepy", type=int, default=100)
    args = parser.parse_args()
    rng = np.random.default_rng(42)
    W0 = rng.uniform(1.0, 12.0, args.n_batch)
    g = rng.uniform(0.0, 1.5, args.n_batch)

    t0 = time.perf_counter()
    jax.block_until_ready(solve(W0[0], g[0]).ln_rt)
    compile_single = time.perf_counter() - t0
    n_single = min(args.n_limepy, args.n_batch)
    t0 = time.perf_counter()
    rts = []
    for i in range(n_single):
        m = solve(W0[i], g[i])
        rts.append(float(m.rt))
    per_model = (time.perf_counter() - t0) / n_single

    t0 = time.perf_counter()
    jax.block_until_ready(solve_batch(W0, g).ln_rt)
    compile_batch = time.perf_counter() - t0
    batch_time = _time(lambda: solve_batch(W0, g).ln_rt, repeat=3)

    result = {
        "machine": {"cpus": jax.device_count(), "platform": platform.platform(),
                    "jax": jax.__version__},
        "grid": "isotropic, W0 ~ U(1, 12), g ~ U(0, 1.5), seed 42",
        "dastro": {"compile_single_s": compile_single, "per_model_s": per_model,
                   "compile_batch_s": compile_batch, "batch_s": batch_time,
                   "batch_size": args.n_batch, "per_model_in_batch_s": batch_time / args.n_batch,
                   "rtol": 1e-11},
    }
    try:
        import limepy
    except ImportError:
        limepy = None
    if limepy is not None:
        for label, tol in [("default_1e-7", 1e-7), ("tight_1e-10", 1e-10)]:
            t0 = time.perf_counter()
            ref_rt = []
            for i in range(n_single):
                ref = limepy.limepy(W0[i], g[i], ode_rtol=tol, ode_atol=tol)
                ref_rt.append(ref.rt)
            per = (time.perf_counter() - t0) / n_single
            err = np.max(np.abs(np.array(rts) / np.array(ref_rt) - 1))
            result[f"limepy_{label}"] = {"per_model_s": per, "max_rel_diff_rt_vs_dastro": err}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))

    d = result["dastro"]
    print(f"{'':34s} {'time':>12s}")
    print(f"{'dastro compile (single)':34s} {d['compile_single_s']:10.2f} s")
    print(f"{'dastro compile (vmapped batch)':34s} {d['compile_batch_s']:10.2f} s")
    print(f"{'dastro per model (jit)':34s} {d['per_model_s'] * 1e3:10.2f} ms")
    print(f"{'dastro batch of ' + str(args.n_batch):34s} {d['batch_s']:10.2f} s"
          f"   ({d['per_model_in_batch_s'] * 1e3:.2f} ms/model)")
    if limepy is not None:
        for label in ["default_1e-7", "tight_1e-10"]:
            r = result[f"limepy_{label}"]
            print(f"{'astro-limepy per model ' + label:34s} {r['per_model_s'] * 1e3:10.2f} ms"
                  f"   ratio limepy/dastro single {r['per_model_s'] / d['per_model_s']:.1f},"
                  f" batch {r['per_model_s'] / d['per_model_in_batch_s']:.1f};"
                  f" max |rt diff| {r['max_rel_diff_rt_vs_dastro']:.1e}")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
