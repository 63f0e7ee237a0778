"""``dastro fit-cluster`` and ``dastro fit-profiles``: the main job.

    dastro fit-cluster [CATALOG] [--columns x=dra,y=ddec ...] [--units x=arcmin ...]
                       [--distance 5.0 0.1] [--field-radius R] [--contamination] ...
    dastro fit-profiles FILE [FILE ...] --distance 5.0 0.1

Without a catalogue, ``fit-cluster`` fits the embedded default: a mock cluster drawn from the
exact model with known truth (:func:`default_mock`), and prints the posterior next to it.
Outputs (in --outdir): ``<name>_posterior.nc`` (ArviZ NetCDF), ``<name>_corner.png`` and
``<name>_profiles.png`` (data against the fitted profiles with 68 % and 95 % bands).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

CLUSTER_PARAMETERS = ["W0", "g", "log10_M", "log10_rh"]

#: Truth of the embedded default mock (sky units at 5 kpc).
DEFAULT_TRUTH = {"W0": 6.0, "g": 1.2, "M": 1e5, "rh": 3.0, "distance": 5.0,
                 "x0": 3.0, "y0": -2.0, "vx0": -2.5, "vy0": 1.3, "vz0": 40.0}


def default_mock(n_stars: int = 300, seed: int = 0, *, vlos_fraction: float = 0.4,
                 pm_error: float = 0.03, vlos_error: float = 1.0):
    """A mock sky catalogue from the exact model of :data:`DEFAULT_TRUTH`.

    Every star has positions (exact, arcsec) and proper motions (error ``pm_error`` mas/yr);
    a random ``vlos_fraction`` of them has a line-of-sight velocity (error ``vlos_error``
    km/s), the others have it missing. The centre is offset and moving.
    Returns (StarData, truth dict with log10_M, log10_rh added).
    """
    import jax

    from dastro.clusters import sample, solve
    from dastro.inference.data import StarData

    t = DEFAULT_TRUTH
    model = solve(t["W0"], t["g"]).scale(t["M"], rh=t["rh"])
    key_draw, key_noise = jax.random.split(jax.random.PRNGKey(seed))
    sky = sample(model, n_stars, key_draw, distance=t["distance"]).sky
    rng = np.random.default_rng(seed)
    pm_err = np.full(n_stars, pm_error)
    vz_err = np.full(n_stars, vlos_error)
    has_vz = rng.uniform(size=n_stars) < vlos_fraction
    data = StarData.from_arrays(
        np.asarray(sky["dra"].value) + t["x0"], np.asarray(sky["ddec"].value) + t["y0"],
        np.asarray(sky["pmra"].value) + t["vx0"] + pm_err * rng.normal(size=n_stars),
        np.asarray(sky["pmdec"].value) + t["vy0"] + pm_err * rng.normal(size=n_stars),
        np.where(has_vz, np.asarray(sky["vlos"].value) + t["vz0"]
                 + vz_err * rng.normal(size=n_stars), np.nan),
        vx_err=pm_err, vy_err=pm_err, vz_err=np.where(has_vz, vz_err, np.nan), sky=True,
    )
    truth = dict(t, log10_M=math.log10(t["M"]), log10_rh=math.log10(t["rh"]))
    return data, truth


def _mapping(items, what):
    out = {}
    for item in items or []:
        for part in item.split(","):
            if "=" not in part:
                raise SystemExit(f"--{what} expects field=name pairs, got {part!r}")
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip() or None
    return out


def _common(p: argparse.ArgumentParser):
    p.add_argument("--distance", type=float, nargs=2, metavar=("MEAN", "SD"), default=None,
                   help="normal prior on the distance [kpc] (required for sky units)")
    p.add_argument("--chains", type=int, default=4, help="number of chains (default 4)")
    p.add_argument("--warmup", type=int, default=1000, help="warm-up steps per chain")
    p.add_argument("--samples", type=int, default=1000, help="draws per chain")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--sampler", choices=("numpyro", "blackjax"), default="numpyro")
    p.add_argument("--outdir", type=Path, default=Path("."), help="output folder")
    p.add_argument("--name", default=None, help="prefix of the output files")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def parser_fit_cluster() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dastro fit-cluster",
        description="Fit a lowered-isothermal model (emulator, isotropic) to a star catalogue "
        "with NUTS: unknown centre, per-star errors (latent true coordinates), missing "
        "velocity components, optional selection and field contamination. Without CATALOG, "
        "fit the embedded mock and compare with its truth.")
    p.add_argument("catalog", nargs="?", type=Path, default=None,
                   help="CSV, ECSV or FITS table (see dastro.inference.io)")
    p.add_argument("--columns", action="append",
                   help="field=column pairs, e.g. x=dra,y=ddec,vz=rv (fields: x y vx vy vz "
                   "x_err ... parallax mag)")
    p.add_argument("--units", action="append",
                   help="field=unit pairs for columns without units, e.g. x=arcmin,vx=mas/yr")
    p.add_argument("--sky", action="store_true", default=None,
                   help="positions are angles (only needed when x has no unit)")
    p.add_argument("--field-radius", type=float, default=None,
                   help="radius of the field of view [data units: arcsec or pc]")
    p.add_argument("--contamination", action="store_true",
                   help="fit a field-star fraction (needs --field-radius)")
    p.add_argument("--velocity-errors", choices=("latent", "marginal"), default="latent",
                   help="velocity errors as latent true velocities (default, exact) or "
                        "integrated out per star by Gauss-Hermite (no velocity latents; for "
                        "errors below about half the dispersion)")
    p.add_argument("--anisotropic", action="store_true",
                   help="also fit the anisotropy radius ra [r0] (the anisotropic emulator; "
                        "every star needs all three velocities)")
    p.add_argument("--n-stars", type=int, default=300,
                   help="stars in the embedded mock (default 300)")
    _common(p)
    return p


def parser_fit_profiles() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dastro fit-profiles",
        description="Fit a lowered-isothermal model to binned profiles (ECSV, one file per "
        "profile; see dastro.inference.io.read_profiles) with NUTS.")
    p.add_argument("files", nargs="+", type=Path, help="ECSV profile files")
    _common(p)
    return p


def _check_sampling_args(args):
    for name in ("chains", "samples"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name} must be >= 1")
    if args.warmup < 0:
        raise SystemExit("--warmup must be >= 0")
    if args.distance is not None and not (args.distance[0] > 0 and args.distance[1] > 0):
        raise SystemExit("--distance MEAN SD must both be positive")


def run_fit_cluster(argv) -> int:
    args = parser_fit_cluster().parse_args(argv)
    _check_sampling_args(args)
    from dastro.inference.fit import run_nuts
    from dastro.inference.io import describe, read_catalogue
    from dastro.inference.models import (
        FitConfig,
        Priors,
        _check_config,
        cluster_sites,
        initial_values,
        star_model,
        target_accept,
    )

    truth = None
    distance = tuple(args.distance) if args.distance else None
    if args.catalog is None:
        data, truth = default_mock(args.n_stars, args.seed)
        distance = distance or (truth["distance"], 0.1)
        name = args.name or "mock"
        print(f"dastro fit-cluster: embedded mock of {data.n} stars (truth in the last "
              "column)")
    else:
        try:
            data = read_catalogue(args.catalog, columns=_mapping(args.columns, "columns"),
                                  units=_mapping(args.units, "units"), sky=args.sky)
        except (ValueError, OSError) as err:
            raise SystemExit(f"dastro fit-cluster: {err}") from None
        name = args.name or args.catalog.stem
    print(describe(data))
    config = FitConfig(priors=Priors(distance=distance), contamination=args.contamination,
                       field_radius=args.field_radius, velocity_errors=args.velocity_errors,
                       anisotropic=args.anisotropic)
    try:
        _check_config(data, config)  # the model checks too; fail before compiling
        init = initial_values(data, config)
    except ValueError as err:
        raise SystemExit(f"dastro fit-cluster: {err}") from None
    var_names = CLUSTER_PARAMETERS + (["log10_ra"] if args.anisotropic else [])
    var_names += (["distance"] if data.sky else []) + ["x0", "y0", "vx0", "vy0", "vz0"]
    if args.contamination:
        var_names.append("f_field")
    result = run_nuts(star_model, data, config, var_names=var_names, init_values=init,
                      dense_mass=[cluster_sites(data, config)],
                      target_accept=target_accept(config),
                      num_warmup=args.warmup, num_samples=args.samples,
                      num_chains=args.chains, seed=args.seed, sampler=args.sampler,
                      progress=not args.no_progress)
    return _finish(result, truth, args, name, data=data)


def run_fit_profiles(argv) -> int:
    args = parser_fit_profiles().parse_args(argv)
    _check_sampling_args(args)
    from dastro.inference.fit import run_nuts
    from dastro.inference.io import read_profiles
    from dastro.inference.models import FitConfig, Priors, profile_model

    try:
        profiles = read_profiles(args.files)
    except (ValueError, OSError) as err:
        raise SystemExit(f"dastro fit-profiles: {err}") from None
    if any(p.sky for p in profiles) and args.distance is None:
        raise SystemExit("dastro fit-profiles: sky-unit profiles need --distance MEAN SD [kpc]")
    config = FitConfig(priors=Priors(distance=tuple(args.distance) if args.distance else None))
    var_names = CLUSTER_PARAMETERS + (["distance"] if args.distance else [])
    init = {"W0": 6.0, "q": 0.5, "log10_M": 5.0, "log10_rh": 0.5}
    if args.distance:
        init["distance"] = args.distance[0]
    result = run_nuts(profile_model, profiles, config, var_names=var_names,
                      init_values=init, num_warmup=args.warmup, num_samples=args.samples,
                      num_chains=args.chains, seed=args.seed, sampler=args.sampler,
                      progress=not args.no_progress)
    return _finish(result, None, args, args.name or args.files[0].stem, profiles=profiles)


def _finish(result, truth, args, name, *, data=None, profiles=None) -> int:
    print(result.report(truth))
    args.outdir.mkdir(parents=True, exist_ok=True)
    nc = args.outdir / f"{name}_posterior.nc"
    result.save(nc)
    print(f"wrote {nc}")
    if not args.no_plot:
        from dastro.inference.plots import plot_corner, plot_fitted_profiles

        corner = args.outdir / f"{name}_corner.png"
        plot_corner(result, corner, truth=truth)
        prof = args.outdir / f"{name}_profiles.png"
        plot_fitted_profiles(result, prof, data=data, profiles=profiles)
        print(f"wrote {corner}\nwrote {prof}")
    return 0


if __name__ == "__main__":
    sys.exit(run_fit_cluster(sys.argv[1:]))
