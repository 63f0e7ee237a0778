"""Synthesise and differentiate a solar spectrum in a narrow window around Mg I 5172.68 A.

A worked example (also run by tests/test_synth.py): the MARCS solar model and the Gaia-ESO
lines shipped as test fixtures, a 1 A window in air at 0.02 A, then the derivative of the
equivalent width in the window with respect to the Mg abundance, the microturbulence and the
temperature
of every layer -- one reverse-mode pass, no finite differences.

Run: ``python examples/solar_spectrum.py [--plot out.png]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import dastro  # noqa: F401  (float64)
from dastro.atmospheres.io import read_atmosphere
from dastro.rt.lines import read_turbospectrum
from dastro.rt.synth import synthesis_plan, synthesize

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--plot", default=None, help="write a PNG figure here")
    args = ap.parse_args(argv)

    atm = read_atmosphere(DATA / "atmospheres" / "msun.mod")  # MARCS 2008 Sun
    lines = read_turbospectrum(DATA / "linelists" / "ges_5170_5174.ts")  # air wavelengths
    wl = np.arange(5172.2, 5173.2, 0.02)  # air [A]

    # The plan fixes which lines enter and their windows (a discrete choice, made once).
    plan = synthesis_plan(atm, lines, wl, air=True, check_range=False, hydrogen=False)
    spec = synthesize(atm, lines, plan=plan)
    print(f"{plan.n_lines} lines; continuum F_lambda at {wl[0]} A = "
          f"{float(spec.continuum[0]):.4g} erg/s/cm2/A; min normalised flux "
          f"{float(spec.normalized.min()):.3f}")

    def norm(ab, vmic, T):
        a = eqx.tree_at(lambda m: m.T, atm, T)
        return synthesize(a, lines, abundances=ab, vmic=vmic, plan=plan).normalized

    ab0, v0, T0 = atm.abundances[:30], jnp.asarray(1.0), atm.T
    step = wl[1] - wl[0]
    ew = lambda *p: jnp.sum(1.0 - norm(*p)) * step * 1e3  # noqa: E731  [mA] in the window
    d_ab, d_v, d_T = jax.grad(ew, argnums=(0, 1, 2))(ab0, v0, T0)
    print(f"equivalent width in the window: {float(ew(ab0, v0, T0)):.1f} mA; "
          f"d EW / d A(Mg) = {float(d_ab[11]):.1f} mA per dex, "
          f"d EW / d vmic = {float(d_v):.1f} mA per km/s, "
          f"most sensitive layer: {int(jnp.argmax(jnp.abs(d_T)))} (of {atm.n_depth})")
    # the whole Jacobian of the spectrum with respect to A(Mg), in forward mode
    jac_mg = jax.jacfwd(lambda a: norm(ab0.at[11].set(a), v0, T0))(ab0[11])
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (a1, a2) = plt.subplots(2, 1, sharex=True, figsize=(7, 5))
        a1.plot(wl, spec.normalized, "k")
        a1.set_ylabel("normalised flux")
        a2.plot(wl, jac_mg, "C0")
        a2.set_ylabel("d flux / d A(Mg)")
        a2.set_xlabel("wavelength [A, air]")
        fig.savefig(args.plot, dpi=100)
    return {"normalized": np.asarray(spec.normalized), "d_ew_d_mg": float(d_ab[11]),
            "jac_mg": np.asarray(jac_mg)}


if __name__ == "__main__":
    main()
