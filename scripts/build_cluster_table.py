"""Build dastro/data/limepy_iso_table.npz: the isotropic lowered-isothermal emulator table.

For every node of a (y, w) grid uniform in both, with W0 = emulator.w0_from_y(y) (nodes denser
in W0 at W0 = 0.5), q = emulator.q_from_w(w) (nodes denser in q at g = 0) and
g = g_max(W0) (1 - (0.05 / g_max(W0))^q) (q = 1 is the emulator's validity edge, 0.05 below
the largest finite g; see emulator.g_from_q), the exact solver
(dastro.clusters.solver) is run and stored:
- W / (1 - r / rt) and ln(G M(<r)) at Chebyshev nodes of the radial coordinate
  tau = ln(r / r_in) / ln(rt / r_in), r_in = 1e-3 r0 (first kind, no node at rt);
- the scalars ln rt, ln rh, ln(G M), ln(-U), ln K, ln rhp, on a grid 3 times finer in y and
  w (emulator.SCALAR_REFINEMENT) whose g_max(W0) is the emulator's (emulator.g_max_slopes);
- the projected quantities ln Sigma(R) and ln(Sigma v2p) at the same tau nodes in R (for
  isotropic models v2R = v2T = v2p), regularised at the edge (see emulator.py).
The emulator interpolates along y and w with the tensor-product cubic spline, its end slopes
from the quintic through the six end nodes (derivatives computed when the table is loaded).
--measure-only re-measures the accuracy of an existing table with the current code and
rewrites only its metadata (the arrays and their hash are unchanged).
The file's metadata records the grid, the dastro version, a SHA-256 of the arrays and the
emulator's accuracy against the exact solver on random off-grid draws.

Run:  python scripts/build_cluster_table.py [--n-w0 N] [--n-q N] [--n-tau N] [--check N]
      python scripts/build_cluster_table.py --measure-only [--check N]
(defaults 181 x 49 x 96 and 10^4 draws: 28 min on one core of this machine, plus 8 min for
the check, measured 2026-12-05)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

import dastro
from dastro.clusters import emulator as emu
from dastro.clusters.solver import _solve, g_max_isotropic
from dastro.clusters.uniform_grid import cubic_hermite

OUT = Path(dastro.__file__).parent / "data" / emu.TABLE_NAME


def _node_quantities(model, tau_nodes):
    """Tabulated vector for one solved model (see emu.unpack for the layout)."""
    ln_rt = model.ln_rt
    t = emu.LN_R_IN + tau_nodes * (ln_rt - emu.LN_R_IN)
    r = jnp.exp(t)
    w, gm = model._state(r)
    proj = model._projected(r)
    return emu.pack(w, jnp.log(gm), proj, model.g, r / jnp.exp(ln_rt))


def _scalars(model):
    return emu.pack_scalars(model, model._rhp() / model.length_unit)


def _solve_row(w0, g):
    models = jax.vmap(lambda w, gg: _solve(w, gg, None, 1e-12, 1e-14))(
        jnp.full(len(g), w0), jnp.asarray(g))
    if not bool(jnp.all(models.valid)):
        raise RuntimeError(f"invalid model in the table at W0={w0}")
    return models


def build(n_w0: int, n_q: int, n_tau: int, n_check: int, seed: int = 0, out: Path = OUT):
    t_start = time.time()
    grid_y = emu.y_nodes(n_w0)
    w0_nodes = emu.w0_from_y(grid_y)
    grid_w = emu.w_nodes(n_q)
    q_nodes = emu.q_from_w(grid_w)
    tau_nodes = emu.chebyshev_nodes(n_tau)
    g_max = np.asarray(g_max_isotropic(jnp.asarray(w0_nodes)))

    quantities = jax.jit(jax.vmap(lambda m: _node_quantities(m, jnp.asarray(tau_nodes))))
    table = []
    for w0, gm in tqdm(list(zip(w0_nodes, g_max, strict=True)), desc="profiles, W0 rows"):
        table.append(np.asarray(quantities(_solve_row(w0, emu.g_from_q(q_nodes, gm)))))
    f = np.stack(table)  # (n_w0, n_q, 4 n_tau)

    # the scalars on the finer grid, with the emulator's g_max(W0) between the W0 nodes
    y_fine, q_fine = emu.refined_nodes(grid_y), emu.q_from_w(emu.refined_nodes(grid_w))
    w0_fine = emu.w0_from_y(y_fine)
    slopes = emu.g_max_slopes(grid_y, g_max)
    g_max_fine = np.asarray(cubic_hermite(jnp.asarray(y_fine), grid_y, g_max, slopes))
    scalars = jax.jit(jax.vmap(_scalars))
    fine = []
    for w0, gm in tqdm(list(zip(w0_fine, g_max_fine, strict=True)), desc="scalars, W0 rows"):
        fine.append(np.asarray(scalars(_solve_row(w0, emu.g_from_q(q_fine, gm)))))
    arrays = {
        "w0_nodes": w0_nodes, "y_nodes": grid_y, "w_nodes": grid_w, "tau_nodes": tau_nodes,
        "g_max": g_max, "f": f, "scalars_fine": np.stack(fine),
    }
    meta = emu.make_metadata(arrays, n_tau=n_tau, scalar_refinement=emu.SCALAR_REFINEMENT,
                             build_seconds=time.time() - t_start)
    emu.save_table(out, arrays, meta)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {time.time() - t_start:.0f} s)")
    if n_check:
        measure_only(n_check, seed=seed, out=out)


def measure_only(n_check: int, seed: int = 0, out: Path = OUT):
    """Re-measure an existing table's accuracy with the current code; rewrite its metadata."""
    table = emu.load_table(out)
    with np.load(out) as data:
        arrays = {k: np.asarray(data[k]) for k in data.files if k != "meta"}
    meta = table.metadata
    t0 = time.time()
    meta["accuracy"] = emu.measure_accuracy(n_check, seed=seed, progress=True, table=table)
    meta["accuracy_measured"] = {"date": time.strftime("%Y-%m-%d"),
                                 "dastro_version": dastro.__version__,
                                 "seconds": time.time() - t0}
    emu.save_table(out, arrays, meta)
    emu.load_table.cache_clear()
    emu.load_table(out)  # the hash still matches
    for name, row in meta["accuracy"]["quantities"].items():
        worst = row["worst"]
        at = f", r/rt {worst['r_over_rt']:.4g}" if "r_over_rt" in worst else ""
        print(f"  {name:8s} median {row['median']:.1e}  p99 {row['p99']:.1e}  "
              f"max {row['max']:.1e} (W0 {worst['W0']:.4f}, g {worst['g']:.4f}{at})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-w0", type=int, default=181, help="nodes in y (W0)")
    parser.add_argument("--n-q", type=int, default=49, help="nodes in w (g)")
    parser.add_argument("--n-tau", type=int, default=96)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", type=int, default=10000,
                        help="random draws for the stored accuracy table")
    parser.add_argument("--measure-only", action="store_true",
                        help="re-measure the existing table's accuracy; rewrite its metadata")
    args = parser.parse_args()
    if args.measure_only:
        measure_only(args.check, out=args.out)
        return
    build(args.n_w0, args.n_q, args.n_tau, args.check, out=args.out)


if __name__ == "__main__":
    main()
