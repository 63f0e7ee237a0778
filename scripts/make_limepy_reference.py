"""Build tests/data/limepy_reference.npz: astro-limepy solutions on the issue's grid.

Reference for dastro.clusters.solver. For every (W0, g, ra) on the grid

    W0 in {0.5, 1, 2, 3, 5, 7, 9, 11, 13}, g in {0, 0.5, 1, 1.5, 2, 2.5, 3},
    ra in {inf (isotropic), 20 r0, 5 r0},

astro-limepy (Gieles & Zocchi 2015) is solved in model units (G = 9/(4 pi), r0 = 1) with tight
tolerances (ode_rtol = ode_atol = 1e-13) and its profiles are stored at a subsample of its own
radial grid (no interpolation). Projected profiles and the projected half-mass radius are not
taken from astro-limepy's own Simpson projection, which is accurate to only ~1e-5 and fails
near rt; instead they are integrated here with scipy's adaptive quad_vec (epsrel 1e-11) over
astro-limepy's own cubic-Hermite potential and its density and velocity-moment functions.

Models beyond g_max(W0, ra) are infinite; astro-limepy still reports them "converged" with
absurd rt. A model is kept only if astro-limepy's rt < 1e5 r0; the skipped ones are listed in
the file (tests check that dastro flags them invalid).

Run:  python scripts/make_limepy_reference.py   (needs the `reference` extra; ~10 minutes)
"""

from __future__ import annotations

import json
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import scipy
from scipy.integrate import quad_vec
from scipy.optimize import brentq

W0_GRID = [0.5, 1, 2, 3, 5, 7, 9, 11, 13]
G_GRID = [0, 0.5, 1, 1.5, 2, 2.5, 3]
RA_GRID = [np.inf, 20.0, 5.0]
N_R = 48  # radii kept per model
N_R_PROJ = 16  # projected radii per model
RT_MAX = 1e5
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "limepy_reference.npz"


def _local(model, r):
    """rho, v2r, v2t at radii r (< rt) from astro-limepy's own interpolant and moments."""
    # The cubic-Hermite interpolant can undershoot to -1e-16 next to rt: clip to W >= 0.
    phi = np.maximum(model.interp_phi(r), 0.0)
    rho = model._rhohat(phi, r, 0)
    rv2 = np.array([model._rhov2int(p, x, model.raj[0]) for p, x in zip(phi, r, strict=False)])
    rv2r = rv2[:, 1] / model.rhoint0[0]
    rv2t = rv2[:, 2] / model.rhoint0[0]
    return rho, rv2r, rv2t


def _projected(model, R):
    """Sigma, Sigma v2p, Sigma v2R, Sigma v2T at projected radius R (model units)."""
    rt = model.rt
    zt = np.sqrt(rt**2 - R**2)

    def integrand(z):
        r = np.sqrt(R**2 + z**2)
        if r >= rt:
            return np.zeros(4)
        rho, rv2r, rv2t = _local(model, np.array([r]))
        c2 = (R / r) ** 2 if r > 0 else 0.0
        return 2.0 * np.array([
            rho[0],
            rv2r[0] * (1 - c2) + 0.5 * rv2t[0] * c2,
            rv2r[0] * c2 + 0.5 * rv2t[0] * (1 - c2),
            0.5 * rv2t[0],
        ])

    # Break points at the scales where the integrand changes: the core and the edge.
    pts = sorted({min(zt * f, zt) for f in (1e-3, 1e-2, 0.1, 0.5, 0.9, 0.99)})
    total = np.zeros(4)
    edges = [0.0, *pts, zt]
    for a, b in zip(edges[:-1], edges[1:], strict=False):
        if b > a:
            total += quad_vec(integrand, a, b, epsrel=1e-11, epsabs=0.0, limit=400)[0]
    return total


def _cylinder_mass(model, R):
    """Mass within projected radius R (model units: M = int 4 pi r^2 rho dr)."""

    def rho(r):
        phi = np.maximum(model.interp_phi(np.array([r])), 0.0)
        return model._rhohat(phi, np.array([r]), 0)[0]

    inner = quad_vec(lambda r: 4 * np.pi * r**2 * rho(r), 0, R, epsrel=1e-12, epsabs=0)[0]
    outer = quad_vec(
        lambda r: 4 * np.pi * r**2 * rho(r) * (1 - np.sqrt(max(0.0, 1 - (R / r) ** 2))),
        R, model.rt, epsrel=1e-12, epsabs=0,
    )[0]
    return inner + outer


def build_one(W0, g, ra):
    import limepy

    kw = {} if np.isinf(ra) else {"ra": ra}
    m = limepy.limepy(W0, g, ode_rtol=1e-13, ode_atol=1e-13, **kw)
    if not m.converged or not np.isfinite(m.rt) or m.rt > RT_MAX:
        return None
    # Radii: a subsample of astro-limepy's own grid, log-spaced in index density.
    r_all = m.r[1:-1]
    idx = np.unique(np.linspace(0, len(r_all) - 1, N_R).round().astype(int))
    r = r_all[idx]
    prof = {
        "r": r,
        "phi": m.phihat[1:-1][idx],
        "rho": m.rhohat[1:-1][idx],
        "mc": m.mc[1:-1][idx],
        "v2": m.v2[1:-1][idx],
        "v2r": m.v2r[1:-1][idx],
        "v2t": m.v2t[1:-1][idx],
        "beta": m.beta[1:-1][idx],
    }
    R = np.concatenate([[0.0], m.rt * np.geomspace(1e-3, 0.95, N_R_PROJ - 1)])
    proj = np.array([_projected(m, x) for x in R])
    sigma = proj[:, 0]
    prof_proj = {
        "R": R,
        "Sigma": sigma,
        "v2p": proj[:, 1] / sigma,
        "v2R": proj[:, 2] / sigma,
        "v2T": proj[:, 3] / sigma,
    }
    half = 0.5 * m.M
    rhp = brentq(lambda x: _cylinder_mass(m, x) - half, 1e-3 * m.rh, m.rt * 0.999, xtol=1e-13,
                 rtol=1e-13)
    scalars = {
        "rt": m.rt, "rh": float(np.ravel(m.rh)[0]), "rv": m.rv, "M": m.M, "U": m.U, "K": m.K,
        "Kr": m.Kr, "A": float(np.ravel(m.A)[0]), "rhp": rhp,
    }
    return scalars, prof, prof_proj


def main():
    only_fast = "--quick" in sys.argv
    grid = [(w, g, ra) for ra in RA_GRID for w in W0_GRID for g in G_GRID]
    if only_fast:
        grid = grid[::17]
    data = {}
    index = []
    skipped = []
    t_start = time.time()
    for i, (W0, g, ra) in enumerate(grid):
        t0 = time.time()
        out = build_one(W0, g, ra)
        tag = f"{W0:g}_{g:g}_{'inf' if np.isinf(ra) else f'{ra:g}'}"
        if out is None:
            skipped.append([W0, g, ra])
            print(f"[{i + 1}/{len(grid)}] {tag}: skipped (infinite)", flush=True)
            continue
        scalars, prof, proj = out
        index.append([W0, g, ra])
        for k, v in scalars.items():
            data[f"{tag}/scalar/{k}"] = np.asarray(v, float)
        for k, v in {**prof, **proj}.items():
            data[f"{tag}/{k}"] = np.asarray(v, float)
        print(f"[{i + 1}/{len(grid)}] {tag}: rt={scalars['rt']:.6g} ({time.time() - t0:.1f} s)",
              flush=True)
    meta = {
        "made_by": "scripts/make_limepy_reference.py",
        "astro-limepy": version("astro-limepy"),
        "scipy": scipy.__version__,
        "numpy": np.__version__,
        "settings": {"ode_rtol": 1e-13, "ode_atol": 1e-13, "units": "limepy model units",
                     "projection": "scipy quad_vec epsrel 1e-11 over limepy interp_phi"},
        "rt_max_kept": RT_MAX,
        "seconds": round(time.time() - t_start, 1),
    }
    data["index"] = np.asarray(index, float)
    data["skipped"] = np.asarray(skipped, float).reshape(-1, 3)
    data["meta"] = np.asarray(json.dumps(meta))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT} ({len(index)} models, {len(skipped)} skipped)")


if __name__ == "__main__":
    main()
