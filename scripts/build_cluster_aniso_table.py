"""Build dastro/data/limepy_aniso_table.npz: the anisotropic lowered-isothermal emulator table.

Needs dastro/data/g_max_aniso.npz (scripts/build_g_max_aniso_table.py). For every node of a
uniform (x, w, v) grid -- x = sqrt(W0), q = emulator.q_from_w(w) (as the isotropic table),
ra = R(W0) / sqrt(expm1(y ln(1 + k^2))), y = sin(A v) / sin(A), k = R(W0) / ra_min(W0)
(emulator_aniso.ra_from_v, the inverse of v_from_ra), and g = g_max(W0, ra) (1 - (0.05 /
g_max)^q) (see emulator_aniso.py; g_max at the table's nodes is the fine quintic g_max table,
evaluated on its own (x, u) grid, emulator_aniso._g_max_table_node)
-- the exact solver (dastro.clusters.solver, rtol 1e-12) is run with that ra (u = 0: ra = inf,
isotropic) and stored (rows as float32 by default: they are residuals, and ln rt, whose float32
rounding would be ~1e-4 of W at 0.99 rt, is read from the float64 finer grid):
- ln(W / (1 - r / rt)) (since table version 9) and ln(G M(<r)) at Chebyshev nodes of
  tau = ln(r / r_in) / ln(rt / r_in);
- ln Sigma, ln(Sigma v2p), ln(Sigma v2R), ln(Sigma v2T) at the same nodes in R, regularised
  at the edge by powers of W and by edge factors (emulator_aniso.pack, edge_log_factors);
- the scalars ln rt, ln rh, ln(G M), ln(-U), ln K, ln Kr, ln rhp;
each minus the isotropic model at the same (W0, g) from the isotropic table
(emulator_aniso.isotropic_companion; table version 4). ln rt, minus the companion's, is also
solved (the ODE only, ~5 ms per model) on a grid RT_REFINEMENT = 4 times finer in x, w and v
(241 x 73 x 73 models, 49 min with --workers 2), at g = g_from_q(q, emulator_aniso._g_max_ref(...))
as the emulator defines q between the table's nodes.
The file's metadata records the grid, the dastro version, SHA-256 of the arrays and of the
g_max table, the build time and the emulator's accuracy against the exact solver on random
off-grid draws (emulator_aniso.measure_accuracy).

Run:  python scripts/build_cluster_aniso_table.py [--n-x N] [--n-q N] [--n-v N] [--n-tau N]
      [--check N] [--reuse-rows OLD.npz] [--reuse-rt DIR] [--workers N --cache DIR]
      --workers solves in N processes (one per core), each x node's models cached in DIR, from
      which a stopped build resumes. Versions 5 and 6 (61 x 19 x 19) on the 2-core machine with
      --workers 2: rows 8.5 min (~35 ms per model), the ln rt grid 49 min (4.6 min at version
      5's refinement 2), the accuracy check of 10^4 draws 6 min. --reuse-rows takes the rows
      from an earlier table on the same grid, coordinate maps and row layout (versions 3 and 4
      had another w map, versions up to 6 no edge factors: refused; version 6 reused version
      5's rows). Version 7 solved its rows again (the ln rt grid from version 6's cache: its
      files, rt_*.npy, do not depend on the row layout; the rows' are named by it). Version 9
      reused version 8's rows, converting the W series to its logarithm, and its ln rt grid
      (--reuse-rows OLD.npz --cache DIR with version 8's cache): 52 s and the check.
      Version 10 (box edge g_tab near isotropy, emulator_aniso._g_edge) reused version 9's
      rows (the same models: the edge changed between the table's nodes only) and, with
      --reuse-rt DIR (version 9's cache), its ln rt grid where the edge did not change; the
      columns with v below the table's fourth v node solved again: 8 min + the check.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

import dastro
from dastro.clusters import emulator as emu
from dastro.clusters import emulator_aniso as ea
from dastro.clusters.solver import _solve

OUT = Path(dastro.__file__).parent / "data" / ea.TABLE_NAME
#: The first table version whose rows this code can reuse (7: ea.edge_log_factors).
ROW_LAYOUT_SINCE = 7
#: The table version since which the rows have this code's layout (ea.pack): it names the
#: cached rows. Reused rows of versions 7 and 8 have W / (1 - r/rt) as a plain residual
#: (since 9 its logarithm's): converted on reading (:func:`_reused_rows`).
ROW_LAYOUT = 9


def _node_quantities(model, tau_nodes):
    """Tabulated row of one solved model (see ea.unpack for the layout)."""
    ln_rt = model.ln_rt
    r = jnp.exp(emu.LN_R_IN + tau_nodes * (ln_rt - emu.LN_R_IN))
    w, gm = model._state(r)
    proj = model._projected(r)
    rhp = model._rhp() / model.length_unit
    return ea.pack(w, jnp.log(gm), proj, model.g, ea.pack_scalars(model, rhp),
                   r / jnp.exp(ln_rt), r**2 * ea._inv_ra2(model.ra_model))


def _node_g(x_nodes, q_nodes, v_nodes):
    """g at every node (x, w, v) of the table: g_from_q(q, g_fine(x, v)), and g_fine."""
    xx, vv = np.meshgrid(x_nodes, v_nodes, indexing="ij")
    g_fine = np.asarray(jax.vmap(ea._g_max_table_node)(jnp.asarray(xx.ravel()),
                                                     jnp.asarray(vv.ravel()))).reshape(xx.shape)
    g = np.asarray(emu.g_from_q(jnp.asarray(q_nodes)[None, :, None],
                                jnp.asarray(g_fine)[:, None, :]))
    return g, g_fine


def _companion_rows(iso, x_nodes, g_nodes, tau_nodes):
    """ea.companion_row at every node: (n_x, n_q, n_v, row)."""
    w0 = np.broadcast_to((x_nodes**2)[:, None, None], g_nodes.shape)
    rows = jax.jit(jax.vmap(lambda a, b: ea.companion_row(iso, a, b, tau_nodes)))(
        jnp.asarray(w0.ravel()), jnp.asarray(g_nodes.ravel()))
    return np.asarray(rows).reshape(g_nodes.shape + (-1,))


def _rows_path(cache, i: int) -> Path:
    """The cache file of x node i's rows (named by the row layout, ROW_LAYOUT, since the
    rows change with pack; the ln rt files do not)."""
    return Path(cache) / f"rows_v{ROW_LAYOUT}_{i:03d}.npy"


def _exact_rows_at(x_indices, x_nodes, q_nodes, v_nodes, g_fine, tau_nodes, cache):
    """Solve the models of the given x nodes (all w, v): one file per x node in cache (a
    node already there is not solved again), or returned when cache is None."""
    tau = jnp.asarray(tau_nodes)

    @jax.jit
    def row_batch(x, v, gf):
        """Rows of the n_q models at one (x, v) node."""
        w0 = x**2
        ra = ea.ra_from_v(w0, v)  # inf at v = 0
        g = emu.g_from_q(jnp.asarray(q_nodes), gf)
        models = jax.vmap(lambda gg: _solve(w0, gg, ra, 1e-12, 1e-14))(g)
        return jax.vmap(lambda m: _node_quantities(m, tau))(models), models.valid, g

    out = {}
    for i in tqdm(x_indices, desc="solving x nodes (all w, v)"):
        path = None if cache is None else _rows_path(cache, i)
        if path is not None and path.exists():
            continue
        # float64 until the companion is subtracted (the residual is then rounded)
        f = np.zeros((len(q_nodes), len(v_nodes), ea.N_SERIES * len(tau_nodes) + ea.N_SCALARS))
        for k in range(len(v_nodes)):
            rows, valid, g = row_batch(jnp.asarray(x_nodes[i]), jnp.asarray(v_nodes[k]),
                                       jnp.asarray(g_fine[i, k]))
            rows = np.asarray(rows)
            if not bool(jnp.all(valid)) or not np.all(np.isfinite(rows)):
                raise RuntimeError(f"invalid model in the table at W0={x_nodes[i]**2}, "
                                   f"v={v_nodes[k]}: g={np.asarray(g)}, "
                                   f"valid={np.asarray(valid)}")
            f[:, k] = rows
        if path is None:
            out[i] = f
        else:
            np.save(path, f)
    return out


def _in_workers(fn, n_items: int, workers: int, cache, *args):
    """fn(indices, *args, cache) over range(n_items), split over `workers` processes (each
    its own JAX; interleaved indices, so that each gets easy and hard models), results in
    files in cache; one process (no cache needed) when workers == 1."""
    if workers == 1:
        return fn(list(range(n_items)), *args, cache)
    if cache is None:
        raise SystemExit("--workers > 1 needs --cache (the workers' results go there)")
    Path(cache).mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")  # JAX is not fork-safe
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        jobs = [pool.submit(fn, list(range(k, n_items, workers)), *args, cache)
                for k in range(workers)]
        for job in jobs:
            job.result()
    return {}


def _cache_key(grid: dict, edge: str | None = ea.G_EDGE) -> dict:
    """What the cached models depend on: the grid, coordinate maps, g_tab and the box edge
    (version 9's caches have no edge entry: g_fine was the edge)."""
    key = {name: np.asarray(nodes).tolist() for name, nodes in grid.items()}
    key |= {"rt_refinement": ea.RT_REFINEMENT, "w_map": ea.W_MAP, "v_map": ea.V_MAP,
            "g_tab": ea.G_TAB}
    if edge is not None:
        key["g_edge"] = edge
    return key


def _check_reused_rt(reuse: Path, grid: dict):
    """A --reuse-rt directory must hold version 9's ln rt grid of this grid."""
    path = Path(reuse) / "grid.json"
    if not path.exists() or json.loads(path.read_text()) != _cache_key(grid, edge=None):
        raise SystemExit(f"{reuse} is not a cache of version 9's ln rt grid on this grid "
                         f"(see {path})")


def _claim_cache(cache: Path, grid: dict):
    """Record the grid and ln rt refinement that the cached files belong to (cache/grid.json),
    or refuse a cache written for another: its files are named by node index only."""
    key = _cache_key(grid)
    path = Path(cache) / "grid.json"
    if path.exists():
        if json.loads(path.read_text()) != key:
            raise SystemExit(f"{cache} holds models of another grid (see {path}): use a new "
                             "--cache directory")
        return
    Path(cache).mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(key))


def _exact_rows(x_nodes, q_nodes, v_nodes, g_fine, tau_nodes, workers=1, cache=None):
    """Solve every node's model (the long part: 61 x 19 x 19 models at ~35 ms each, 8.5 min
    with two workers); float64."""
    done = _in_workers(_exact_rows_at, len(x_nodes), workers, cache, x_nodes, q_nodes,
                       v_nodes, g_fine, tau_nodes)
    return np.stack([done[i] if i in done else np.load(_rows_path(cache, i))
                     for i in range(len(x_nodes))])


def _reused_rows(path: Path, grid: dict, iso, g_nodes):
    """The exact rows of an earlier table on the same grid and coordinate maps (stored as
    residuals, to which the companion is added back), instead of solving again; and a note of
    where they came from, for the metadata. Tables before version 5 had another w map: the
    same w nodes, other models, so they are refused."""
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        for key, nodes in grid.items():
            if not np.array_equal(data[key], nodes):
                raise SystemExit(f"{path}: its {key} differ from this grid's")
        f = np.asarray(data["f"], dtype=np.float64)
    if meta.get("table_version", 0) < ROW_LAYOUT_SINCE:
        raise SystemExit(f"{path}: table version {meta.get('table_version')} stores the "
                         f"projected series without the edge factors of version "
                         f"{ROW_LAYOUT_SINCE} (ea.edge_log_factors): solve the rows again")
    for key, expected in (("w_map", ea.W_MAP), ("v_map", ea.V_MAP)):
        if meta.get(key) != expected:
            raise SystemExit(f"{path}: its {key} {meta.get(key)} is not this code's {expected} "
                             f"(table version {meta.get('table_version')})")
    if meta.get("iso_table_sha256") != iso.metadata["sha256"]:
        raise SystemExit(f"{path}: built against another isotropic table")
    source = {"file": path.name, "table_version": meta.get("table_version"),
              "sha256": meta.get("sha256")}
    companion = _companion_rows(iso, grid["x_nodes"], g_nodes, grid["tau_nodes"])
    full = f + companion
    if meta["table_version"] < ROW_LAYOUT:  # W / (1 - r/rt) itself minus the companion's
        n = len(grid["tau_nodes"])
        full[..., :n] = np.log(f[..., :n] + np.exp(companion[..., :n]))
    return full, source


def _rt_residuals_at(i_fine, x_nodes, n_q: int, n_v: int, g_max_nodes, k: int, reuse,
                     cache):
    """Rows i_fine (fine x indices) of :func:`_rt_residuals`, cached like _exact_rows_at.

    reuse: a cache directory of version 9's ln rt grid (rt_*.npy), or None. Version 9's box
    edge was g_fine everywhere (version 10's is g_tab near isotropy, ea._g_edge): a column
    (fixed x, v) whose g at every q node is within 1e-13 of version 9's (every column with
    edge_blend = 1, and the table's own v nodes) is copied from there, the others solved."""
    iso = emu.load_table()  # in this process (a worker loads its own)
    x_fine = np.linspace(x_nodes[0], x_nodes[-1], k * (len(x_nodes) - 1) + 1)
    q_fine = jnp.asarray(ea.q_from_w(np.linspace(0.0, 1.0, k * (n_q - 1) + 1)))
    v_fine = np.linspace(0.0, 1.0, k * (n_v - 1) + 1)
    axes = (ea._uniform_axis("x", x_nodes), ea._uniform_axis("w", np.linspace(0.0, 1.0, n_q)),
            ea._uniform_axis("v", np.linspace(0.0, 1.0, n_v)))

    @jax.jit
    def column_g(x, v):
        """g at the q nodes of column (x, v): this version's and version 9's."""
        gf = ea._g_max_table_node(x, v)
        g_tab, edge = ea._g_tab_and_edge(jnp.asarray(g_max_nodes), axes, x, v, gf)
        return (emu.g_from_q(q_fine, ea._g_max_ref(g_tab, q_fine, edge)),
                emu.g_from_q(q_fine, ea._g_max_ref(g_tab, q_fine, gf)))

    @jax.jit
    def column(x, v, g):
        w0 = x**2
        ra = ea.ra_from_v(w0, v)
        models = jax.vmap(lambda gg: _solve(w0, gg, ra, 1e-12, 1e-14))(g)
        companion = jax.vmap(lambda gg: ea.isotropic_companion(iso, w0, gg)[1][0])(g)
        return models.ln_rt - companion, models.valid & jnp.isfinite(models.ln_rt)

    out = {}
    for i in tqdm(i_fine, desc=f"ln rt on the {k}x finer grid"):
        path = None if cache is None else Path(cache) / f"rt_{i:03d}.npy"
        if path is not None and path.exists():
            continue
        old = None if reuse is None else np.load(Path(reuse) / f"rt_{i:03d}.npy")
        plane = np.zeros((len(q_fine), len(v_fine)))
        for j, v in enumerate(v_fine):
            g, g_v9 = column_g(jnp.asarray(x_fine[i]), jnp.asarray(v))
            if old is not None and np.allclose(g, g_v9, rtol=0.0, atol=1e-13):
                plane[:, j] = old[:, j]
                continue
            res, ok = column(jnp.asarray(x_fine[i]), jnp.asarray(v), g)
            if not bool(jnp.all(ok)):
                raise RuntimeError(f"invalid model on the ln rt grid at W0={x_fine[i]**2}, "
                                   f"v={v}")
            plane[:, j] = np.asarray(res)
        if path is None:
            out[i] = plane
        else:
            np.save(path, plane)
    return out


def _rt_residuals(x_nodes, n_q: int, n_v: int, g_max_nodes, k: int, workers=1, cache=None,
                  reuse=None):
    """Exact ln rt minus the companion's on the grid k times finer than (x_nodes, n_q, n_v),
    at g = g_from_q(q, ea._g_max_ref(...)) as in the emulator (k = 4: 73 x 73 models per
    fine x node, ~24 s each per worker; 49 min for 241 nodes with two workers)."""
    n_fine = k * (len(x_nodes) - 1) + 1
    done = _in_workers(_rt_residuals_at, n_fine, workers, cache, x_nodes, n_q, n_v,
                       g_max_nodes, k, reuse)
    return np.stack([done[i] if i in done else np.load(Path(cache) / f"rt_{i:03d}.npy")
                     for i in range(n_fine)])


def build(n_x: int, n_q: int, n_v: int, n_tau: int, n_check: int, seed: int = 0,
          out: Path = OUT, dtype: str = "float32", reuse_rows: Path | None = None,
          workers: int = 1, cache: Path | None = None, reuse_rt: Path | None = None):
    t_start = time.time()
    x_nodes = np.linspace(np.sqrt(emu.W0_MIN), np.sqrt(emu.W0_MAX), n_x)
    w_nodes = np.linspace(0.0, 1.0, n_q)
    q_nodes = np.asarray(ea.q_from_w(w_nodes))
    v_nodes = np.linspace(0.0, 1.0, n_v)
    tau_nodes = emu.chebyshev_nodes(n_tau)
    gtab = ea._g_max_table()
    gx = gtab.x_axis[0] + gtab.x_axis[1] * np.arange(gtab.x_axis[2])
    if not np.all(np.min(np.abs(x_nodes[:, None] - gx), axis=1) < 1e-12):
        print("warning: this grid's x nodes are not all nodes of the g_max table (whose grid "
              "should be finer than this one: see emulator_aniso)")
    iso = emu.load_table()
    g_nodes, g_fine = _node_g(x_nodes, q_nodes, v_nodes)
    grid = {"x_nodes": x_nodes, "w_nodes": w_nodes, "v_nodes": v_nodes, "tau_nodes": tau_nodes}
    source = None
    if cache is not None:
        _claim_cache(cache, grid)
    if reuse_rows is not None:
        f, source = _reused_rows(reuse_rows, grid, iso, g_nodes)
    else:
        f = _exact_rows(x_nodes, q_nodes, v_nodes, g_fine, tau_nodes, workers, cache)
    f = (f - _companion_rows(iso, x_nodes, g_nodes, tau_nodes)).astype(dtype)
    if reuse_rt is not None:
        _check_reused_rt(reuse_rt, grid)
    rt_fine = _rt_residuals(x_nodes, n_q, n_v, g_fine, ea.RT_REFINEMENT, workers, cache,
                            reuse_rt)
    arrays = {**grid, "f": f, "rt_fine": rt_fine}
    meta = ea.make_metadata(arrays, n_tau=n_tau, build_seconds=round(time.time() - t_start),
                            g_range=[float(g_nodes.min()), float(g_nodes.max())],
                            finite=bool(np.all(np.isfinite(f)) and np.all(np.isfinite(rt_fine))),
                            reused_rows_from=source,
                            reused_rt_from=None if reuse_rt is None else "version 9's cache")
    ea.save_npz(out, arrays, meta)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {time.time() - t_start:.0f} s)")
    if n_check:
        check(out, n_check, seed)


def check(path: Path, n_check: int, seed: int = 0):
    """Measure the table's accuracy on n_check random models and store it in its metadata."""
    ea.load_aniso_table.cache_clear()
    table = ea.load_aniso_table(path)
    t0 = time.time()
    accuracy = ea.measure_accuracy(n_check, seed=seed, progress=True, table=table)
    accuracy["seconds"] = round(time.time() - t0)
    meta = table.metadata
    meta["accuracy"] = accuracy
    meta["node_slopes"] = ea.NODE_SLOPES  # the interpolant this accuracy was measured with
    with np.load(path) as data:
        arrays = {k: np.asarray(data[k]) for k in data.files if k != "meta"}
    ea.save_npz(path, arrays, meta)
    ea.load_aniso_table.cache_clear()
    for name, row in accuracy["quantities"].items():
        print(f"  {name:6s} median {row['median']:.1e}  p99 {row['p99']:.1e}  "
              f"max {row['max']:.1e}  worst (W0, g, ra) = {row['worst']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-x", type=int, default=61, help="nodes in x = sqrt(W0)")
    parser.add_argument("--n-q", type=int, default=19, help="nodes in w (of q)")
    parser.add_argument("--n-v", type=int, default=19,
                        help="nodes in v (of ra: emulator_aniso.v_from_ra)")
    parser.add_argument("--n-tau", type=int, default=96)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                        help="of the rows (the ln rt grid is always float64)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", type=int, default=10_000,
                        help="random draws for the stored accuracy table")
    parser.add_argument("--reuse-rows", type=Path, default=None,
                        help="take the exact rows from an earlier table on the same grid "
                             "and coordinate maps (version 7 or later) instead of solving "
                             "every node again")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes that solve the models (one per core)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="directory for the solved models, one file per x node: a "
                             "build stopped part way resumes from it (needed with --workers)")
    parser.add_argument("--reuse-rt", type=Path, default=None,
                        help="a cache directory of version 9's ln rt grid: its columns where "
                             "the box edge did not change are copied, the rest solved")
    parser.add_argument("--check-only", action="store_true",
                        help="only measure the accuracy of an existing table and store it")
    args = parser.parse_args()
    if args.check_only:
        check(args.out, args.check)
        return
    build(args.n_x, args.n_q, args.n_v, args.n_tau, args.check, out=args.out,
          dtype=args.dtype, reuse_rows=args.reuse_rows, workers=args.workers,
          cache=args.cache, reuse_rt=args.reuse_rt)


if __name__ == "__main__":
    main()
