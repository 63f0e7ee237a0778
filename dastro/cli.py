"""The ``dastro`` command.

    dastro --version
    dastro model --W0 7 --g 1 [--ra 20] [--M 1e5 --rh 3] [--plot out.png]
    dastro synth ATMOSPHERE LINELIST --start 5150 --end 5200 --step 0.01 -o out.fits
    dastro fit-cluster [CATALOG] [--distance 5 0.1] ...
    dastro fit-profiles FILE [FILE ...] --distance 5 0.1
    dastro demo

``model`` solves one lowered-isothermal model, prints its scalars and writes a PNG of its
intrinsic and projected profiles (matplotlib, from the ``plot`` extra). ``fit-cluster`` and
``fit-profiles`` fit models to star catalogues and binned profiles with NUTS
(:mod:`dastro.inference.cli_fit`); ``demo`` runs ``fit-cluster`` on its embedded mock cluster
with a short run.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from dastro import __version__

RADIUS_KINDS = ("rh", "rv", "r0", "rt")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dastro",
        description="Differentiable astrophysics: lowered-isothermal star clusters "
        "(LIMEPY family) and stellar spectra, in JAX.",
    )
    parser.add_argument("--version", action="version", version=f"dastro {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    model = sub.add_parser(
        "model", help="solve one lowered-isothermal model; print scalars, plot profiles",
        description="Solve one lowered-isothermal model (Gieles & Zocchi 2015) and print its "
        "scalars. Without --M the model is in model units (G = 9/(4 pi), r0 = 1, rho0 = 1, "
        "s = 1); with --M and one radius it is in Msun, pc and km/s.",
    )
    model.add_argument("--W0", type=_positive_float, required=True,
                       help="dimensionless central potential (0 < W0 <= 30)")
    model.add_argument("--g", type=float, default=1.0,
                       help="truncation parameter, 0 <= g < g_max(W0) (0 Woolley, 1 King, "
                       "2 Wilson; default 1)")
    model.add_argument("--ra", type=_positive_float, default=None,
                       help="anisotropy radius in units of r0 (default: isotropic)")
    model.add_argument("--M", type=_positive_float, default=None, help="total mass [Msun]")
    for kind in RADIUS_KINDS:
        model.add_argument(f"--{kind}", type=_positive_float, default=None,
                           help=f"scale radius {kind} [pc] (with --M; give exactly one)")
    model.add_argument("--G", type=_positive_float, default=None,
                       help="G in (km/s)^2 pc / Msun (default CODATA/IAU 4.3009e-3)")
    model.add_argument("--grid", choices=("rt", "rh", "r0"), default="rt",
                       help="radius unit of the plot's x axis (default rt)")
    model.add_argument("--plot", type=Path, default=Path("dastro_model.png"),
                       help="PNG file for the profiles (default dastro_model.png)")
    model.add_argument("--no-plot", action="store_true", help="do not draw the PNG")

    sub.add_parser("synth", help="synthesise a spectrum from a model atmosphere and a line "
                   "list (see `dastro synth --help`)", add_help=False)

    sub.add_parser("fit-cluster", help="fit a cluster model to a star catalogue with NUTS; "
                   "without a file, the embedded mock (see `dastro fit-cluster --help`)",
                   add_help=False)
    sub.add_parser("fit-profiles", help="fit a cluster model to binned profiles with NUTS "
                   "(see `dastro fit-profiles --help`)", add_help=False)
    demo = sub.add_parser("demo", help="the main job on its embedded default: fit a mock "
                          "cluster with NUTS and compare with its truth")
    demo.add_argument("--outdir", type=Path, default=Path("."),
                      help="folder for the posterior and PNG files (default: current folder)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _scalars(model, physical: bool) -> list[tuple[str, float, str]]:
    L, M, V2 = ("pc", "Msun", "(km/s)^2") if physical else ("r0", "M_model", "s^2")
    E = "Msun (km/s)^2" if physical else "model"
    rows = [
        ("W0", model.W0, ""), ("g", model.g, ""), ("ra", model.ra, L),
        ("M", model.M, M), ("rt", model.rt, L), ("rh", model.rh, L),
        ("rhp", model.projected_half_mass_radius(), L), ("rv", model.rv, L),
        ("r0", model.r0, L), ("rt/rh", model.rt / model.rh, ""),
        ("K", model.K, E), ("U", model.U, E), ("2K/|U|", 2 * model.K / abs(model.U), ""),
        ("2Kr/Kt", 2 * model.Kr / (model.K - model.Kr), ""),
        ("sigma0", model.sigma0_2**0.5, "km/s" if physical else "s"),
        ("s2", model.s2, V2), ("A", model.A, "DF norm."),
    ]
    return [(name, float(np.asarray(value)), unit) for name, value, unit in rows]


def _print_table(rows, out=None) -> None:
    out = sys.stdout if out is None else out
    for name, value, unit in rows:
        print(f"  {name:>8s} = {value:14.7g}  {unit}", file=out)


def _plot(model, path: Path, grid: str, title: str, physical: bool) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit(
            "dastro: plotting needs matplotlib; install it with `pip install 'dastro[plot]'` "
            "or pass --no-plot"
        ) from None
    unit = {"rt": float(model.rt), "rh": float(model.rh), "r0": float(model.r0)}[grid]
    rt = float(model.rt)
    x = np.geomspace(1e-3 * rt, 0.999 * rt, 200)
    prof = model.profiles(x)
    proj = model.projected(x)
    L = "pc" if physical else "r0"
    fig, axes = plt.subplots(2, 2, figsize=(9, 7), sharex=True)
    ax = axes[0, 0]
    ax.loglog(x / unit, np.asarray(prof.rho), label=r"$\rho(r)$")
    ax.loglog(x / unit, np.asarray(proj.Sigma), label=r"$\Sigma(R)$")
    ax.set_ylabel("density")
    ax.legend()
    ax = axes[0, 1]
    ax.semilogx(x / unit, np.asarray(prof.mc) / float(model.M))
    ax.set_ylabel(r"$M(<r) / M$")
    ax = axes[1, 0]
    for name, q in [("v2r", prof.v2r), ("v2t/2", 0.5 * prof.v2t), ("v2p", proj.v2p),
                    ("v2R", proj.v2R), ("v2T", proj.v2T)]:
        ax.semilogx(x / unit, np.sqrt(np.asarray(q)), label=name)
    ax.set_ylabel("rms velocity" + (" [km/s]" if physical else " [s]"))
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    ax.semilogx(x / unit, np.asarray(prof.beta))
    ax.set_ylabel(r"$\beta(r)$")
    for a in axes[1]:
        a.set_xlabel(f"r / {grid}" + (f"  ({grid} = {unit:.4g} {L})"))
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _run_model(args) -> int:
    from dastro.clusters import solve
    from dastro.constants import G_CLUSTER

    radii = {k: getattr(args, k) for k in RADIUS_KINDS if getattr(args, k) is not None}
    if args.M is None and radii:
        raise SystemExit("dastro model: a scale radius needs --M as well")
    if args.M is not None and len(radii) != 1:
        raise SystemExit("dastro model: with --M give exactly one of --rh, --rv, --r0, --rt")
    try:
        model = solve(args.W0, args.g, args.ra)
        if args.M is not None:
            model = model.scale(args.M, **radii, G=args.G or G_CLUSTER)
    except ValueError as err:
        raise SystemExit(f"dastro model: {err}") from None
    physical = args.M is not None
    kind = "King" if args.g == 1 else "Woolley" if args.g == 0 else "Wilson" if args.g == 2 else ""
    title = f"lowered-isothermal model W0={args.W0:g}, g={args.g:g} {kind}".rstrip()
    if args.ra is not None:
        title += f", ra={args.ra:g} r0"
    print(title)
    _print_table(_scalars(model, physical))
    if float(model.rt / model.rh) > 1e3:
        print(f"  note: rt/rh = {float(model.rt / model.rh):.3g}; this model is extremely "
              "extended (g is close to g_max(W0))")
    if not args.no_plot:
        _plot(model, args.plot, args.grid, title, physical)
        print(f"wrote {args.plot}")
    return 0


def _run_demo(args) -> int:
    """The main job on its embedded default: a hierarchical fit of a mock cluster."""
    from dastro.inference.cli_fit import run_fit_cluster

    print("dastro demo: NUTS fit of a lowered-isothermal model (emulator) to a mock cluster "
          "of 200 stars\n(sky units, proper motions and some line-of-sight velocities with "
          "errors, unknown centre).\nThe full command is `dastro fit-cluster [CATALOG]`.\n")
    return run_fit_cluster(["--n-stars", "200", "--chains", "2", "--warmup", "500",
                            "--samples", "300", "--outdir", str(args.outdir),
                            "--name", "demo"] + (["--no-progress"] if args.no_progress
                                                 else []))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["fit-cluster"], ["fit-profiles"], ["demo"]):
        from dastro.devices import use_cpu_cores

        use_cpu_cores()  # chains in parallel, one per core; before JAX starts
    if argv[:1] == ["fit-cluster"]:
        from dastro.inference.cli_fit import run_fit_cluster

        return run_fit_cluster(argv[1:])
    if argv[:1] == ["fit-profiles"]:
        from dastro.inference.cli_fit import run_fit_profiles

        return run_fit_profiles(argv[1:])
    if argv[:1] == ["synth"]:
        from dastro.rt.cli_synth import run_synth

        return run_synth(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "model":
        return _run_model(args)
    if args.command == "demo":
        return _run_demo(args)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
