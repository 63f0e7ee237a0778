"""Log-likelihood of binned profiles (number density, velocity dispersions) given a model.

The model is a scaled :class:`~dastro.clusters.solver.ClusterModel` (Msun, pc, km/s). Its
projected profiles give, at projected radius R,

- ``number_density``: n(R) = n_norm Sigma(R) / M + background, with n_norm the number of
  stars the model stands for (the fraction of the cluster's mass in the observed tracer and
  completeness folded in) and background a constant surface density of field stars, in the
  profile's units (stars per arcsec^2 for a sky profile, per pc^2 otherwise);
- ``vlos_dispersion``: sqrt(v2p), the line-of-sight rms velocity [km/s];
- ``pmr_dispersion``, ``pmt_dispersion``: sqrt(v2R), sqrt(v2T), the rms velocities along the
  projected radius and perpendicular to it, in the plane of the sky;
- ``pm_dispersion``: sqrt((v2R + v2T) / 2), the 1D plane-of-sky rms velocity averaged over
  both components.

v2p, v2R and v2T are one-dimensional mean-square velocities, each a luminosity-weighted (here
mass-weighted) line-of-sight average (``ClusterModel.projected``). Lowered-isothermal models
do not rotate, so mean-square velocity and squared dispersion are the same. The model is zero
beyond the truncation radius: so are its dispersions, and n(R) equals the background there.

Sky profiles (``Profile.sky``: R in arcsec, proper-motion dispersions in mas/yr, densities per
arcsec^2) are compared with the model through the distance d [kpc]: R_pc = R_arcsec *
:data:`PC_PER_ARCSEC_KPC` * d and sigma[mas/yr] = sigma[km/s] / (K_PM d).

Asymmetric errors: each measurement y with errors err_lo below and err_hi above contributes
the split (two-piece) normal density of the model prediction m,

    ln L = -(m - y)^2 / (2 s^2) - ln[sqrt(pi / 2) (err_lo + err_hi)],
    s = err_lo if m < y else err_hi,

which is continuous (with its first derivative) at m = y, normalised over m, and is the
Gaussian when err_lo == err_hi. The errors are fixed data, so the normalisation constant does
not affect the fit; it is kept so that values compare across data sets.

Everything here works under ``jax.jit``, ``jax.vmap`` and ``jax.grad`` with respect to the
model's parameters, the distance, n_norm and background; the profiles themselves are
concrete numpy arrays, checked when the function is traced.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from dastro.constants import K_PM
from dastro.inference.data import PROFILE_KINDS, Profile, _rows

__all__ = ["PC_PER_ARCSEC_KPC", "check_profile", "profile_log_likelihood", "profiles_factor",
           "split_normal_logpdf"]

#: Length subtended by one arcsecond at 1 kpc [pc]: 1e3 * pi / 648000.
PC_PER_ARCSEC_KPC = 1e3 * math.pi / 648000.0
_HALF_LOG_PI_OVER_2 = 0.5 * math.log(0.5 * math.pi)


def check_profile(profile: Profile) -> Profile:
    """Validate one profile; return it with float64 numpy arrays.

    Raises:
        ValueError: unknown kind; arrays not one-dimensional, empty or of different lengths;
            R not finite or negative; value not finite; errors not finite or <= 0.
    """
    if not isinstance(profile, Profile):
        raise ValueError(f"expected a dastro.inference.Profile, got {type(profile).__name__}")
    if profile.kind not in PROFILE_KINDS:
        raise ValueError(f"unknown profile kind {profile.kind!r}; kinds are {list(PROFILE_KINDS)}")
    arrays = {}
    for name in ("R", "value", "err_lo", "err_hi"):
        arr = np.asarray(getattr(profile, name), dtype=float)
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"{profile.kind} profile: {name} must be a non-empty 1D array, got "
                             f"shape {arr.shape}")
        arrays[name] = arr
    k = arrays["R"].size
    for name, arr in arrays.items():
        if arr.size != k:
            raise ValueError(f"{profile.kind} profile: {name} has {arr.size} bins, R has {k}")
    checks = (("R", lambda a: np.isfinite(a) & (a >= 0), "finite and >= 0"),
              ("value", np.isfinite, "finite"),
              ("err_lo", lambda a: np.isfinite(a) & (a > 0), "finite and > 0"),
              ("err_hi", lambda a: np.isfinite(a) & (a > 0), "finite and > 0"))
    for name, ok, what in checks:
        bad = np.flatnonzero(~ok(arrays[name]))
        if bad.size:
            raise ValueError(f"{profile.kind} profile: {name} must be {what}; bad bins "
                             f"{_rows(bad)}")
    return Profile(kind=profile.kind, sky=bool(profile.sky), **arrays)


def split_normal_logpdf(x, mode, sigma_lo, sigma_hi):
    """Log density of the split (two-piece) normal at x (arrays broadcast).

    Args:
        x: where to evaluate (here: the model prediction).
        mode: the peak (here: the measured value).
        sigma_lo, sigma_hi: widths below and above the mode, > 0.
    """
    x, mode = jnp.asarray(x), jnp.asarray(mode)
    s = jnp.where(x < mode, sigma_lo, sigma_hi)
    return -0.5 * ((x - mode) / s) ** 2 - _HALF_LOG_PI_OVER_2 - jnp.log(sigma_lo + sigma_hi)


def _sqrt0(x):
    """sqrt(max(x, 0)) with zero derivative at and below 0 (beyond the truncation radius)."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def _as_profiles(profiles) -> tuple[Profile, ...]:
    if isinstance(profiles, Profile):
        profiles = (profiles,)
    elif not isinstance(profiles, Sequence) or isinstance(profiles, str):
        raise ValueError("profiles must be a Profile or a sequence of Profile")
    if len(profiles) == 0:
        raise ValueError("profiles is empty")
    return tuple(check_profile(p) for p in profiles)


def _per_profile(name, value, count):
    """Split a scalar or a length-`count` vector into `count` scalars."""
    if count == 0:
        return []
    value = jnp.asarray(value, float)
    if value.ndim == 0:
        return [value] * count
    if value.shape != (count,):
        raise ValueError(f"{name} must be a scalar or have one entry per number_density "
                         f"profile ({count}), got shape {value.shape}")
    return [value[i] for i in range(count)]


def profile_log_likelihood(model, profiles, *, distance_kpc=None, n_norm=None,
                           background=None):
    """Log-likelihood of binned profiles given a scaled cluster model (scalar).

    See the module docstring for the model predictions and the error model.

    Args:
        model: a ClusterModel in physical units (after ``.scale(M, rh=...)``: Msun, pc, km/s).
        profiles: a :class:`Profile` or a sequence of them, any kinds, sky or physical.
        distance_kpc: distance [kpc]; required if any profile is in sky units.
        n_norm: number of stars the model's surface density is normalised to, a scalar or one
            value per ``number_density`` profile (in order); required if there is one.
        background: constant field density [stars per arcsec^2 (sky) or per pc^2], a scalar
            or one value per ``number_density`` profile; default 0. n_norm and background
            are ignored when there is no ``number_density`` profile.

    Returns:
        The sum over all bins of the split-normal log densities; NaN if the model is invalid
        (``model.valid`` False, e.g. outside the emulator's box).

    Raises:
        ValueError: invalid profiles (see :func:`check_profile`), a sky profile without
            distance, a number-density profile without n_norm, or n_norm / background with
            the wrong number of entries.
    """
    profiles = _as_profiles(profiles)
    n_density = sum(p.kind == "number_density" for p in profiles)
    if any(p.sky for p in profiles) and distance_kpc is None:
        raise ValueError("sky profiles (arcsec, mas/yr) need distance_kpc")
    if n_density and n_norm is None:
        raise ValueError("number_density profiles need n_norm (number of stars)")
    norms = _per_profile("n_norm", n_norm if n_norm is not None else 1.0, n_density)
    backgrounds = _per_profile("background", background if background is not None else 0.0,
                               n_density)

    pc_per_arcsec = None if distance_kpc is None else PC_PER_ARCSEC_KPC * jnp.asarray(
        distance_kpc, float)
    radii = [jnp.asarray(p.R) * pc_per_arcsec if p.sky else jnp.asarray(p.R) for p in profiles]
    proj = model.projected(jnp.concatenate(radii))
    splits = np.cumsum([p.R.size for p in profiles])[:-1]
    parts = [jnp.split(q, splits) for q in proj]

    total = 0.0
    i_density = 0
    for i, p in enumerate(profiles):
        sigma, v2p, v2R, v2T = (part[i] for part in parts)
        if p.kind == "number_density":
            density = norms[i_density] * sigma / model.M  # stars per pc^2
            if p.sky:
                density = density * pc_per_arcsec**2
            pred = density + backgrounds[i_density]
            i_density += 1
        else:
            v2 = {"vlos_dispersion": v2p, "pm_dispersion": 0.5 * (v2R + v2T),
                  "pmr_dispersion": v2R, "pmt_dispersion": v2T}[p.kind]
            pred = _sqrt0(v2)
            if p.sky and p.kind != "vlos_dispersion":
                pred = pred / (K_PM * jnp.asarray(distance_kpc, float))
        total = total + jnp.sum(split_normal_logpdf(pred, p.value, p.err_lo, p.err_hi))
    return total


def profiles_factor(name: str, model, profiles, **kwargs):
    """Add :func:`profile_log_likelihood` to a numpyro model as ``numpyro.factor(name, ...)``.

    Keyword arguments are passed on (distance_kpc, n_norm, background). Returns the
    log-likelihood.
    """
    import numpyro

    log_like = profile_log_likelihood(model, profiles, **kwargs)
    numpyro.factor(name, log_like)
    return log_like
