"""Build dastro/data/g_max_aniso.npz: the edge of the anisotropic model family in (W0, ra).

Two tables of the edge of the finite family, g_max(W0, ra): here the first g at which rt(g)
exceeds 1e6 r0, diverges or stops rising (past the first pole of rt(g) the ODE can reach W = 0
again, in "islands"). Far from the cliff in ra below, this is solver.find_g_max to ~1e-4 (the
pole is steep); near it, where even g = 0 models have rt ~ 1e5 - 1e9 r0, the 1e6 r0 cap makes
the box smaller than find_g_max's family (e.g. W0 = 7, ra = 3 r0: 0.016 instead of 0.193):
those models are far larger than any star cluster. The tables:

1. the box edge in anisotropy, s_max(W0), with s = 1 / (1 + log10(ra / r0)) (s = 0 isotropic,
   s = 1 at ra = r0). Radially anisotropic models with small ra are finite only for small g, and
   for large W0 not at all (g_max(14, ra = 30 r0) = 0). At each W0 node the script finds
   s_crit(W0), where g_max(W0, s) falls to G_FLOOR (emulator_aniso; 0.8), by bisection in s
   to 2e-3, and stores s_max = min(1, s_crit - 0.02): the emulator then covers ra down to r0 where
   the family allows it and keeps g_max >= ~G_FLOOR everywhere in its box (so the g range
   0 <= g <= g_max - 0.05 is never empty). s_max(W0) is the monotone cubic through the nodes.
2. g_max on the grid (W0, u), u = s / s_max(W0) in [0, 1] (u = 0: isotropic, by the same
   criterion, so g_max is smooth in u), interpolated by the emulator with a C1
   tensor-product cubic Hermite (emulator_aniso.hermite_weights).

Run:  python scripts/build_g_max_aniso_table.py [--n-w0 N] [--n-u N]  (about 15 min on one core)
"""

from __future__ import annotations

import argparse
import functools
import json
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
    lo, hi = float(grid[n_ok - 1]), float(grid[n_ok])
    ln_lo = float(_ln_rt(w0, lo, ra)[0])
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        ln_mid = float(_ln_rt(w0, mid, ra)[0])
        if math.isfinite(ln_mid) and ln_lo < ln_mid < LN_RT_BIG:
            lo, ln_lo = mid, ln_mid
        else:
            hi = mid
    return lo


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


def _redo_isotropic_column(path: Path):
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        arrays = {k: np.array(data[k]) for k in data.files if k != "meta"}
    w0, g = arrays["w0_nodes"], arrays["g_max"]
    for i in tqdm(range(len(w0)), desc="g_max(W0, u = 0)"):
        g[i, 0] = g_max_fast(float(w0[i]), math.inf, min(g[i, 1] + 0.04, 3.5))
    meta["sha256"] = ea.array_hash(arrays)
    ea.save_npz(path, arrays, meta)
    print("u = 0 column:", np.round(g[:, 0], 4))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-w0", type=int, default=28)
    parser.add_argument("--n-u", type=int, default=11)
    parser.add_argument("--g-floor", type=float, default=ea.G_FLOOR,
                        help="g_max at the anisotropic edge of the box, s_max(W0)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--redo-isotropic-column", action="store_true",
                        help="recompute only the u = 0 column of an existing table")
    args = parser.parse_args()
    if args.redo_isotropic_column:
        _redo_isotropic_column(args.out)
        return
    jax.config.update("jax_enable_x64", True)
    t0 = time.time()
    w0 = np.linspace(ea.W0_MIN, ea.W0_MAX, args.n_w0)
    crit = np.array([s_crit(float(w), args.g_floor) for w in tqdm(w0, desc="s_crit(W0)")])
    s_max = np.minimum(1.0, crit - S_DELTA)
    u = np.linspace(0.0, 1.0, args.n_u)
    grid = [(i, j) for i in range(len(w0)) for j in range(len(u))]
    g = np.zeros((len(w0), len(u)))
    for i, j in tqdm(grid, desc="g_max(W0, u)"):
        # g_max falls with s: the previous node bounds the scan
        top = float(g_max_isotropic(float(w0[i]))) + 0.02 if j == 0 else g[i, j - 1] + 0.04
        ra = ea.ra_from_s_np(u[j] * s_max[i])  # inf at u = 0: the same criterion, isotropic
        g[i, j] = g_max_fast(float(w0[i]), ra, min(top, 3.5))
    check = [(2.0, 0.3), (9.0, 0.2)]
    for w, s_ in check:
        print(f"check: g_max({w}, s={s_}) scan {g_max_fast(w, ea.ra_from_s_np(s_), 3.5):.5f}, "
              f"find_g_max {find_g_max(w, ea.ra_from_s_np(s_), tol=1e-6):.5f}")
    arrays = {"w0_nodes": w0, "u_nodes": u, "s_crit": crit, "s_max": s_max, "g_max": g}
    meta = {
        "made_by": "scripts/build_g_max_aniso_table.py",
        "dastro_version": dastro.__version__,
        "table_version": ea.G_MAX_TABLE_VERSION,
        "definition": "first pole of rt(g) at fixed (W0, ra) (g_max_fast: rt > 1e6 r0, "
                      "diverging or no longer rising, tol 1e-5); "
                      f"s = 1/(1 + log10 ra); s_crit: g_max = {args.g_floor}; "
                      f"s_max = min(1, s_crit - {S_DELTA}); u = s / s_max",
        "g_floor": args.g_floor,
        "sha256": ea.array_hash(arrays),
        "seconds": round(time.time() - t0, 1),
    }
    ea.save_npz(args.out, arrays, meta)
    print(f"wrote {args.out}: {len(w0)} x {len(u)} nodes, s_max from {s_max.min():.4f} "
          f"(ra = {ea.ra_from_s_np(s_max.min()):.3g} r0) to {s_max.max():.4f}; "
          f"min g_max {g.min():.4f}; {time.time() - t0:.0f} s")
    if not np.all(g >= args.g_floor - 1e-3):
        print("warning: g_max below g_floor at", np.argwhere(g < args.g_floor - 1e-3).tolist())


if __name__ == "__main__":
    main()
