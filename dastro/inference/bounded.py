"""Latent coordinates mapped onto the region where a star can be a bound cluster member.

A cluster star's density vanishes outside a bounded region of its unknown coordinates: its
line-of-sight position must lie inside rt and where its speed is below the escape speed, and
its true velocity inside the escape ball |v| < v_e(r) = sqrt(2 phi(r)). A latent coordinate
sampled on the real line crosses that boundary as the cluster parameters move, and there the
density falls to zero like a power of the distance (a wall for NUTS). Here each latent is a
point s of (-1, 1) mapped into the allowed region, so no proposal leaves it and the boundary
moves with the parameters instead (:func:`edge_map` for the line of sight).

With a field-star component the cluster parameters cannot be mapped so that every star stays
bound (:func:`dastro.inference.models.cluster_scale`'s edge reparameterisation), so measured
velocities with Gaussian errors e get latent true velocities (:func:`bounded_velocities`),
component after component (vx, vy, vz):

    w_j = v_obs,j + K e_j s_j  (the window, K = WINDOW_SDS = 6),  v_j = clip(w_j, B_j),

clip a smooth, odd map of the real line onto (-B_j, B_j) that is the identity well inside
(:func:`_soft_clip`, a layer half an error sd thick at the surface), B_j^2 = v_e^2 -
sum_(i<j) v_i^2 - sum_(i>j) m_i^2, m_i the window's smallest |v_i|, so the later components
keep room. Where a star's window lies inside the ball the map does not depend on the cluster
at all; where the ball cuts it, the part outside is compressed into the surface layer, and
the cluster density convolved with the errors changes on the scale of the errors instead of
at a wall. The window truncates each Gaussian at 6 sds (a fraction 2e-9 of its mass).

Field stars need a proposal density for the same latents (the mixture is exact after they
are integrated out whatever it is): :func:`window_log_weight`, the truncated error Gaussian
of the window's map, which is where a member's latents lie too, so a star's membership can
change without its latents moving between a peak and a plateau.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = ["WINDOW_SDS", "bounded_velocities", "edge_map", "window_floor", "window_log_weight"]

#: Half-width of each latent velocity's window, in measurement-error sds.
WINDOW_SDS = 6.0
#: Width of the smooth minima and maxima at the interval ends, in error sds.
_SMOOTH_SDS = 0.5


def edge_map(s, h):
    """u = s sqrt(F(s^2) / s^2), F(y) = 1 - (1 - y)^a, a = 1 / (h + 1), and log du/ds.

    A smooth, odd bijection of (-1, 1) with 1 - u^2 = (1 - s^2)^a. A density on (-1, 1)
    that falls to zero at the ends like (1 - |u|)^h (the DF at the edge of its support,
    E_h(x) ~ x^h) is flat in s there, so the shape of the latent's tails no longer depends on
    h (a funnel-like coupling of g with every star's latent, in the plain u).
    """
    a = 1.0 / (h + 1.0)
    y = jnp.minimum(s * s, 1.0 - 2.0**-53)  # s rounds to +-1 far out on numpyro's real line
    log1m = jnp.log1p(-y)
    small = y < 1e-6
    y_safe = jnp.where(small, 1.0, y)
    ratio = jnp.where(small, a * (1.0 + 0.5 * (1.0 - a) * y), -jnp.expm1(a * log1m) / y_safe)
    u = s * jnp.sqrt(ratio)
    # du/ds = F'(y) / sqrt(F(y) / y), F'(y) = a (1 - y)^(a - 1)
    log_du = jnp.log(a) + (a - 1.0) * log1m - 0.5 * jnp.log(ratio)
    return u, log_du


def _smooth_min(a, b, width):
    """A smooth minimum, below min(a, b) by at most width ln 2 (where a = b)."""
    return b - width * jax.nn.softplus((b - a) / width)


def _smooth_max(a, b, width):
    return -_smooth_min(-a, -b, width)


def _soft_clip(w, bound, width):
    """An odd, increasing, C1 map of the real line onto (-bound, bound) and log dv/dw.

    v = sign(w) (m(|w|) - m(0)) bound / (bound - m(0)), m(a) = the smooth minimum of a and
    bound: v = w to a relative 2 exp(-bound / width) where |w| < bound - a few widths, and
    |v| -> bound as |w| -> infinity, never reaching it.
    """
    a = jnp.abs(w)
    offset = width * jax.nn.softplus(-bound / width)  # -m(0)
    scale = bound / (bound + offset)
    v = jnp.sign(w) * (_smooth_min(a, bound, width) + offset) * scale
    return v, jax.nn.log_sigmoid((bound - a) / width) + jnp.log(scale)


def window_floor(v_obs, err):
    """The window's smallest |v| (smoothly, from above): max(|v_obs| - K err, 0); |v_obs|
    where err = 0. Any shape; velocity units."""
    err = jnp.asarray(err, float)
    noisy = err > 0
    width = jnp.where(noisy, _SMOOTH_SDS * err, 1.0)
    floor = _smooth_max(jnp.abs(v_obs) - WINDOW_SDS * err, 0.0, width)
    return jnp.where(noisy, floor, jnp.abs(v_obs))


def window_log_weight(s, latent):
    """Field stars' proposal for the latents: the error Gaussian truncated to the window,
    v = v_obs + K err s, as a density of s on (-1, 1), times 2 (undoing s's U(-1, 1)).

    A normalised density of s, so the mixture stays exact after the latents are integrated
    out; it puts a field star's latents where a member's are (where the window lies inside
    the ball the two maps coincide), so a star's membership can change without its latents
    moving from a peak to a plateau. s, latent: three arrays (n,); returns (n,).
    """
    k = WINDOW_SDS
    log_mass = math.log(math.erf(k / math.sqrt(2.0)))
    total = 0.0
    for s_j, lat in zip(s, latent, strict=True):
        term = (math.log(2.0 * k) - 0.5 * (k * s_j) ** 2 - 0.5 * math.log(2.0 * math.pi)
                - log_mass)
        total = total + jnp.where(lat, term, 0.0)
    return total


def bounded_velocities(s, v_obs, err, latent, observed, v_esc2):
    """True velocities from latent s in (-1, 1) inside each star's window and escape ball.

    Args:
        s: three arrays (n,), the latents of vx, vy, vz (ignored where ``latent`` is False).
        v_obs: three arrays (n,), observed velocities relative to the centre [km/s].
        err: three arrays (n,), their Gaussian errors [km/s].
        latent: three bool arrays (n,), components with a latent true value (observed, err
            > 0).
        observed: three bool arrays (n,), observed components (the others are integrated out
            by the DF's closed-form marginal and take no part in the ball).
        v_esc2: (n,) squared escape speed 2 phi at each star's position [km^2/s^2].

    Returns:
        (v_true, log_weight): three arrays (n,) [km/s] (v_obs where not latent, 0 where not
        observed), and per star the sum over latent components of log N(v_obs - v; err) +
        log |dv/ds| + log 2 (the last undoes the U(-1, 1) density of s), -inf where a window
        holds no bound velocity. The cluster density times exp(log_weight), integrated over
        the latents' U(-1, 1), is the cluster density convolved with the errors (to the
        window's 2e-9 truncation).
    """
    floors = [jnp.where(o, window_floor(v, e), 0.0)
              for v, e, o in zip(v_obs, err, observed, strict=True)]
    v_true = []
    log_weight = jnp.zeros(jnp.shape(v_esc2))
    ok = jnp.ones(jnp.shape(v_esc2), bool)
    for j in range(3):
        room2 = (v_esc2 - sum(v * v for v in v_true)
                 - sum(floors[i] ** 2 for i in range(j + 1, 3)))
        ok = ok & ~(latent[j] & (room2 <= 0))
        bound = jnp.sqrt(jnp.where(room2 > 0, room2, 1.0))
        e = jnp.where(latent[j], err[j], 1.0)
        width = _SMOOTH_SDS * e
        # the window's map, clipped softly into (-bound, bound): the identity wherever the
        # window lies inside the ball (no dependence on the cluster there), compressed
        # smoothly into a layer of width ~ width at the ball's surface where it does not
        v, log_dv = _soft_clip(v_obs[j] + WINDOW_SDS * e * s[j], bound, width)
        log_dv = log_dv + jnp.log(WINDOW_SDS * e)
        term = (log_dv + math.log(2.0) - 0.5 * ((v - v_obs[j]) / e) ** 2
                - jnp.log(e * math.sqrt(2.0 * math.pi)))
        log_weight = log_weight + jnp.where(latent[j], term, 0.0)
        v_true.append(jnp.where(latent[j], v, jnp.where(observed[j], v_obs[j], 0.0)))
    return v_true, jnp.where(ok, log_weight, -jnp.inf)
