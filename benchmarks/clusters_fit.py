"""Cluster fits with NUTS: the issue-4 targets, measured on this machine.

Cases (mocks drawn from the exact model W0 = 6, g = 1.2, M = 1e5 Msun, rh = 3 pc):

- ``exact``: 1000 stars with exact 6D coordinates (x, y, z, vx, vy, vz), 4 parameters
  (W0, g, log10 M, log10 rh), centre known. Target: under 30 s for 4 chains x (1000 warm-up
  + 1000 draws), under 1 % divergent transitions, R-hat < 1.01, bulk ESS > 400.
- ``hierarchical``: 1000 stars with positions, proper motions and line-of-sight velocities,
  all with Gaussian errors (0.05 pc, 1 km/s), the line-of-sight position unknown; 6 latent
  coordinates per star (about 6000 parameters) plus 9 cluster and centre parameters. Target:
  under 10 minutes with the same diagnostics. The published PyMC code needed 3.1 hours for
  3 chains x 4000 iterations of this problem, with about 10 % divergences.

Prints a table and writes benchmarks/results/clusters_fit.json.

Run: python benchmarks/clusters_fit.py [--cases exact hierarchical] [--stars 1000]
     [--warmup 1000] [--samples 1000] [--chains 4]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

from dastro.devices import use_cpu_cores

use_cpu_cores(4)  # one JAX device per chain (chains in parallel threads), before JAX starts

import jax  # noqa: E402
import numpy as np  # noqa: E402

from dastro.clusters import sample, solve  # noqa: E402
from dastro.inference import FitConfig, StarData, initial_values, run_nuts, star_model  # noqa: E402

OUT = Path(__file__).parent / "results" / "clusters_fit.json"
TRUTH = {"W0": 6.0, "g": 1.2, "log10_M": 5.0, "log10_rh": math.log10(3.0)}
PARAMS = list(TRUTH)


def _mock(n, seed, hierarchical):
    model = solve(TRUTH["W0"], TRUTH["g"]).scale(10 ** TRUTH["log10_M"],
                                                 rh=10 ** TRUTH["log10_rh"])
    m = sample(model, n, jax.random.PRNGKey(seed))
    if not hierarchical:
        return StarData.from_arrays(m.x, m.y, m.vx, m.vy, m.vz, z=m.z), FitConfig(
            fit_centre=False)
    rng = np.random.default_rng(seed)
    ep, ev = np.full(n, 0.05), np.full(n, 1.0)
    noisy = [np.asarray(a) + e * rng.normal(size=n)
             for a, e in ((m.x, ep), (m.y, ep), (m.vx, ev), (m.vy, ev), (m.vz, ev))]
    data = StarData.from_arrays(*noisy, x_err=ep, y_err=ep, vx_err=ev, vy_err=ev, vz_err=ev)
    return data, FitConfig(fit_centre=True)


def run_case(name, n, warmup, samples, chains, dense, seed=1):
    data, config = _mock(n, seed, name == "hierarchical")
    centre = ["x0", "y0", "vx0", "vy0", "vz0"] if config.fit_centre else []
    names = PARAMS + centre
    # one dense mass-matrix block for the sampled cluster-level sites (W0, q and the edge
    # variables of rh and M are strongly correlated); the per-star latents stay diagonal
    dense_mass = [tuple(["W0", "q", "eta_rh", "eta_M"] + centre)] if dense else False
    result = run_nuts(star_model, data, config, var_names=names, dense_mass=dense_mass,
                      init_values=initial_values(data, config), num_warmup=warmup,
                      num_samples=samples, num_chains=chains, seed=seed, progress=False)
    print(f"\n[{name}] {n} stars")
    print(result.report(TRUTH))
    s = result.summary.loc[PARAMS]
    z = {p: float((s.loc[p, "mean"] - TRUTH[p]) / s.loc[p, "sd"]) for p in PARAMS}
    n_params = sum(int(np.prod(v.shape[2:])) if v.ndim > 2 else 1
                   for v in result.idata.posterior.data_vars.values())
    return {
        "stars": n, "chains": chains, "warmup": warmup, "draws": samples,
        "seconds": result.seconds, "divergences": result.divergences,
        "divergence_fraction": result.divergence_fraction,
        "max_r_hat": float(s["r_hat"].max()), "min_ess_bulk": float(s["ess_bulk"].min()),
        "min_ess_tail": float(s["ess_tail"].min()), "mean_leapfrog_steps": result.mean_steps,
        "posterior_sites": n_params, "dense_cluster_block": dense, "z_scores_vs_truth": z,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", nargs="+", default=["exact", "hierarchical"],
                        choices=["exact", "hierarchical"])
    parser.add_argument("--stars", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--diagonal", action="store_true",
                        help="diagonal mass matrix for every site (default: a dense block "
                             "for the cluster-level sites)")
    args = parser.parse_args()
    results = {}
    for case in args.cases:
        results[case] = run_case(case, args.stars, args.warmup, args.samples, args.chains,
                                  not args.diagonal)
    print("\ncase          stars  chains x (warm+draws)  seconds  div %  max R-hat  "
          "min ESS bulk  steps/draw")
    for case, r in results.items():
        print(f"{case:<13} {r['stars']:5d}  {r['chains']} x ({r['warmup']}+{r['draws']})"
              f"{'':>8} {r['seconds']:8.1f}  {100 * r['divergence_fraction']:5.2f}  "
              f"{r['max_r_hat']:9.3f}  {r['min_ess_bulk']:12.0f}  {r['mean_leapfrog_steps']:10.1f}")
    OUT.parent.mkdir(exist_ok=True)
    previous = json.loads(OUT.read_text()) if OUT.exists() else {}
    previous.update(results)
    previous["machine"] = {"platform": platform.platform(), "cores": os.cpu_count(),
                           "jax_devices": jax.device_count(),
                           "jax": jax.__version__, "date": time.strftime("%Y-%m-%d")}
    OUT.write_text(json.dumps(previous, indent=2))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
