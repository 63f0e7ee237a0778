"""Simulation-based calibration (Talts et al. 2018) of the non-hierarchical cluster fit.

For each of --mocks repetitions: draw (W0, g, M, rh) from the prior, solve the exact model,
draw --stars stars with exact 6D coordinates, fit with NUTS (the same likelihood and edge
reparameterisation as dastro.inference.star_model; blackjax NUTS, compiled once for all
mocks), thin the
chain to L = 99 draws and record the rank of the truth among them. If the posterior is
calibrated the ranks are uniform on 0..L; a chi-square test over 10 bins gives a p-value per
parameter. Prints the table and writes benchmarks/results/clusters_sbc.json.

Mocks are shared among --workers processes (default: one per core).

Run: python benchmarks/clusters_sbc.py [--mocks 100] [--stars 100] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import biject_to, constraints
from numpyro.infer.util import initialize_model
from scipy import stats

from dastro.clusters import sample, solve
from dastro.clusters.df_local import log_density_local
from dastro.clusters.emulator import _emulate, g_hi, load_table
from dastro.inference import StarData
from dastro.inference.fit import blackjax_chain
from dastro.inference.models import FitConfig, Priors, cluster_scale, initial_values

OUT = Path(__file__).parent / "results" / "clusters_sbc.json"
W0_PRIOR = (2.0, 10.0)
PRIORS = Priors(log10_M=(4.0, 6.0), log10_rh=(0.0, 1.0))
THIN_DRAWS = 99
PARAMS = ["W0", "g", "log10_M", "log10_rh"]


def sbc_model(x, y, z, vx, vy, vz):
    """6D exact stars, 4 parameters; data are traced arguments, so one compilation serves all."""
    config = FitConfig(priors=PRIORS, fit_centre=False)
    W0 = numpyro.sample("W0", dist.Uniform(*W0_PRIOR))
    q = numpyro.sample("q", dist.Uniform(0.0, 1.0))
    g = numpyro.deterministic("g", q * g_hi(W0))
    shape = _emulate(load_table(), W0, g)
    r = jnp.sqrt(x**2 + y**2 + z**2)
    model, w = cluster_scale(config, shape, r, vx**2 + vy**2 + vz**2)
    numpyro.factor("stars", jnp.sum(log_density_local(model, x, y, z, vx, vy, vz, w=w)))


def draw_truth(rng):
    W0 = rng.uniform(*W0_PRIOR)
    g = rng.uniform() * float(g_hi(W0))
    return {"W0": W0, "g": g, "log10_M": rng.uniform(*PRIORS.log10_M),
            "log10_rh": rng.uniform(*PRIORS.log10_rh)}


def _start(m):
    """The data-based start of dastro.inference.initial_values (virial mass and radius inside
    the priors), in numpyro's unconstrained space; a random start can leave the priors."""
    data = StarData.from_arrays(*(np.asarray(a) for a in (m.x, m.y, m.vx, m.vy, m.vz)),
                                z=np.asarray(m.z))
    init = initial_values(data, FitConfig(priors=PRIORS, fit_centre=False))
    w0 = biject_to(constraints.interval(*W0_PRIOR)).inv(jnp.asarray(init["W0"]))
    q = biject_to(constraints.unit_interval).inv(jnp.asarray(init["q"]))
    return {"W0": w0, "q": q, "eta_rh": jnp.asarray(init["eta_rh"]),
            "eta_M": jnp.asarray(init["eta_M"])}


def _compiled_fit(example, warmup, n_draws):
    """One jitted function (key, start, data) -> (constrained draws, divergences): blackjax
    window adaptation (tree depth 7) and NUTS draws (depth 10) on numpyro's potential of
    sbc_model, the data traced arguments, so it compiles once for every mock (numpyro's
    MCMC.run compiles its loop again at every call, and the executables pile up until LLVM
    runs out of memory mappings after ~30 mocks)."""
    info = initialize_model(jax.random.PRNGKey(0), sbc_model, model_args=example,
                            dynamic_args=True)
    potential_gen, postprocess_gen = info.potential_fn, info.postprocess_fn

    @jax.jit
    def fit(key, position0, data):
        def logdensity(position):
            return -potential_gen(*data)(position)

        positions, divergent = blackjax_chain(logdensity, key, position0, warmup, n_draws)
        return jax.vmap(postprocess_gen(*data))(positions), jnp.sum(divergent)

    return fit


def _mock(i, stars):
    """Truth and stars of mock i (they depend on i only, whichever worker draws it)."""
    truth = draw_truth(np.random.default_rng([2026, i]))
    model = solve(truth["W0"], truth["g"]).scale(10 ** truth["log10_M"],
                                                 rh=10 ** truth["log10_rh"])
    return truth, sample(model, stars, jax.random.PRNGKey(1000 + i))


def run_mocks(indices, stars, warmup, thin):
    """Fit the mocks with these indices; returns ranks per parameter and divergences."""
    ranks = {p: [] for p in PARAMS}
    divergences = []
    t0 = time.perf_counter()
    fit = None
    for done, i in enumerate(indices, 1):
        truth, m = _mock(i, stars)
        data = tuple(jnp.asarray(a) for a in (m.x, m.y, m.z, m.vx, m.vy, m.vz))
        if fit is None:
            fit = _compiled_fit(data, warmup, THIN_DRAWS * thin)
        post, n_div = fit(jax.random.PRNGKey(i), _start(m), data)
        divergences.append(int(n_div))
        for p in PARAMS:
            draws = np.asarray(post[p])[::thin][:THIN_DRAWS]
            ranks[p].append(int(np.sum(draws < truth[p])))
        if done % 5 == 0:
            print(f"worker {indices[0]}: {done} mocks, {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr, flush=True)
    return {"ranks": ranks, "divergences": divergences, "indices": list(indices)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mocks", type=int, default=100)
    parser.add_argument("--stars", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--thin", type=int, default=4)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes, each fitting every workers-th mock (default: cores)")
    parser.add_argument("--part", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    common = ["--mocks", str(args.mocks), "--stars", str(args.stars), "--warmup",
              str(args.warmup), "--thin", str(args.thin), "--workers", str(args.workers)]
    if args.part is not None:  # a worker: write its share as JSON on stdout's last line
        out = run_mocks(range(args.part, args.mocks, args.workers), args.stars, args.warmup,
                        args.thin)
        print("RESULT " + json.dumps(out))
        return 0
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, __file__, *common, "--part", str(k)],
                              stdout=subprocess.PIPE, text=True)
             for k in range(args.workers)]
    ranks = {p: [] for p in PARAMS}
    per_mock = {}
    for proc in procs:
        stdout, _ = proc.communicate()
        lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"an SBC worker failed (exit code {proc.returncode}):\n"
                             + stdout[-2000:])
        part = json.loads(lines[-1][len("RESULT "):])
        per_mock.update(zip(part["indices"], part["divergences"], strict=True))
        for p in PARAMS:
            ranks[p] += part["ranks"][p]
    seconds = time.perf_counter() - t0
    divergences = sum(per_mock.values())
    n_bins = 10
    results = {}
    print(f"\nSBC: {args.mocks} mocks x {args.stars} stars, L = {THIN_DRAWS} thinned draws, "
          f"{n_bins} rank bins")
    print("parameter  chi2 (9 dof)  p-value  counts per bin")
    for p in PARAMS:
        counts = np.histogram(ranks[p], bins=n_bins, range=(0, THIN_DRAWS + 1))[0]
        chi2, pval = stats.chisquare(counts)
        results[p] = {"chi2": float(chi2), "p_value": float(pval), "counts": counts.tolist(),
                      "ranks": ranks[p]}
        print(f"{p:>9}  {chi2:12.2f}  {pval:7.3f}  {counts.tolist()}")
    n_transitions = args.mocks * THIN_DRAWS * args.thin
    with_div = sum(1 for d in per_mock.values() if d)
    print(f"divergent transitions: {divergences} of {n_transitions} ({with_div} of "
          f"{args.mocks} mocks have any); {seconds:.0f} s ({args.workers} workers)")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({"mocks": args.mocks, "stars": args.stars,
                               "warmup": args.warmup, "thin": args.thin,
                               "draws_per_rank": THIN_DRAWS, "seconds": seconds,
                               "workers": args.workers, "divergences": divergences,
                               "divergence_fraction": divergences / n_transitions,
                               "divergences_per_mock": [per_mock[i] for i in sorted(per_mock)],
                               "parameters": results,
                               "all_p_above_0.01": bool(all(r["p_value"] > 0.01
                                                            for r in results.values()))},
                              indent=2))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    main()
