"""Build dastro/data/g_max_aniso.npz: the edge of the anisotropic model family in (W0, ra).

The table of the edge of the finite family, g_max(W0, ra): here the first g at which rt(g)
exceeds 1e6 r0, diverges or stops rising (past the first pole of rt(g) the ODE can reach W = 0
again, in "islands"). Far from the cliff in ra below, this is solver.find_g_max to ~1e-4 (the
pole is steep); near it, where even g = 0 models have rt ~ 1e5 - 1e9 r0, the 1e6 r0 cap makes
the box smaller than find_g_max's family (e.g. W0 = 7, ra = 3 r0: 0.016 instead of 0.193):
those models are far larger than any star cluster.

The box edge in anisotropy, s_max(W0) (s = 1 / (1 + log10(ra / r0))), is the analytic curve
emulator_aniso.s_max, chosen below s_crit(W0) - 0.02, where s_crit is the s at which g_max
falls to G_FLOOR = 0.8 (bisected to 2e-3 by the first version of this script: s_crit > 1.02
for W0 <= 3.5, 0.984 at W0 = 4, then ~4.2 / W0; the nodes are in S_CRIT_V1 below). This
script checks the curve again: g_max(W0, s_max(W0)) must stay >= G_FLOOR - 0.05.

g_max is tabulated on the grid (x, v), x = sqrt(W0), u = s / s_max(W0) = sin(V_A v) / sin(V_A)
(u = 0: isotropic, by the same criterion, so g_max is smooth in u), and interpolated by the
emulator with a C1 tensor-product cubic Hermite (emulator_aniso.hermite_weights). Its nodes
are every other node of the emulator table's x axis and all of its v nodes, so the
interpolated g_max -- and with it the map q -> g -- is a single cubic inside each table cell.

Run:  python scripts/build_g_max_aniso_table.py [--n-x N] [--n-v N]  (about 8 min on one core)
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

import dastro
from dastro.clusters import emulator_aniso as ea
from dastro.clusters.solver import _solve, find_g_max, g_max_isotropic

OUT = Path(dastro.__file__).parent / "data" / ea.G_MAX_TABLE_NAME
S_DELTA = 0.02
#: s_crit(W0) at W0 = 0.5, 1, ..., 14 from the first version of this script (bisection to 2e-3;
#: capped at 1.02): the provenance of emulator_aniso.S_MAX_C and S_MAX_P.
S_CRIT_V1 = [1.02] * 7 + [0.9841, 0.8985, 0.8268, 0.763, 0.7072, 0.6554, 0.6096, 0.5658, 0.5279,
                          0.4941, 0.4662, 0.4403, 0.4204, 0.4004, 0.3845, 0.3686, 0.3546,
                          0.3427, 0.3307, 0.3187, 0.3088]
N_SCAN = 33


#: A model counts as a member of the finite family if rt < 1e6 r0 and rt rises with g (past
#: the first pole of rt(g) the ODE can reach W = 0 again, in "islands" of rt ~ 1e5 - 1e10 r0).
LN_RT_BIG = math.log(1e6)


@functools.cache
def _scan():
    return jax.jit(jax.vmap(lambda w, g, ra: _solve(w, g, ra, 1e-10, 1e-12).ln_rt_or_inf,
                            in_axes=(None, 0, None)))


def _ln_rt(w0: float, g, ra: float) -> np.ndarray:
    return np.asarray(_scan()(jnp.asarray(w0), jnp.atleast_1d(jnp.asarray(g, float)),
                              jnp.asarray(ra)))


def _members(ln_rt: np.ndarray) -> np.ndarray:
    """Leading run of finite-family members in a scan of rising g."""
    finite = np.isfinite(ln_rt)
    ok = finite & (ln_rt < LN_RT_BIG)
    ok[1:] &= np.diff(np.where(finite, ln_rt, 0.0)) > 0
    return np.cumprod(ok).astype(bool)


def _bisect(w0: float, ra: float, lo: float, hi: float, tol: float) -> float:
    """Bisection of [lo, hi] (lo a member, hi not) for the edge of the finite family."""
    ln_lo = float(_ln_rt(w0, lo, ra)[0])
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        ln_mid = float(_ln_rt(w0, mid, ra)[0])
        if math.isfinite(ln_mid) and ln_lo < ln_mid < LN_RT_BIG:
            lo, ln_lo = mid, ln_mid
        else:
            hi = mid
    return lo


def g_max_fast(w0: float, ra: float, g_top: float, step: float = 0.02,
               tol: float = 1e-5) -> float:
    """The edge g_max(W0, ra) of the finite family (ra = inf: isotropic): a vectorised scan of
    rt(g) on [0, g_top] in steps of `step`, then bisection of the first bracket where rt
    exceeds 1e6 r0, diverges or stops rising. Agrees with solver.find_g_max to ~1e-3 away from
    the cliff (the pole is steep) at a fraction of its cost there."""
    grid = np.arange(0.0, g_top + step, step)
    members = _members(_ln_rt(w0, grid, ra))
    n_ok = int(members.sum())
    if n_ok == 0:
        return 0.0
    if n_ok == grid.size:
        return float(grid[-1])
    return _bisect(w0, ra, float(grid[n_ok - 1]), float(grid[n_ok]), tol)


def g_max_near(w0: float, ra: float, estimate: float, below: float = 0.15,
               above: float = 0.05, tol: float = 1e-5) -> float:
    """g_max_fast with a guess: a coarse scan (N_SCAN points) of [0, estimate - below] that must
    hold members only, and a scan in steps of 0.01 of [estimate - below, estimate + above]
    (fixed lengths: one compilation each), then bisection. A step of 0.01 does not jump over
    the pole into an island; where the guess is off, it falls back to g_max_fast."""
    edge = max(estimate - below, 0.0)
    coarse = np.linspace(0.0, edge, N_SCAN)
    fine = edge + 0.01 * np.arange(int(round((below + above) / 0.01)) + 1)
    grid = np.concatenate([coarse, fine[1:]])
    members = _members(_ln_rt(w0, grid, ra))
    n_ok = int(members.sum())
    if n_ok <= N_SCAN or n_ok == grid.size:
        return g_max_fast(w0, ra, min(estimate + 0.3, 3.5))
    return _bisect(w0, ra, float(grid[n_ok - 1]), float(grid[n_ok]), tol)


def _finite_up_to_floor(w0: float, s: float, g_floor: float) -> bool:
    """Whether g_max(W0, s) > g_floor: rt(g) finite, rising and < 1e6 r0 on [0, g_floor]."""
    grid = np.linspace(0.0, g_floor, 16)
    return bool(np.all(_members(_ln_rt(w0, grid, ea.ra_from_s_np(s)))))


def s_crit(w0: float, g_floor: float, hi: float = 1.0 + S_DELTA, tol: float = 2e-3) -> float:
    """Largest s <= hi with g_max(W0, s) >= g_floor, by bisection (g_max falls with s)."""
    if _finite_up_to_floor(w0, hi, g_floor):
        return hi
    lo = 0.0
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if _finite_up_to_floor(w0, mid, g_floor):
            lo = mid
        else:
            hi = mid
    return lo


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-x", type=int, default=31, help="nodes in x = sqrt(W0)")
    parser.add_argument("--n-v", type=int, default=13, help="nodes in v (see emulator_aniso)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    t0 = time.time()
    x = np.linspace(math.sqrt(ea.W0_MIN), math.sqrt(ea.W0_MAX), args.n_x)
    w0 = x**2
    v = np.linspace(0.0, 1.0, args.n_v)
    u = np.asarray(ea.u_from_v(v))
    s_max = np.asarray(ea.s_max(jnp.asarray(w0)))
    w_v1 = np.linspace(0.5, 14.0, 28)
    margin = np.minimum(1.0, np.asarray(S_CRIT_V1) - S_DELTA) - np.asarray(ea.s_max(w_v1))
    if margin.min() < 0:
        raise RuntimeError(f"s_max(W0) above s_crit - {S_DELTA} at W0 = {w_v1[margin < 0]}")
    grid = [(i, j) for i in range(len(w0)) for j in range(len(u))]
    g = np.zeros((len(w0), len(u)))
    for i, j in tqdm(grid, desc="g_max(W0, u)"):
        # the guess: isotropic g_max, then linear extrapolation along v
        if j == 0:
            guess = float(g_max_isotropic(float(w0[i])))
        else:
            guess = g[i, j - 1] if j == 1 else 2 * g[i, j - 1] - g[i, j - 2]
        ra = ea.ra_from_s_np(u[j] * s_max[i])  # inf at u = 0: the same criterion, isotropic
        g[i, j] = g_max_near(float(w0[i]), ra, min(guess, 3.45))
    if np.any(np.diff(g, axis=1) > 1e-4):
        print("warning: g_max rises with anisotropy at", np.argwhere(np.diff(g, axis=1) > 1e-4))
    for w, s_ in [(2.0, 0.3), (9.0, 0.2)]:
        print(f"check: g_max({w}, s={s_}) scan {g_max_fast(w, ea.ra_from_s_np(s_), 3.5):.5f}, "
              f"find_g_max {find_g_max(w, ea.ra_from_s_np(s_), tol=1e-6):.5f}")
    arrays = {"x_nodes": x, "v_nodes": v, "g_max": g}
    meta = {
        "made_by": "scripts/build_g_max_aniso_table.py",
        "dastro_version": dastro.__version__,
        "table_version": ea.G_MAX_TABLE_VERSION,
        "definition": "first pole of rt(g) at fixed (W0, ra) (g_max_fast: rt > 1e6 r0, "
                      "diverging or no longer rising, tol 1e-5); s = 1/(1 + log10 ra); "
                      "s_max(W0) = (1 + (W0/c)^p)^(-1/p); u = s / s_max = sin(v_a v)/sin(v_a); "
                      "x = sqrt(W0)",
        "s_max": [ea.S_MAX_C, ea.S_MAX_P],
        "v_a": ea.V_A,
        "g_floor": ea.G_FLOOR,
        "s_crit_v1": {"w0": w_v1.tolist(), "s_crit": S_CRIT_V1,
                      "min_margin_below_s_crit_minus_0.02": float(margin.min())},
        "sha256": ea.array_hash(arrays),
        "seconds": round(time.time() - t0, 1),
    }
    ea.save_npz(args.out, arrays, meta)
    print(f"wrote {args.out}: {len(w0)} x {len(u)} nodes, s_max from {s_max.min():.4f} "
          f"(ra = {ea.ra_from_s_np(s_max.min()):.3g} r0) to {s_max.max():.4f}; "
          f"min g_max {g.min():.4f}; {time.time() - t0:.0f} s")
    if not np.all(g >= ea.G_FLOOR - 0.05):
        print("warning: g_max below g_floor at", np.argwhere(g < ea.G_FLOOR - 0.05).tolist())


if __name__ == "__main__":
    main()
