"""numpyro models of star catalogues drawn from lowered-isothermal clusters.

The star-level model (:func:`star_model`) has the cluster parameters

=============  =====================================================  =======================
name           meaning                                                default prior
=============  =====================================================  =======================
W0             central dimensionless potential                        U(0.5, 14)
q              g = q * g_hi(W0), 0 < q < 1 (g_hi = g_max(W0) - 0.05)  U(0, 1)
log10_M        total mass [Msun]                                      U(2, 7)
log10_rh       3D half-mass radius [pc]                               U(-1, 2)
log10_ra       anisotropy radius [r0], FitConfig(anisotropic=True)    U(0, 3)
distance       [kpc], sky catalogues only                             N(mean, sd), given
x0, y0         centre on the sky [data units: pc or arcsec]           N(guess, sd)
vx0, vy0, vz0  centre's motion [km/s, or mas/yr for vx0, vy0 if sky]  N(guess, sd)
f_field        field-star fraction (with contamination)               U(0, 1)
=============  =====================================================  =======================

and deterministic g, M [Msun], rh, rt [pc] (and ra [r0]). The emulator
(:func:`dastro.clusters.emulate`) gives the model at every leapfrog step; it is C1 in (W0, g),
so the posterior is smooth. Anisotropic fits use the anisotropic emulator
(:func:`dastro.clusters.emulator_aniso.emulate_aniso`, also C1; rt to ~1e-4) inside its box:
ra >= ra_min(W0) (sampled as eta_ra, :func:`_edge_log10`; ra_min is about r0 at W0 <~ 2.5 and
350 r0 at W0 = 14) and g = q g_hi(W0, ra), g_hi = g_max(W0, ra) - 0.05
(:func:`dastro.clusters.emulator_aniso.g_hi_aniso`), so every proposal is a finite model.

Per star (latent coordinates, the hierarchical approach):
- z, the line-of-sight position, as z = z_e u(s) with s ~ U(-1, 1) (site ``u_los``),
  z_e = sqrt(r_e^2 - R^2), r_e the radius where the star's observed speed equals the escape
  speed (rt without velocities), and 1 - u^2 = (1 - s^2)^(1/(h+1)) (h = g + k/2, k missing
  velocity components; :func:`_los_edge_map`): the segment of the line of sight where the DF
  is non-zero is mapped onto the real line by numpyro's transform of s, so no proposal ever
  leaves it, and the DF's fall to zero at the segment's ends, (1 - |u|)^h, is absorbed.
  Together with the edge reparameterisation of M and rh (:func:`cluster_scale`), which keeps
  every star bound at its projected radius, the posterior has no hard walls. Skipped when the
  catalogue has z.
- true coordinates, where a component has a non-zero error: non-centred,
  c_true = c_obs - err * eps with eps ~ N(0, 1); the Gaussian measurement density is then
  exactly the prior of eps.
  With a field component, velocities instead get the bounded latents s_vx, s_vy, s_vz
  described under Contamination below.
  With FitConfig(velocity_errors="marginal") the velocity errors are integrated out per
  star instead, by a Gauss-Hermite product rule over the components with errors (fewer
  parameters, more density evaluations; accurate while errors are below about half the
  dispersion); the edges then bind the slowest node of each star.
- unobserved velocity components are integrated out analytically (isotropic models; see
  :mod:`dastro.clusters.df_local`), so each star uses the right marginal density.
The cluster density of a star in data units carries the Jacobians of the sky conversion:
(d * 1 arcsec)^2 for positions and (K_PM d)^k for k observed proper-motion components.

Selection: a completeness function C(R) of projected radius (data units, R from the centre)
and a field-of-view radius R_field enter as C(R_i) p_i / N(theta), N the expected detected
fraction, by Gauss-Legendre quadrature of C(R) 2 pi R Sigma(R) / M. A completeness C(R, m)
that also depends on the apparent magnitude (``FitConfig(completeness_mag=...)``, magnitudes
in ``StarData.mag``) enters conditionally on each star's magnitude: C(R_i, m_i) p_i / N(m_i),
N(m) = int C(R, m) 2 pi R Sigma(R) / M dR. This is exact without a luminosity function
because in a single-mass model a star's magnitude is independent of its position and
velocity; with contamination it assumes the field fraction is the same at every magnitude.
Contamination: p_i = (1 - f) p_cluster + f p_field with p_field uniform over the field of
view and Gaussian in each velocity component (fitted mean and dispersion). The mixture is
exact after the latents are integrated out because field stars give them a normalised
proposal density: U(-1, 1) for u_los, and for velocities with errors the error Gaussian.
With a field component the edge reparameterisation is off (a field star need not be bound),
so a member's escape speed would be a wall inside the posterior. Measured velocity errors
remove it: the true velocities are then latents s_vx, s_vy, s_vz in (-1, 1), mapped into
each star's error window and escape ball (:mod:`dastro.inference.bounded`). The cluster
term is the DF convolved with the errors, smooth on their scale. Exact velocities keep the
walls; see :func:`target_accept`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from dastro.clusters.df_local import log_density_local, radius_at_potential
from dastro.clusters.emulator import _emulate, g_hi, load_table
from dastro.clusters.emulator_aniso import _emulate as _emulate_aniso
from dastro.clusters.emulator_aniso import g_hi_aniso, load_aniso_table, ra_min
from dastro.constants import K_PM
from dastro.inference.bounded import bounded_velocities, window_log_weight
from dastro.inference.bounded import edge_map as _los_edge_map
from dastro.inference.data import StarData
from dastro.inference.fit import DEFAULT_TARGET_ACCEPT

__all__ = ["FitConfig", "Priors", "cluster_scale", "cluster_shape", "initial_values",
           "profile_model", "star_model", "target_accept"]

#: 1 arcsec at 1 kpc, in pc.
ARCSEC_PC_PER_KPC = 1e3 * math.pi / (180.0 * 3600.0)

_N_SELECTION = 96  # Gauss-Legendre nodes of the selection normalisation
_GL_T, _GL_W = np.polynomial.legendre.leggauss(_N_SELECTION)


class Priors(NamedTuple):
    """Priors of the cluster parameters (see the module table).

    Bounds are (low, high) of uniform priors; ``distance`` is (mean, sd) in kpc of a normal
    prior and is required for sky catalogues. Centre priors are normal around a data-based
    guess (median position, mean velocity) with these sds; None picks 0.1 x the spread of the
    data for positions and 1 x the velocity dispersion for velocities.
    """

    W0: tuple[float, float] = (0.5, 14.0)
    log10_M: tuple[float, float] = (2.0, 7.0)
    log10_rh: tuple[float, float] = (-1.0, 2.0)
    distance: tuple[float, float] | None = None
    log10_ra: tuple[float, float] = (0.0, 3.0)
    centre_sd: float | None = None
    centre_velocity_sd: float | None = None


class FitConfig(NamedTuple):
    """What the star-level model includes.

    Attributes:
        priors: :class:`Priors`.
        fit_centre: fit the centre in position and velocity (else it is at 0).
        contamination: add a field-star component with a fitted fraction.
        field_radius: radius of the field of view [data units] around the origin, or None
            (the whole cluster is observed). Needed with contamination.
        completeness: C(R) in [0, 1] of the projected radius from the centre [data units],
            jnp-traceable, or None (complete).
        completeness_mag: C(R, mag) in [0, 1] of the projected radius [data units] and the
            apparent magnitude (``StarData.mag``), jnp-traceable and broadcasting, or None;
            exclusive with ``completeness``. See the module docstring for the likelihood.
        velocity_errors: "latent" (default; a latent true velocity per measured component,
            exact; with a field component mapped into each star's error window and escape
            ball, :mod:`dastro.inference.bounded`) or "marginal" (the Gaussian errors
            integrated out per star by a Gauss-Hermite product rule, no velocity latents;
            exact enough when the errors are below about half the velocity dispersion, see
            the module docstring).
        error_nodes: Gauss-Hermite nodes per velocity component with "marginal" (default 5;
            the cost per star grows as error_nodes ** (components with errors)).
        anisotropic: also fit the anisotropy radius ra (in units of r0; uniform prior on
            log10 ra, ``Priors.log10_ra``) with the anisotropic emulator, whose box is
            ra >= ra_min(W0) and g <= g_max(W0, ra) - 0.05. Every star
            needs all three velocity components (the closed-form marginals over missing
            components hold for isotropic models only). Models with g >= g_max(W0, ra) get
            zero posterior density.
    """

    priors: Priors = Priors()
    fit_centre: bool = True
    contamination: bool = False
    field_radius: float | None = None
    completeness: Callable | None = None
    velocity_errors: str = "latent"
    error_nodes: int = 5
    completeness_mag: Callable | None = None
    anisotropic: bool = False


def _guess(data: StarData):
    """Data-based centre guesses and spreads (outside jit, numpy)."""
    out = {"x0": np.median(data.x), "y0": np.median(data.y)}
    spread = max(np.std(data.x), np.std(data.y), 1e-12)
    out["pos_sd"] = 0.1 * spread
    disp = []
    for c in ("vx", "vy", "vz"):
        has = np.asarray(getattr(data, "has_" + c))
        vals = np.asarray(getattr(data, c))[has]
        out[c + "0"] = float(np.mean(vals)) if vals.size else 0.0
        out[c + "_sd"] = float(np.std(vals)) if vals.size > 1 else 1.0
        disp.append(out[c + "_sd"])
    out["R_spread"] = spread
    return out


def _check_config(data: StarData, config: FitConfig):
    if data.sky and config.priors.distance is None:
        raise ValueError("a sky catalogue needs a distance prior: Priors(distance=(mean, sd)) "
                         "in kpc")
    if config.contamination and config.field_radius is None:
        raise ValueError("contamination needs the field of view: FitConfig(field_radius=...)")
    if config.anisotropic:
        missing = np.flatnonzero(~(np.asarray(data.has_vx) & np.asarray(data.has_vy)
                                   & np.asarray(data.has_vz)))
        if missing.size:
            raise ValueError(f"anisotropic fits need all three velocity components for every "
                             f"star; {missing.size} stars lack some: rows "
                             f"{missing[:10].tolist()}")
    if config.completeness_mag is not None:
        if config.completeness is not None:
            raise ValueError("give completeness (a function of R) or completeness_mag (of R "
                             "and mag), not both")
        if data.mag is None:
            raise ValueError("completeness_mag needs the stars' magnitudes: "
                             "StarData.from_arrays(..., mag=...)")
    if config.velocity_errors not in ("latent", "marginal"):
        raise ValueError(f"velocity_errors must be 'latent' or 'marginal', got "
                         f"{config.velocity_errors!r}")
    if config.velocity_errors == "marginal" and not 1 <= config.error_nodes <= 20:
        raise ValueError(f"error_nodes = {config.error_nodes}: use 1 to 20 Gauss-Hermite nodes "
                         "per velocity component")
    if config.field_radius is not None:
        R = np.hypot(data.x, data.y)
        out = np.flatnonzero(R > config.field_radius)
        if out.size:
            raise ValueError(f"{out.size} stars lie outside field_radius = "
                             f"{config.field_radius:g}: rows {out[:10].tolist()}")


def cluster_shape(config: FitConfig, data: StarData):
    """Sample W0, g, the distance and the centre; returns (model-unit model, dict of values)."""
    pr = config.priors
    W0 = numpyro.sample("W0", dist.Uniform(*pr.W0))
    q = numpyro.sample("q", dist.Uniform(0.0, 1.0))
    values = {"W0": W0}
    if data.sky:
        values["distance"] = numpyro.sample("distance", dist.TruncatedNormal(
            pr.distance[0], pr.distance[1], low=0.0))
    guess = _guess(data)
    pos_sd = pr.centre_sd if pr.centre_sd is not None else guess["pos_sd"]
    for name in ("x0", "y0", "vx0", "vy0", "vz0"):
        if config.fit_centre:
            if name in ("x0", "y0"):
                sd = pos_sd
            else:
                sd = (pr.centre_velocity_sd if pr.centre_velocity_sd is not None
                      else guess[name[:2] + "_sd"])
            values[name] = numpyro.sample(name, dist.Normal(guess[name], sd))
        else:
            values[name] = jnp.zeros(())
    if not config.anisotropic:
        values["g"] = numpyro.deterministic("g", q * g_hi(W0))
        return _emulate(load_table(), W0, values["g"]).gridded(), values
    # ra >= ra_min(W0) and g < g_max(W0, ra) - 0.05 (the box of the anisotropic g_max table):
    # every proposal is a model of the anisotropic emulator's box, and neither edge is a wall
    # (see _edge_log10). Models past g_max are infinite (NaN outputs and gradients).
    log10_ra = _edge_log10("log10_ra", jnp.log(ra_min(W0)), pr.log10_ra)
    values["ra"] = numpyro.deterministic("ra", 10.0**log10_ra)
    values["g"] = numpyro.deterministic("g", q * g_hi_aniso(W0, values["ra"]))
    model = _emulate_aniso(load_aniso_table(), W0, values["g"], values["ra"])
    numpyro.factor("finite_model", jnp.where(model.valid, 0.0, -jnp.inf))  # a safeguard
    return model, values


def _edge_interval(ln_edge, bounds):
    """(lo, hi) in ln x: lo = max(ln_edge, ln 10^low), hi = ln 10^high; arrays or floats."""
    return jnp.maximum(ln_edge, bounds[0] * math.log(10.0)), bounds[1] * math.log(10.0)


def _edge_ln(eta, ln_edge, bounds):
    """ln x = lo + (hi - lo) sigmoid(eta) and its log Jacobian log |d ln x / d eta| (-inf
    where the interval is empty)."""
    lo, hi = _edge_interval(ln_edge, bounds)
    ok = hi > lo
    width = jnp.where(ok, hi - lo, 1.0)
    log_jac = jnp.log(width) + jax.nn.log_sigmoid(eta) + jax.nn.log_sigmoid(-eta)
    return lo + width * jax.nn.sigmoid(eta), jnp.where(ok, log_jac, -jnp.inf)


def _edge_log10(name, ln_edge, bounds):
    """ln x = lo + (hi - lo) sigmoid(eta), lo = max(ln_edge, ln 10^low), hi = ln 10^high.

    The uniform prior of log10 x on ``bounds`` = (low, high), restricted to x > exp(ln_edge),
    mapped onto the real line of ``eta_<name>`` (sampled) with its Jacobian: no wall at either
    end. Near the data's edge ln x - lo ~ (hi - lo) exp(eta), so eta behaves like a log
    distance to the edge. Where the edge lies above the prior (lo >= hi) the density is zero.
    Returns the deterministic site log10 x.
    """
    eta = numpyro.sample("eta_" + name.removeprefix("log10_"),
                         dist.ImproperUniform(dist.constraints.real, (), ()))
    ln_x, log_jac = _edge_ln(eta, ln_edge, bounds)
    numpyro.factor(name + "_jacobian", log_jac)
    return numpyro.deterministic(name, ln_x / math.log(10.0))


def _edge_eta(ln_value, ln_edge, bounds, margin):
    """Inverse of :func:`_edge_ln` for a start: eta of ln_value (a float), kept at least
    ``margin`` (ln units, at most half the allowed range) above the edge."""
    lo, hi = (float(v) for v in _edge_interval(ln_edge, bounds))
    width = hi - lo
    if width <= 0:
        return 0.0
    frac = max(ln_value - lo, min(margin, 0.5 * width)) / width
    frac = min(max(frac, 1e-3), 1.0 - 1e-3)
    return math.log(frac / (1.0 - frac))


def cluster_scale(config: FitConfig, shape_model, r_star=None, v2_star=None):
    """Sample the mass and half-mass radius; returns (model in Msun, pc, km/s, W at r_star).

    With r_star (radii [pc] that must lie inside rt: 3D radii when known, else projected) and
    v2_star (squared observed speeds [km^2/s^2] that must stay below the escape speed there),
    the hard edges of the likelihood are mapped to infinity (edge reparameterisation,
    :func:`_edge_log10`):

        ln rh in (max(ln rh_min(W0, g), low), high),  rh_min: rt = max r_star,
        ln M in (max(ln M_min(W0, g, rh), low), high),  M_min: every star bound, v^2 < 2 phi,

    each through a sigmoid of eta_rh, eta_M, with the uniform priors on log10 rh and log10 M
    (``config.priors``) kept by the Jacobians. Without this, the likelihood falls to zero
    within a few posterior sds of its peak (each star's density goes like (2 phi - v^2)^g),
    and NUTS trajectories that cross it, or a prior bound, diverge.
    """
    pr = config.priors
    if r_star is None:
        log10_M = numpyro.sample("log10_M", dist.Uniform(*pr.log10_M))
        log10_rh = numpyro.sample("log10_rh", dist.Uniform(*pr.log10_rh))
    else:
        ln_rh_min = jnp.log(jnp.max(r_star)) + jnp.log(shape_model.rh / shape_model.rt)
        log10_rh = _edge_log10("log10_rh", ln_rh_min, pr.log10_rh)
        unit_mass = shape_model.scale(1.0, rh=10.0**log10_rh)
        w_star, _ = shape_model._state(r_star / unit_mass.length_unit)
        phi = w_star * unit_mass.s2  # proportional to M at fixed rh
        ratio = jnp.where(phi > 0, v2_star / (2.0 * jnp.where(phi > 0, phi, 1.0)), 0.0)
        log10_M = _edge_log10("log10_M", jnp.log(jnp.max(ratio)), pr.log10_M)
    M = numpyro.deterministic("M", 10.0**log10_M)
    rh = numpyro.deterministic("rh", 10.0**log10_rh)
    model = shape_model.scale(M, rh=rh)
    numpyro.deterministic("rt", model.rt)
    return model, (None if r_star is None else w_star)


def _hermite_rule(n_nodes: int):
    """Probabilists' Gauss-Hermite rule: int g(a) N(a; 0, 1) da = sum_k w_k g(a_k)."""
    a, w = np.polynomial.hermite_e.hermegauss(n_nodes)
    return a, w / math.sqrt(2.0 * math.pi)


def _err(data: StarData, name: str) -> np.ndarray:
    """Errors of a coordinate (x, y, vx, vy, vz), 0 where it is not observed."""
    err = np.asarray(getattr(data, name + "_err"))
    has = np.asarray(getattr(data, "has_" + name)) if name.startswith("v") else True
    return np.where(has & np.isfinite(err), err, 0.0)


def _log_density_error_marginal(model, data, config, X, Y, Z, velocities, scales, w):
    """log int p(position, v_true) prod_i N(v_obs,i - v_true,i; err_i) dv_true per star.

    The Gaussian velocity errors are integrated out by a product Gauss-Hermite rule over the
    components that have errors anywhere in the catalogue (v_true = v_obs - err * a_k), each
    on an axis of its own after the star axis; components without errors take one node. The
    potential at the star is computed once and shared by all nodes. Exact for densities
    polynomial of degree < 2 error_nodes over the error ellipsoid; the DF varies on the scale
    of the velocity dispersion (and has a kink in slope at the escape speed for g < 1), so the
    rule is accurate while the errors stay below about half the dispersion.
    """
    a, wts = _hermite_rule(config.error_nodes)
    names = ("vx", "vy", "vz")
    errs = [_err(data, c) for c in names]
    noisy = [i for i, e in enumerate(errs) if np.any(e > 0)]
    d = len(noisy)

    def on_axis(values, j):  # (..., K) -> K along node axis j of (n, K or 1, ...)
        shape = [-1] + [1] * d
        shape[1 + j] = len(a)
        return jnp.reshape(values, shape)

    shaped = []
    for i, (v, k) in enumerate(zip(velocities, scales, strict=True)):
        if i in noisy:
            true = v[:, None] - jnp.asarray(errs[i])[:, None] * jnp.asarray(a)
            shaped.append(on_axis(true * k, noisy.index(i)))
        else:
            shaped.append(jnp.reshape(v * k, [-1] + [1] * d))
    log_w = sum((on_axis(jnp.log(jnp.asarray(wts)), j) for j in range(d)), jnp.zeros(()))
    if w is None:
        w, _ = model._state(jnp.sqrt(X**2 + Y**2 + Z**2) / model.length_unit)
    expand = (slice(None),) + (None,) * d
    masks = [np.asarray(getattr(data, "has_" + c))[expand] for c in names]
    log_p = log_density_local(model, X[expand], Y[expand], Z[expand], *shaped, *masks,
                              w=w[expand])
    return jax.scipy.special.logsumexp(log_p + log_w, axis=tuple(range(1, d + 1)))


def _uses_bounded_velocities(data: StarData, config: FitConfig) -> bool:
    """Latent true velocities inside each star's error window and escape ball
    (:mod:`dastro.inference.bounded`): with a field component, latent errors, and some
    velocity error."""
    return (config.contamination and config.velocity_errors == "latent"
            and any(np.any(_err(data, c) > 0) for c in ("vx", "vy", "vz")))


def _bounded_true_velocities(model, data, r2, velocities, scales):
    """Latent true velocities [km/s] ``s_vx``, ``s_vy``, ``s_vz`` (sampled here, U(-1, 1),
    one per star with an error in that component) mapped into each star's error window and
    its escape ball at radius sqrt(r2) [pc]: the projected radius R when z is latent (v_e(R)
    is the largest escape speed along the line of sight), else the 3D radius
    (:func:`dastro.inference.bounded.bounded_velocities`); observed ``velocities`` relative
    to the centre in data units, ``scales`` to km/s. Returns (v_true, log_weight,
    log_field_weight, W at sqrt(r2)); log_field_weight is the field component's proposal
    for the same latents."""
    names = ("vx", "vy", "vz")
    n = data.n
    observed = [np.asarray(getattr(data, "has_" + c)) for c in names]
    errs = [jnp.asarray(_err(data, c)) * k for c, k in zip(names, scales, strict=True)]
    latent = [np.asarray(_err(data, c) > 0) for c in names]
    s = []
    for c, lat in zip(names, latent, strict=True):
        idx = np.flatnonzero(lat)
        if idx.size == 0:
            s.append(jnp.zeros(n))
            continue
        with numpyro.plate(f"stars_s_{c}", idx.size):
            s_c = numpyro.sample(f"s_{c}", dist.Uniform(-1.0, 1.0))
        s.append(jnp.zeros(n).at[idx].set(s_c))
    v_obs = [jnp.where(o, v * k, 0.0) for v, k, o in zip(velocities, scales, observed,
                                                          strict=True)]
    w_ball, _ = model._state(jnp.sqrt(r2) / model.length_unit)
    v_true, log_weight = bounded_velocities(s, v_obs, errs, latent, observed,
                                            2.0 * w_ball * model.s2)
    return v_true, log_weight, window_log_weight(s, latent), w_ball


def _uses_edges(data: StarData, config: FitConfig) -> bool:
    """Edge reparameterisation (see cluster_scale): all stars members, some velocities."""
    return (not config.contamination) and bool(np.any(data.has_vx | data.has_vy | data.has_vz))


def _completeness(config, mag):
    """C as a function of R alone, or None: FitConfig.completeness, or completeness_mag at
    the magnitudes ``mag`` (R and mag broadcast: per star, or stars x quadrature nodes)."""
    if config.completeness_mag is None:
        return config.completeness
    if mag is None:
        raise ValueError("completeness_mag needs the stars' magnitudes (mag)")
    mag = jnp.asarray(mag)
    return lambda R: config.completeness_mag(R, mag)


def _selection_log_norm(model, config, length_scale, f_field, mag=None):
    """log of the expected detected fraction N(theta) (see the module docstring): a scalar,
    or one per star, shape (n,), for a magnitude-dependent completeness (``mag``, (n,))."""
    completeness = _completeness(config, None if mag is None else jnp.asarray(mag)[:, None])
    if completeness is None and config.field_radius is None:
        return jnp.zeros(())
    rt_data = model.rt / length_scale
    r_max = rt_data if config.field_radius is None else jnp.minimum(rt_data,
                                                                    config.field_radius)
    s = 0.5 * (jnp.asarray(_GL_T) + 1.0)
    w = 0.5 * jnp.asarray(_GL_W)
    R = r_max * s**2  # nodes cluster at the centre, where Sigma varies most
    dR = 2.0 * r_max * s * w
    sigma = model.projected(R * length_scale).Sigma / model.M * length_scale**2
    comp = 1.0 if completeness is None else completeness(R)
    n_cluster = jnp.sum(comp * 2.0 * math.pi * R * sigma * dR, axis=-1)
    if not config.contamination:
        return jnp.log(n_cluster)
    f_max = config.field_radius
    s_f = f_max * s**2
    comp_f = 1.0 if completeness is None else completeness(s_f)
    n_field = jnp.sum(comp_f * 2.0 * s_f * (2.0 * s * f_max * w), axis=-1) / f_max**2
    return jnp.log((1.0 - f_field) * n_cluster + f_field * n_field)


def star_model(data: StarData, config: FitConfig = FitConfig(), profiles=()):
    """numpyro model of a star catalogue (see the module docstring). Call via numpyro.

    ``profiles`` (a sequence of :class:`~dastro.inference.data.Profile`) adds binned profiles
    to the same posterior (see :func:`profile_model` for their nuisance parameters).
    """
    _check_config(data, config)
    shape_model, p = cluster_shape(config, data)
    n = data.n
    if data.sky:
        length_scale = p["distance"] * ARCSEC_PC_PER_KPC  # pc per arcsec
        pm_scale = K_PM * p["distance"]  # km/s per mas/yr
    else:
        length_scale = jnp.ones(())
        pm_scale = jnp.ones(())

    def true_values(name, obs):
        """Latent true coordinate (data units) where errors are non-zero."""
        err = _err(data, name)
        if not np.any(err > 0):
            return jnp.asarray(obs)
        idx = np.flatnonzero(err > 0)
        with numpyro.plate(f"stars_{name}", idx.size):
            eps = numpyro.sample(f"eps_{name}", dist.Normal(0.0, 1.0))
        return jnp.asarray(obs).at[idx].add(-jnp.asarray(err[idx]) * eps)

    x = true_values("x", data.x) - p["x0"]
    y = true_values("y", data.y) - p["y0"]
    marginal = config.velocity_errors == "marginal"
    bounded = _uses_bounded_velocities(data, config)
    if marginal or bounded:  # observed velocities; their errors are integrated out below
        vx, vy, vz = (jnp.asarray(getattr(data, c)) - p[c + "0"] for c in ("vx", "vy", "vz"))
    else:
        vx = true_values("vx", data.vx) - p["vx0"]
        vy = true_values("vy", data.vy) - p["vy0"]
        vz = true_values("vz", data.vz) - p["vz0"]
    R_data = jnp.sqrt(x**2 + y**2)
    X, Y = x * length_scale, y * length_scale
    R2 = X**2 + Y**2
    scales = (pm_scale, pm_scale, 1.0)
    comps = [jnp.where(getattr(data, "has_" + c), v, 0.0) * k
             for c, v, k in zip(("vx", "vy", "vz"), (vx, vy, vz), scales, strict=True)]
    if marginal:
        # the speed of the slowest Gauss-Hermite node bounds the edges: that node must be bound
        a_max = float(np.max(_hermite_rule(config.error_nodes)[0]))
        comps = [jnp.sign(c) * jnp.maximum(jnp.abs(c) - a_max * k * _err(data, name), 0.0)
                 for c, k, name in zip(comps, scales, ("vx", "vy", "vz"), strict=True)]
    v2 = comps[0] ** 2 + comps[1] ** 2 + comps[2] ** 2
    if _uses_edges(data, config):
        r_bound = jnp.sqrt(R2 if data.z is None else R2 + jnp.asarray(data.z) ** 2)
        model, w_bound = cluster_scale(config, shape_model, r_bound, v2)
    else:
        model, w_bound = cluster_scale(config, shape_model)
    rt = model.rt
    if bounded:  # true velocities first: the line-of-sight segment is where they are bound
        r2_ball = R2 if data.z is None else R2 + jnp.asarray(data.z) ** 2
        comps, log_weight_v, log_field_v, w_ball = _bounded_true_velocities(
            model, data, r2_ball, (vx, vy, vz), scales)
        v2 = comps[0] ** 2 + comps[1] ** 2 + comps[2] ** 2
    if data.z is None:
        # z = z_e u: z_e bounds the line-of-sight positions where the star is inside rt and
        # bound, W(r_e) = v^2 / (2 s^2), so no proposal leaves the support of the DF.
        r_e = radius_at_potential(model, 0.5 * v2 / model.s2)
        ze2 = jnp.minimum(r_e, rt) ** 2 - R2
        inside = ze2 > 0
        ze = jnp.sqrt(jnp.where(inside, ze2, 1.0))
        with numpyro.plate("stars_z", n):
            s_los = numpyro.sample("u_los", dist.Uniform(-1.0, 1.0))
        n_obs = sum(getattr(data, "has_" + c).astype(float) for c in ("vx", "vy", "vz"))
        u, log_du = _los_edge_map(s_los, shape_model.g + 0.5 * (3.0 - n_obs))
        Z = ze * u
        # dz = z_e du/ds ds; s's density 1/2
        log_jac_z = jnp.where(inside, jnp.log(ze) + log_du, -jnp.inf)
    else:
        Z = jnp.asarray(data.z)
        log_jac_z = jnp.zeros(n)
    n_pm = data.has_vx.astype(float) + data.has_vy.astype(float)
    if bounded:
        # with known z the ball's radius is the star's: W there is already known
        log_p = log_density_local(model, X, Y, Z, *comps, data.has_vx, data.has_vy,
                                  data.has_vz, w=w_ball if data.z is not None else None)
        log_p = log_p + log_weight_v
    elif marginal:
        log_p = _log_density_error_marginal(model, data, config, X, Y, Z, (vx, vy, vz),
                                            scales, w_bound if data.z is not None else None)
    else:
        log_p = log_density_local(model, X, Y, Z, vx * pm_scale, vy * pm_scale, vz,
                                  data.has_vx, data.has_vy, data.has_vz,
                                  w=w_bound if data.z is not None else None)
    # to data units: positions per (data length)^2, proper motions per (data velocity)^k
    log_p = log_p + 2.0 * jnp.log(length_scale) + n_pm * jnp.log(pm_scale)
    if data.z is None:
        log_p = log_p + log_jac_z + math.log(2.0)  # relative to u's U(-1, 1) density 1/2

    if config.contamination:
        f = numpyro.sample("f_field", dist.Uniform(0.0, 1.0))
        guess = _guess(data)
        log_field = jnp.full(n, -math.log(math.pi * config.field_radius**2))
        for c, vel in (("vx", vx + p["vx0"]), ("vy", vy + p["vy0"]), ("vz", vz + p["vz0"])):
            has = getattr(data, "has_" + c)
            if not np.any(has):
                continue
            sd0 = guess[c + "_sd"]
            mu = numpyro.sample(f"field_{c}", dist.Normal(guess[c + "0"], 5.0 * sd0 + 1e-9))
            log_sd = numpyro.sample(f"field_log_sd_{c}", dist.Uniform(
                math.log(0.3 * sd0 + 1e-9), math.log(30.0 * sd0 + 1e-9)))
            sd = jnp.exp(log_sd)
            if marginal or bounded:  # the field Gaussian convolved with the error
                sd = jnp.sqrt(sd**2 + jnp.asarray(_err(data, c)) ** 2)
            log_field = log_field + jnp.where(has, dist.Normal(mu, sd).log_prob(vel), 0.0)
        if bounded:
            log_field = log_field + log_field_v
        log_p = jnp.logaddexp(jnp.log1p(-f) + log_p, jnp.log(f) + log_field)
    else:
        f = jnp.zeros(())

    completeness = _completeness(config, data.mag)
    if completeness is not None:
        log_p = log_p + jnp.log(completeness(R_data))
    log_norm = _selection_log_norm(model, config, length_scale, f, data.mag)
    numpyro.factor("stars", jnp.sum(log_p) - jnp.sum(jnp.broadcast_to(log_norm, (n,))))

    if profiles:
        _profile_terms(model, profiles, p.get("distance"))

    if data.sky and np.any(data.has_parallax):
        has = np.asarray(data.has_parallax)
        numpyro.factor("parallax", jnp.sum(dist.Normal(
            1.0 / p["distance"], jnp.asarray(data.parallax_err[has])).log_prob(
                jnp.asarray(data.parallax[has]))))


def initial_values(data: StarData, config: FitConfig = FitConfig()) -> dict:
    """Starting point for the sampler: a mid-range W0, the data's centre, a virial mass.

    M ~ 2.5 rh <v^2> / G with <v^2> three times the mean one-dimensional dispersion, and
    rh ~ 1.33 x the median projected radius; latent u and eps at 0 (z = 0, true = observed).
    """
    from dastro.constants import G_CLUSTER

    guess = _guess(data)
    R = np.hypot(data.x - guess["x0"], data.y - guess["y0"])
    scale = 1.0
    dist_kpc = None
    if data.sky:
        dist_kpc = config.priors.distance[0]
        scale = dist_kpc * ARCSEC_PC_PER_KPC
    rh = 1.33 * np.median(R) * scale
    disp = []
    for c in ("vx", "vy", "vz"):
        if np.any(getattr(data, "has_" + c)):
            sd = guess[c + "_sd"]
            if data.sky and c != "vz":
                sd = sd * K_PM * dist_kpc
            disp.append(sd)
    sigma2 = np.mean(np.square(disp)) if disp else 25.0
    M = 2.5 * rh * 3.0 * sigma2 / G_CLUSTER
    pr = config.priors
    init = {"W0": 6.0, "q": 0.5}
    if config.anisotropic:
        ln_ra_min = math.log(float(ra_min(init["W0"])))
        init["eta_ra"] = _edge_eta(float(np.mean(pr.log10_ra)) * math.log(10.0), ln_ra_min,
                                   pr.log10_ra, 0.5)
        ra_start = math.exp(float(_edge_ln(init["eta_ra"], ln_ra_min, pr.log10_ra)[0]))
    ln_M = float(np.clip(np.log(M), *(np.array(pr.log10_M) * math.log(10.0) + [1e-3, -1e-3])))
    ln_rh = float(np.clip(np.log(rh), *(np.array(pr.log10_rh) * math.log(10.0)
                                        + [1e-3, -1e-3])))
    if _uses_edges(data, config):
        from dastro.clusters.emulator import emulate

        if config.anisotropic:
            shape = emulate(init["W0"], float(g_hi_aniso(init["W0"], ra_start)) * init["q"],
                            ra_start)
        else:
            shape = emulate(init["W0"], float(g_hi(init["W0"])) * init["q"])
        x = (data.x - guess["x0"]) * scale
        y = (data.y - guess["y0"]) * scale
        r = np.sqrt(x**2 + y**2 + (0.0 if data.z is None else data.z**2))
        pm = K_PM * dist_kpc if data.sky else 1.0
        v2 = ((np.where(data.has_vx, data.vx - guess["vx0"], 0.0) ** 2
               + np.where(data.has_vy, data.vy - guess["vy0"], 0.0) ** 2) * pm**2
              + np.where(data.has_vz, data.vz - guess["vz0"], 0.0) ** 2)
        ln_rh_min = np.log(r.max()) + np.log(float(shape.rh / shape.rt))
        init["eta_rh"] = _edge_eta(ln_rh, ln_rh_min, pr.log10_rh, 0.3)
        rh_start = math.exp(float(_edge_ln(init["eta_rh"], ln_rh_min, pr.log10_rh)[0]))
        phi = np.asarray(shape.scale(1.0, rh=rh_start).potential(r))
        ln_M_min = np.log(np.max(np.where(phi > 0, v2 / (2.0 * np.where(phi > 0, phi, 1.0)),
                                          0.0)))
        init["eta_M"] = _edge_eta(ln_M, ln_M_min, pr.log10_M, 0.2)
    else:
        init["log10_M"] = ln_M / math.log(10.0)
        init["log10_rh"] = ln_rh / math.log(10.0)
    if data.sky:
        init["distance"] = dist_kpc
    if config.fit_centre:
        for name in ("x0", "y0", "vx0", "vy0", "vz0"):
            init[name] = float(guess[name])
    if data.z is None:
        init["u_los"] = np.zeros(data.n)
    # bounded velocity latents at 0 are the observed velocities (clipped into the ball)
    velocity = "s_" if _uses_bounded_velocities(data, config) else "eps_"
    latent = ("x", "y") if config.velocity_errors == "marginal" else ("x", "y", "vx", "vy", "vz")
    for c in latent:
        k = int(np.sum(_err(data, c) > 0))
        if k:
            init[(velocity if c.startswith("v") else "eps_") + c] = np.zeros(k)
    if config.contamination:
        init["f_field"] = 0.1
    return init


def _profile_terms(model, profiles, distance):
    """Add binned profiles to the posterior, with their number normalisations and
    backgrounds: log10 n_norm ~ U(0, 8) [stars] and background ~ U(0, 10 x the lowest
    measured density) per number-density profile."""
    from dastro.inference.profiles import profiles_factor

    norms, backgrounds = [], []
    for i, prof in enumerate(p for p in profiles if p.kind == "number_density"):
        log10_n = numpyro.sample(f"log10_n_norm_{i}", dist.Uniform(0.0, 8.0))
        norms.append(10.0**log10_n)
        low = float(np.min(prof.value))
        backgrounds.append(numpyro.sample(f"background_{i}", dist.Uniform(0.0, 10.0 * low)))
    profiles_factor("profiles", model, profiles, distance_kpc=distance,
                    n_norm=jnp.stack(norms) if norms else None,
                    background=jnp.stack(backgrounds) if backgrounds else None)


def profile_model(profiles, config: FitConfig = FitConfig()):
    """numpyro model of binned profiles only (surface density, dispersions).

    Parameters: W0, q (g), log10_M, log10_rh, the distance for sky profiles (prior from
    ``config.priors.distance``), and per number-density profile log10_n_norm_i and
    background_i (see :func:`_profile_terms`).
    """
    pr = config.priors
    sky = any(p.sky for p in profiles)
    if sky and pr.distance is None:
        raise ValueError("sky profiles need a distance prior: Priors(distance=(mean, sd)) [kpc]")
    W0 = numpyro.sample("W0", dist.Uniform(*pr.W0))
    q = numpyro.sample("q", dist.Uniform(0.0, 1.0))
    g = numpyro.deterministic("g", q * g_hi(W0))
    distance = (numpyro.sample("distance", dist.TruncatedNormal(
        pr.distance[0], pr.distance[1], low=0.0)) if sky else None)
    model, _ = cluster_scale(config, _emulate(load_table(), W0, g))
    _profile_terms(model, profiles, distance)


def cluster_sites(data: StarData, config: FitConfig = FitConfig()) -> tuple[str, ...]:
    """Names of the cluster-level sample sites of :func:`star_model` (for a dense mass block)."""
    names = ["W0", "q"] + (["eta_ra"] if config.anisotropic else [])
    names += ["eta_rh", "eta_M"] if _uses_edges(data, config) else ["log10_M", "log10_rh"]
    if data.sky:
        names.append("distance")
    if config.fit_centre:
        names += ["x0", "y0", "vx0", "vy0", "vz0"]
    if config.contamination:
        names.append("f_field")
    return tuple(names)


#: NUTS target acceptance probability of fits with a field-star component (:func:`target_accept`).
TARGET_ACCEPT_CONTAMINATION = 0.95


def target_accept(config: FitConfig = FitConfig()) -> float:
    """NUTS target acceptance probability for :func:`star_model` with this config: numpyro's
    0.8, or 0.95 with a field-star component. With contamination and exact velocities a
    member's escape edge is a wall inside the posterior (the star turns field; its cluster
    density vanishes like delta^(g + 1/2) there), which no reparameterisation moves to
    infinity, and a step size adapted to the bulk crosses it with large energy errors
    (docs/inference.md). Measured 2026-12-06: the full-size contamination test (500
    candidates, 4 x (500 + 500)) passed in 301 s (1347 s at 0.8, an earlier run); the small
    one (250 candidates, 2 x (200 + 200)) had 29.5 % divergent transitions at 0.8 and at 0.95
    5.5 % and 0.25 % (seeds 11 and 12, the test suite's XLA settings) but 39 % (seed 11,
    XLA's default optimisation): it helps, it does not cure the small fit. Velocity errors
    remove the walls (the latents of :mod:`dastro.inference.bounded`): the same small fit
    with errors of 0.5, 0.5, 1 km/s had 0.25 % divergent transitions at 0.95 (2026-12-06)."""
    return TARGET_ACCEPT_CONTAMINATION if config.contamination else DEFAULT_TARGET_ACCEPT
