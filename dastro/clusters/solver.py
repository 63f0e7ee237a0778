"""Exact, differentiable lowered-isothermal (LIMEPY-family) cluster models.

The models of Gieles & Zocchi (2015, MNRAS 454, 576; "GZ15"), with DF

    f(E, J) = A exp(-J^2 / (2 ra^2 s^2)) E_g(-(E - phi(rt)) / s^2),

are found by integrating Poisson's equation for the dimensionless potential
W = (phi(rt) - phi) / s^2 from W(0) = W0 outward to the truncation radius rt, where W = 0.

Model units are those of astro-limepy, so results compare one to one: G = 9 / (4 pi), the
King radius r0 = 1, the central density rho0 = 1 and s = 1 (so that r0^2 = 9 s^2 / (4 pi G
rho0)). ``ClusterModel.scale`` converts a model to physical units (Msun, pc, km/s) from a
total mass and one radius.

Numerics. The independent variable is t = ln(r / r0), which resolves both the core of
high-W0 models and the extended envelopes of models near the largest finite g. The state is
(W, ln(G M(<r)), and three energy integrals); the second component keeps the relative
accuracy of the enclosed mass near the centre, where it falls as r^3. The ODE is integrated by
diffrax (Dopri8, relative tolerance 1e-11 by default) from r = 1e-6 r0 (series start) until a
diffrax event locates W = 0; the event time is the truncation radius, and its derivatives
follow from the root find's implicit-function adjoint. Profiles at arbitrary radii come from
the solver's 8th-order dense output; projected profiles from tanh-sinh quadrature (quadax)
along the line of sight.

Every function here is a pure function of arrays: it works under ``jax.jit``, ``jax.vmap``
(a batch of models in one call) and ``jax.grad`` with respect to W0, g and ra.
"""

from __future__ import annotations

import abc
import functools
import math
from pathlib import Path
from typing import ClassVar, NamedTuple

import diffrax
import equinox as eqx
import interpax
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import quadax

from dastro.clusters.moments import density_integral, second_moment_integrals
from dastro.clusters.uniform_grid import cubic_hermite
from dastro.constants import G_CLUSTER

#: Gravitational constant in model units (astro-limepy's convention; rho0 = r0 = s = 1).
G_MODEL = 9.0 / (4.0 * math.pi)
#: Radius [r0] where the integration starts from the central series expansion.
_X_START = 1e-6
#: Largest truncation radius [r0] searched for. A model whose W does not reach 0 inside
#: this radius is reported as infinite (its g is at or above g_max(W0, ra)).
X_MAX = 1e10
_MAX_STEPS = 1024
#: Outside jit, anisotropic models with rt above this [r0] are checked against g_max(W0, ra).
_RT_CHECK = 1e4
#: Bounds of the model family handled here.
W0_MAX = 30.0
G_UPPER = 3.5  # polytropic limit: no finite models for g >= 3.5 (GZ15, Sect. 2.2)


class Profiles(NamedTuple):
    """Intrinsic profiles at radii r, in the model's current units.

    phi is the depth of the potential below its value at rt, phi(rt) - phi(r) = W s^2 (positive
    inside rt, the Keplerian continuation -G M (1/r - 1/rt) outside). v2 = v2r + v2t are
    mean-square speeds (v2t sums both tangential components); beta = 1 - v2t / (2 v2r).
    Outside rt, rho, v2, v2r, v2t and beta are 0 and mc is the total mass.
    """

    phi: jax.Array
    rho: jax.Array
    mc: jax.Array
    v2: jax.Array
    v2r: jax.Array
    v2t: jax.Array
    beta: jax.Array


class Projected(NamedTuple):
    """Projected profiles at projected radii R, in the model's current units.

    Sigma is the surface mass density; v2p the line-of-sight mean-square velocity; v2R and v2T
    the plane-of-sky radial and tangential mean-square velocities. Zero for R >= rt.
    """

    Sigma: jax.Array
    v2p: jax.Array
    v2R: jax.Array
    v2T: jax.Array


# ----------------------------------------------------------------------------- validation


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_scalar(name: str, value, *, lower: float, upper: float = math.inf,
                  lower_open: bool = True, upper_open: bool = False, allow_inf: bool = False,
                  what: str = "") -> None:
    """Raise a ValueError naming `name` and its valid range if a concrete `value` is outside."""
    if not _is_concrete(value):
        return
    arr = np.asarray(value)
    if arr.shape != ():
        raise ValueError(
            f"{name} must be a scalar, got an array of shape {arr.shape}; "
            "use dastro.clusters.solve_batch or jax.vmap for a batch of models"
        )
    v = float(arr)
    left = "(" if lower_open else "["
    right = ")" if upper_open or math.isinf(upper) else "]"
    valid = f"{name} must be in {left}{lower:g}, {upper:g}{right}{what}"
    if math.isnan(v):
        raise ValueError(f"{name} is NaN; {valid}")
    if math.isinf(v) and not (allow_inf and v > 0):
        raise ValueError(f"{name} = {v}; {valid}")
    below = v <= lower if lower_open else v < lower
    above = v >= upper if upper_open else v > upper
    if below or above:
        raise ValueError(f"{name} = {v:g} is out of range; {valid}")


def _check_parameters(W0, g, ra) -> None:
    _check_scalar("W0", W0, lower=0.0, upper=W0_MAX, what=" (dimensionless central potential)")
    _check_scalar("g", g, lower=0.0, upper=G_UPPER, lower_open=False, upper_open=True,
                  what=" (truncation parameter; finite models need g < g_max(W0, ra))")
    if ra is not None:
        _check_scalar("ra", ra, lower=0.0, upper=math.inf, allow_inf=True,
                      what=" (anisotropy radius in units of r0; None or inf for isotropic)")


# ----------------------------------------------------------------------------- the ODE


class _Args(NamedTuple):
    g: jax.Array
    ra: jax.Array | None
    rho0: jax.Array


def _local_moments(w, x, args: _Args):
    """rho, rho v2r, rho v2t (model units, rho0 = 1) at potential w and radius x."""
    p2 = None if args.ra is None else (x / args.ra) ** 2
    rho = density_integral(w, args.g, p2) / args.rho0
    rv2r, rv2t = second_moment_integrals(w, args.g, p2)
    return rho, rv2r / args.rho0, rv2t / args.rho0


def _vector_field(t, y, args: _Args):
    w, ln_gm = y[0], y[1]
    x = jnp.exp(t)
    rho, rv2r, rv2t = _local_moments(w, x, args)
    gm = jnp.exp(ln_gm)
    x3 = x**3
    two_pi_x3 = 2.0 * math.pi * x3
    return jnp.stack([
        -gm / x,  # dW/dlnr = -G M / r  (GZ15 eq. 19 in ln r)
        9.0 * x3 * rho / gm,  # d ln(GM)/dlnr = 4 pi G r^3 rho / (G M) with G = 9/(4 pi)
        -two_pi_x3 * rho * w,  # d/dlnr of (1/2) int rho W dV  (potential energy part)
        two_pi_x3 * (rv2r + rv2t),  # d/dlnr of K = (1/2) int rho v^2 dV
        two_pi_x3 * rv2r,  # d/dlnr of K_r
    ])


def _edge_event(t, y, args, **kwargs):
    return y[0]


def _integrate(W0, args: _Args, rtol: float, atol: float):
    t0 = math.log(_X_START)
    x0 = _X_START
    # Central series: W = W0 - 3/2 x^2 + O(x^4), G M = 3 x^3 + O(x^5) (rho(0) = 1).
    y0 = jnp.stack([
        W0 - 1.5 * x0**2 + 0.0 * W0,
        jnp.log(3.0) + 3.0 * t0 + 0.0 * W0,
        0.0 * W0, 0.0 * W0, 0.0 * W0,
    ])
    event = diffrax.Event(_edge_event, root_finder=optx.Newton(rtol=1e-14, atol=1e-14))
    return diffrax.diffeqsolve(
        diffrax.ODETerm(_vector_field),
        diffrax.Dopri8(),
        t0=t0,
        t1=math.log(X_MAX),
        dt0=0.05,
        y0=y0,
        args=args,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        saveat=diffrax.SaveAt(t1=True, dense=True),
        event=event,
        max_steps=_MAX_STEPS,
        throw=False,
    )


# ----------------------------------------------------------------------------- the model


class ClusterModel(eqx.Module):
    """A lowered-isothermal model, in model or physical units (abstract).

    Two final subclasses share this interface: :class:`LoweredIsothermal` (the exact ODE
    solution, from :func:`solve`) and the emulator's model (``dastro.clusters.emulator``).
    They differ only in how W(r) and G M(<r) between the inner radius and rt are obtained
    (``_state_between``) and, optionally, in how projections are computed.

    Build with :func:`solve` or ``emulate``; convert units with :meth:`scale`. Radii passed
    to the methods and all outputs are in the model's current units: model units
    (G = 9/(4 pi), r0 = 1, rho0 = 1, s = 1) after ``solve``, or Msun, pc, km/s after ``scale``.

    Scalars: rt, rh, rv, r0, ra (truncation, half-mass, virial, King, anisotropy radii), M,
    U and K (potential and total kinetic energy), Kr (radial kinetic energy), A (DF
    normalisation), s2 (velocity scale s^2), sigma0_2 (central one-dimensional mean-square
    velocity, v2(0) / 3), and ``valid`` (False when g >= g_max(W0, ra): the model is infinite and
    every output is NaN).
    """

    W0: jax.Array
    g: jax.Array
    ra_model: jax.Array  # anisotropy radius in units of r0; inf for isotropic
    isotropic: bool = eqx.field(static=True)
    valid: jax.Array
    ln_rt: jax.Array
    gm_model: jax.Array  # G M in model units
    U_model: jax.Array
    K_model: jax.Array
    Kr_model: jax.Array
    rh_model: jax.Array
    rho0_integral: jax.Array
    # Unit conversion: physical = model * unit.
    length_unit: jax.Array
    mass_unit: jax.Array
    G: jax.Array

    # --- units ---------------------------------------------------------------------------
    @property
    def velocity2_unit(self):
        """(velocity unit)^2 = G_phys M_unit / (G_model L_unit): s^2 in the current units."""
        return self.G * self.mass_unit / (G_MODEL * self.length_unit)

    def scale(self, M, *, rh=None, rv=None, r0=None, rt=None, G=G_CLUSTER) -> ClusterModel:
        """The same model in physical units: total mass M and exactly one radius given.

        Args:
            M: total mass [Msun] (any positive unit consistent with G).
            rh, rv, r0, rt: one radius [pc]: half-mass, virial, King or truncation radius.
            G: gravitational constant in (km/s)^2 pc / Msun; default CODATA/IAU value
                4.3009e-3. astro-limepy's default is 0.004302 (dastro.constants.G_LIMEPY).
        """
        radii = {"rh": rh, "rv": rv, "r0": r0, "rt": rt}
        given = [k for k, v in radii.items() if v is not None]
        if len(given) != 1:
            raise ValueError(
                f"scale() needs exactly one of rh, rv, r0, rt; got {given or 'none'}"
            )
        kind = given[0]
        _check_scalar("M", M, lower=0.0, what=" [Msun]")
        _check_scalar(kind, radii[kind], lower=0.0, what=" [pc]")
        _check_scalar("G", G, lower=0.0)
        model_radius = {"rh": self.rh_model, "rv": self._rv_model, "r0": 1.0,
                        "rt": jnp.exp(self.ln_rt)}[kind]
        length_unit = jnp.asarray(radii[kind], float) / model_radius
        mass_unit = jnp.asarray(M, float) / (self.gm_model / G_MODEL)
        return eqx.tree_at(
            lambda m: (m.length_unit, m.mass_unit, m.G),
            self,
            (length_unit, mass_unit, jnp.asarray(G, float)),
        )

    # --- scalars -------------------------------------------------------------------------
    @property
    def _rv_model(self):
        return -G_MODEL * (self.gm_model / G_MODEL) ** 2 / (2.0 * self.U_model)

    def _nan_if_invalid(self, x):
        return jnp.where(self.valid, x, jnp.nan)

    @property
    def rt(self):
        """Truncation radius, where W = 0."""
        return self._nan_if_invalid(jnp.exp(self.ln_rt) * self.length_unit)

    @property
    def rh(self):
        """Half-mass radius (3D)."""
        return self._nan_if_invalid(self.rh_model * self.length_unit)

    @property
    def rv(self):
        """Virial radius -G M^2 / (2 U)."""
        return self._nan_if_invalid(self._rv_model * self.length_unit)

    @property
    def r0(self):
        """King radius sqrt(9 s^2 / (4 pi G rho0))."""
        return self.length_unit + 0.0 * self.W0

    @property
    def ra(self):
        """Anisotropy radius (inf for isotropic models), in the length unit."""
        # double where: a plain inf * length_unit sends 0 * inf = NaN back to length_unit
        finite = jnp.isfinite(self.ra_model)
        ra_safe = jnp.where(finite, self.ra_model, 1.0)
        return jnp.where(finite, ra_safe * self.length_unit, jnp.inf)

    @property
    def M(self):
        """Total mass."""
        return self._nan_if_invalid(self.gm_model / G_MODEL * self.mass_unit)

    @property
    def U(self):
        """Potential energy -G int M(r) dM / r (zero potential at infinity)."""
        return self._nan_if_invalid(self.U_model * self.mass_unit * self.velocity2_unit)

    @property
    def K(self):
        """Total kinetic energy."""
        return self._nan_if_invalid(self.K_model * self.mass_unit * self.velocity2_unit)

    @property
    def Kr(self):
        """Kinetic energy in radial motions."""
        return self._nan_if_invalid(self.Kr_model * self.mass_unit * self.velocity2_unit)

    @property
    def s2(self):
        """Velocity scale s^2 of the DF."""
        return self.velocity2_unit + 0.0 * self.W0

    @property
    def A(self):
        """Normalisation A of the DF [mass / (length^3 velocity^3)]."""
        a_model = 1.0 / ((2.0 * math.pi) ** 1.5 * self.rho0_integral)
        return a_model * self.mass_unit / (self.velocity2_unit**1.5 * self.length_unit**3)

    @property
    def sigma0_2(self):
        """Central one-dimensional mean-square velocity, v2(0) / 3."""
        rv2r, _ = second_moment_integrals(self.W0, self.g)
        return rv2r / self.rho0_integral * self.velocity2_unit

    # --- profiles ------------------------------------------------------------------------
    #: Inside this radius [r0] the central series W = W0 - 3/2 r^2, G M = 3 r^3 is used.
    _r_inner: ClassVar[float] = _X_START

    @abc.abstractmethod
    def _state_between(self, t):
        """(W, ln G M) at t = ln(r / r0) in [ln r_inner, ln rt]; t of any shape."""

    def _state(self, x):
        """(W, G M) in model units at model radii x >= 0 (any shape)."""
        x = jnp.asarray(x, float)
        inner = x < self._r_inner
        outer = x >= jnp.exp(self.ln_rt)
        x_safe = jnp.where(inner | outer, 1.0, x)
        t = jnp.clip(jnp.log(x_safe), math.log(self._r_inner), self.ln_rt)
        return self._state_from(x, *self._state_between(t))

    def _state_from(self, x, w_mid, ln_gm_mid):
        """(W, G M) at model radii x, given (W, ln G M) from :meth:`_state_between` at
        ln x for r_inner <= x < rt (any values elsewhere: the central series and the
        Keplerian exterior are used there)."""
        inner = x < self._r_inner
        outer = x >= jnp.exp(self.ln_rt)
        gm_mid = jnp.exp(ln_gm_mid)
        rt = jnp.exp(self.ln_rt)
        w_in = self.W0 - 1.5 * x**2
        gm_in = 3.0 * x**3
        x_out = jnp.where(outer, x, rt)
        w_out = -self.gm_model * (1.0 / rt - 1.0 / x_out)
        w = jnp.where(inner, w_in, jnp.where(outer, w_out, w_mid))
        gm = jnp.where(inner, gm_in, jnp.where(outer, self.gm_model, gm_mid))
        return w, gm

    def _moments_model(self, x, w):
        args = _Args(self.g, None if self.isotropic else self.ra_model, self.rho0_integral)
        return _local_moments(w, x, args)

    def profiles(self, r) -> Profiles:
        """Intrinsic profiles at radii r (array, current length unit; r >= 0)."""
        return _profiles(self, _check_radii("r", r))

    def profiles_and_projected(self, r) -> tuple[Profiles, Projected]:
        """``(profiles(r), projected(r))``: the intrinsic profiles at radii r and the projected
        ones at projected radii R = r (array, current length unit; r >= 0), in one call.
        Emulated models read their radial series once for both (faster than two calls)."""
        return _profiles_and_projected(self, _check_radii("r", r))

    def _profiles_and_projected(self, r) -> tuple[Profiles, Projected]:
        return self._profiles(r), self._projected(r)

    def _profiles(self, r) -> Profiles:
        x = jnp.asarray(r, float) / self.length_unit
        return self._profiles_from_state(x, *self._state(x))

    def _profiles_from_state(self, x, w, gm) -> Profiles:
        """Profiles at model radii x from (W, G M) there (model units)."""
        rho, rv2r, rv2t = self._moments_model(x, w)
        has_mass = rho > 0
        rho_safe = jnp.where(has_mass, rho, 1.0)
        v2r = jnp.where(has_mass, rv2r / rho_safe, 0.0)
        v2t = jnp.where(has_mass, rv2t / rho_safe, 0.0)
        v2r_safe = jnp.where(has_mass, v2r, 1.0)
        beta = jnp.where(has_mass, 1.0 - 0.5 * v2t / v2r_safe, 0.0)
        v2u = self.velocity2_unit
        out = Profiles(
            phi=w * v2u,
            rho=rho * self.mass_unit / self.length_unit**3,
            mc=gm / G_MODEL * self.mass_unit,
            v2=(v2r + v2t) * v2u,
            v2r=v2r * v2u,
            v2t=v2t * v2u,
            beta=beta,
        )
        return jax.tree_util.tree_map(self._nan_if_invalid, out)

    def density(self, r):
        """Mass density at radii r."""
        return self.profiles(r).rho

    def potential(self, r):
        """phi(rt) - phi(r), in velocity^2 units."""
        return self.profiles(r).phi

    def enclosed_mass(self, r):
        """Mass inside radius r."""
        return self.profiles(r).mc

    # --- projection ----------------------------------------------------------------------
    def _projected_model(self, R):
        """Sigma, Sigma v2p, Sigma v2R, Sigma v2T at one model radius R (scalar).

        Line-of-sight integrals int_{-zt}^{zt} q(r) dz with r^2 = R^2 + z^2. Inside the core
        scale (r < max(R, r0)) the integrand is smooth in z; beyond it we integrate in s with
        r = R cosh s, dz = r ds, which is uniform in ln r for r >> R and removes the
        1/sqrt(r - R) of the radial form. Three tanh-sinh panels (quadax): z in [0, z_c] and
        s in two halves of [s_c, s_t]; the double-exponential end clustering also absorbs
        the (rt - r)^(g + 3/2) behaviour at the edge.
        """
        rt = jnp.exp(self.ln_rt)
        inside = R < rt
        R_in = jnp.where(inside, R, 0.5 * rt)
        r_c = jnp.clip(jnp.maximum(R_in, 1.0), None, rt)
        z_c = _safe_sqrt(r_c**2 - R_in**2)
        # Sigma(R) is even in R; 1e-10 rt stands for the centre in the s-panels, which start
        # at r_c >= 1 r0 anyway when R < 1 r0.
        R_s = jnp.maximum(R_in, 1e-10 * rt)
        # arccosh has an infinite slope at 1: keep that point out of the derivative.
        beyond = r_c > R_s
        s_c = jnp.where(beyond, jnp.arccosh(jnp.where(beyond, r_c / R_s, 2.0)), 0.0)
        s_t = jnp.arccosh(rt / R_s)

        def local(r):
            w, _ = self._state(r)
            rho, rv2r, rv2t = self._moments_model(r, w)
            c2 = (R_in / r) ** 2
            return 2.0 * jnp.stack([
                rho,
                rv2r * (1.0 - c2) + 0.5 * rv2t * c2,
                rv2r * c2 + 0.5 * rv2t * (1.0 - c2),
                0.5 * rv2t,
            ])

        def in_z(z):
            return local(jnp.maximum(jnp.sqrt(R_in**2 + z**2), 1e-300))

        def in_s(s):
            r = R_s * jnp.cosh(s)
            return local(r) * r

        s_m = 0.5 * (s_c + s_t)
        value = (_PROJECTION_RULE.integrate(in_z, 0.0, z_c, ())[0]
                 + _PROJECTION_RULE.integrate(in_s, s_c, s_m, ())[0]
                 + _PROJECTION_RULE.integrate(in_s, s_m, s_t, ())[0])
        return jnp.where(inside, value, 0.0)

    def projected(self, R) -> Projected:
        """Projected profiles at projected radii R (array, current length unit; R >= 0)."""
        return _projected(self, _check_radii("R", R))

    def _projected(self, R) -> Projected:
        X = jnp.asarray(R, float) / self.length_unit
        vals = jax.vmap(self._projected_model)(X.ravel()).reshape(X.shape + (4,))
        sigma = vals[..., 0]
        has_mass = sigma > 0
        sigma_safe = jnp.where(has_mass, sigma, 1.0)
        v2u = self.velocity2_unit

        def ratio(i):
            return jnp.where(has_mass, vals[..., i] / sigma_safe, 0.0) * v2u

        out = Projected(
            Sigma=sigma * self.mass_unit / self.length_unit**2,
            v2p=ratio(1),
            v2R=ratio(2),
            v2T=ratio(3),
        )
        return jax.tree_util.tree_map(self._nan_if_invalid, out)

    def _cylinder_mass_model(self, R):
        """Mass within projected radius R (model units, R scalar)."""
        rt = jnp.exp(self.ln_rt)
        R_in = jnp.clip(R, 1e-12 * rt, rt * (1 - 1e-15))
        w, gm = self._state(R_in)
        s_t = jnp.arccosh(rt / R_in)

        def integrand(s):
            # mass at r > R inside the cylinder: 4 pi r^2 rho (1 - sqrt(1 - R^2/r^2)) dr
            r = R_in * jnp.cosh(s)
            w_r, _ = self._state(r)
            rho, _, _ = self._moments_model(r, w_r)
            return 4.0 * math.pi * r**2 * rho * (1.0 - jnp.tanh(s)) * R_in * jnp.sinh(s)

        shell = _integrate_panels(integrand, s_t)
        return gm / G_MODEL + shell

    def projected_half_mass_radius(self):
        """Radius of the cylinder holding half the mass (rhp, about 0.75 rh)."""
        return _rhp(self)

    def _rhp(self):
        half = 0.5 * self.gm_model / G_MODEL

        def fn(ln_R, _):
            return self._cylinder_mass_model(jnp.exp(ln_R)) - half

        sol = optx.root_find(
            fn, optx.Bisection(rtol=1e-13, atol=1e-13, flip=False), jnp.log(self.rh_model),
            options={"lower": math.log(_X_START), "upper": self.ln_rt}, throw=False,
            max_steps=256,
        )
        return self._nan_if_invalid(jnp.exp(sol.value) * self.length_unit)


def _safe_sqrt(x):
    """sqrt(max(x, 0)) with a finite derivative (zero) at and below 0."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


class LoweredIsothermal(ClusterModel):
    """A lowered-isothermal model solved exactly (see :class:`ClusterModel` for the interface).

    ``solution`` is the diffrax solution in t = ln(r / r0), whose 8th-order dense output gives
    W and ln(G M) at any radius.
    """

    solution: diffrax.Solution
    reaches_edge: jax.Array  # W reached 0 inside X_MAX (before the g_max check)

    @property
    def ln_rt_or_inf(self):
        """ln(rt / r0) where the ODE reached W = 0, +inf where it did not."""
        return jnp.where(self.reaches_edge, self.ln_rt, jnp.inf)

    def _state_between(self, t):
        ys = jax.vmap(self.solution.evaluate)(t.ravel()).reshape(t.shape + (5,))
        return ys[..., 0], ys[..., 1]


# jit at the entry points; the lambdas dispatch to the subclass's methods.
_profiles = eqx.filter_jit(lambda model, r: model._profiles(r))
_projected = eqx.filter_jit(lambda model, R: model._projected(R))
_profiles_and_projected = eqx.filter_jit(lambda model, r: model._profiles_and_projected(r))
_rhp = eqx.filter_jit(lambda model: model._rhp())


def _check_radii(name, r):
    """Radii must be >= 0 and not NaN (checked when concrete)."""
    if _is_concrete(r):
        arr = np.asarray(r, dtype=float)
        bad = np.flatnonzero(~(arr >= 0))
        if bad.size:
            raise ValueError(
                f"{name} must be >= 0 and not NaN; got {arr.ravel()[bad[0]]} at index {bad[0]}"
                f" ({bad.size} bad value(s))"
            )
    return jnp.asarray(r, float)


_PROJECTION_RULE = quadax.TanhSinhRule(order=63)


def _integrate_panels(integrand, s_t):
    """int_0^s_t integrand(s) ds by tanh-sinh on two panels."""
    s_m = 0.5 * s_t
    return (_PROJECTION_RULE.integrate(integrand, 0.0, s_m, ())[0]
            + _PROJECTION_RULE.integrate(integrand, s_m, s_t, ())[0])


def _half_mass_radius(solution, gm_total, ln_rt):
    half = jnp.log(0.5 * gm_total)

    def fn(t, _):
        return solution.evaluate(t)[1] - half

    sol = optx.root_find(
        fn, optx.Bisection(rtol=1e-14, atol=1e-14, flip=False), 0.5 * ln_rt,
        options={"lower": math.log(_X_START), "upper": ln_rt}, throw=False, max_steps=256,
    )
    return jnp.exp(sol.value)


@eqx.filter_jit
def _solve(W0, g, ra, rtol, atol) -> LoweredIsothermal:
    W0 = jnp.asarray(W0, float)
    g = jnp.asarray(g, float)
    rho0 = density_integral(W0, g)
    ra_arr = None if ra is None else jnp.asarray(ra, float)
    sol = _integrate(W0, _Args(g, ra_arr, rho0), rtol, atol)
    reaches_edge = sol.event_mask & (sol.result == diffrax.RESULTS.event_occurred)
    valid = reaches_edge
    if ra is None and _g_max_table() is not None:
        # Beyond the first pole of rt(g) W can reach 0 again; those are not family members.
        valid = valid & (g < g_max_isotropic(W0))
    ln_rt = sol.ts[-1]
    y_end = sol.ys[-1]
    gm = jnp.exp(y_end[1])
    rt = jnp.exp(ln_rt)
    # U = (1/2) int rho phi dV with phi = -W - G M / rt (zero at infinity).
    U = y_end[2] - 0.5 * G_MODEL * (gm / G_MODEL) ** 2 / rt
    rh = _half_mass_radius(sol, gm, ln_rt)
    one = jnp.ones_like(W0)
    return LoweredIsothermal(
        W0=W0, g=g, ra_model=jnp.inf * one if ra is None else ra_arr,
        isotropic=ra is None, solution=sol, reaches_edge=reaches_edge, valid=valid,
        ln_rt=ln_rt, gm_model=gm,
        U_model=U, K_model=y_end[3], Kr_model=y_end[4], rh_model=rh, rho0_integral=rho0,
        length_unit=one, mass_unit=one, G=G_MODEL * one,
    )


def solve(W0, g=1.0, ra=None, *, rtol: float = 1e-11, atol: float = 1e-13) -> LoweredIsothermal:
    """Solve one lowered-isothermal model, in model units.

    Args:
        W0: dimensionless central potential, 0 < W0 <= 30.
        g: truncation parameter, 0 <= g < g_max(W0, ra) (0 Woolley, 1 King, 2 Wilson).
        ra: anisotropy radius in units of r0, ra > 0; None (default) for an isotropic model
            (a static choice that skips the anisotropic terms). ``jnp.inf`` is also isotropic
            and lets a vmapped batch mix isotropic and anisotropic models.
        rtol, atol: tolerances of the ODE solve (on W and ln(G M)).

    Returns:
        A :class:`LoweredIsothermal`. Outside jit, a model with g >= g_max (infinite mass or
        extent) raises a ValueError; under jit or vmap it comes back with ``valid`` False and
        NaN outputs. ``solve`` works under ``jax.grad`` (and jvp) directly; there the extra
        anisotropic check against g_max (for models with rt > 1e4 r0) is skipped.

    Raises:
        ValueError: W0, g or ra outside their ranges, NaN, or not scalars.
    """
    _check_parameters(W0, g, ra)
    model = _solve(*_as_arrays(W0, g, ra), rtol, atol)
    if not _is_concrete(model.valid):
        return model
    if not bool(model.valid):
        _raise_invalid(W0, g, ra, model)
    anisotropic = ra is not None and not (_is_concrete(ra) and math.isinf(float(ra)))
    # Under jax.grad (or any trace) the check is skipped: ln_rt and the parameters are tracers.
    concrete = all(_is_concrete(v) for v in (model.ln_rt, W0, g, ra))
    if anisotropic and concrete and float(model.ln_rt) > math.log(_RT_CHECK):
        # Models past the first pole of rt(g) have rt > ~1e5 r0; check those against g_max.
        if float(g) >= g_max(W0, ra):
            _raise_invalid(W0, g, ra, model)
    return model


def _as_arrays(W0, g, ra):
    # Arrays, not Python floats: filter_jit would treat floats as static and recompile.
    return (jnp.asarray(W0, float), jnp.asarray(g, float),
            None if ra is None else jnp.asarray(ra, float))


def _raise_invalid(W0, g, ra, model):
    steps = int(model.solution.stats["num_steps"])
    if steps >= _MAX_STEPS:
        raise RuntimeError(
            f"ODE solver used all {_MAX_STEPS} steps for (W0={W0}, g={g}, ra={ra}); "
            "loosen rtol/atol"
        )
    gm = g_max(W0, ra)
    raise ValueError(
        f"the model (W0={float(W0):g}, g={float(g):g}, ra={ra}) is outside the finite family: "
        f"g must be below g_max(W0, ra) = {gm:.6f}, where rt diverges"
    )


def solve_batch(W0, g, ra=None, *, rtol: float = 1e-11, atol: float = 1e-13):
    """Solve a batch of models in one vectorised call (``jax.vmap`` of :func:`solve`).

    W0, g (and ra, if given) are broadcast against each other. Invalid models (g >= g_max)
    come back flagged (``valid`` False, NaN outputs) rather than raising, so one bad member
    does not stop the batch. Out-of-range or NaN inputs raise a ValueError naming the
    parameter and the first offending index.
    """
    arrays = [np.asarray(W0, float), np.asarray(g, float)]
    if ra is not None:
        arrays.append(np.asarray(ra, float))
    arrays = np.broadcast_arrays(*arrays)
    names = ["W0", "g", "ra"]
    for i in range(arrays[0].size):
        try:
            _check_parameters(*(a.flat[i] for a in arrays), *([None] if ra is None else []))
        except ValueError as err:
            which = ", ".join(names[: len(arrays)])
            raise ValueError(f"batch element {i} ({which}): {err}") from None
    flat = [jnp.asarray(a.ravel()) for a in arrays]
    if ra is None:
        models = jax.vmap(lambda w, gg: _solve(w, gg, None, rtol, atol))(*flat)
    else:
        models = jax.vmap(lambda w, gg, r: _solve(w, gg, r, rtol, atol))(*flat)
    return models


_SCAN_STEP = 0.01
_G_SCAN = np.linspace(0.0, G_UPPER, int(round(G_UPPER / _SCAN_STEP)) + 1)  # G_UPPER included
#: Points of the fine rescan before the first pole (fixed: one compiled scan).
_FINE_SCAN_POINTS = 81


@functools.lru_cache(maxsize=4)
def _scan_solver(isotropic: bool):
    if isotropic:
        return jax.jit(jax.vmap(lambda w, g: _solve(w, g, None, 1e-10, 1e-12).ln_rt_or_inf))
    return jax.jit(jax.vmap(lambda w, g, ra: _solve(w, g, ra, 1e-10, 1e-12).ln_rt_or_inf,
                            in_axes=(None, 0, None)))


def _ln_rt(W0, g, ra):
    """ln(rt / r0) of one model, +inf where W does not reach 0 (outside jit)."""
    return float(_solve(*_as_arrays(W0, g, ra), 1e-10, 1e-12).ln_rt_or_inf)


def _scan_ln_rt(W0: float, g_values: np.ndarray, ra) -> np.ndarray:
    """ln(rt / r0) (inf where W does not reach 0) at fixed (W0, ra) for many g, batched."""
    if ra is None:
        return np.asarray(_scan_solver(True)(jnp.full(g_values.size, W0), jnp.asarray(g_values)))
    return np.asarray(_scan_solver(False)(jnp.asarray(W0), jnp.asarray(g_values),
                                          jnp.asarray(float(ra))))


def _pole_in_scan(W0: float, ra, scan_g: np.ndarray, ln_rt: np.ndarray, tol: float):
    """The first pole of rt(g) seen in a scan: ("bracket", lo, hi) with rt finite at lo and
    infinite at hi, ("peak", g) for a finite maximum of rt above 1e8 r0 (a pole the solver
    cannot resolve), or None. Local maxima of rt below that are bumps and skipped."""
    ln_big = math.log(1e8)
    for i in range(1, scan_g.size):
        if not np.isfinite(ln_rt[i]):
            return "bracket", scan_g[i - 1], scan_g[i]
        peak = i + 1 < scan_g.size and ln_rt[i] > ln_rt[i - 1] and ln_rt[i] >= ln_rt[i + 1]
        if not peak:
            continue
        # Golden-section search for the maximum of ln rt in the bracket around the peak.
        a, b = scan_g[i - 1], scan_g[i + 1]
        invphi = (math.sqrt(5.0) - 1.0) / 2.0
        c, d = b - invphi * (b - a), a + invphi * (b - a)
        fc, fd = _ln_rt(W0, c, ra), _ln_rt(W0, d, ra)
        for _ in range(80):
            if not math.isfinite(fc):
                return "bracket", scan_g[i - 1], c
            if not math.isfinite(fd):
                return "bracket", scan_g[i - 1], d
            if fc > fd:
                b, d, fd = d, c, fc
                c = b - invphi * (b - a)
                fc = _ln_rt(W0, c, ra)
            else:
                a, c, fc = c, d, fd
                d = a + invphi * (b - a)
                fd = _ln_rt(W0, d, ra)
            if b - a < tol:
                break
        if max(fc, fd) > ln_big:
            return "peak", 0.5 * (a + b)
    return None


def find_g_max(W0, ra=None, *, tol: float = 1e-8) -> float:
    """The first g at which rt(g) diverges, for fixed (W0, ra): the edge of the model family.

    rt grows with g and diverges at g_max. Beyond it the ODE can again reach W = 0 (rt(g)
    has further poles, with "islands" of solutions of rt ~ 1e5 - 1e10 r0 between them), but
    those are no longer the continuation of the finite family: astro-limepy reports them
    "converged" at e.g. (W0, g) = (7, 2.5). Found by a scan of rt(g) in steps of 0.01, a
    finer rescan (steps <= 5e-4) of the 0.02 before the first pole it sees (at small W0 the
    poles lie closer than 0.01), a golden-section search for the pole (rt infinite, or a
    local maximum of rt above 1e8 r0), and a bisection of its rising side.
    """
    _check_scalar("W0", W0, lower=0.0, upper=W0_MAX)
    if ra is not None:
        _check_scalar("ra", ra, lower=0.0, allow_inf=True)
    W0 = float(W0)
    coarse = _scan_ln_rt(W0, _G_SCAN, ra)
    if not np.isfinite(coarse[0]):
        return 0.0
    first = _pole_in_scan(W0, ra, _G_SCAN, coarse, tol)
    if first is None:
        return float(G_UPPER)
    # At small W0 the poles crowd together (at W0 = 0.3 the first lies within 0.01 of the
    # second, and the coarse scan stepped over it): rescan the coarse steps before the pole
    # 20 times finer.
    end = float(first[2]) if first[0] == "bracket" else float(first[1]) + _SCAN_STEP
    fine_g = np.linspace(max(float(first[1]) - 2 * _SCAN_STEP, 0.0), end, _FINE_SCAN_POINTS)
    fine = _pole_in_scan(W0, ra, fine_g, _scan_ln_rt(W0, fine_g, ra), tol)
    found = fine if fine is not None else first
    if found[0] == "peak":
        return float(found[1])
    _, lo, hi = found
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if math.isfinite(_ln_rt(W0, mid, ra)):
            lo = mid
        else:
            hi = mid
    return float(lo)


# --- the shipped isotropic g_max(W0) table -----------------------------------------------
G_MAX_TABLE = "g_max_isotropic.npz"
_DATA = Path(__file__).resolve().parents[1] / "data"


@functools.lru_cache(maxsize=1)
def _g_max_table():
    path = _DATA / G_MAX_TABLE
    if not path.is_file():
        return None
    with np.load(path) as data:
        w0_nodes, g_nodes = np.asarray(data["W0"], float), np.asarray(data["g_max"], float)
    # Not-a-knot cubic spline (interpax's knot slopes, computed once), evaluated by
    # uniform_grid. Not a monotone cubic: its slopes are only O(h^2) accurate and it flattens
    # at the minimum near W0 = 7.9, errors of 3e-7 to 6e-5 that wiggle from node to node; the
    # emulator's q = ln(1 - g/g_max) / ln(0.05/g_max) passes them on to ln rt amplified by
    # ~1/(g_max - g). The spline follows find_g_max to ~1e-8 between nodes.
    with jax.ensure_compile_time_eval():  # the first call may come inside a trace
        spline = interpax.CubicSpline(jnp.asarray(w0_nodes), jnp.asarray(g_nodes),
                                      bc_type="not-a-knot")
        slopes = np.asarray(spline(jnp.asarray(w0_nodes), 1))
    return w0_nodes, g_nodes, slopes


def g_max_isotropic(W0) -> jax.Array:
    """g_max(W0) of isotropic models from the shipped table (cubic spline in W0; jit-able).

    Built by scripts/build_g_max_table.py with :func:`find_g_max` (to 1e-8); between nodes the
    not-a-knot spline agrees with find_g_max to ~1e-8 (tested). Below the first node the first
    node's value is used.
    """
    table = _g_max_table()
    if table is None:
        raise FileNotFoundError(
            f"{_DATA / G_MAX_TABLE} is missing; rebuild it with "
            "`python scripts/build_g_max_table.py`"
        )
    w0_nodes, g_nodes, slopes = table
    return cubic_hermite(W0, w0_nodes, g_nodes, slopes)


def g_max(W0, ra=None) -> float:
    """Largest g of the finite model family at (W0, ra) (see :func:`find_g_max`).

    Isotropic models use the shipped table; anisotropic ones are computed (about 2 s; cached).
    """
    if ra is None or (_is_concrete(ra) and math.isinf(float(ra))):
        _check_scalar("W0", W0, lower=0.0, upper=W0_MAX)
        return float(g_max_isotropic(W0))
    return _g_max_cached(float(W0), float(ra))


@functools.lru_cache(maxsize=256)
def _g_max_cached(W0: float, ra: float) -> float:
    return find_g_max(W0, ra)
