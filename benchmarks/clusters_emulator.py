"""Speed of the emulators against astro-limepy's model solve, side by side (issue 3: one
evaluation at least 1000 times faster than astro-limepy's solve).

One "evaluation" is a full set of profiles at 100 radii: phi, rho, mc, v2, v2r, v2t, beta and
the projected Sigma, v2p, v2R, v2T, plus the scalars. Measured after compilation, best of N
repeats (wall clock; the CPU time of the same calls is recorded too, which another job on the
machine inflates less):
- dastro emulator, one model per jit call;
- dastro emulator, a vmapped batch of 1000 models (time per model);
- gradient of a scalar summary of the profiles with respect to (W0, g), batch of 1000;
- astro-limepy: limepy(W0, g) (default tolerances, no projection) and with project=True,
  which computes the same projected profiles as the emulator; the same --n-limepy models
  for both, each the best of --limepy-repeat calls, then averaged over the models;
- dastro exact solver for the same models (one per call), for reference;
- the anisotropic emulator (emulator_aniso, random (W0, g, ra) in its box with 1 <= W0 <= 12),
  one model per call and a batch of --n-aniso, against limepy(W0, g, ra=ra, project=True)
  for --n-limepy of the same models.
Prints the times and the ratios of astro-limepy's times to the emulator's (single call and
batch), and writes benchmarks/results/clusters_emulator.json, including the emulator's own
accuracy table from its metadata and the load average during the run.

Where the time of a call goes, outside the emulator's own arithmetic (``runtime`` in the JSON):
- the single-call floor: a jitted function with the same arguments and the same twelve output
  arrays that does no work (what any evaluation returning these arrays costs per call);
- the median of the single calls, beside their best;
- the emulator timings again in two child processes: with glibc keeping freed memory in the
  heap (``MALLOC_TOP_PAD_``; by default XLA's large temporary buffers go back to the system
  after each call and are faulted in again at the next) and pinned to one core (no hand-off of
  small kernels to XLA's second worker thread).

Run: python benchmarks/clusters_emulator.py [--n 1000] [--n-aniso 200] [--n-limepy 50]
     [--repeat 20] [--limepy-repeat 3] [--no-children]
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

from dastro.clusters import emulator as emu
from dastro.clusters import emulator_aniso as ea
from dastro.clusters import solve

OUT = Path(__file__).parent / "results" / "clusters_emulator.json"
FRAC = jnp.geomspace(1e-3, 0.999, 100)


def _evaluation(m):
    """One evaluation of a model: profiles and projections at 100 radii (one call,
    ``profiles_and_projected``), and scalars."""
    r = FRAC * jnp.exp(m.ln_rt)
    profiles, projected = m._profiles_and_projected(r)
    return profiles, projected, jnp.stack([m.rt, m.rh, m.rv, m.M, m.K, m.U])


def _everything(table, w0, g):
    return _evaluation(emu._emulate(table, w0, g))


def _everything_aniso(table, w0, g, ra):
    return _evaluation(ea._emulate(table, w0, g, ra))


def _limepy_time(limepy, calls, repeat):
    """Mean over the models of the best of `repeat` astro-limepy solves (and the fastest);
    calls: [(args, kwargs)] of limepy.limepy, one per model."""
    times = []
    for p, kw in calls:
        best = np.inf
        for _ in range(repeat):
            t0 = time.perf_counter()
            limepy.limepy(*p, **kw)
            best = min(best, time.perf_counter() - t0)
        times.append(best)
    return float(np.mean(times)), float(np.min(times))


def _anisotropic(args, limepy, timings: dict) -> dict:
    """The anisotropic emulator's timings (from :func:`_emulator_timings`) beside astro-limepy
    with ra and projections on the same models."""
    W0, g, ra = _anisotropic_inputs(args.n_aniso)
    out = {**timings, "accuracy": ea.load_aniso_table().metadata.get("accuracy")}
    if limepy is not None:
        n_ref = min(args.n_limepy, len(W0))
        calls = [((W0[i], g[i]), {"ra": ra[i], "project": True}) for i in range(n_ref)]
        out["limepy_solve_project_s"] = _limepy_time(limepy, calls, args.limepy_repeat)[0]
        out["limepy_models"] = n_ref
        out["ratios"] = {f"limepy_solve_project_over_emulator_{kind}":
                         out["limepy_solve_project_s"] / out[key]
                         for kind, key in [("single", "single_call_s"),
                                           ("batch", "per_model_in_batch_s")]}
    return out


#: Environments of the child runs (``runtime``): glibc's heap kept between calls (512 MiB of
#: top padding, which also fixes its trim threshold), and one core.
CHILD_RUNS = {"glibc_heap_kept": {"MALLOC_TOP_PAD_": str(512 * 2**20)}, "one_core": {}}


def _floor(table, w1, g1, repeat):
    """(best, median) of a jitted call with the isotropic evaluation's arguments and outputs
    (twelve arrays of the same shapes) that does no work."""
    shapes = jax.eval_shape(_everything, table, w1, g1)

    def nothing(table, w0, g):
        return jax.tree_util.tree_map(lambda s: jnp.full(s.shape, w0 + g, s.dtype), shapes)

    fn = jax.jit(nothing)
    jax.block_until_ready(fn(table, w1, g1))
    best, _, median = _timed(lambda: fn(table, w1, g1), repeat)
    return best, median


def _isotropic_inputs(n):
    rng = np.random.default_rng(7)
    w0 = rng.uniform(1.0, 12.0, n)
    g = rng.uniform(0.0, 1.0, n) * np.asarray(emu.g_hi(jnp.asarray(w0)))
    return w0, g


def _anisotropic_inputs(n):
    W0, g, ra = ea.random_parameters(4 * n, seed=11)
    keep = (W0 >= 1.0) & (W0 <= 12.0)
    return W0[keep][:n], g[keep][:n], ra[keep][:n]


def _emulator_timings(args) -> dict:
    """Per evaluation, isotropic and anisotropic: the first call (compilation), one model per
    call (best, its CPU time, median), per model in a batch (best, CPU time); and the
    single-call floor. Seconds."""
    table, aniso = emu.load_table(), ea.load_aniso_table()
    w0, g = (jnp.asarray(a) for a in _isotropic_inputs(args.n))
    W0, G, RA = (jnp.asarray(a) for a in _anisotropic_inputs(args.n_aniso))
    out = {}
    for name, fn, tab, batch, one in [
        ("isotropic", _everything, table, (w0, g), (w0[1], g[1])),
        ("anisotropic", _everything_aniso, aniso, (W0, G, RA), (W0[1], G[1], RA[1])),
    ]:
        single = jax.jit(fn)
        t0 = time.perf_counter()
        jax.block_until_ready(single(tab, *(x[0] for x in batch)))
        compile_s = time.perf_counter() - t0
        # arguments already on the device
        best, cpu, median = _timed(lambda f=single, t=tab, o=one: f(t, *o), 20 * args.repeat)
        many = jax.jit(jax.vmap(fn, in_axes=(None,) + (0,) * len(batch)))
        jax.block_until_ready(many(tab, *batch))
        wall, batch_cpu, _ = _timed(lambda f=many, t=tab, b=batch: f(t, *b),
                                    max(3, args.repeat // 2))
        n = len(batch[0])
        out[name] = {"compile_s": compile_s, "single_call_s": best, "single_call_cpu_s": cpu,
                     "single_call_median_s": median, "per_model_in_batch_s": wall / n,
                     "per_model_in_batch_cpu_s": batch_cpu / n, "batch": n}
    out["floor_s"], out["floor_median_s"] = _floor(table, w0[1], g[1], 20 * args.repeat)
    return out


def _child_timings(args, name: str) -> dict | None:
    """:func:`_emulator_timings` in a child process run in CHILD_RUNS[name]'s environment."""
    env = {**os.environ, **CHILD_RUNS[name]}
    argv = [__file__, "--timings-only", name, "--n", str(args.n), "--n-aniso",
            str(args.n_aniso), "--repeat", str(args.repeat)]
    # the child pins itself before it imports jax, so that XLA sizes its thread pool for one
    # core (a preexec_fn would fork this multithreaded process)
    pin = (f"os.sched_setaffinity(0, {{{min(os.sched_getaffinity(0))}}}); "
           if name == "one_core" else "")
    start = f"import os, runpy, sys; {pin}sys.argv = {argv!r}; runpy.run_path(sys.argv[0], " \
            "run_name='__main__')"
    done = subprocess.run([sys.executable, "-c", start], env=env, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        print(f"child run {name} failed:\n{done.stderr[-2000:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def _timed(fn, repeat=5):
    """(best wall clock, best CPU time, median wall clock) in seconds of `repeat` calls of fn."""
    walls, cpus = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn())
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return float(np.min(walls)), float(np.min(cpus)), float(np.median(walls))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--n-aniso", type=int, default=200,
                        help="anisotropic models in the batch")
    parser.add_argument("--n-limepy", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--limepy-repeat", type=int, default=3,
                        help="timings per astro-limepy model (the best is kept)")
    parser.add_argument("--no-children", action="store_true",
                        help="skip the child runs (glibc heap kept; one core)")
    parser.add_argument("--timings-only", choices=sorted(CHILD_RUNS),
                        help=argparse.SUPPRESS)  # a child run: print its timings as JSON
    args = parser.parse_args()
    if args.timings_only:
        print(json.dumps(_emulator_timings(args)))
        return
    load_before = os.getloadavg()
    timings = _emulator_timings(args)
    iso = timings["isotropic"]
    table = emu.load_table()
    w0, g = _isotropic_inputs(args.n)
    w0_j, g_j = jnp.asarray(w0), jnp.asarray(g)

    def summary(a, b):
        prof, proj, scal = _everything(table, a, b)
        return jnp.sum(jnp.log(prof.rho[:90])) + jnp.sum(jnp.log(proj.Sigma[:90])) + scal[0]

    grad = jax.jit(jax.vmap(jax.grad(summary, argnums=(0, 1))))
    jax.block_until_ready(grad(w0_j, g_j))
    grad_wall, grad_cpu, _ = _timed(lambda: grad(w0_j, g_j), max(3, args.repeat // 4))

    n_ref = min(args.n_limepy, args.n)
    solve(w0[0], g[0])
    t0 = time.perf_counter()
    for i in range(n_ref):
        solve(w0[i], g[i]).ln_rt.block_until_ready()
    per_exact = (time.perf_counter() - t0) / n_ref

    n = args.n
    result = {
        "evaluation": "intrinsic + projected profiles at 100 radii and scalars, isotropic",
        "timing": f"best of {max(3, args.repeat // 2)} (batch) / {20 * args.repeat} (single) "
                  "repeats after compilation; wall clock, CPU time alongside",
        "dastro_emulator": {
            **{k: v for k, v in iso.items() if k != "single_call_median_s"},
            "gradient_per_model_in_batch_s": grad_wall / n,
            "gradient_per_model_in_batch_cpu_s": grad_cpu / n,
        },
        "dastro_exact_solve_per_model_s": per_exact,
        "emulator_accuracy": table.metadata.get("accuracy"),
    }
    try:
        import limepy
    except ImportError:
        limepy = None
    if limepy is not None:
        for label, kw in [("limepy_solve", {}), ("limepy_solve_project", {"project": True})]:
            # the same models for both variants; best of repeats per model, like the
            # emulator's best of repeats (less sensitive to other jobs); then the mean over
            # models, whose cost varies with (W0, g)
            mean, fastest = _limepy_time(limepy, [((w0[i], g[i]), kw) for i in range(n_ref)],
                                         args.limepy_repeat)
            result[label + "_s"] = mean
            result[label + "_min_s"] = fastest
            result[label + "_models"] = n_ref
        d = result["dastro_emulator"]
        result["ratios"] = {
            f"{label}_over_emulator_{kind}": result[label + "_s"] / d[key]
            for label in ["limepy_solve", "limepy_solve_project"]
            for kind, key in [("single", "single_call_s"), ("batch", "per_model_in_batch_s")]
        }
    result["anisotropic"] = _anisotropic(args, limepy, timings["anisotropic"])
    result["runtime"] = {
        "single_call_floor_s": timings["floor_s"],
        "single_call_floor_median_s": timings["floor_median_s"],
        "single_call_median_s": iso["single_call_median_s"],
        "note": "floor: a jitted call with the evaluation's arguments and twelve outputs, "
                "no work; children: the emulator timings with glibc's heap kept between "
                "calls (MALLOC_TOP_PAD_) and on one core",
    }
    if not args.no_children:
        for name in CHILD_RUNS:
            result["runtime"][name] = _child_timings(args, name)
    result["load_average_1min"] = [load_before[0], os.getloadavg()[0]]
    result["cpu_count"] = os.cpu_count()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))

    d = result["dastro_emulator"]
    print(f"{'':36s} {'wall':>10s} {'cpu':>10s}   per model")
    for name, w, c in [
        ("emulator, one model per jit call", d["single_call_s"], d["single_call_cpu_s"]),
        (f"emulator, batch of {n}", d["per_model_in_batch_s"], d["per_model_in_batch_cpu_s"]),
        ("emulator gradient (W0, g), batch", d["gradient_per_model_in_batch_s"],
         d["gradient_per_model_in_batch_cpu_s"]),
    ]:
        print(f"{name:36s} {w * 1e6:7.1f} us {c * 1e6:7.1f} us")
    print(f"{'dastro exact solve':36s} {per_exact * 1e3:7.2f} ms")
    if limepy is not None:
        print(f"\n{'astro-limepy':36s} {'time':>10s}   ratio to emulator: single call, batch")
        for label, name in [("limepy_solve", "limepy(W0, g)"),
                            ("limepy_solve_project", "limepy(W0, g, project=True)")]:
            t = result[label + "_s"]
            r = result["ratios"]
            print(f"{name:36s} {t * 1e3:7.2f} ms   {r[label + '_over_emulator_single']:8.0f}x "
                  f"{r[label + '_over_emulator_batch']:8.0f}x")
    a = result["anisotropic"]
    print(f"\nanisotropic emulator: one call {a['single_call_s'] * 1e6:.1f} us, batch of "
          f"{a['batch']} {a['per_model_in_batch_s'] * 1e6:.1f} us per model")
    if "ratios" in a:
        r = a["ratios"]
        print(f"{'limepy(W0, g, ra, project=True)':36s} {a['limepy_solve_project_s'] * 1e3:7.2f} "
              f"ms   {r['limepy_solve_project_over_emulator_single']:8.0f}x "
              f"{r['limepy_solve_project_over_emulator_batch']:8.0f}x")
    rt = result["runtime"]
    print(f"\nsingle call (isotropic): best {d['single_call_s'] * 1e6:.1f} us, median "
          f"{rt['single_call_median_s'] * 1e6:.1f} us; floor (same arguments and outputs, no "
          f"work) {rt['single_call_floor_s'] * 1e6:.1f} us, median "
          f"{rt['single_call_floor_median_s'] * 1e6:.1f} us")
    for name in CHILD_RUNS:
        c = rt.get(name)
        if c:
            i, a = c["isotropic"], c["anisotropic"]
            print(f"{name:16s} isotropic {i['single_call_s'] * 1e6:6.1f} us one call "
                  f"(median {i['single_call_median_s'] * 1e6:.1f}), "
                  f"{i['per_model_in_batch_s'] * 1e6:5.1f} us per model in a batch; "
                  f"anisotropic {a['single_call_s'] * 1e6:6.1f} / "
                  f"{a['per_model_in_batch_s'] * 1e6:5.1f} us; floor {c['floor_s'] * 1e6:.1f} us")
    print(f"\ncompile {d['compile_s']:.1f} s; load average {result['load_average_1min'][0]:.1f}"
          f" -> {result['load_average_1min'][1]:.1f} on {os.cpu_count()} cores; wrote {OUT}")


if __name__ == "__main__":
    main()
