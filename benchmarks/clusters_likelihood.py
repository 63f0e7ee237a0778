"""Speed of the single-star cluster likelihoods (dastro.clusters.df), value and gradient.

For each density (6D, xy, xy+vlos, xy+pm, xy+3 velocities) the log-likelihood of N mock stars
(default 1e5, drawn with dastro.clusters.sample) and its gradient with respect to the model
parameters (W0, g, M, rh) and the centre (x0, y0, vx0, vy0, vz0) are timed under jit, after
compilation, the exact solver included (solve -> scale -> likelihood in one jitted function).
Also timed: the solve alone (value and gradient), and the per-star part alone (tables built
once with df_tables; value and gradient w.r.t. the centre). The anisotropic densities with
integrated velocity components use nested quadrature and are timed on fewer stars
(--n-aniso). Prints a table and writes benchmarks/results/clusters_likelihood.json, keeping
the previous file's rows under "previous" for comparison.

Run: python benchmarks/clusters_likelihood.py [--n 100000] [--n-aniso 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from dastro.clusters import df, solve
from dastro.clusters.sample import sample

OUT = Path(__file__).parent / "results" / "clusters_likelihood.json"

KINDS = {
    "6d": (df.log_density_6d, ("x", "y", "z", "vx", "vy", "vz")),
    "xy": (df.log_density_xy, ("x", "y")),
    "xy_vlos": (df.log_density_xy_vlos, ("x", "y", "vz")),
    "xy_pm": (df.log_density_xy_pm, ("x", "y", "vx", "vy")),
    "xy_v3": (df.log_density_xy_v3, ("x", "y", "vx", "vy", "vz")),
}


def _time(fn, repeat):
    """Median and minimum wall time, and median process CPU time (all threads) of fn()."""
    times, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return float(np.median(times)), float(np.min(times)), float(np.median(cpu))


def bench(kind, W0, g, ra, n, repeat):
    fn, names = KINDS[kind]
    truth = solve(W0, g, ra).scale(1e5, rh=3.0)
    mock = sample(truth, n, jax.random.key(1))
    data = [jnp.asarray(getattr(mock, k)) for k in names]

    def loglike(theta):
        m = solve(theta[0], theta[1], ra).scale(theta[2], rh=theta[3])
        centre = df.Centre(*theta[4:9])
        return jnp.sum(fn(m, *data, centre=centre))

    theta = jnp.array([W0, g, 1e5, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    value = jax.jit(loglike)
    vgrad = jax.jit(jax.value_and_grad(loglike))
    t0 = time.perf_counter()
    jax.block_until_ready(value(theta))
    compile_value = time.perf_counter() - t0
    t0 = time.perf_counter()
    v, gr = vgrad(theta)
    jax.block_until_ready(gr)
    compile_grad = time.perf_counter() - t0
    assert np.isfinite(float(v)) and np.all(np.isfinite(np.asarray(gr))), (kind, v, gr)
    t_val = _time(lambda: value(theta), repeat)
    t_grad = _time(lambda: vgrad(theta), repeat)
    solve_only = jax.jit(lambda th: solve(th[0], th[1], ra).scale(th[2], rh=th[3]).rt)
    jax.block_until_ready(solve_only(theta))
    t_solve = _time(lambda: solve_only(theta), repeat)
    solve_grad = jax.jit(jax.grad(lambda th: solve(th[0], th[1], ra).scale(th[2], rh=th[3]).rt))
    jax.block_until_ready(solve_grad(theta))
    t_solve_grad = _time(lambda: solve_grad(theta), repeat)
    tables = df.df_tables(truth)
    stars = jax.jit(jax.value_and_grad(
        lambda c, tab: jnp.sum(fn(tab, *data, centre=df.Centre(*c)))))
    jax.block_until_ready(stars(theta[4:9], tables))
    t_stars = _time(lambda: stars(theta[4:9], tables), repeat)
    return {
        "kind": kind, "W0": W0, "g": g, "ra": ra, "n_stars": n,
        "value_s": t_val[0], "value_min_s": t_val[1],
        "value_and_grad_s": t_grad[0], "value_and_grad_min_s": t_grad[1],
        "value_cpu_s": t_val[2], "value_and_grad_cpu_s": t_grad[2],
        "solve_only_s": t_solve[0], "solve_grad_s": t_solve_grad[0],
        "stars_only_value_and_grad_s": t_stars[0],
        "compile_value_s": compile_value, "compile_grad_s": compile_grad,
        "loglike": float(v),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--n-aniso", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--note", default="", help="stored with the results, e.g. the change")
    args = parser.parse_args()
    load0 = os.getloadavg()[0]  # other processes on the machine inflate wall times
    rows = []
    for kind in KINDS:
        rows.append(bench(kind, 7.0, 1.0, None, args.n, args.repeat))
    for kind in KINDS:
        n = args.n if kind in ("6d", "xy_v3") else args.n_aniso
        rows.append(bench(kind, 7.0, 1.0, 10.0, n, args.repeat))
    print(f"{'density':>8} {'ra':>5} {'N':>7} {'value ms':>9} {'val+grad ms':>12} "
          f"{'(cpu ms)':>9} {'solve ms':>9} {'solve grad':>11} {'stars v+g':>10} {'compile s':>10}")
    for r in rows:
        print(f"{r['kind']:>8} {str(r['ra']):>5} {r['n_stars']:>7} {1e3 * r['value_s']:9.1f} "
              f"{1e3 * r['value_and_grad_s']:12.1f} {1e3 * r['value_and_grad_cpu_s']:9.1f} "
              f"{1e3 * r['solve_only_s']:9.1f} "
              f"{1e3 * r['solve_grad_s']:11.1f} {1e3 * r['stars_only_value_and_grad_s']:10.1f} "
              f"{r['compile_grad_s']:10.1f}")
    previous = None
    if OUT.exists():
        old = json.loads(OUT.read_text())
        previous = {"commit_note": old.get("note", ""), "rows": [
            {k: row[k] for k in ("kind", "ra", "n_stars", "value_s", "value_and_grad_s")}
            for row in old.get("rows", [])]}
    result = {
        "machine": {"cpus": os.cpu_count(), "jax_devices": jax.device_count(),
                    "platform": platform.platform(), "jax": jax.__version__,
                    "load_average_1min_at_start": load0, "at_end": os.getloadavg()[0]},
        "setup": "model (W0=7, g=1) scaled to M=1e5 Msun, rh=3 pc; mock stars from "
                 "dastro.clusters.sample; gradient w.r.t. (W0, g, M, rh, centre); times are "
                 "medians after compilation and include the exact solve; *_cpu_s are process "
                 "CPU times (all threads), less sensitive to other load on the machine",
        "note": args.note,
        "rows": rows,
        "previous": previous,
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
