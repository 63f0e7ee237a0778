"""Benchmark and accuracy table for dastro.physics (EOS + continuum opacity).

Run::

    python benchmarks/microphysics.py [--n-lambda 100000] [--n-layers 80]

Prints a table and writes ``benchmarks/results/microphysics.json``. Timings are wall-clock on
the current machine after compilation (best of ``--repeat``); compile times are reported
separately. The accuracy rows use the fixtures in ``tests/data/physics`` (see its README).
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

import dastro
from dastro import constants as const
from dastro.physics import continuum as C
from dastro.physics import eos_tp

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "physics"


def _time(f, *args, repeat=3):
    t0 = time.perf_counter()
    jax.block_until_ready(f(*args))
    compile_s = time.perf_counter() - t0
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(f(*args))
        best = min(best, time.perf_counter() - t0)
    return compile_s, best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-lambda", type=int, default=100_000)
    ap.add_argument("--n-layers", type=int, default=80)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    k = json.loads((DATA / "ksun_atlas9.json").read_text())
    eps = np.array(k["eps"])
    x = np.linspace(0, len(k["T"]) - 1, args.n_layers)
    T = np.interp(x, np.arange(len(k["T"])), k["T"])
    P = np.exp(np.interp(x, np.arange(len(k["P"])), np.log(k["P"])))

    rows = {}
    eos = jax.jit(eos_tp)
    c_eos, t_eos = _time(eos, T, P, eps, repeat=args.repeat)
    rows["eos_tp (layers)"] = {"n": args.n_layers, "compile_s": c_eos, "run_s": t_eos}

    grad_eos = jax.jit(jax.grad(lambda t, p, e: jnp.sum(jnp.log(eos_tp(t, p, e).n_e))))
    c_g, t_g = _time(grad_eos, T, P, eps, repeat=args.repeat)
    rows["grad sum ln n_e wrt T"] = {"n": args.n_layers, "compile_s": c_g, "run_s": t_g}

    r = eos(T, P, eps)
    state = C.continuum_state(T, r)
    lam = jnp.asarray(np.geomspace(1300.0, 30000.0, args.n_lambda))
    cont = jax.jit(C.continuum_opacity)
    c_c, t_c = _time(cont, lam, state, repeat=args.repeat)
    rows["continuum_opacity (layers x lambda)"] = {
        "n": args.n_layers * args.n_lambda, "compile_s": c_c, "run_s": t_c}

    lam_g = jnp.asarray(np.geomspace(1300.0, 30000.0, 2000))
    grad_c = jax.jit(jax.grad(lambda s: jnp.sum(jnp.log(sum(C.continuum_opacity(lam_g, s))))))
    c_gc, t_gc = _time(grad_c, state, repeat=args.repeat)
    rows["grad continuum (layers x 2000)"] = {
        "n": args.n_layers * 2000, "compile_s": c_gc, "run_s": t_gc}

    # accuracy
    acc = {}
    rk = eos(np.array(k["T"]), np.array(k["P"]), eps)
    rel = np.asarray(rk.n_e) / np.array(k["n_e"]) - 1
    acc["n_e vs ATLAS9 ksun.mod, max |rel|"] = float(np.max(np.abs(rel)))
    acc["n_e vs ATLAS9 ksun.mod, median |rel|"] = float(np.median(np.abs(rel)))
    d = json.loads((DATA / "hminus_bf_wishart.json").read_text())
    wl = np.array(d["wavelength_nm"]) * 10
    m = (wl >= 2500) & (wl <= 16000)
    rel = np.asarray(C.hminus_bf_cross_section(wl[m])) / (np.array(d["sigma_1e-18"])[m] * 1e-18)
    acc["H- bf vs Wishart 1979 (2500-16000 A), max |rel|"] = float(np.max(np.abs(rel - 1)))
    d = json.loads((DATA / "hminus_ff_bell_berrington.json").read_text())
    wl = np.array(d["wavelength_nm"]) * 10
    th = np.array(d["theta"])
    ll, tt = np.meshgrid(wl, 5040 / th, indexing="ij")
    got = np.asarray(jax.vmap(C.hminus_ff_coefficient)(ll.ravel(), tt.ravel())).reshape(ll.shape)
    ref = np.array(d["k_ff_1e-26"]) * 1e-26
    acc["H- ff vs Bell & Berrington 1987 (2278 A-15 um), max |rel|"] = float(
        np.max(np.abs(got[wl > 2000] / ref[wl > 2000] - 1)))
    st_k = C.continuum_state(np.array(k["T"]), rk)
    grid = jnp.asarray(np.geomspace(500.0, 3e5, 1500))
    a, sc = cont(grid, st_k)
    kr = np.asarray(C.rosseland_mean(grid, a + sc, np.array(k["T"]))) / np.asarray(rk.rho)
    ratio = kr / np.array(k["abross"])
    acc["continuum Rosseland / ATLAS9 ABROSS (lines excluded), min"] = float(ratio.min())
    acc["continuum Rosseland / ATLAS9 ABROSS (lines excluded), max"] = float(ratio.max())
    j = int(np.argmin(np.abs(np.array(k["T"]) - 6300)))
    pe = float(rk.n_e[j]) * const.k_B * k["T"][j]
    lam5 = jnp.array([4000.0, 5000.0, 8500.0, 16000.0])
    a5, s5 = C.continuum_opacity(lam5, jax.tree_util.tree_map(lambda v: v[j], st_k))
    per = np.asarray(a5 + s5) / float(st_k.n_hi[j]) / pe
    key = (f"solar layer T={k['T'][j]:.0f} K log Pe={np.log10(pe):.2f}: "
           "kappa/(n_HI Pe) [cm^2/dyn] at 4000/5000/8500/16000 A")
    acc[key] = [float(v) for v in per]

    print(f"dastro {dastro.__version__}, jax {jax.__version__}, {platform.processor() or ''} "
          f"{os.cpu_count()} cpus")
    print(f"{'benchmark':42s} {'n':>10s} {'compile [s]':>12s} {'run [s]':>10s}")
    for name, v in rows.items():
        print(f"{name:42s} {v['n']:10d} {v['compile_s']:12.2f} {v['run_s']:10.4f}")
    print()
    for name, v in acc.items():
        print(f"{name}: {v if isinstance(v, list) else f'{v:.4g}'}")
    out = ROOT / "benchmarks" / "results" / "microphysics.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"jax": jax.__version__, "cpus": os.cpu_count(),
                               "timings": rows, "accuracy": acc}, indent=1))
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
