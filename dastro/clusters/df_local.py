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

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import digamma, gammaln

__all__ = ["log_density_local"]


#: Independent Horner chains in :func:`_horner`.
_HORNER_STRIDE = 4


def _horner(coef, x):
    """sum_k coef[..., k] x^k, unrolled; coef's leading shape (often () per model) broadcasts
    against x, so per-model coefficients cost nothing per point.

    By residues of k modulo _HORNER_STRIDE = s: sum_j x^j P_j(x^s), each P_j by Horner's rule
    in x^s. One Horner chain is a sequence of dependent multiply-adds per point, bound by
    the CPU's latency; s independent chains of 1/s the length fill its pipeline (as the
    strided Clenshaw sums of the emulator). Used here for series of terms of one sign
    (E_h, Kummer's M), where any order of summation is accurate."""
    stride = min(_HORNER_STRIDE, coef.shape[-1])
    x = jnp.asarray(x)
    powers = [jnp.ones_like(x), x]
    for _ in range(2, stride + 1):
        powers.append(powers[-1] * x)
    x_s = powers[stride]
    shape = jnp.broadcast_shapes(jnp.shape(x), jnp.shape(coef)[:-1])
    total = jnp.zeros(shape)
    for j in range(stride):
        acc = jnp.zeros(shape)
        for k in range((coef.shape[-1] - 1 - j) // stride * stride + j, -1, -stride):
            acc = acc * x_s + coef[..., k]
        total = total + powers[j] * acc
    return total


def _series_coefficients(h, n_terms):
    """c_n = 1 / ((h + 1) ... (h + n)) and dc_n/dh = -c_n sum_(j <= n) 1 / (h + j), n = 0 ..
    n_terms, for h of any shape: shape h.shape + (n_terms + 1,) each."""
    h = jnp.asarray(h, float)[..., None]
    inv = 1.0 / (h + jnp.arange(1.0, n_terms + 1.0))
    ones = jnp.ones(h.shape)
    c = jnp.concatenate([ones, jnp.cumprod(inv, axis=-1)], axis=-1)
    dc = -c * jnp.concatenate([0.0 * ones, jnp.cumsum(inv, axis=-1)], axis=-1)
    return c, dc


def _series(h, x, n_terms, with_dh=True):
    """S(h, x) = 1 + sum_n x^n / ((h + 1) ... (h + n)) (and dS/dh): positive terms, no
    cancellation.

    For one h (a scalar: one model) the coefficients are computed once and each point
    costs the strided Horner sums of :func:`_horner`. For h per point the nested form
    S = 1 + x/(h+1) (1 + x/(h+2) (1 + ...)), summed from the last term, each step one fused
    element-wise pass over the points; dS/dh is carried along in the same pass (forward
    mode by hand), so nothing is stored per step.
    """
    if jnp.ndim(h) == 0:
        c, dc = _series_coefficients(h, n_terms)
        s = _horner(c, x)
        return (s, _horner(dc, x)) if with_dh else s
    one = jnp.ones(jnp.broadcast_shapes(jnp.shape(h), jnp.shape(x)))
    # partly unrolled: fully unrolled runs ~2x faster but compiles ~2x longer
    if not with_dh:
        return jax.lax.fori_loop(
            0, n_terms, lambda i, acc: 1.0 + x / (h + (n_terms - i)) * acc, one, unroll=8)

    def step(i, carry):
        acc, dacc = carry
        inv = 1.0 / (h + (n_terms - i))
        c = x * inv
        return 1.0 + c * acc, c * (dacc - acc * inv)

    return jax.lax.fori_loop(0, n_terms, step, (one, jnp.zeros_like(one)), unroll=8)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _log_e_h(h, x, n_terms):
    """log E_h(x) = h ln x - ln Gamma(h + 1) + ln S(h, x), elementwise (h, x broadcast)."""
    s = _series(h, x, n_terms, with_dh=False)
    return h * jnp.log(x) - gammaln(h + 1.0) + jnp.log(s)


@_log_e_h.defjvp
def _log_e_h_jvp(n_terms, primals, tangents):
    # Closed-form derivatives instead of differentiating the Horner loop, whose reverse pass
    # stored every step (the likelihood's gradient cost 8x its value):
    #   d/dx ln E_h = 1 + h / (x S)      (from dE_h/dx = E_h + x^(h-1) / Gamma(h))
    #   d/dh ln E_h = ln x - digamma(h + 1) + (dS/dh) / S
    h, x = primals
    dh, dx = tangents
    s, ds_dh = _series(h, x, n_terms)
    ln_x = jnp.log(x)
    value = h * ln_x - gammaln(h + 1.0) + jnp.log(s)
    d_x = 1.0 + h / (x * s)
    d_h = ln_x - digamma(h + 1.0) + ds_dh / s
    return value, d_x * dx + d_h * dh


@functools.partial(jax.jit, static_argnames="n_terms")  # eager calls reuse one executable
def _log_e(g, k, x, n_terms):
    """log E_h(x), h = g + k / 2 (k = 0..3 per star), 0 < x, from the power series.

    E_h(x) = x^h / Gamma(h + 1) * S(h, x) (see :func:`_series`); value and derivatives are
    much cheaper than exp(x) gammainc(h, x) and its derivative in the first argument.
    With n_terms = 64 the truncation error is below 1e-16 for x <= 14 (the emulator's range of
    W); 112 terms reach x <= 30.
    """
    # h per star, so the nested series (:func:`_series`). Tried (2026-12-06): the model's
    # four series (h = g + k/2, coefficients once, strided Horner sums) with each star's k
    # picked: value and gradient of 10^5 stars 8.1 -> 5.2 ms, but the 1000-star fit of
    # benchmarks/clusters_fit.py took 27.7 s instead of 24.4 s (eight polynomials per star
    # for one k used), so not kept.
    h = (g + 0.5 * jnp.arange(4.0))[k]
    return _log_e_h(h, x, n_terms)


def _n_terms(model) -> int:
    from dastro.clusters.emulator import W0_MAX, EmulatedLoweredIsothermal

    return 64 if isinstance(model, EmulatedLoweredIsothermal) and W0_MAX <= 14.0 else 112


def log_density_local(model, x, y, z, vx, vy, vz, has_vx=True, has_vy=True, has_vz=True, *,
                      w=None):
    """log p(position, observed velocities) / M of single stars; normalised.

    Args:
        model: a cluster model (``solve`` or ``emulate``, usually ``.scale``-d).
        x, y, z: positions relative to the centre [model length unit, pc after scaling].
        vx, vy, vz: velocities relative to the centre's motion [model velocity unit]; the
            value of a component whose mask is False is ignored.
        has_vx, has_vy, has_vz: bool masks (arrays broadcastable to x, or Python bools) of
            the observed components.
        w: the dimensionless potential W = phi / s^2 at the stars' radii, if already known
            (it depends on the radii in units of rh only, not on M); else computed.

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
        # the caller's masks, not their jnp copies: under a trace jnp.asarray stages even a
        # concrete numpy array as a tracer, which refused complete 6D data inside fits
        given = (has_vx, has_vy, has_vz)
        concrete = all(not isinstance(m, jax.core.Tracer) for m in given)
        if not concrete or not all(bool(np.all(np.asarray(m))) for m in given):
            raise ValueError("anisotropic models need all three velocity components; make "
                             "the missing ones latent parameters of the fit")
    comps = [jnp.where(m, jnp.asarray(v, float), 0.0) for m, v in zip(masks, (vx, vy, vz),
                                                                       strict=True)]
    return _log_density_local(model, *(jnp.asarray(a, float) for a in (x, y, z)), comps,
                              masks, w)


# One executable per model type and shapes: eager callers (numpyro's initialisation, tests)
# then run compiled code instead of op-by-op dispatch; under an outer jit it is inlined.
@eqx.filter_jit
def _log_density_local(model, x, y, z, comps, masks, w):
    length = model.length_unit
    s2 = model.s2
    r2 = x**2 + y**2 + z**2
    pos = r2 > 0
    r = jnp.where(pos, jnp.sqrt(jnp.where(pos, r2, 1.0)), 0.0)
    if w is None:
        w, _ = model._state(r / length)
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


_N_INVERT = 256  # table nodes for radius_at_potential, uniform in asinh(x / x_c)
_X_C = 0.25  # [r0]


@eqx.filter_jit  # eager callers reuse one executable (see _log_density_local)
def radius_at_potential(model, w):
    """Radius where the dimensionless potential W(r) equals w (0 <= w <= W0), any shape.

    For a star with observed speed v this is the radius beyond which it cannot be bound,
    W(r_e) = v^2 / (2 s^2). W(r) is tabulated on 256 radii uniform in asinh(r / (r0 / 4))
    with exact slopes dW/dr = -G M(<r) / (r^2 s^2) and inverted per value by a bracket search
    and Newton steps on the cubic Hermite interpolant; a last Newton step on the model itself
    makes the result exact to the model and carries the implicit-function derivative
    dr_e/dtheta = -(dW/dtheta - dw/dtheta) / (dW/dr). Returns radii in the model's length
    unit; rt for w <= 0 and 0 for w >= W0.
    """
    w = jnp.asarray(w, float)
    rt_model = jnp.exp(model.ln_rt)
    t_max = jnp.arcsinh(rt_model / _X_C)
    t = jnp.linspace(0.0, 1.0, _N_INVERT) * t_max
    x = _X_C * jnp.sinh(t)
    W_tab, gm_tab = model._state(x)
    W_tab = W_tab.at[-1].set(0.0)
    x_safe = jnp.where(x > 0, x, 1.0)
    dWdx = jnp.where(x > 0, -gm_tab / x_safe**2, 0.0)
    dWdi = dWdx * _X_C * jnp.cosh(t) * (t_max / (_N_INVERT - 1))  # per table index
    W_tab, dWdi = jax.lax.stop_gradient(W_tab), jax.lax.stop_gradient(dWdi)
    ws = jax.lax.stop_gradient(jnp.clip(w, 0.0, W_tab[0]))
    j = jnp.clip(jnp.searchsorted(-W_tab, -ws), 1, _N_INVERT - 1) - 1
    y0, y1, d0, d1 = W_tab[j], W_tab[j + 1], dWdi[j], dWdi[j + 1]
    u = jnp.clip((y0 - ws) / jnp.where(y0 > y1, y0 - y1, 1.0), 0.0, 1.0)
    for _ in range(4):
        u2, u3 = u * u, u * u * u
        h = ((2 * u3 - 3 * u2 + 1) * y0 + (u3 - 2 * u2 + u) * d0
             + (3 * u2 - 2 * u3) * y1 + (u3 - u2) * d1)
        dh = (6 * u2 - 6 * u) * (y0 - y1) + (3 * u2 - 4 * u + 1) * d0 + (3 * u2 - 2 * u) * d1
        u = jnp.clip(u - (h - ws) / jnp.where(dh < 0, dh, -1.0), 0.0, 1.0)
    x_e = jax.lax.stop_gradient(_X_C * jnp.sinh((j + u) * t_max / (_N_INVERT - 1)))
    # final Newton step on the model (differentiable): x_e - (W(x_e) - w) / W'(x_e)
    inside = (w > 0) & (w < model.W0) & (x_e > 0)
    x_in = jnp.where(inside, x_e, 0.5 * rt_model)
    W_e, gm_e = model._state(x_in)
    x_new = x_in + (W_e - w) * x_in**2 / gm_e
    x_out = jnp.where(inside, x_new, jnp.where(w <= 0, rt_model, 0.0))
    return x_out * model.length_unit
