"""Data containers for cluster fits: star catalogues and binned profiles.

These are the contracts between the readers (:mod:`dastro.inference.io`), the likelihoods and
the command line. Arrays are plain numpy (float64); the containers are built and validated
outside jit and closed over by the numpyro models.

Units. A catalogue is either *physical* (``sky=False``: positions in pc, plane-of-sky
velocities in km/s) or *sky* (``sky=True``: tangent-plane offsets in arcsec, proper motions in
mas/yr, the distance then being a fitted parameter). Line-of-sight velocities are always km/s,
parallaxes mas.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["PROFILE_KINDS", "Profile", "StarData"]


class StarData(NamedTuple):
    """A catalogue of N stars (all arrays shape (N,)).

    Attributes:
        x, y: plane-of-sky offsets from the field's reference point [pc, or arcsec if sky];
            x towards east (Delta RA cos Dec), y towards north.
        vx, vy: plane-of-sky velocities [km/s, or mas/yr if sky] (pmra, pmdec).
        vz: line-of-sight velocity [km/s], positive receding.
        x_err, y_err, vx_err, vy_err, vz_err: 1-sigma Gaussian errors, same units; 0 = exact.
        has_vx, has_vy, has_vz: bool masks of observed components. A missing value is stored as
            0.0 and never used; masks, not magic values, say what is missing.
        parallax, parallax_err: [mas]; has_parallax masks them.
        mag: apparent magnitude, or None (for magnitude-dependent completeness).
        sky: True for sky units (see the module docstring).
        z: line-of-sight position relative to the cluster centre [pc], known exactly, or None
            (the usual case; it is then a latent parameter). Mock and simulated data only.
    """

    x: np.ndarray
    y: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    vz: np.ndarray
    x_err: np.ndarray
    y_err: np.ndarray
    vx_err: np.ndarray
    vy_err: np.ndarray
    vz_err: np.ndarray
    has_vx: np.ndarray
    has_vy: np.ndarray
    has_vz: np.ndarray
    parallax: np.ndarray
    parallax_err: np.ndarray
    has_parallax: np.ndarray
    mag: np.ndarray | None = None
    sky: bool = False
    z: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(np.shape(self.x)[0])

    @classmethod
    def from_arrays(cls, x, y, vx=None, vy=None, vz=None, *, x_err=None, y_err=None,
                    vx_err=None, vy_err=None, vz_err=None, parallax=None, parallax_err=None,
                    mag=None, sky=False, z=None) -> StarData:
        """Build and validate a catalogue; NaN in a velocity or parallax means "missing".

        Positions must be finite; errors finite and >= 0 where their value is observed.
        Raises ValueError naming the column and the first offending rows.
        """
        x = _column("x", x, None)
        n = x.shape[0]
        y = _column("y", y, n)
        for name, arr in (("x", x), ("y", y)):
            _require_finite(name, arr)

        def optional(name, values):
            if values is None:
                return np.zeros(n), np.zeros(n, bool)
            arr = _column(name, values, n)
            has = np.isfinite(arr)
            bad = np.flatnonzero(np.isinf(arr))
            if bad.size:
                raise ValueError(f"column {name} has infinite values at rows {_rows(bad)}")
            return np.where(has, arr, 0.0), has

        def errors(name, values, has):
            if values is None:
                return np.zeros(n)
            arr = _column(name, values, n)
            bad = np.flatnonzero(has & ~(np.isfinite(arr) & (arr >= 0)))
            if bad.size:
                raise ValueError(f"column {name} must be finite and >= 0 where its value is "
                                 f"observed; bad rows {_rows(bad)}")
            return np.where(has, arr, 0.0)

        vx, has_vx = optional("vx", vx)
        vy, has_vy = optional("vy", vy)
        vz, has_vz = optional("vz", vz)
        plx, has_plx = optional("parallax", parallax)
        all_rows = np.ones(n, bool)
        if mag is not None:
            mag = _column("mag", mag, n)
            _require_finite("mag", mag)
        return cls(
            x=x, y=y, vx=vx, vy=vy, vz=vz,
            x_err=errors("x_err", x_err, all_rows), y_err=errors("y_err", y_err, all_rows),
            vx_err=errors("vx_err", vx_err, has_vx), vy_err=errors("vy_err", vy_err, has_vy),
            vz_err=errors("vz_err", vz_err, has_vz),
            has_vx=has_vx, has_vy=has_vy, has_vz=has_vz,
            parallax=plx, parallax_err=errors("parallax_err", parallax_err, has_plx),
            has_parallax=has_plx, mag=mag, sky=bool(sky), z=_z_column(z, n, sky),
        )


#: Profile kinds understood by the binned-profile likelihood.
PROFILE_KINDS = ("number_density", "vlos_dispersion", "pm_dispersion", "pmr_dispersion",
                 "pmt_dispersion")


class Profile(NamedTuple):
    """One binned profile (all arrays shape (K,)).

    Attributes:
        kind: one of PROFILE_KINDS. ``number_density``: stars per unit area [pc^-2, or
            arcsec^-2 if sky] (a free normalisation and background are fitted);
            ``vlos_dispersion``: line-of-sight dispersion [km/s]; ``pm_dispersion``: 1D
            proper-motion dispersion averaged over both components; ``pmr_dispersion``,
            ``pmt_dispersion``: radial and tangential components [km/s, or mas/yr if sky].
        R: projected radius of each bin [pc, or arcsec if sky].
        value: measured value.
        err_lo, err_hi: 1-sigma errors below and above the value (equal when symmetric).
        sky: True for sky units.
    """

    kind: str
    R: np.ndarray
    value: np.ndarray
    err_lo: np.ndarray
    err_hi: np.ndarray
    sky: bool = False


def _rows(idx, limit=10) -> str:
    idx = np.asarray(idx)
    shown = ", ".join(str(i) for i in idx[:limit])
    return shown + (f" ... ({idx.size} rows)" if idx.size > limit else "")


def _column(name, values, n):
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"column {name} must be one-dimensional, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"column {name} has {arr.shape[0]} rows, expected {n}")
    return arr


def _z_column(z, n, sky):
    if z is None:
        return None
    if sky:
        raise ValueError("known line-of-sight positions z need a physical catalogue (sky=False)")
    z = _column("z", z, n)
    _require_finite("z", z)
    return z


def _require_finite(name, arr):
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"column {name} must be finite; NaN or inf at rows {_rows(bad)}")
