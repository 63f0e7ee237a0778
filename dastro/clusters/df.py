"""Phase-space density of single stars in a lowered-isothermal cluster, and its projections.

The DF of the LIMEPY family (Gieles & Zocchi 2015, MNRAS 454, 576, eqs. 1-5; "GZ15") is

    f(r, v) = A exp(-J^2 / (2 ra^2 s^2)) E_g(W(r) - v^2 / (2 s^2)),   J = |r x v|,

with E_0(x) = exp(x), E_g(x) = exp(x) P(g, x) (P the regularised lower incomplete gamma
function), f = 0 where v^2 >= 2 phi(r) or r >= rt, and W = phi / s^2 the dimensionless
potential depth. ``A`` normalises f to the total mass M, so ``f / M`` is the probability
density of one star in six-dimensional phase space [length^-3 velocity^-3].

Coordinates. x, y are positions on the sky plane and z along the line of sight, in the model's
length unit (pc after ``model.scale``); vx, vy are the plane-of-sky (proper-motion) velocity
components and vz the line-of-sight velocity, in the model's velocity unit (km/s after
scaling; convert proper motions with ``dastro.constants.K_PM``). The cluster centre is
``Centre(x, y, vx, vy, vz)``; the line-of-sight position z is measured from the centre's plane.

Densities provided (each normalised over its own coordinates):

=========================  ======================  ========================================
function                   coordinates             unobserved, integrated out
=========================  ======================  ========================================
``log_density_6d``         x, y, z, vx, vy, vz     nothing
``log_density_xy``         x, y                    z, vx, vy, vz  (= Sigma(R) / M)
``log_density_xy_vlos``    x, y, vz                z, vx, vy
``log_density_xy_pm``      x, y, vx, vy            z, vz
``log_density_xy_v3``      x, y, vx, vy, vz        z
``log_density_R``          R (projected radius)    angle, z, velocities (2 pi R Sigma / M)
=========================  ======================  ========================================

Method. The potential W(r) is tabulated once per model on 512 radii uniform in
asinh(r / r_c) (r_c = r0 / 4) and interpolated by cubic Hermite polynomials with exact slopes
(forward-mode derivative of ``model.profiles``), so the table is as smooth as the model. For
isotropic models each velocity integral is analytic: integrating E_h(w - u^2 / 2) over one
velocity component gives sqrt(2 pi) E_{h + 1/2}(w) (term by term in the series
E_h(x) = sum_n x^(h+n) / Gamma(h+n+1)), so every projected density is a single line-of-sight
integral H_k(R, c) = int E_{g + k/2}(W(r) - c) dz, c = u_obs^2 / 2. The functions
F_h(x) = E_h(x) / x^h, entire in x, are tabulated in log form over [0, W0] from their series
(differentiable in g); this is about 100 times cheaper than ``gammainc`` per evaluation. With
anisotropy the missing velocity components are integrated by Gauss-Legendre quadrature (16
nodes per component, 16 trapezoidal angles for the plane-of-sky disc), with endpoint maps
that absorb the (q^2 - u^2)^g behaviour at the escape speed.

The line-of-sight integral runs over z in [0, z_e], where r_e is the radius at which the
observed velocity reaches the local escape speed (W(r_e) = u_obs^2 / 2; r_e = rt without
velocities), found by Newton's method on the W table with an implicit-function final step. In
the variable xi = asinh(z / a), a = sqrt(R^2 + (r0/2)^2), which resolves the core and the
power-law envelope alike, 48 Gauss-Legendre nodes are placed after the map
xi = xi_e (1 - (1 - t)^3), which flattens the (z_e - z)^alpha edge behaviour.

Tables of the projected densities, so that a star costs a table look-up, not a quadrature
(1e5 stars: ~3 ms instead of ~300 ms per density). Radial nodes are uniform in t, with
asinh(R / r_c) = asinh(rt / r_c) (3 t - t^3) / 2, which keeps the centre resolved and makes
rt - R ~ (1 - t)^2 at the edge, where the densities have terms in (rt - R)^(g + 5/2).

- Sigma(R) (``log_density_xy``, ``log_density_R``; every model): log Sigma - (g + 2)
  log(1 - R^2 / rt^2) on 256 radii (1024 for anisotropic models, whose density changes on a
  small scale near rt when rt >> ra), values by the line-of-sight quadrature and slopes by
  its forward-mode derivative, cubic Hermite in t. Agrees with the quadrature to ~1e-8 in
  log (isotropic W0 <= 20); anisotropic (W0, g, ra) = (5, 0.5, 1.5), rt / ra = 600: 4e-8
  inside 0.99 rt, 8e-6 at the edge.
- H_k(R, c) (isotropic ``xy_vlos``, ``xy_pm``, ``xy_v3``): L_k = log H_k - (g + k/2 + 1/2)
  log(W(R) - c), smooth up to the escape speed and rt, as a bicubic (tensor-product cubic
  spline) on 64 radii by 40 values of u_obs / u_esc(R) in [0, 1] (a grid in c itself
  resolves the envelope poorly), interior nodes by the 32-node line-of-sight quadrature and
  the escape-speed column and rt row from the limit H_k -> (W(R) - c)^(h + 1/2)
  sqrt(pi / a) / Gamma(h + 3/2), a = -W'(R) / (2 R). Agrees with the quadrature to ~2e-8
  (median) and 1e-5 (max) in log for W0 <= 14; 7e-5 max at W0 = 20.
  Anisotropic models with velocities keep the per-star quadratures.

Each density function builds only the tables it needs (the reverse pass of a table is most
of its cost); :func:`df_tables` builds them all, to evaluate several densities of one model.

Stars with R >= rt or an observed speed at or above the escape speed at every z get -inf,
individually; their gradients are exactly zero (double-``where``), so they never poison the
others. NaN coordinates give NaN (the flagged value inside jit); outside jit they raise.

Per-star masses (multimass models) are reserved: every function takes ``mass=None`` and a
later version will select the DF of each star's mass class from it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from dastro.clusters.moments import density_integral

__all__ = [
    "Centre",
    "DFTables",
    "df_tables",
    "log_density_6d",
    "log_density_R",
    "log_density_xy",
    "log_density_xy_pm",
    "log_density_xy_v3",
    "log_density_xy_vlos",
]

_N_R = 512  # radial table nodes
_N_X = 256  # energy table nodes
_N_SERIES = 128  # terms of the series of F_h (enough for W0 <= 30)
_N_Z = 48  # line-of-sight Gauss-Legendre nodes
_N_Z_TABLE = 32  # the same, for the nodes of the (R, speed) tables (as accurate there)
_N_V = 16  # nodes per integrated velocity component (anisotropic models)
_N_THETA = 16  # trapezoidal angles in the plane-of-sky velocity disc (anisotropic, vlos)
_N_SIGMA = 256  # nodes of the log Sigma(R) table (isotropic models)
_N_SIGMA_ANISO = 1024  # the same, anisotropic models
_N_ETA = 64  # radial nodes of the isotropic (R, speed) tables, uniform in asinh(R / r_c)
_N_NU = 40  # nodes of those tables in u / u_esc(R) = sqrt(u^2 / (2 W(R))), uniform on [0, 1]
# Stars per vectorised chunk (checkpointed, to bound reverse-mode memory). The Sigma look-up
# (about a hundred bytes per star in reverse mode) measured fastest unchunked; the others,
# in chunks of 8192.
_CHUNK = 8192
_CHUNK_ANISO = 512
_CHUNK_SIGMA = 1 << 18



def _gl01(n):
    t, w = np.polynomial.legendre.leggauss(n)
    return 0.5 * (t + 1.0), 0.5 * w  # on [0, 1]


_Z_T, _Z_W = _gl01(_N_Z)
_V_T, _V_W = np.polynomial.legendre.leggauss(_N_V)  # [-1, 1]


class Centre(NamedTuple):
    """Centre of the cluster in position (sky plane) and velocity, in the model's units."""

    x: jax.typing.ArrayLike = 0.0
    y: jax.typing.ArrayLike = 0.0
    vx: jax.typing.ArrayLike = 0.0
    vy: jax.typing.ArrayLike = 0.0
    vz: jax.typing.ArrayLike = 0.0


# ----------------------------------------------------------------------------- tables


class DFTables(eqx.Module):
    """Everything the densities need from one model, tabulated once (a pytree).

    Built by :func:`df_tables`; every density function accepts it in place of the model,
    which saves rebuilding the tables when several densities of one model are evaluated.
    """

    rt: jax.Array
    r0: jax.Array
    r_c: jax.Array  # radial table coordinate eta = asinh(r / r_c)
    eta_step: jax.Array
    W: jax.Array  # (N_R,) dimensionless potential, decreasing, W[-1] = 0
    dW: jax.Array  # (N_R,) dW / d(index)
    q: jax.Array  # (N_R,) log(rho / (M W^(g + 3/2)))  [length^-3]
    dq: jax.Array
    x_step: jax.Array
    logF: jax.Array  # (4, N_X) log F_h(x) for h = g, g + 1/2, g + 1, g + 3/2
    dlogF: jax.Array  # (4, N_X) d log F_h / d(index)
    Fc: jax.Array  # (4, N_X - 1, 4) cubic coefficients of log F_h per cell
    g: jax.Array
    inv_ra2: jax.Array  # 1 / ra^2 (0 for isotropic)
    s: jax.Array  # velocity scale
    log_a_over_m: jax.Array  # log(A / M)
    Wc: jax.Array  # (N_R - 1, 4) cubic coefficients of W per cell (in the fractional index)
    sigma_c: jax.Array | None  # (N_SIGMA - 1, 4) cells, log(Sigma/M) - (g + 2) log(1 - R^2/rt^2)
    vel_c: tuple  # three (N_ETA - 1, N_NU - 1, 16) bicubic cells (k = 0, 1, 2) or None
    isotropic: bool = eqx.field(static=True)


def _is_isotropic(model) -> bool:
    iso = getattr(model, "isotropic", None)
    if isinstance(iso, bool):
        return iso
    ra = model.ra
    if isinstance(ra, jax.core.Tracer):
        return False  # the anisotropic path is exact for ra = inf too
    return bool(np.all(np.isinf(np.asarray(ra))))


def _hermite(y, dy, t):
    """Cubic Hermite interpolation of tables y, dy (slope per index) at fractional index t."""
    n = y.shape[-1]
    t = jnp.clip(t, 0.0, n - 1.0)
    i = jnp.clip(jnp.floor(t), 0, n - 2).astype(jnp.int32)
    u = t - i
    y0, y1, d0, d1 = y[..., i], y[..., i + 1], dy[..., i], dy[..., i + 1]
    u2 = u * u
    u3 = u2 * u
    return ((2 * u3 - 3 * u2 + 1) * y0 + (u3 - 2 * u2 + u) * d0
            + (3 * u2 - 2 * u3) * y1 + (u3 - u2) * d1)


def _spline_slopes(n: int, even_left: bool) -> np.ndarray:
    """Matrix D with s = D f the slopes (per index) of the cubic spline through n uniform values.

    Interior rows: s[i-1] + 4 s[i] + s[i+1] = 3 (f[i+1] - f[i-1]). Right end not-a-knot; left
    end s[0] = 0 (a function even about the first node) or not-a-knot.
    """
    a = np.zeros((n, n))
    b = np.zeros((n, n))
    for i in range(1, n - 1):
        a[i, i - 1:i + 2] = [1.0, 4.0, 1.0]
        b[i, i - 1], b[i, i + 1] = -3.0, 3.0
    if even_left:
        a[0, 0] = 1.0
    else:
        a[0, [0, 2]] = [1.0, -1.0]
        b[0, :3] = [-2.0, 4.0, -2.0]
    a[-1, [-3, -1]] = [1.0, -1.0]
    b[-1, -3:] = [-2.0, 4.0, -2.0]
    return np.linalg.solve(a, b)


def _cells_1d(f, slopes):
    """(n - 1, 4) cubic coefficients per cell in u = t - i from values and slopes per index."""
    f0, f1, s0, s1 = f[:-1], f[1:], slopes[:-1], slopes[1:]
    return jnp.stack([f0, s0, 3.0 * (f1 - f0) - 2.0 * s0 - s1, 2.0 * (f0 - f1) + s0 + s1], -1)


def _eval_1d(cells, t):
    """Piecewise cubic ``cells`` (from :func:`_cells_1d`) at fractional index t (clipped)."""
    n = cells.shape[-2]
    t = jnp.clip(t, 0.0, float(n))
    i = jnp.clip(jnp.floor(t), 0, n - 1).astype(jnp.int32)
    u = t - i
    c = cells[..., i, :]
    return c[..., 0] + u * (c[..., 1] + u * (c[..., 2] + u * c[..., 3]))


# Hermite basis: coefficients of 1, u, u^2, u^3 from (f0, f1, s0, s1).
_HERMITE = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [-3.0, 3.0, -2.0, -1.0],
                     [2.0, -2.0, 1.0, 1.0]])


def _cells_2d(f, d_row, d_col):
    """(n - 1, m - 1, 16) bicubic coefficients per cell: the tensor-product cubic spline
    through the (n, m) values f, with slope matrices d_row (n, n) and d_col (m, m)."""
    fx = jnp.asarray(d_row) @ f
    fy = f @ jnp.asarray(d_col).T
    fxy = jnp.asarray(d_row) @ fy
    # F[i, j] = [[f00, f01, fy00, fy01], [f10, f11, fy10, fy11], [fx00, ...], [fx10, ...]]
    def corners(a):
        return a[:-1, :-1], a[:-1, 1:], a[1:, :-1], a[1:, 1:]

    f00, f01, f10, f11 = corners(f)
    x00, x01, x10, x11 = corners(fx)
    y00, y01, y10, y11 = corners(fy)
    z00, z01, z10, z11 = corners(fxy)
    F = jnp.stack([jnp.stack([f00, f01, y00, y01], -1), jnp.stack([f10, f11, y10, y11], -1),
                   jnp.stack([x00, x01, z00, z01], -1), jnp.stack([x10, x11, z10, z11], -1)],
                  -2)
    m = jnp.asarray(_HERMITE)
    a = jnp.einsum("pi,...ij,qj->...pq", m, F, m)
    return a.reshape(a.shape[:-2] + (16,))


def _eval_2d(cells, t, s):
    """Bicubic ``cells`` (from :func:`_cells_2d`) at fractional indices (t, s) (clipped)."""
    n, m = cells.shape[-3], cells.shape[-2]
    t = jnp.clip(t, 0.0, float(n))
    s = jnp.clip(s, 0.0, float(m))
    i = jnp.clip(jnp.floor(t), 0, n - 1).astype(jnp.int32)
    j = jnp.clip(jnp.floor(s), 0, m - 1).astype(jnp.int32)
    u = t - i
    v = s - j
    # sixteen scalar gathers: on CPU their reverse pass (scatter-add) is several times
    # faster than that of one gathered window of 16
    flat = cells.reshape(cells.shape[:-3] + (-1,))
    base = (i * m + j) * 16
    a = [flat[..., base + k] for k in range(16)]
    pv = [a[4 * p] + v * (a[4 * p + 1] + v * (a[4 * p + 2] + v * a[4 * p + 3])) for p in range(4)]
    return pv[0] + u * (pv[1] + u * (pv[2] + u * pv[3]))


_D_ETA = _spline_slopes(_N_ETA, even_left=True)
_D_NU = _spline_slopes(_N_NU, even_left=True)


def _log_f_series(h, x):
    """log F_h(x) and d log F_h / dx, F_h(x) = sum_n x^n / Gamma(h + n + 1), x >= 0."""
    n = jnp.arange(_N_SERIES, dtype=float)
    lx = jnp.log(jnp.where(x > 0, x, 1e-300))[..., None]
    lg = gammaln(h + n + 1.0)
    log_f = jax.nn.logsumexp(n * lx - lg, axis=-1)
    log_df = jax.nn.logsumexp(jnp.log(n[1:]) + (n[1:] - 1.0) * lx - lg[1:], axis=-1)
    return log_f, jnp.exp(log_df - log_f)


def df_tables(model) -> DFTables:
    """Tabulate everything the densities need for one model (see the module docstring).

    W(r), rho(r) and F_h(x), the projected density Sigma(R) and, for isotropic models, the
    (R, speed) tables of the three velocity marginals. Each density function given a model
    builds only the tables it needs; build them once with this function to evaluate several
    densities of one model.
    """
    return _all_tables(model)


@eqx.filter_jit
def _all_tables(model) -> DFTables:
    return _build_tables(model, sigma=True, vel=(0, 1, 2))


def _build_tables(model, sigma: bool, vel: tuple[int, ...]) -> DFTables:
    """The base tables, plus the Sigma table if ``sigma`` and the isotropic (R, speed) tables
    H_k for k in ``vel`` (their reverse pass is the expensive part: build only those needed)."""
    iso = _is_isotropic(model)
    rt = jnp.asarray(model.rt, float)
    r0 = jnp.asarray(model.r0, float)
    s2 = jnp.asarray(model.s2, float)
    g = jnp.asarray(model.g, float)
    r_c = 0.25 * r0
    eta_max = jnp.arcsinh(rt / r_c)
    eta = jnp.linspace(0.0, 1.0, _N_R) * eta_max
    eta_step = eta_max / (_N_R - 1)
    r = r_c * jnp.sinh(eta[:-1])
    drdeta = r_c * jnp.cosh(eta[:-1])

    def prof(rr):
        p = model.profiles(rr)
        return p.phi, p.rho

    (phi, rho), (dphi, drho) = jax.jvp(prof, (r,), (drdeta * eta_step,))
    W = jnp.append(phi / s2, 0.0)
    dW = jnp.append(dphi / s2, 0.0)
    # slope at rt: continue the last interval's secant-free estimate from the Keplerian form
    # dW/dr = -G M / (rt^2 s2); G from the King radius, r0^2 = 9 s^2 / (4 pi G rho(0)).
    M = jnp.asarray(model.M, float)
    G = 9.0 * s2 / (4.0 * math.pi * rho[0] * r0**2)
    dW = dW.at[-1].set(-G * M / (rt**2 * s2) * r_c * jnp.cosh(eta_max) * eta_step)
    # density as rho = M W^(g + 3/2) exp(q), q smooth up to rt
    k = g + 1.5
    Wi = W[:-1]
    pos = Wi > 0
    Ws = jnp.where(pos, Wi, 1.0)
    q_in = jnp.log(rho / M) - k * jnp.log(Ws)
    dq_in = drho / rho - k * dW[:-1] / Ws
    A = jnp.asarray(model.A, float)
    q_edge = jnp.log(A / M * (2.0 * math.pi * s2) ** 1.5) - gammaln(k + 1.0)
    q = jnp.append(q_in, q_edge)
    # slope at the edge from the last interior point (second-order one-sided estimate)
    dq = jnp.append(dq_in, 2.0 * (q_edge - q_in[-1]) - dq_in[-1])

    x_max = W[0]
    xg = jnp.linspace(0.0, 1.0, _N_X) * x_max
    x_step = x_max / (_N_X - 1)
    hs = g + jnp.array([0.0, 0.5, 1.0, 1.5])
    logF, dlogF = jax.vmap(lambda h: _log_f_series(h, xg))(hs)
    if iso:
        inv_ra2 = jnp.zeros(())
    else:
        ra = jnp.asarray(model.ra, float)
        inv_ra2 = jnp.where(jnp.isinf(ra), 0.0, 1.0 / jnp.where(jnp.isinf(ra), 1.0, ra) ** 2)
    dlogF = dlogF * x_step
    base = DFTables(
        rt=rt, r0=r0, r_c=r_c, eta_step=eta_step, W=W, dW=dW, q=q, dq=dq, x_step=x_step,
        logF=logF, dlogF=dlogF, Fc=jax.vmap(_cells_1d)(logF, dlogF), g=g, inv_ra2=inv_ra2,
        s=jnp.sqrt(s2), log_a_over_m=jnp.log(A / M), Wc=_cells_1d(W, dW),
        sigma_c=None, vel_c=(None, None, None), isotropic=iso,
    )
    # -dW/dr at rt: G M / (rt^2 s^2)
    kappa = G * M / (rt**2 * s2)
    if sigma:
        base = dataclasses.replace(base, sigma_c=_sigma_table(base, kappa, q_edge))
    if iso and vel:
        base = dataclasses.replace(base, vel_c=_vel_tables(base, kappa, vel))
    return base


def _table_radius(tab: DFTables, t):
    """Radius at t in [0, 1] of the Sigma and (R, speed) tables (nodes uniform in t).

    With asinh(R / r_c) = asinh(rt / r_c) (3 t - t^3) / 2: as fine as a
    uniform grid in asinh(R / r_c) at the centre (odd in t, so functions even in R stay even
    in t), and rt - R ~ (1 - t)^2 at the edge, where the tables have terms in (rt - R)^(g +
    5/2) (from rho ~ W^(g + 3/2)) that a cubic resolves only in such a variable.
    """
    return tab.r_c * jnp.sinh(jnp.arcsinh(tab.rt / tab.r_c) * 0.5 * t * (3.0 - t * t))


def _table_index(tab: DFTables, R, n: int):
    """Fractional index of radius R (0 <= R < rt) in a table of n nodes (:func:`_table_radius`)."""
    y = jnp.clip(jnp.arcsinh(R / tab.r_c) / jnp.arcsinh(tab.rt / tab.r_c), 0.0, 1.0)
    # the root in [0, 1] of t^3 - 3 t + 2 y = 0
    return 2.0 * jnp.cos((2.0 * math.pi - jnp.arccos(-y)) / 3.0) * (n - 1)


def _sigma_table(tab: DFTables, kappa, q_edge):
    """Cells of f = log(Sigma(R) / M) - (g + 2) log(1 - R^2 / rt^2) (even in R) on n radii of
    :func:`_table_radius` (_N_SIGMA; _N_SIGMA_ANISO for anisotropic models, whose density
    changes near rt on the small scale where W(r) r^2 / ra^2 ~ 1 when rt >> ra).

    Values by the line-of-sight quadrature of rho, slopes by its forward-mode derivative; at
    the edge, from rho / M -> exp(q_edge) W^(g + 3/2) and W(R) -> kappa (rt - R) as R -> rt,
    and the slope is zero (dR/dt = 0 there).
    """
    n = _N_SIGMA if tab.isotropic else _N_SIGMA_ANISO
    k = tab.g + 2.0

    def node(t):
        R = _table_radius(tab, t)
        return _one_xy_direct(tab, R, jnp.zeros_like(R)) - k * jnp.log1p(-((R / tab.rt) ** 2))

    t = jnp.arange(n - 1) / (n - 1.0)
    f_in, df_in = jax.vmap(lambda t: jax.jvp(node, (t,), (jnp.ones_like(t) / (n - 1),)))(t)
    # Sigma / M -> exp(q_edge) W(R)^(g + 2) sqrt(pi / a) Gamma(g + 5/2) / Gamma(g + 3),
    # a = kappa / (2 rt) the curvature of W along the line of sight at R = rt
    a = 0.5 * kappa / tab.rt
    f_edge = (q_edge + gammaln(tab.g + 2.5) - gammaln(tab.g + 3.0) + 0.5 * jnp.log(math.pi / a)
              + k * jnp.log(0.5 * kappa * tab.rt))
    return _cells_1d(jnp.append(f_in, f_edge), jnp.append(df_in, 0.0))


def _log_h(tab: DFTables, k: int, R, c, n_z=_N_Z):
    """log H_k(R, c) = log int E_{g + k/2}(W(r) - c) dz over the whole line of sight."""
    def integrand(X, Y, z, r, w):
        return 2.0 * _e_h(tab, k, w - c)

    return _line_of_sight(tab, R, jnp.zeros_like(R), c, integrand, n_z)


def _vel_tables(tab: DFTables, kappa, ks):
    """Bicubic cells of L_k(R, e) = log H_k(R, c) - (h + 1/2) log(W(R) - c), h = g + k/2,
    c = e^2 W(R) (e = u / u_esc(R), the observed speed over the escape speed at R), for
    k = 0, 1, 2 (isotropic models).

    Nodes: _N_ETA radii of :func:`_table_radius` (R = rt included) by _N_NU values of e
    uniform on [0, 1]; L is even in both. (In c itself L has structure on the scale of the
    envelope's W, a few per cent of W0, which a grid uniform in c / W(R) resolves poorly.)
    Interior nodes by the line-of-sight quadrature; as W(R) - c -> 0 (the column e = 1 and
    the row R = rt), H_k -> (W(R) - c)^(h + 1/2) sqrt(pi / a) / Gamma(h + 3/2) with
    a = -W'(R) / (2 R) the curvature of W along the line of sight.
    """
    R = _table_radius(tab, jnp.arange(_N_ETA - 1) / (_N_ETA - 1.0))
    w_R, dw_R = jax.jvp(lambda R: _w_at(tab, R), (R,), (jnp.ones_like(R),))
    pos = R > 0
    # at the centre W = W0 - (3/2) (r / r0)^2
    a = jnp.where(pos, -0.5 * dw_R / jnp.where(pos, R, 1.0), 1.5 / tab.r0**2)
    a_t = 0.5 * kappa / tab.rt
    nu = (jnp.arange(_N_NU - 1) / (_N_NU - 1.0)) ** 2
    c = nu[None, :] * w_R[:, None]
    log_delta = jnp.log(w_R)[:, None] + jnp.log1p(-nu)[None, :]
    Rg = jnp.broadcast_to(R[:, None], c.shape).reshape(-1)
    out = [None, None, None]
    for k in ks:
        h = tab.g + 0.5 * k
        log_h = jax.vmap(lambda R, c, k=k: _log_h(tab, k, R, c, _N_Z_TABLE))(Rg, c.reshape(-1))
        f_in = log_h.reshape(c.shape) - (h + 0.5) * log_delta
        edge = -gammaln(h + 1.5) + 0.5 * math.log(math.pi)
        f_col = edge - 0.5 * jnp.log(a)
        f = jnp.concatenate([f_in, f_col[:, None]], axis=1)
        f = jnp.concatenate([f, jnp.full((1, _N_NU), edge - 0.5 * jnp.log(a_t))], axis=0)
        out[k] = _cells_2d(f, _D_ETA, _D_NU)
    return tuple(out)


def _w_at(tab: DFTables, r):
    """Dimensionless potential W at radius r (0 at and beyond rt)."""
    t = jnp.arcsinh(r / tab.r_c) / tab.eta_step
    return jnp.where(r < tab.rt, _eval_1d(tab.Wc, t), 0.0)


def _log_rho_over_m(tab: DFTables, r, w):
    """log(rho / M) at radius r with potential w > 0."""
    t = jnp.arcsinh(r / tab.r_c) / tab.eta_step
    return (tab.g + 1.5) * jnp.log(w) + _hermite(tab.q, tab.dq, t)


def _e_h(tab: DFTables, k: int, x):
    """E_h(x) for h = g + k/2 (k = 0..3); 0 for x <= 0."""
    pos = x > 0
    xs = jnp.where(pos, x, 1.0)
    log_f = _eval_1d(tab.Fc[k], xs / tab.x_step)
    h = tab.g + 0.5 * k
    return jnp.where(pos, jnp.exp(h * jnp.log(xs) + log_f), 0.0)


def _radius_at_potential(tab: DFTables, c):
    """Radius where W(r) = c, for 0 < c < W[0] (Newton on the Hermite table)."""
    n = tab.W.shape[0]
    W = jax.lax.stop_gradient(tab.W)
    dW = jax.lax.stop_gradient(tab.dW)
    cs = jax.lax.stop_gradient(c)
    j = jnp.clip(jnp.searchsorted(-W, -cs), 1, n - 1) - 1
    y0, y1, d0, d1 = W[j], W[j + 1], dW[j], dW[j + 1]
    u = jnp.clip((y0 - cs) / jnp.where(y0 > y1, y0 - y1, 1.0), 0.0, 1.0)

    def value_slope(u, y0, y1, d0, d1):
        u2 = u * u
        u3 = u2 * u
        h = ((2 * u3 - 3 * u2 + 1) * y0 + (u3 - 2 * u2 + u) * d0
             + (3 * u2 - 2 * u3) * y1 + (u3 - u2) * d1)
        dh = (6 * u2 - 6 * u) * (y0 - y1) + (3 * u2 - 4 * u + 1) * d0 + (3 * u2 - 2 * u) * d1
        return h, dh

    for _ in range(5):
        h, dh = value_slope(u, y0, y1, d0, d1)
        u = jnp.clip(u - (h - cs) / jnp.where(dh < 0, dh, -1.0), 0.0, 1.0)
    # final step with gradients: the implicit-function derivative of the root
    h, dh = value_slope(u, tab.W[j], tab.W[j + 1], tab.dW[j], tab.dW[j + 1])
    u = u - (h - c) / jnp.where(dh < 0, dh, -1.0)
    return tab.r_c * jnp.sinh((j + u) * tab.eta_step)


def _safe_sqrt(x):
    pos = x > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


def _los_nodes(tab: DFTables, R, r_e, n_z=_N_Z):
    """Line-of-sight nodes z (>= 0) and weights dz for int_0^{z_e} dz (n_z nodes)."""
    z_e = _safe_sqrt(r_e**2 - R**2)
    a = jnp.sqrt(R**2 + (0.5 * tab.r0) ** 2)
    xi_e = jnp.arcsinh(z_e / a)
    t, wt = _gl01(n_z) if n_z != _N_Z else (_Z_T, _Z_W)
    t = jnp.asarray(t)
    one_minus = 1.0 - t
    xi = xi_e * (1.0 - one_minus**3)
    dxi = 3.0 * xi_e * one_minus**2 * jnp.asarray(wt)
    z = a * jnp.sinh(xi)
    return z, a * jnp.cosh(xi) * dxi


# ----------------------------------------------------------------------------- one star


def _line_of_sight(tab: DFTables, X, Y, c, integrand, n_z=_N_Z):
    """log int_{-z_e}^{z_e} integrand dz for a star at (X, Y) with velocity term c = u^2/2.

    Returns (log value, valid). ``integrand(z, r, w)`` is evaluated at z and -z nodes.
    """
    R = jnp.sqrt(X**2 + Y**2)
    w_R = _w_at(tab, R)
    valid = (R < tab.rt) & (w_R > c) & (c >= 0)
    # safe stand-ins for invalid stars: the centre, at rest
    Xs = jnp.where(valid, X, 0.0)
    Ys = jnp.where(valid, Y, 0.0)
    cs = jnp.where(valid, c, 0.0)
    Rs = jnp.sqrt(Xs**2 + Ys**2 + 1e-300)
    has_c = cs > 0
    r_e = jnp.where(has_c, _radius_at_potential(tab, jnp.where(has_c, cs, 0.5 * tab.W[0])),
                    tab.rt)
    z, dz = _los_nodes(tab, Rs, r_e, n_z)
    r = jnp.sqrt(Rs**2 + z**2)
    w = _w_at(tab, r)
    vals = integrand(Xs, Ys, z, r, w) * dz
    total = jnp.sum(vals)
    pos = total > 0
    log_total = jnp.log(jnp.where(pos, total, 1.0))
    return jnp.where(valid & pos, log_total, -jnp.inf)


def _plus(log_norm, log_los):
    """log_norm + log_los, -inf (with zero gradient for log_norm) where log_los is -inf."""
    ok = log_los > -jnp.inf
    return jnp.where(ok, log_norm + jnp.where(ok, log_los, 0.0), -jnp.inf)


def _one_6d(tab: DFTables, X, Y, z, ux, uy, uz):
    r = _safe_sqrt(X**2 + Y**2 + z**2)  # finite gradient at the centre
    w = _w_at(tab, r)
    u2 = ux**2 + uy**2 + uz**2
    x = w - 0.5 * u2
    valid = (r < tab.rt) & (x > 0)
    rs = jnp.where(valid & (r > 0), r, 1.0)
    xs = jnp.where(valid, x, 1.0)
    log_e = jnp.log(_e_h(tab, 0, xs))
    ur = (ux * X + uy * Y + uz * z) / rs
    j2 = rs**2 * (u2 - ur**2)  # (r |u_t|)^2
    val = tab.log_a_over_m - 0.5 * j2 * tab.inv_ra2 + log_e
    return jnp.where(valid, val, -jnp.inf)


def _one_xy_direct(tab: DFTables, X, Y, n_z=_N_Z):
    """log(Sigma / M) by the line-of-sight quadrature (n_z nodes)."""
    if tab.isotropic:
        def integrand(X, Y, z, r, w):
            pos = w > 0
            ws = jnp.where(pos, w, 1.0)
            return 2.0 * jnp.where(pos, jnp.exp(_log_rho_over_m(tab, r, ws)), 0.0)
    else:
        # rho / M = (A / M) (2 pi s^2)^(3/2) J^0_{g+1/2}(W, p^2) in closed form (moments.py):
        # the ratio rho / W^(g+3/2) varies too fast near rt when rt >> ra to be tabulated.
        log_norm = tab.log_a_over_m + 1.5 * jnp.log(2.0 * math.pi * tab.s**2)

        def integrand(X, Y, z, r, w):
            return 2.0 * jnp.exp(log_norm) * density_integral(w, tab.g, r**2 * tab.inv_ra2)

    return _line_of_sight(tab, X, Y, jnp.zeros_like(X), integrand, n_z)


def _one_xy(tab: DFTables, X, Y):
    """log(Sigma / M) from the Sigma table."""
    R = jnp.sqrt(X**2 + Y**2 + 1e-300)
    valid = R < tab.rt
    Rs = jnp.where(valid, R, 0.0)
    t = _table_index(tab, Rs, tab.sigma_c.shape[0] + 1)
    val = _eval_1d(tab.sigma_c, t) + (tab.g + 2.0) * jnp.log1p(-((Rs / tab.rt) ** 2))
    return jnp.where(valid, val, -jnp.inf)


def _one_vel_table(tab: DFTables, k: int, X, Y, c):
    """log H_k(R, c) (isotropic) from the (R, nu) table; -inf where c >= W(R) or R >= rt."""
    R = jnp.sqrt(X**2 + Y**2 + 1e-300)
    w_R = _w_at(tab, R)
    valid = (R < tab.rt) & (w_R > c) & (c >= 0)
    Rs = jnp.where(valid, R, 0.0)
    cs = jnp.where(valid, c, 0.0)
    ws = jnp.where(valid, w_R, tab.W[0])
    t = _table_index(tab, Rs, _N_ETA)
    val = (_eval_2d(tab.vel_c[k], t, _safe_sqrt(cs / ws) * (_N_NU - 1))
           + (tab.g + 0.5 * k + 0.5) * jnp.log(ws - cs))
    return jnp.where(valid, val, -jnp.inf)


def _aniso_factor(tab, X, Y, z, r, ux, uy, uz):
    """exp(-p^2 u_t^2 / 2) at position (X, Y, z) for velocity u (dimensionless)."""
    rs = jnp.maximum(r, 1e-300)
    ur = (ux * X + uy * Y + uz * z) / rs
    ut2 = jnp.maximum(ux**2 + uy**2 + uz**2 - ur**2, 0.0)
    return jnp.exp(-0.5 * rs**2 * tab.inv_ra2 * ut2)


def _one_v3(tab: DFTables, X, Y, ux, uy, uz):
    c = 0.5 * (ux**2 + uy**2 + uz**2)
    if tab.isotropic:
        return _plus(tab.log_a_over_m, _one_vel_table(tab, 0, X, Y, c))

    def integrand(X, Y, z, r, w):
        e = _e_h(tab, 0, w - c)
        return e * (_aniso_factor(tab, X, Y, z, r, ux, uy, uz)
                    + _aniso_factor(tab, X, Y, -z, r, ux, uy, uz))

    return _plus(tab.log_a_over_m, _line_of_sight(tab, X, Y, c, integrand))


# Endpoint maps for the velocity quadratures (t in [-1, 1] Gauss-Legendre nodes):
# symmetric y = t (3 - t^2) / 2 on [-1, 1]; one-sided y = 1 - (1 - s)^2 on [0, 1], s = (t+1)/2.
_Y_SYM = _V_T * (3.0 - _V_T**2) / 2.0
_DY_SYM = 1.5 * (1.0 - _V_T**2) * _V_W
_S1 = 0.5 * (_V_T + 1.0)
_Y_ONE = 1.0 - (1.0 - _S1) ** 2
_DY_ONE = 2.0 * (1.0 - _S1) * 0.5 * _V_W
_THETA = 2.0 * np.pi * np.arange(_N_THETA) / _N_THETA


def _one_pm(tab: DFTables, X, Y, ux, uy):
    c = 0.5 * (ux**2 + uy**2)
    log_norm = tab.log_a_over_m + jnp.log(tab.s)
    if tab.isotropic:
        return _plus(log_norm + 0.5 * math.log(2.0 * math.pi), _one_vel_table(tab, 1, X, Y, c))
    y = jnp.asarray(_Y_SYM)
    dy = jnp.asarray(_DY_SYM)

    def integrand(X, Y, z, r, w):
        x = jnp.maximum(w - c, 0.0)
        qv = jnp.sqrt(2.0 * x)[..., None]
        uz = qv * y
        e = _e_h(tab, 0, (x[..., None]) * (1.0 - y**2))
        fac = (_aniso_factor(tab, X, Y, z[..., None], r[..., None], ux, uy, uz)
               + _aniso_factor(tab, X, Y, -z[..., None], r[..., None], ux, uy, uz))
        return jnp.sum(e * fac * dy, axis=-1) * qv[..., 0]

    return _plus(log_norm, _line_of_sight(tab, X, Y, c, integrand))


def _one_vlos(tab: DFTables, X, Y, uz):
    c = 0.5 * uz**2
    log_norm = tab.log_a_over_m + 2.0 * jnp.log(tab.s)
    if tab.isotropic:
        return _plus(log_norm + math.log(2.0 * math.pi), _one_vel_table(tab, 2, X, Y, c))
    y = jnp.asarray(_Y_ONE)[:, None]
    dy = jnp.asarray(_DY_ONE)[:, None]
    cos, sin = jnp.asarray(np.cos(_THETA)), jnp.asarray(np.sin(_THETA))
    dth = 2.0 * math.pi / _N_THETA

    def integrand(X, Y, z, r, w):
        x = jnp.maximum(w - c, 0.0)[..., None, None]
        qv = jnp.sqrt(2.0 * x)
        rho_v = qv * y
        ux = rho_v * cos
        uy = rho_v * sin
        e = _e_h(tab, 0, x * (1.0 - y**2))
        zz = z[..., None, None]
        rr = r[..., None, None]
        fac = (_aniso_factor(tab, X, Y, zz, rr, ux, uy, uz)
               + _aniso_factor(tab, X, Y, -zz, rr, ux, uy, uz))
        return jnp.sum(e * fac * rho_v * dy, axis=(-2, -1)) * qv[..., 0, 0] * dth

    return _plus(log_norm, _line_of_sight(tab, X, Y, c, integrand))


# ----------------------------------------------------------------------------- batching


def _batched(fn, tab, arrays, chunk):
    """vmap fn(tab, *scalars) over flat arrays, in checkpointed chunks (bounded memory)."""
    shape = arrays[0].shape
    flat = [a.reshape(-1) for a in arrays]
    n = flat[0].shape[0]
    if n == 0:
        return jnp.zeros(shape)
    vfn = jax.vmap(fn, in_axes=(None,) + (0,) * len(flat))
    if n <= chunk:
        return vfn(tab, *flat).reshape(shape)
    n_chunks = -(-n // chunk)
    pad = n_chunks * chunk - n
    # padding stars copy the first star (a valid, ordinary point); their results are dropped
    padded = [jnp.concatenate([a, jnp.full(pad, a[0], a.dtype)]).reshape(n_chunks, chunk)
              for a in flat]
    body = jax.checkpoint(lambda xs: vfn(tab, *xs))
    out = jax.lax.map(body, padded)
    return out.reshape(-1)[:n].reshape(shape)


# ----------------------------------------------------------------------------- validation


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_stars(names, values):
    arrays = [jnp.asarray(v, float) for v in values]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        desc = ", ".join(f"{n}{tuple(a.shape)}" for n, a in zip(names, arrays, strict=True))
        raise ValueError(f"star coordinates must all have the same shape; got {desc}")
    for name, v in zip(names, values, strict=True):
        if _is_concrete(v):
            arr = np.asarray(v, dtype=float)
            bad = np.flatnonzero(~np.isfinite(arr))
            if bad.size:
                raise ValueError(
                    f"{name} must be finite; got {arr.ravel()[bad[0]]} at index {bad[0]}"
                    f" ({bad.size} bad value(s))"
                )
    return arrays


def _check_centre(centre):
    if centre is None:
        centre = Centre()
    if not isinstance(centre, Centre):
        raise ValueError(f"centre must be a dastro.clusters.df.Centre, got {type(centre)}")
    out = []
    for name, v in zip(Centre._fields, centre, strict=True):
        a = jnp.asarray(v, float)
        if a.shape != ():
            raise ValueError(f"centre.{name} must be a scalar, got shape {a.shape}")
        if _is_concrete(v) and not np.isfinite(float(np.asarray(v))):
            raise ValueError(f"centre.{name} must be finite, got {float(np.asarray(v))}")
        out.append(a)
    return Centre(*out)


def _check_mass(mass):
    if mass is not None:
        raise NotImplementedError(
            "per-star masses (multimass models) are not supported yet; pass mass=None"
        )


def _tables(model_or_tables, sigma: bool = False, vel: int | None = None) -> DFTables:
    """The tables of a model (only those needed), or the given DFTables (checked)."""
    if not isinstance(model_or_tables, DFTables):
        return _build_tables(model_or_tables, sigma, () if vel is None else (vel,))
    tab = model_or_tables
    if (sigma and tab.sigma_c is None) or (
            tab.isotropic and vel is not None and tab.vel_c[vel] is None):
        raise ValueError("these DFTables lack a table this density needs; build them with "
                         "dastro.clusters.df_tables(model)")
    return tab


# ----------------------------------------------------------------------------- public API


@eqx.filter_jit
def _log_density_6d(model, x, y, z, vx, vy, vz, centre):
    tab = _tables(model)
    X, Y = x - centre.x, y - centre.y
    ux, uy, uz = (vx - centre.vx) / tab.s, (vy - centre.vy) / tab.s, (vz - centre.vz) / tab.s
    return _batched(_one_6d, tab, [X, Y, z, ux, uy, uz], _CHUNK)


def log_density_6d(model, x, y, z, vx, vy, vz, *, centre=None, mass=None):
    """log f(x, v) / M: the normalised six-dimensional density [length^-3 velocity^-3].

    Args:
        model: a solved model (``solve(...)``, optionally ``.scale(...)``), an emulator model
            with the same interface, or its :class:`DFTables`.
        x, y, z: positions (sky plane, line of sight), same shape, model length unit.
        vx, vy, vz: velocities (plane of sky, line of sight), model velocity unit.
        centre: :class:`Centre` (default all zero); z is measured from the centre's plane.
        mass: reserved for per-star masses (multimass); must be None.

    Returns:
        Array of the coordinates' shape; -inf where r >= rt or v^2 >= 2 phi(r).
    """
    _check_mass(mass)
    arrays = _check_stars(["x", "y", "z", "vx", "vy", "vz"], [x, y, z, vx, vy, vz])
    return _log_density_6d(model, *arrays, _check_centre(centre))


@eqx.filter_jit
def _log_density_xy(model, x, y, centre):
    tab = _tables(model, sigma=True)
    return _batched(_one_xy, tab, [x - centre.x, y - centre.y], _CHUNK_SIGMA)


def log_density_xy(model, x, y, *, centre=None, mass=None):
    """log(Sigma(R) / M): density of the projected position [length^-2]; -inf for R >= rt."""
    _check_mass(mass)
    arrays = _check_stars(["x", "y"], [x, y])
    return _log_density_xy(model, *arrays, _check_centre(centre))


def log_density_R(model, R, *, mass=None):
    """log(2 pi R Sigma(R) / M): density of the projected radius R >= 0 [length^-1]."""
    _check_mass(mass)
    if _is_concrete(R):
        arr = np.asarray(R, dtype=float)
        bad = np.flatnonzero(~(arr >= 0) | ~np.isfinite(arr))
        if bad.size:
            raise ValueError(
                f"R must be finite and >= 0; got {arr.ravel()[bad[0]]} at index {bad[0]}"
                f" ({bad.size} bad value(s))"
            )
    R = jnp.asarray(R, float)
    pos = R > 0
    log_r = jnp.log(jnp.where(pos, R, 1.0))
    out = _log_density_xy(model, R, jnp.zeros_like(R), Centre(*(jnp.zeros(()),) * 5))
    return jnp.where(pos, math.log(2.0 * math.pi) + log_r + out, -jnp.inf)


@eqx.filter_jit
def _log_density_xy_vlos(model, x, y, vz, centre):
    tab = _tables(model, vel=2)
    uz = (vz - centre.vz) / tab.s
    chunk = _CHUNK if tab.isotropic else _CHUNK_ANISO // 8
    return _batched(_one_vlos, tab, [x - centre.x, y - centre.y, uz], chunk)


def log_density_xy_vlos(model, x, y, vz, *, centre=None, mass=None):
    """Density of projected position and line-of-sight velocity [length^-2 velocity^-1]."""
    _check_mass(mass)
    arrays = _check_stars(["x", "y", "vz"], [x, y, vz])
    return _log_density_xy_vlos(model, *arrays, _check_centre(centre))


@eqx.filter_jit
def _log_density_xy_pm(model, x, y, vx, vy, centre):
    tab = _tables(model, vel=1)
    ux, uy = (vx - centre.vx) / tab.s, (vy - centre.vy) / tab.s
    chunk = _CHUNK if tab.isotropic else _CHUNK_ANISO
    return _batched(_one_pm, tab, [x - centre.x, y - centre.y, ux, uy], chunk)


def log_density_xy_pm(model, x, y, vx, vy, *, centre=None, mass=None):
    """Density of projected position and proper-motion velocities [length^-2 velocity^-2]."""
    _check_mass(mass)
    arrays = _check_stars(["x", "y", "vx", "vy"], [x, y, vx, vy])
    return _log_density_xy_pm(model, *arrays, _check_centre(centre))


@eqx.filter_jit
def _log_density_xy_v3(model, x, y, vx, vy, vz, centre):
    tab = _tables(model, vel=0)
    ux, uy, uz = (vx - centre.vx) / tab.s, (vy - centre.vy) / tab.s, (vz - centre.vz) / tab.s
    return _batched(_one_v3, tab, [x - centre.x, y - centre.y, ux, uy, uz], _CHUNK)


def log_density_xy_v3(model, x, y, vx, vy, vz, *, centre=None, mass=None):
    """Density of projected position and all three velocities [length^-2 velocity^-3]."""
    _check_mass(mass)
    arrays = _check_stars(["x", "y", "vx", "vy", "vz"], [x, y, vx, vy, vz])
    return _log_density_xy_v3(model, *arrays, _check_centre(centre))
