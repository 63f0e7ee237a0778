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
emulator with a C1 tensor-product cubic Hermite (emulator_aniso.hermite_weights). The grid is
finer than the emulator table's (121 x 37: every node of the version-2 table, 61 x 13 in
(x, v of u), is a node here, with one node between table nodes in x and two in v; the
version-3 table's v is another coordinate, emulator_aniso.v_from_ra, so only its x nodes are
nodes here), and each node is refined to 1e-9 in g: near q = 1 the
table's ln rt depends on g_max(W0, ra) with a factor ~p / 0.05 (ln rt ~ p ln(g_max - g)), so
the error of the interpolated g_max between nodes -- not only at them -- enters the emulator's
ln rt about 20 times amplified. On the table's own grid (61 x 13) the cubic's error was up to
~6e-4 in g at large W0 near the anisotropic edge (g_max falls from 2.39 to 1.6 within a few
v cells there) and ~5e-5 near the minimum of g_max(W0) at W0 ~ 8; the first version used every
other table node in x and tolerance 1e-5, which gave ln rt errors of up to ~1e-3 alternating
in sign from one table cell to the next.

Each node: the first g at which rt(g) reaches 1e6 r0 (or the ODE no longer reaches W = 0),
by regula falsi (Illinois) in a bracket around a guess, vectorised over the 121 W0 of one v
column; the guess is the isotropic g_max at u = 0, else the extrapolation of the previous
two columns; where the bracket does not hold, g_max_near (scan and bisection) takes over.

Run:  python scripts/build_g_max_aniso_table.py [--n-x N] [--n-v N] [--tol T]
      (about 25 min on one core)
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


def refine_edges(w0: np.ndarray, ra: np.ndarray, guess: np.ndarray, half_width,
                 tol: float = 1e-9, max_iter: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """The edge of the finite family at many (W0, ra) at once, to ~`tol` in g: the first g at
    which rt reaches 1e6 r0 (or the ODE no longer reaches W = 0, past a pole), the root of
    h(g) = ln(1e6 r0) - ln rt(g) in the bracket guess -/+ half_width: the Illinois variant of
    regula falsi, with bisection while the upper end is past a pole (h = -inf). Vectorised:
    one batched solve (rtol 1e-12) per iteration for all lanes. Returns (g_max, ok); ok is
    False where the bracket did not hold (its lower end not a member, or its upper end still
    one) or did not converge: those lanes need g_max_near."""
    scan = _scan_precise()
    n = len(w0)
    buckets = sorted({n, min(n, 32), min(n, 8)})

    def h(g, lanes=None):
        """h at g for the given lanes (all by default); the others are returned as NaN."""
        idx = np.arange(n) if lanes is None else np.flatnonzero(lanes)
        out = np.full(n, np.nan)
        if idx.size == 0:
            return out
        size = next(b for b in buckets if b >= idx.size)
        pad = np.concatenate([idx, np.full(size - idx.size, idx[0])])
        ln_rt = np.asarray(scan(jnp.asarray(w0[pad]), jnp.asarray(g[pad]),
                                jnp.asarray(ra[pad])))[:idx.size]
        out[idx] = np.where(np.isfinite(ln_rt), LN_RT_BIG - ln_rt, -np.inf)
        return out

    lo = np.maximum(guess - half_width, 0.0)
    hi = guess + half_width
    h_lo, h_hi = h(lo), h(hi)
    ok = (h_lo > 0) & (h_hi <= 0)
    root = np.full(len(w0), np.nan)
    last = np.zeros(len(w0))  # the end replaced last: -1 lo, +1 hi
    with np.errstate(invalid="ignore", divide="ignore"):  # inf - inf in masked-out lanes
        root, active = _illinois(h, lo, hi, h_lo, h_hi, ok.copy(), root, last, tol, max_iter)
    return root, ok & ~active


def _illinois(h, lo, hi, h_lo, h_hi, active, root, last, tol, max_iter):
    """The iterations of refine_edges."""
    for _ in range(max_iter):
        if not np.any(active):
            break
        finite = np.isfinite(h_hi)
        falsi = (lo * h_hi - hi * h_lo) / np.where(finite, h_hi - h_lo, 1.0)
        width = hi - lo
        mid = np.where(finite, np.clip(falsi, lo + 1e-4 * width, hi - 1e-4 * width),
                       0.5 * (lo + hi))
        mid = np.where(active, mid, lo)
        h_mid = h(mid, active)
        below = active & (h_mid > 0)
        above = active & ~below
        # Illinois: an end kept twice in a row has its value halved
        h_hi = np.where(below & (last == -1), 0.5 * h_hi, h_hi)
        h_lo = np.where(above & (last == 1), 0.5 * h_lo, h_lo)
        lo, h_lo = np.where(below, mid, lo), np.where(below, h_mid, h_lo)
        hi, h_hi = np.where(above, mid, hi), np.where(above, h_mid, h_hi)
        last = np.where(below, -1, np.where(above, 1, last))
        # converged: the bracket is below tol, or h(mid) puts mid within ~tol of the root
        slope = np.where(np.isfinite(h_hi), (h_lo - h_hi) / np.maximum(hi - lo, 1e-300), 0.0)
        close = active & ((hi - lo < tol) | (np.abs(h_mid) < 0.1 * tol * slope))
        root = np.where(close, mid, root)
        active &= ~close
    return root, active


@functools.cache
def _scan_precise():
    return jax.jit(jax.vmap(lambda w, g, ra: _solve(w, g, ra, 1e-12, 1e-14).ln_rt_or_inf))


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
    parser.add_argument("--n-x", type=int, default=121,
                        help="nodes in x = sqrt(W0) (121: twice the table's density)")
    parser.add_argument("--n-v", type=int, default=37,
                        help="nodes in v (see emulator_aniso; 37: three times the table's)")
    parser.add_argument("--tol", type=float, default=1e-9, help="tolerance in g")
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
    # Column by column in v (all W0 at once): the guess is the isotropic g_max (u = 0; that
    # is the pole, which the 1e6 r0 cap can precede by ~1e-4) or the linear extrapolation of
    # the previous two columns; a lane whose bracket fails falls back to g_max_near.
    g = np.zeros((len(w0), len(u)))
    fallbacks = []
    for j in tqdm(range(len(u)), desc=f"g_max(W0, u): {len(u)} columns of {len(w0)} W0"):
        ra = np.array([ea.ra_from_s_np(u[j] * s) for s in s_max])  # inf at u = 0
        if j == 0:
            guess = np.asarray(g_max_isotropic(jnp.asarray(w0)))
            half = np.full(len(w0), 0.01)
        elif j == 1:
            guess, half = g[:, 0], np.full(len(w0), 0.005)
        else:
            guess = 2 * g[:, j - 1] - g[:, j - 2]
            prev = g[:, j - 1] - g[:, j - 2] - (g[:, j - 2] - g[:, j - 3] if j > 2 else 0.0)
            half = 2e-3 + 3 * np.abs(prev)
        col, ok = refine_edges(w0, ra, np.minimum(guess, 3.45), half, tol=args.tol)
        for i in np.flatnonzero(~ok):
            col[i] = g_max_near(float(w0[i]), float(ra[i]), min(float(guess[i]), 3.45),
                                tol=args.tol)
            fallbacks.append((float(w0[i]), float(u[j])))
        g[:, j] = col
    if fallbacks:
        print(f"{len(fallbacks)} nodes by scan and bisection (bracket failed):", fallbacks)
    if OUT.is_file():  # the shipped table, for comparison at the nodes both grids share
        with np.load(OUT) as old:
            gx, gv, gg = old["x_nodes"], old["v_nodes"], old["g_max"]
        ix = [int(np.argmin(np.abs(x - a))) for a in gx]
        iv = [int(np.argmin(np.abs(v - b))) for b in gv]
        if np.allclose(x[ix], gx, atol=1e-12) and np.allclose(v[iv], gv, atol=1e-12):
            diff = g[np.ix_(ix, iv)] - gg
            print(f"new - shipped g_max at the shared nodes: {diff.min():.2e} to "
                  f"{diff.max():.2e}")
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
        "definition": "first g at which rt(g) reaches 1e6 r0 or diverges, at fixed (W0, ra) "
                      f"(refine_edges: Illinois regula falsi on ln(1e6) - ln rt, solver rtol "
                      f"1e-12, tol {args.tol:g}); s = 1/(1 + log10 ra); "
                      "s_max(W0) = (1 + (W0/c)^p)^(-1/p); u = s / s_max = sin(v_a v)/sin(v_a); "
                      "x = sqrt(W0)",
        "s_max": [ea.S_MAX_C, ea.S_MAX_P],
        "v_a": ea.V_A,
        "g_floor": ea.G_FLOOR,
        "s_crit_v1": {"w0": w_v1.tolist(), "s_crit": S_CRIT_V1,
                      "min_margin_below_s_crit_minus_0.02": float(margin.min())},
        "sha256": ea.array_hash(arrays),
        "fallback_nodes": fallbacks,
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
