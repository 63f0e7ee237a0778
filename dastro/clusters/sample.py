"""Mock clusters: stars drawn from the lowered-isothermal DF (Gieles & Zocchi 2015).

``sample(model, n, key)`` draws n equal-mass stars from f(E, J) of any model (W0, g, ra):

1. Radii by inverting the cumulative mass: mc(r) is tabulated on 1024 radii uniform in
   asinh(r / r_c) with its exact slope dmc/dr = 4 pi r^2 rho, and mc(r) = u M is solved per
   star by Newton's method on the cubic Hermite interpolant (after a bisection search for the
   interval). Directions are isotropic.
2. Velocities at radius r by rejection from the DF at that radius, in the frame
   (radial, two tangential components). The target is
   exp(-p^2 u_t^2 / 2) E_g(w - u^2 / 2), u = v / s, p = r / ra, w = W(r). Two envelopes:
   - deep in the potential (w > g + 3/2): a Gaussian with unit radial dispersion and
     tangential dispersion 1 / sqrt(1 + p^2), accepted with probability P(g, w - u^2/2)
     (E_g(x) = exp(x) P(g, x) <= exp(x));
   - near the edge: a uniform draw in the ball u^2 < 2 w, accepted with probability
     exp(-p^2 u_t^2 / 2) E_g(w - u^2 / 2) / E_g(w).
   Both are exact; rounds of proposals run in a ``lax.while_loop`` until every star is
   accepted. E_g comes from the same F_h tables as :mod:`dastro.clusters.df`.

Coordinates: x, y in the sky plane, z along the line of sight away from the observer, in the
model's length unit; vx, vy, vz likewise (vz > 0 receding), in its velocity unit. Scale the
model (``model.scale(M, rh=...)``) for pc and km/s; with ``distance`` (kpc) the result also
carries sky coordinates (small-angle tangent-plane offsets, x towards east = +RA, y towards
north) as an astropy QTable.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from dastro.clusters.df import _e_h, _w_at, df_tables

__all__ = ["MockCluster", "sample", "to_sky"]

_N_M = 1024
_MAX_ROUNDS = 20000


class MockCluster(NamedTuple):
    """Positions and velocities of mock stars (model units: pc and km/s after scaling).

    ``sky`` is None, or (given a distance) an astropy QTable with columns ``dra`` and ``ddec``
    (offsets from the centre, arcsec; dra is Delta RA cos Dec), ``pmra`` and ``pmdec``
    (mas/yr, relative to the centre's motion), ``vlos`` (km/s) and ``R`` (arcsec).
    """

    x: jax.Array
    y: jax.Array
    z: jax.Array
    vx: jax.Array
    vy: jax.Array
    vz: jax.Array
    sky: object = None


def _mass_table(model):
    rt = jnp.asarray(model.rt, float)
    r_c = 0.25 * jnp.asarray(model.r0, float)
    eta_max = jnp.arcsinh(rt / r_c)
    eta = jnp.linspace(0.0, 1.0, _N_M) * eta_max
    step = eta_max / (_N_M - 1)
    r = r_c * jnp.sinh(eta[:-1])
    p = model.profiles(r)
    M = jnp.asarray(model.M, float)
    mc = jnp.append(p.mc / M, 1.0)
    dmc = jnp.append(4.0 * math.pi * r**2 * p.rho / M, 0.0) * r_c * jnp.cosh(eta) * step
    return r_c, step, mc, dmc


def _invert_increasing(y, dy, target):
    """Fractional index t with Hermite(y, dy)(t) = target, for increasing tables y."""
    n = y.shape[0]
    j = jnp.clip(jnp.searchsorted(y, target), 1, n - 1) - 1
    y0, y1, d0, d1 = y[j], y[j + 1], dy[j], dy[j + 1]
    u = jnp.clip((target - y0) / jnp.where(y1 > y0, y1 - y0, 1.0), 0.0, 1.0)
    for _ in range(6):
        u2 = u * u
        u3 = u2 * u
        h = ((2 * u3 - 3 * u2 + 1) * y0 + (u3 - 2 * u2 + u) * d0
             + (3 * u2 - 2 * u3) * y1 + (u3 - u2) * d1)
        dh = (6 * u2 - 6 * u) * (y0 - y1) + (3 * u2 - 4 * u + 1) * d0 + (3 * u2 - 2 * u) * d1
        u = jnp.clip(u - (h - target) / jnp.where(dh > 0, dh, 1.0), 0.0, 1.0)
    return j + u


def _unit_vectors(key, n):
    k1, k2 = jax.random.split(key)
    cos_t = jax.random.uniform(k1, (n,), minval=-1.0, maxval=1.0)
    ph = jax.random.uniform(k2, (n,), minval=0.0, maxval=2.0 * math.pi)
    sin_t = jnp.sqrt(1.0 - cos_t**2)
    return jnp.stack([sin_t * jnp.cos(ph), sin_t * jnp.sin(ph), cos_t], axis=-1)


def _propose(tab, key, w, p2, k):
    """k proposals per star, shape (m, k, 3), and whether each is accepted, shape (m, k)."""
    m = w.shape[0]
    w = w[:, None]
    p2 = p2[:, None]
    gauss = w > tab.g + 1.5
    sig_t = 1.0 / jnp.sqrt(1.0 + p2)
    k1, k2, k3, k4 = jax.random.split(key, 4)
    normal = jax.random.normal(k1, (m, k, 3))
    ball_dir = jax.random.normal(k2, (m, k, 3))
    ball_dir = ball_dir / jnp.linalg.norm(ball_dir, axis=-1, keepdims=True)
    ball_r = jnp.sqrt(2.0 * w) * jax.random.uniform(k3, (m, k)) ** (1.0 / 3.0)
    scale = jnp.stack(jnp.broadcast_arrays(jnp.ones_like(sig_t), sig_t, sig_t), axis=-1)
    u = jnp.where(gauss[..., None], normal * scale, ball_dir * ball_r[..., None])
    u2 = jnp.sum(u**2, axis=-1)
    ut2 = u[..., 1] ** 2 + u[..., 2] ** 2
    x = w - 0.5 * u2
    inside = x > 0
    log_e = jnp.log(jnp.maximum(_e_h(tab, 0, jnp.where(inside, x, 1.0)), 1e-300))
    log_eg_w = jnp.log(jnp.maximum(_e_h(tab, 0, w), 1e-300))
    log_acc = jnp.where(gauss, log_e - x, log_e - log_eg_w - 0.5 * p2 * ut2)
    accept = inside & (jnp.log(jax.random.uniform(k4, (m, k))) < log_acc)
    return u, accept


def _first_accepted(u, acc):
    i = jnp.argmax(acc, axis=1)
    return jnp.take_along_axis(u, i[:, None, None], axis=1)[:, 0], jnp.any(acc, axis=1)


def _velocities(tab, key, w, p2):
    """(u_r, u_t1, u_t2) drawn from exp(-p2 u_t^2 / 2) E_g(w - u^2 / 2) by rejection.

    A first pass makes 4 proposals for every star; the stars still without an accepted one
    are then gathered into a buffer of n/8 (static size) and redrawn, 8 proposals each, until
    none is left, so the work is proportional to n over the mean acceptance rate.
    """
    n = w.shape[0]
    key, sub = jax.random.split(key)
    u, done = _first_accepted(*_propose(tab, sub, w, p2, 4))
    buf = min(n, max(n // 8, 256))

    def cond(state):
        _, done, _, i = state
        return (~jnp.all(done)) & (i < _MAX_ROUNDS)

    def body(state):
        key, done, u, i = state
        key, sub = jax.random.split(key)
        idx = jnp.nonzero(~done, size=buf, fill_value=n)[0]
        safe = jnp.minimum(idx, n - 1)
        u_new, got = _first_accepted(*_propose(tab, sub, w[safe], p2[safe], 8))
        got = got & (idx < n)
        u = u.at[idx].set(jnp.where(got[:, None], u_new, u[safe]), mode="drop")
        done = done.at[idx].set(got | done[safe], mode="drop")
        return key, done, u, i + 1

    _, done, u, _ = jax.lax.while_loop(cond, body, (key, done, u, 0))
    return u, done


@eqx.filter_jit
def _sample(model, n: int, key):
    tab = df_tables(model)
    r_c, step, mc, dmc = _mass_table(model)
    k_r, k_dir, k_v, k_t = jax.random.split(key, 4)
    # radii: invert mc(r) / M at uniform deviates (open interval, so r < rt)
    t = _invert_increasing(mc, dmc, jax.random.uniform(k_r, (n,), minval=1e-16, maxval=1.0))
    r = jnp.minimum(r_c * jnp.sinh(t * step), tab.rt * (1.0 - 1e-15))
    w = jnp.maximum(_w_at(tab, r), 1e-300)
    p2 = r**2 * tab.inv_ra2
    u, done = _velocities(tab, k_v, w, p2)
    rhat = _unit_vectors(k_dir, n)
    # an orthonormal tangential basis; the tangential draw is axisymmetric, so any basis works
    a = jnp.where(jnp.abs(rhat[:, 2:3]) < 0.9, jnp.array([0.0, 0.0, 1.0]),
                  jnp.array([1.0, 0.0, 0.0]))
    e1 = jnp.cross(rhat, a)
    e1 = e1 / jnp.linalg.norm(e1, axis=-1, keepdims=True)
    e2 = jnp.cross(rhat, e1)
    v = (u[:, 0:1] * rhat + u[:, 1:2] * e1 + u[:, 2:3] * e2) * tab.s
    pos = r[:, None] * rhat
    return pos, v, done


def to_sky(mock: MockCluster, distance):
    """Sky coordinates of a mock (pc, km/s) at ``distance`` (kpc, or an astropy Quantity)."""
    import astropy.units as u
    from astropy.table import QTable

    d = distance if isinstance(distance, u.Quantity) else float(distance) * u.kpc
    d = d.to(u.kpc)
    if not (np.isfinite(d.value) and d.value > 0):
        raise ValueError(f"distance must be positive and finite, got {distance}")
    ang = u.dimensionless_angles()
    x = np.asarray(mock.x) * u.pc
    y = np.asarray(mock.y) * u.pc
    vel = u.km / u.s
    return QTable({
        "dra": (x / d).to(u.arcsec, equivalencies=ang),
        "ddec": (y / d).to(u.arcsec, equivalencies=ang),
        "R": (np.hypot(x, y) / d).to(u.arcsec, equivalencies=ang),
        "pmra": (np.asarray(mock.vx) * vel / d).to(u.mas / u.yr, equivalencies=ang),
        "pmdec": (np.asarray(mock.vy) * vel / d).to(u.mas / u.yr, equivalencies=ang),
        "vlos": np.asarray(mock.vz) * vel,
    })


def sample(model, n: int, key, *, distance=None) -> MockCluster:
    """Draw n stars from the DF of ``model`` (any W0, g, ra).

    Args:
        model: a solved (and usually scaled) model, or an emulator model with the same
            interface. Outputs are in its units (pc and km/s after ``scale``).
        n: number of stars (positive int; static under jit).
        key: a JAX PRNG key (``jax.random.key(0)`` or ``jax.random.PRNGKey(0)``).
        distance: optional distance [kpc, or astropy Quantity]; adds sky coordinates
            (``MockCluster.sky``). Requires a model scaled to pc and km/s.

    Returns:
        :class:`MockCluster` with arrays of shape (n,).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    pos, v, done = _sample(model, int(n), key)
    if not isinstance(done, jax.core.Tracer) and not bool(jnp.all(done)):
        raise RuntimeError(
            f"velocity rejection did not finish in {_MAX_ROUNDS} rounds for "
            f"{int(jnp.sum(~done))} star(s); is the model valid?"
        )
    mock = MockCluster(pos[:, 0], pos[:, 1], pos[:, 2], v[:, 0], v[:, 1], v[:, 2])
    if distance is not None:
        mock = mock._replace(sky=to_sky(mock, distance))
    return mock
