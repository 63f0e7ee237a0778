"""Figures of a fit: corner plot and data against fitted profiles (matplotlib)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["plot_corner", "plot_fitted_profiles"]


def _pyplot():
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - matplotlib comes with arviz
        raise SystemExit("plots need matplotlib: pip install 'dastro[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_corner(result, path, *, truth=None):
    """Pairwise posterior of the cluster parameters, truth marked when given."""
    from dastro.inference.fit import az

    plt = _pyplot()
    names = [n for n in result.var_names if n in ("W0", "g", "log10_M", "log10_rh",
                                                  "distance")]
    ref = {k: v for k, v in (truth or {}).items() if k in names}
    axes = az.plot_pair(result.idata, var_names=names, kind="kde", marginals=True,
                        reference_values=ref or None, figsize=(2.2 * len(names),) * 2,
                        kde_kwargs={"contourf_kwargs": {"cmap": "Blues"}})
    fig = np.ravel(axes)[0].get_figure()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _draws(result, n_draws, seed=0):
    post = result.idata.posterior
    flat = {k: np.asarray(post[k].values).reshape(-1) for k in
            ("W0", "g", "M", "rh", "distance", "vz0") if k in post}
    n = flat["W0"].size
    idx = np.random.default_rng(seed).choice(n, size=min(n_draws, n), replace=False)
    return [{k: v[i] for k, v in flat.items()} for i in idx]


def _model_profiles(draws, R_pc_of, n_radii):
    """Sigma/M [pc^-2] and sqrt(v2p) [km/s] for each draw at the radii R_pc_of(draw)."""
    import equinox as eqx
    import jax.numpy as jnp

    from dastro.clusters.emulator import _emulate, load_table

    table = load_table()

    @eqx.filter_jit
    def one(W0, g, M, rh, R):
        m = _emulate(table, W0, g).scale(M, rh=rh)
        pr = m.projected(R)
        return pr.Sigma / m.M, jnp.sqrt(pr.v2p)

    sig, disp = [], []
    for d in draws:
        a, b = one(d["W0"], d["g"], d["M"], d["rh"], jnp.asarray(R_pc_of(d)))
        sig.append(np.asarray(a))
        disp.append(np.asarray(b))
    return np.array(sig), np.array(disp)


def _band(ax, x, samples, color, label):
    lo95, lo68, med, hi68, hi95 = np.percentile(samples, [2.5, 16, 50, 84, 97.5], axis=0)
    ax.fill_between(x, lo95, hi95, color=color, alpha=0.2, lw=0)
    ax.fill_between(x, lo68, hi68, color=color, alpha=0.4, lw=0)
    ax.plot(x, med, color=color, lw=1.2, label=label)


def plot_fitted_profiles(result, path, *, data=None, profiles=None, n_draws=100):
    """Binned data against the posterior's projected profiles (68 % and 95 % bands)."""
    plt = _pyplot()
    draws = _draws(result, n_draws)
    if data is not None:
        fig = _plot_star_data(plt, result, data, draws)
    else:
        fig = _plot_profile_data(plt, result, profiles, draws)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_star_data(plt, result, data, draws):
    from dastro.inference.models import ARCSEC_PC_PER_KPC

    post = result.idata.posterior
    x0 = float(post["x0"].mean()) if "x0" in post else 0.0
    y0 = float(post["y0"].mean()) if "y0" in post else 0.0
    R = np.hypot(data.x - x0, data.y - y0)
    edges = np.quantile(R, np.linspace(0, 1, 11))
    edges[0] = 0.0
    mid = 0.5 * (edges[1:] + edges[:-1])
    counts = np.histogram(R, edges)[0]
    area = math.pi * (edges[1:] ** 2 - edges[:-1] ** 2)
    grid = np.geomspace(max(edges[1] / 20, 1e-3), edges[-1] * 1.2, 80)
    unit = "arcsec" if data.sky else "pc"

    def pc_of(d):
        return grid * (d["distance"] * ARCSEC_PC_PER_KPC if data.sky else 1.0)

    sig, disp = _model_profiles(draws, pc_of, grid.size)
    scale = np.array([(d["distance"] * ARCSEC_PC_PER_KPC) ** 2 if data.sky else 1.0
                      for d in draws])[:, None]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = axes[0]
    _band(ax, grid, data.n * sig * scale, "C0", "model (posterior)")
    ax.errorbar(mid, counts / area, yerr=np.sqrt(counts) / area, fmt="ko", ms=3,
                label="stars")
    ax.set(xscale="log", yscale="log", xlabel=f"R [{unit}]",
           ylabel=f"stars per {unit}$^2$", title="surface density")
    ax.legend()
    ax = axes[1]
    _band(ax, grid, disp, "C1", "model $\\sigma_{los}$")
    has = np.asarray(data.has_vz)
    if has.sum() >= 20:
        vz0 = float(post["vz0"].mean()) if "vz0" in post else 0.0
        e_v = np.quantile(R[has], np.linspace(0, 1, 6))
        which = np.clip(np.digitize(R[has], e_v) - 1, 0, 4)
        vals, errs, mids = [], [], []
        for k in range(5):
            sel = which == k
            v = data.vz[has][sel] - vz0
            s2 = max(np.mean(v**2) - np.mean(data.vz_err[has][sel] ** 2), 0.0)
            vals.append(math.sqrt(s2))
            errs.append(math.sqrt(s2 / (2 * max(sel.sum(), 1))))
            mids.append(np.median(R[has][sel]))
        ax.errorbar(mids, vals, yerr=errs, fmt="ko", ms=3, label="line-of-sight stars")
    ax.set(xscale="log", xlabel=f"R [{unit}]", ylabel="km/s",
           title="line-of-sight dispersion")
    ax.legend()
    return fig


def _plot_profile_data(plt, result, profiles, draws):
    from dastro.constants import K_PM
    from dastro.inference.models import ARCSEC_PC_PER_KPC

    post = result.idata.posterior
    fig, axes = plt.subplots(1, len(profiles), figsize=(5 * len(profiles), 4), squeeze=False)
    i_density = 0
    for ax, prof in zip(axes[0], profiles, strict=True):
        grid = np.geomspace(max(prof.R.min() / 2, 1e-3), prof.R.max() * 1.5, 80)

        def pc_of(d, grid=grid, sky=prof.sky):
            return grid * (d["distance"] * ARCSEC_PC_PER_KPC if sky else 1.0)

        sig, disp = _model_profiles(draws, pc_of, grid.size)
        if prof.kind == "number_density":
            n = 10.0 ** np.asarray(post[f"log10_n_norm_{i_density}"].values).reshape(-1)
            bg = np.asarray(post[f"background_{i_density}"].values).reshape(-1)
            i_density += 1
            k = np.arange(len(draws)) % n.size
            scale = np.array([(d["distance"] * ARCSEC_PC_PER_KPC) ** 2 if prof.sky else 1.0
                              for d in draws])
            model = n[k, None] * sig * scale[:, None] + bg[k, None]
            ax.set(yscale="log")
        else:
            model = disp
            if prof.sky and prof.kind != "vlos_dispersion":
                model = disp / np.array([K_PM * d["distance"] for d in draws])[:, None]
        _band(ax, grid, model, "C0", "model")
        ax.errorbar(prof.R, prof.value, yerr=[prof.err_lo, prof.err_hi], fmt="ko", ms=3,
                    label="data")
        ax.set(xscale="log", xlabel="R [arcsec]" if prof.sky else "R [pc]", title=prof.kind)
        ax.legend()
    return fig
