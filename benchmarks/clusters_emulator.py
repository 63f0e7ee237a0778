"""Speed of the isotropic emulator against astro-limepy's model solve, side by side.

One "evaluation" is a full set of profiles at 100 radii: phi, rho, mc, v2, v2r, v2t, beta and
the projected Sigma, v2p, v2R, v2T, plus the scalars. Measured after compilation:
- dastro emulator, one model per jit call;
- dastro emulator, a vmapped batch of 1000 models (time per model);
- gradient of a scalar summary of the profiles with respect to (W0, g), batch of 1000;
- astro-limepy: limepy(W0, g) (default tolerances, no projection) and with project=True;
- dastro exact solver for the same models (one per call), for reference.
Prints a table and writes benchmarks/results/clusters_emulator.json, including the emulator's
own accuracy table from its metadata.

Run: python benchmarks/clusters_emulator.py [--n 1000] [--n-limepy 50]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from dastro.clusters import emulator as emu
from dastro.clusters import solve

OUT = Path(__file__).parent / "results" / "clusters_emulator.json"
FRAC = jnp.geomspace(1e-3, 0.999, 100)


def _everything(table, w0, g):
    m = emu._emulate(table, w0, g)
    r = FRAC * jnp.exp(m.ln_rt)
    return m._profiles(r), m._projected(r), jnp.stack([m.rt, m.rh, m.rv, m.M, m.K, m.U])


def _best(fn, repeat=5):
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--n-limepy", type=int, default=50)
    args = parser.parse_args()
    table = emu.load_table()
    rng = np.random.default_rng(7)
    w0 = rng.uniform(1.0, 12.0, args.n)
    g = rng.uniform(0.0, 1.0, args.n) * np.asarray(emu.g_hi(jnp.asarray(w0)))

    single = eqx.filter_jit(_everything)
    t0 = time.perf_counter()
    jax.block_until_ready(single(table, w0[0], g[0]))
    compile_single = time.perf_counter() - t0
    per_single = _best(lambda: single(table, jnp.asarray(w0[1]), jnp.asarray(g[1])), 50)

    batch = eqx.filter_jit(jax.vmap(_everything, in_axes=(None, 0, 0)))
    jax.block_until_ready(batch(table, jnp.asarray(w0), jnp.asarray(g)))
    per_batch = _best(lambda: batch(table, jnp.asarray(w0), jnp.asarray(g)), 3) / args.n

    def summary(a, b):
        prof, proj, scal = _everything(table, a, b)
        return jnp.sum(jnp.log(prof.rho[:90])) + jnp.sum(jnp.log(proj.Sigma[:90])) + scal[0]

    grad = eqx.filter_jit(jax.vmap(jax.grad(summary, argnums=(0, 1))))
    jax.block_until_ready(grad(jnp.asarray(w0), jnp.asarray(g)))
    per_grad = _best(lambda: grad(jnp.asarray(w0), jnp.asarray(g)), 3) / args.n

    n_ref = min(args.n_limepy, args.n)
    solve(w0[0], g[0])
    t0 = time.perf_counter()
    for i in range(n_ref):
        solve(w0[i], g[i]).ln_rt.block_until_ready()
    per_exact = (time.perf_counter() - t0) / n_ref

    result = {
        "evaluation": "intrinsic + projected profiles at 100 radii and scalars, isotropic",
        "dastro_emulator": {"compile_s": compile_single, "single_call_s": per_single,
                            "per_model_in_batch_s": per_batch, "batch": args.n,
                            "gradient_per_model_in_batch_s": per_grad},
        "dastro_exact_solve_per_model_s": per_exact,
        "emulator_accuracy": table.metadata.get("accuracy"),
    }
    try:
        import limepy
    except ImportError:
        limepy = None
    if limepy is not None:
        for label, kw in [("limepy_solve", {}), ("limepy_solve_project", {"project": True})]:
            n_l = n_ref if not kw else max(5, n_ref // 10)
            t0 = time.perf_counter()
            for i in range(n_l):
                limepy.limepy(w0[i], g[i], **kw)
            result[label + "_s"] = (time.perf_counter() - t0) / n_l
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))

    d = result["dastro_emulator"]
    print(f"{'':40s} {'time per model':>16s}")
    print(f"{'emulator, one model per jit call':40s} {d['single_call_s'] * 1e6:13.1f} us")
    print(f"{'emulator, batch of ' + str(args.n):40s} {d['per_model_in_batch_s'] * 1e6:13.1f} us")
    print(f"{'emulator gradient (W0, g), batch':40s} "
          f"{d['gradient_per_model_in_batch_s'] * 1e6:13.1f} us")
    print(f"{'dastro exact solve':40s} {per_exact * 1e3:13.2f} ms")
    if limepy is not None:
        for label in ["limepy_solve", "limepy_solve_project"]:
            t = result[label + "_s"]
            single, batch = t / d["single_call_s"], t / d["per_model_in_batch_s"]
            print(f"{'astro-limepy ' + label[7:]:40s} {t * 1e3:13.2f} ms   ratio vs emulator: "
                  f"single {single:.0f}x, batch {batch:.0f}x")
    print(f"compile {d['compile_s']:.1f} s; wrote {OUT}")


if __name__ == "__main__":
    main()
