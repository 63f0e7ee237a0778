"""Speed of dastro.clusters.sample against astro-limepy's sampler, side by side.

For 1e4 and 1e5 stars, isotropic (W0=7, g=1) and anisotropic (W0=5, g=1.5, ra=3) models in
model units: time to draw positions and velocities with a solved model (median of --repeat
runs, after compilation; compilation reported separately), and astro-limepy's
``limepy.sample`` on its own solved model. Prints a table and writes
benchmarks/results/clusters_sampling.json.

Run: python benchmarks/clusters_sampling.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import numpy as np

from dastro.clusters import solve
from dastro.clusters.sample import sample

OUT = Path(__file__).parent / "results" / "clusters_sampling.json"
CASES = [(7.0, 1.0, None), (5.0, 1.5, 3.0)]


def _median_time(fn, repeat):
    times = []
    for i in range(repeat):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    try:
        import limepy
    except ImportError:
        limepy = None
    rows = []
    for W0, g, ra in CASES:
        m = solve(W0, g, ra)
        lm = None
        if limepy is not None:
            lm = limepy.limepy(W0, g, **({} if ra is None else {"ra": ra}))
        for n in (10_000, 100_000):
            t0 = time.perf_counter()
            jax.block_until_ready(sample(m, n, jax.random.key(0)).x)
            compile_s = time.perf_counter() - t0

            def ours(i, m=m, n=n):
                jax.block_until_ready(sample(m, n, jax.random.key(i + 1)).x)

            row = {"W0": W0, "g": g, "ra": ra, "n": n, "dastro_s": _median_time(ours, args.repeat),
                   "dastro_first_call_s": compile_s}
            if lm is not None:
                def theirs(i, lm=lm, n=n):
                    limepy.sample(lm, N=n, seed=i + 1, verbose=False)

                row["limepy_s"] = _median_time(theirs, args.repeat)
                row["speedup"] = row["limepy_s"] / row["dastro_s"]
            rows.append(row)
    print(f"{'W0':>4} {'g':>4} {'ra':>5} {'N':>7} {'dastro s':>9} {'limepy s':>9} "
          f"{'speed-up':>9} {'1st call s':>10}")
    for r in rows:
        print(f"{r['W0']:4g} {r['g']:4g} {str(r['ra']):>5} {r['n']:7d} {r['dastro_s']:9.3f} "
              f"{r.get('limepy_s', float('nan')):9.3f} {r.get('speedup', float('nan')):9.2f} "
              f"{r['dastro_first_call_s']:10.1f}")
    result = {
        "machine": {"cpus": jax.device_count(), "platform": platform.platform(),
                    "jax": jax.__version__},
        "setup": "model units; times are medians after compilation (first call = compile + "
                 "run, once per (N, model structure)); limepy: limepy.sample(model, N, seed)",
        "rows": rows,
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
