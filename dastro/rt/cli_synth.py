"""Command-line logic of ``dastro synth``: synthesise a spectrum from files.

``run_synth(argv)`` parses ``argv`` (a list of strings), reads the model atmosphere
(ATLAS or MARCS, :func:`dastro.atmospheres.io.read_atmosphere`) and the line list
(:func:`dastro.rt.lines.read_linelist`), synthesises ``[start, end]`` at ``step`` A (air unless
``--vacuum``), writes a FITS binary table or CSV (astropy, by the output suffix) with columns
``wavelength`` [A], ``flux`` and ``continuum`` [erg s^-1 cm^-2 A^-1] and ``normalized``, and
optionally a PNG plot (matplotlib, imported only then). Windows longer than ``--chunk`` A are
synthesised in chunks with a tqdm progress bar. Returns 0 on success; bad input exits with
argparse's usage error (status 2) and a one-line message.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

__all__ = ["build_parser", "run_synth"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dastro synth",
        description="LTE spectral synthesis of a plane-parallel model atmosphere.")
    p.add_argument("atmosphere", help="model atmosphere file (Kurucz ATLAS9/12 deck or MARCS .mod)")
    p.add_argument("linelist", help="line list (VALD, Kurucz gfall, MOOG or Turbospectrum)")
    p.add_argument("--start", type=float, required=True, help="first wavelength [A]")
    p.add_argument("--end", type=float, required=True, help="last wavelength [A]")
    p.add_argument("--step", type=float, default=0.01, help="wavelength step [A] (0.01)")
    medium = p.add_mutually_exclusive_group()
    medium.add_argument("--air", dest="air", action="store_true", default=True,
                        help="wavelengths in standard air (default)")
    medium.add_argument("--vacuum", dest="air", action="store_false",
                        help="wavelengths in vacuum")
    p.add_argument("--vmic", type=float, default=None,
                   help="microturbulence [km/s] (default: the model's)")
    p.add_argument("--line-cutoff", type=float, default=3e-4,
                   help="include a line where its opacity exceeds this fraction of the "
                        "continuum (3e-4)")
    p.add_argument("--max-window", type=float, default=25.0,
                   help="largest line window half-width [A] (25)")
    p.add_argument("--no-hydrogen", action="store_true", help="omit the Balmer lines")
    p.add_argument("--chunk", type=float, default=50.0,
                   help="synthesise in chunks of this many A, with a progress bar (50)")
    p.add_argument("-o", "--output", required=True, help="output table: .fits or .csv")
    p.add_argument("--plot", default=None, help="also write a PNG plot to this path")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run_synth(argv=None) -> int:
    """Run ``dastro synth`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.end > args.start or not args.step > 0:
        parser.error("need --end > --start and --step > 0")
    if not args.output.lower().endswith((".fits", ".csv")):
        parser.error(f"output must end in .fits or .csv, got {args.output!r}")
    if args.plot is not None and not args.plot.lower().endswith(".png"):
        parser.error(f"--plot must end in .png, got {args.plot!r}")

    from dastro.atmospheres.io import read_atmosphere
    from dastro.rt.lines import read_linelist
    from dastro.rt.synth import synthesize

    try:
        atm = read_atmosphere(args.atmosphere)
        ll = read_linelist(args.linelist)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    n = int(math.floor((args.end - args.start) / args.step + 1e-9)) + 1
    wl = args.start + args.step * np.arange(n)
    n_chunks = max(1, int(math.ceil((wl[-1] - wl[0]) / args.chunk)))
    pieces = np.array_split(np.arange(n), n_chunks)
    it = pieces
    if n_chunks > 1 and not args.no_progress:
        from tqdm import tqdm

        it = tqdm(pieces, desc="synth", unit="chunk", file=sys.stderr)
    flux, cont = [], []
    try:
        for idx in it:
            s = synthesize(atm, ll, wl[idx], air=args.air, vmic=args.vmic,
                           line_cutoff=args.line_cutoff, max_window=args.max_window,
                           hydrogen=not args.no_hydrogen)
            flux.append(np.asarray(s.flux))
            cont.append(np.asarray(s.continuum))
    except ValueError as exc:
        parser.error(str(exc))
    flux = np.concatenate(flux)
    cont = np.concatenate(cont)

    from astropy.table import Table

    medium = "air" if args.air else "vacuum"
    t = Table([wl, flux, cont, flux / cont], names=("wavelength", "flux", "continuum",
                                                   "normalized"))
    t["wavelength"].unit = "Angstrom"
    t["flux"].unit = t["continuum"].unit = "erg / (s cm2 Angstrom)"
    t.meta.update({"MEDIUM": medium, "ATMOS": str(args.atmosphere)[-60:],
                   "LINELIST": str(args.linelist)[-60:], "CUTOFF": args.line_cutoff,
                   "MAXWIN": args.max_window})
    if args.output.lower().endswith(".fits"):
        t.write(args.output, format="fits", overwrite=True)
    else:
        t.write(args.output, format="ascii.csv", overwrite=True)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(10, 3.5))
        ax.plot(wl, flux / cont, lw=0.6, color="k")
        ax.set_xlabel(f"wavelength [A, {medium}]")
        ax.set_ylabel("normalised flux")
        ax.set_title(f"{args.atmosphere} / {args.linelist}", fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        plt.close(fig)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(run_synth())
