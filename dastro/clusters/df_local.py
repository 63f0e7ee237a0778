"""Density of a star at a known three-dimensional position, velocities possibly incomplete.

Hierarchical fits treat each star's line-of-sight position z (and, with measurement errors,
its true coordinates) as latent parameters; the likelihood then needs the DF at a point of
configuration space, marginalised only over the velocity components that were not observed.
For the lowered-isothermal DF (Gieles & Zocchi 2015, MNRAS 454, 576, eq. 1)

    f(r, v) = A exp(-J^2 / (2 ra^2 s^2)) E_g(W(r) - v^2 / (2 s^2)),
    E_g(x) = exp(x) P(g, x) for x > 0 (P the regularised lower incomplete gamma), E_0 = exp,

and for isotropic models each unobserved Cartesian component integrates in closed form,
int E_h(x - u^2/2) du = sqrt(2 pi) E_{h+1/2}(x) (term by term in E_h's power series), so with
k components missing

    p(r, v_obs) = (A / M) (2 pi s^2)^(k/2) E_{g + k/2}(W(r) - v_obs^2 / (2 s^2)).

This needs W at the star's radius only, not the line-of-sight tables of
:mod:`dastro.clusters.df`, which makes it cheap enough to evaluate every leapfrog step for
thousands of stars. Anisotropic models (ra finite) are supported with all three components
observed; missing components there must be latent parameters of the fit.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

__all__ = ["log_density_local"]


def _log_e(g, k, x, n_terms):
    """log E_h(x), h = g + k / 2 (k = 0..3 per star), 0 < x, from the power series.

    E_h(x) = x^h / Gamma(h + 1) * S, S = 1 + sum_n prod_{j <= n} x / (h + j), the products
    by one cumulative product: positive terms, no cancellation, no exp or log per term, so
    value and derivatives in g are much cheaper than exp(x) gammainc(h, x) and its derivative
    in the first argument. With n_terms = 64 the truncation error is below 1e-16 for x <= 14 (the
    emulator's range of W); 112 terms reach x <= 30.
    """
    hs = g + 0.5 * jnp.arange(4.0)
    inv = 1.0 / (hs[:, None] + jnp.arange(1.0, n_terms + 1.0))  # (4, n_terms)
    coef = inv[k]  # (..., n_terms)
    acc = 1.0 + jnp.sum(jnp.cumprod(x[..., None] * coef, axis=-1), axis=-1)
    h = hs[k]
    return h * jnp.log(x) - gammaln(hs + 1.0)[k] + jnp.log(acc)


def _n_terms(model) -> int:
    from dastro.clusters.emulator import W0_MAX, EmulatedLoweredIsothermal

    return 64 if isinstance(model, EmulatedLoweredIsothermal) and W0_MAX <= 14.0 else 112


def log_density_local(model, x, y, z, vx, vy, vz, has_vx=True, has_vy=True, has_vz=True):
    """log p(position, observed velocities) / M of single stars; normalised.

    Args:
        model: a cluster model (``solve`` or ``emulate``, usually ``.scale``-d).
        x, y, z: positions relative to the centre [model length unit, pc after scaling].
        vx, vy, vz: velocities relative to the centre's motion [model velocity unit]; the
            value of a component whose mask is False is ignored.
        has_vx, has_vy, has_vz: bool masks (arrays broadcastable to x, or Python bools) of
            the observed components.

    Returns:
        log density [length^-3 velocity^-k_obs], shape of x; -inf where r >= rt or the
        observed speed reaches the escape speed, with zero gradient there.

    Raises:
        ValueError: missing components with an anisotropic model (outside jit).
    """
    masks = [jnp.asarray(m, bool) for m in (has_vx, has_vy, has_vz)]
    if not model.isotropic and not all(
        isinstance(m, bool) and m for m in (has_vx, has_vy, has_vz)
    ):
        concrete = all(not isinstance(m, jax.core.Tracer) for m in masks)
        if not concrete or not all(bool(np.all(np.asarray(m))) for m in masks):
            raise ValueError("anisotropic models need all three velocity components; make "
                             "the missing ones latent parameters of the fit")
    x, y, z = (jnp.asarray(a, float) for a in (x, y, z))
    length = model.length_unit
    s2 = model.s2
    r2 = x**2 + y**2 + z**2
    pos = r2 > 0
    r = jnp.where(pos, jnp.sqrt(jnp.where(pos, r2, 1.0)), 0.0)
    w, _ = model._state(r / length)
    comps = [jnp.where(m, jnp.asarray(v, float), 0.0) for m, v in zip(masks, (vx, vy, vz),
                                                                       strict=True)]
    u2 = (comps[0] ** 2 + comps[1] ** 2 + comps[2] ** 2) / s2
    n_missing = sum(jnp.where(m, 0, 1) for m in masks) + jnp.zeros(jnp.shape(x), int)
    arg = w - 0.5 * u2
    valid = (r < model.rt) & (arg > 0)
    arg_safe = jnp.where(valid, arg, 1.0)
    log_p = (jnp.log(model.A / model.M) + 0.5 * n_missing * jnp.log(2.0 * math.pi * s2)
             + _log_e(model.g, n_missing, arg_safe, _n_terms(model)))
    if not model.isotropic:
        ra = model.ra
        rs = jnp.where(pos, r, 1.0)
        vr = (comps[0] * x + comps[1] * y + comps[2] * z) / rs
        j2 = jnp.maximum(r2 * (u2 * s2) - (rs * vr) ** 2, 0.0)
        log_p = log_p - 0.5 * j2 / (ra**2 * s2)
    return jnp.where(valid, log_p, -jnp.inf)
