"""Velocity moments of the lowered-isothermal distribution function, in closed form.

The LIMEPY family (Gieles & Zocchi 2015, MNRAS 454, 576; "GZ15") has the DF

    f(E, J) = A exp(-J^2 / (2 ra^2 s^2)) E_g(-(E - phi(rt)) / s^2),

with E_0(x) = exp(x) and E_g(x) = exp(x) P(g, x) for g > 0 (P the regularised lower
incomplete gamma function). With s = 1, W the dimensionless potential and p = r / ra, every
moment of f is a one-dimensional convolution of E_g with a power law and an exponential in
the tangential kinetic energy. Writing b for v_t^2 / 2,

    J_h^m(W, p^2) = int_0^W b^m exp(-p^2 b) E_h(W - b) db,

the density and the second moments are (GZ15 eqs. 8-14):

    rho     = A (2 pi)^{3/2} J^0_{g+1/2}
    rho v_r^2 = A (2 pi)^{3/2} J^0_{g+3/2}
    rho v_t^2 = A (2 pi)^{3/2} 2 J^1_{g+1/2}

and J^0_h = [E_{h+1}(W) + p^2 G_h] / (1 + p^2) with G_h = W^{h+1} M(1, h+2, -p^2 W) / Gamma(h+2),
M Kummer's confluent hypergeometric function. J^1_h = -dJ^0_h / d(p^2) follows from
dG_h/d(p^2) = -(W G_h - (h+1) G_{h+1}).

All functions here are for one point (scalars) and broadcast elementwise; they are smooth in
W, p^2 and g, and differentiable in all three (including g through the incomplete gamma).
For W <= 0 (outside the truncation radius) every moment is zero.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.special import gammainc, gammaln

from dastro.clusters.df_local import _horner, _log_e_h

# Switch point of the two evaluations of M(1, b, -z); each is accurate to ~1e-14 there, so
# the function and its derivatives are continuous to that level.
_Z_ASYMPTOTIC = 40.0
#: Terms of the Kummer-transformed series for z < 40: its Poisson weights beyond n = 112 sum
#: to < 1e-17 at z = 40.
_N_KUMMER = 112
_N_ASYMPTOTIC = 18
#: Terms of the series of E_{h+1} - G_h for W < 1 and p^2 W < 1 (< 1e-30 beyond).
_N_TAYLOR = 30


def _kummer(a: int, b, z):
    """Kummer's function M(a, b, -z) for a = 1 or 2, b > a and z >= 0, smooth in b and z.

    Two branches, each a sum of terms of one sign (no cancellation) whose coefficients
    depend on b only, so that for one model (scalar b) each radius costs one Horner pass:
    - z < 40: Kummer's transformation M(a, b, -z) = exp(-z) M(b - a, b, z)
      = exp(-z) sum_n (b - a)_n / (b)_n z^n / n! (DLMF 13.2.39), where (b - a)_n / (b)_n =
      prod_{j=1..a} (b - j) / (b - j + n): positive terms;
    - z >= 40: the asymptotic series Gamma(b) / Gamma(b - a) z^-a sum_k (a)_k (a - b + 1)_k
      / k! z^-k (DLMF 13.7.2), with (a)_k / k! = 1 (a = 1) or k + 1 (a = 2).
    No maintained JAX library differentiates M(a, b, x) in b, which the g-gradients need.
    """
    b = jnp.asarray(b, dtype=float)[..., None]
    z = jnp.asarray(z, dtype=float)
    large = z >= _Z_ASYMPTOTIC
    # safe arguments, so that the branch not taken stays finite under differentiation
    z_p = jnp.where(large, 1.0, z)
    z_a = jnp.where(large, z, 2 * _Z_ASYMPTOTIC)
    n = jnp.arange(_N_KUMMER, dtype=float)
    weight = jnp.exp(-gammaln(n + 1.0))
    gamma_ratio = jnp.ones_like(b[..., 0])  # Gamma(b) / Gamma(b - a)
    for j in range(1, a + 1):
        weight = weight * (b - j) / (b - j + n)
        gamma_ratio = gamma_ratio * (b[..., 0] - j)
    series = jnp.exp(-z_p) * _horner(weight, z_p)
    k = jnp.arange(_N_ASYMPTOTIC, dtype=float)
    # (a - b + 1)_k, the rising factorial, as a running product
    rising = jnp.cumprod(jnp.concatenate([jnp.ones_like(b), k[1:] + a - b], axis=-1), axis=-1)
    if a == 2:
        rising = rising * (k + 1.0)
    asymptotic = gamma_ratio / z_a**a * _horner(rising, 1.0 / z_a)
    return jnp.where(large, asymptotic, series)


def kummer_m1(b, z):
    """Kummer's function M(1, b, -z) for b > 1 and z >= 0, smooth in b and z (:func:`_kummer`)."""
    return _kummer(1, b, z)


def kummer_m2(b, z):
    """Kummer's function M(2, b, -z) for b > 2 and z >= 0, smooth in b and z (:func:`_kummer`)."""
    return _kummer(2, b, z)


def _e(h, w, n_terms=None):
    """E_h(W) = exp(W) P(h, W) for h > 0, W >= 0: by jax's gammainc (n_terms None, any W), or
    by the n_terms-term power series of ``df_local._log_e_h`` (64 terms: exact to 1e-16 for
    W <= 14, the emulators' range; cheaper in value and derivatives: the anisotropic density
    and second moments cost 1.06 and 2.95 us per point instead of 1.41 and 3.95)."""
    if n_terms is None:
        return jnp.exp(w) * gammainc(h, w)
    return jnp.exp(_log_e_h(h, w, n_terms))


def _g(h, w, p2):
    """G_h(W, p^2) = W^(h+1) M(1, h+2, -p^2 W) / Gamma(h+2)."""
    return jnp.exp((h + 1.0) * jnp.log(w) - gammaln(h + 2.0)) * kummer_m1(h + 2.0, p2 * w)


def _j0(h, w, p2, n_terms=None):
    return (_e(h + 1.0, w, n_terms) + p2 * _g(h, w, p2)) / (1.0 + p2)


def _e_minus_g(h, w, p2, n_terms=None):
    """D = E_{h+1}(W) - G_h(W, p^2) without cancellation.

    Both are W^(h+1)/Gamma(h+2) M(1, h+2, x), at x = W and x = -p^2 W. For small W and
    p^2 W they nearly cancel; there the difference is summed term by term,
    sum_{n >= 1} (W^n - (-p^2 W)^n) / (h+2)_n = S(W) - S(-p^2 W), with S(x) = sum_{n >= 1}
    x^n / (h+2)_n: S(W) > 0 and S(-p^2 W) < 0 (alternating, falling terms), no cancellation.
    """
    b = jnp.asarray(h + 2.0)[..., None]
    small = (w < 1.0) & (p2 * w < 1.0)
    w_s = jnp.where(small, w, 0.5)
    x = -jnp.where(small, p2, 0.5) * w_s
    n = jnp.arange(_N_TAYLOR, dtype=float)
    inv_poch = 1.0 / jnp.cumprod(b + n, axis=-1)  # 1 / (b)_{n+1}
    prefactor = jnp.exp((h + 1.0) * jnp.log(w_s) - gammaln(h + 2.0))
    series = prefactor * (w_s * _horner(inv_poch, w_s) - x * _horner(inv_poch, x))
    direct = _e(h + 1.0, w, n_terms) - _g(h, w, p2)
    return jnp.where(small, series, direct)


def _j1(h, w, p2, n_terms=None):
    """J^1_h = D / (1 + p^2)^2 + p^2 / (1 + p^2) (W G_h - (h+1) G_{h+1}), D = E_{h+1} - G_h."""
    h = jnp.asarray(h, float)
    q1 = 1.0 + p2
    d = _e_minus_g(h, w, p2, n_terms)
    return d / q1**2 + p2 / q1 * (w * _g(h, w, p2) - (h + 1.0) * _g(h + 1.0, w, p2))


def density_integral(w, g, p2=None, n_terms=None):
    """Dimensionless density rho / (A (2 pi s^2)^{3/2}) at potential W (GZ15 eqs. 8, 11).

    Args:
        w: dimensionless potential W = (phi(rt) - phi) / s^2, any shape; W <= 0 gives 0.
        g: truncation parameter g >= 0.
        p2: (r / ra)^2; None (the default) for isotropic models, which skips the anisotropic
            terms at trace time.
        n_terms: None (default: E_h by the incomplete gamma function, any W), or the terms of
            its power series (64 for W <= 14, as in the emulators: faster).
    """
    w = jnp.asarray(w, dtype=float)
    inside = w > 0
    w_safe = jnp.where(inside, w, 1.0)
    h = jnp.asarray(g, dtype=float) + 0.5
    if p2 is None:
        value = _e(h + 1.0, w_safe, n_terms)
    else:
        value = _j0(h, w_safe, jnp.asarray(p2, dtype=float), n_terms)
    return jnp.where(inside, value, 0.0)


def second_moment_integrals(w, g, p2=None, n_terms=None):
    """Dimensionless rho <v_r^2> and rho <v_t^2>, in units of A (2 pi)^{3/2} s^5 (GZ15 eqs. 9-14).

    Returns:
        (rho_v2r, rho_v2t), each broadcast over (w, g, p2); v_t^2 sums both tangential
        components, so for isotropic models rho_v2t = 2 rho_v2r. n_terms as in
        :func:`density_integral`.
    """
    w = jnp.asarray(w, dtype=float)
    inside = w > 0
    w_safe = jnp.where(inside, w, 1.0)
    g = jnp.asarray(g, dtype=float)
    if p2 is None:
        v2r = _e(g + 2.5, w_safe, n_terms)
        v2t = 2.0 * v2r
    else:
        p2 = jnp.asarray(p2, dtype=float)
        v2r = _j0(g + 1.5, w_safe, p2, n_terms)
        v2t = 2.0 * _j1(g + 0.5, w_safe, p2, n_terms)
    return jnp.where(inside, v2r, 0.0), jnp.where(inside, v2t, 0.0)
