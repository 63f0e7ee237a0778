"""LTE spectral synthesis: ``synthesize(atmosphere, linelist, wavelengths) -> (flux, continuum)``.

Pipeline (every step a JAX function, so the spectrum is differentiable with respect to the
atmosphere's T and P_gas per layer, the abundances, the microturbulence and the line data):

1. Equation of state on the model's (T, P_gas) with the chosen abundances
   (:func:`dastro.physics.eos_tp`): electron density and the number densities of H..Zn I-III.
2. Continuum absorption and scattering (:mod:`dastro.physics.continuum`) on a coarse grid
   (``continuum_step``, default 1 A) interpolated linearly in wavelength.
3. Line absorption (:mod:`dastro.rt.line_opacity`) of every supported line, evaluated only within
   its window (below), plus the hydrogen Balmer lines (:mod:`dastro.rt.hydrogen`).
4. Optical depth on the column-mass grid and the formal solution with S = B_lambda(T)
   (:mod:`dastro.rt.transfer`), for the spectrum and for the continuum alone.
   Continuum scattering is treated as absorption (S = B; no coherent-scattering iteration).

Wavelengths: the user grid is in air (``air=True``, the default, like the Gaia-ESO and VALD
lists) or vacuum; internally everything is vacuum (line lists are converted with
:meth:`LineList.to_vacuum`). The output is on the user's grid; F_lambda is per unit vacuum
wavelength, erg s^-1 cm^-2 A^-1, physical surface flux (``pi`` times the astrophysical flux).

Line cut-off (the *plan*, :func:`synthesis_plan`): a line is included at wavelengths where its
absorption can exceed ``line_cutoff`` (default 3e-4) times the continuum absorption in some
layer with tau_Ross < 30; its window half-width is the larger of the Doppler-core and Lorentz-wing
distances at which that happens, plus 3 Doppler widths, rounded up to a pixel count in steps of
sqrt(2) and capped at ``max_window`` (default 25 A). Lines too weak to reach the threshold
anywhere are dropped. The plan is made once from concrete inputs (a reference model) and is a
discrete choice: pass the same plan for finite differences and under ``jax.grad``/``jit``
(a traced call without a plan raises ``ValueError``). Lines of elements beyond Zn and
molecules are skipped (the plan counts them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from dastro.atmospheres.io import ModelAtmosphere
from dastro.physics import continuum as C
from dastro.physics.eos import eos_tp
from dastro.physics.partition import log_partition_functions
from dastro.rt import hydrogen as H
from dastro.rt import transfer as tr
from dastro.rt.line_opacity import LayerState, line_parameters, line_support, planck_lambda
from dastro.rt.lines import LineList, air_to_vacuum
from dastro.rt.voigt import voigt_hjerting

__all__ = ["Spectrum", "SynthesisPlan", "layer_state", "synthesis_plan", "synthesize"]

_SQRT_PI = math.sqrt(math.pi)
_TAU_ROSS_MAX_WINDOW = 30.0


class Spectrum(NamedTuple):
    """``(flux, continuum)`` [erg s^-1 cm^-2 A^-1] on the user grid; unpacks as a 2-tuple."""

    flux: jax.Array
    continuum: jax.Array

    @property
    def normalized(self) -> jax.Array:
        return self.flux / self.continuum


@dataclass(eq=False)
class SynthesisPlan:
    """Static choices of one synthesis: wavelength grids, which lines, their windows.

    Fields: ``lam`` (n,) user grid [A] in ``air`` or vacuum; ``lam_vac`` vacuum grid;
    ``lam_cont`` coarse vacuum grid of the continuum; ``groups``: list of
    ``(half_width_pixels, line_indices, centre_pixels, species, charge)``;
    ``n_skipped_species`` lines of unsupported species, ``n_weak`` lines below the cut-off,
    ``n_lines`` lines included;
    ``balmer``: Balmer upper levels included; settings ``line_cutoff``, ``max_window``.
    """

    lam: np.ndarray
    lam_vac: np.ndarray
    lam_cont: np.ndarray
    air: bool
    groups: list
    n_lines: int
    n_skipped_species: int
    n_weak: int
    balmer: tuple
    line_cutoff: float
    max_window: float
    _fn: object = field(default=None, repr=False)

    @property
    def n_profile_points(self) -> int:
        """Line x pixel evaluations per layer."""
        return int(sum(2 * g[0] * len(g[1]) for g in self.groups))


# ------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------


def _is_traced(*xs) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(xs))


def _check_wavelengths(lam) -> np.ndarray:
    lam = np.asarray(lam, dtype=float)
    if lam.ndim != 1 or lam.size < 2:
        raise ValueError(f"wavelengths must be a 1-d grid of >= 2 points, got shape {lam.shape}")
    if not np.all(np.isfinite(lam)):
        raise ValueError("wavelengths contain NaN or inf")
    if not np.all(np.diff(lam) > 0):
        i = int(np.argmin(np.diff(lam) > 0))
        raise ValueError(f"wavelengths must be strictly increasing (index {i}: {lam[i]} -> "
                         f"{lam[i + 1]})")
    lo, hi = C.LAMBDA_RANGE
    if lam[0] < max(lo, 2000.0) or lam[-1] > hi:
        raise ValueError(f"wavelengths {lam[0]:.6g}-{lam[-1]:.6g} A outside the opacity "
                         f"validity range {max(lo, 2000.0):.6g}-{hi:.6g} A")
    return lam


def _check_atmosphere(atm: ModelAtmosphere) -> None:
    if not isinstance(atm, ModelAtmosphere):
        raise TypeError(f"atmosphere must be a ModelAtmosphere, got {type(atm).__name__}")
    if _is_traced(atm):
        return
    m = np.asarray(atm.column_mass)
    for name in ("column_mass", "T", "P_gas", "rho", "n_e"):
        v = np.asarray(getattr(atm, name), dtype=float)
        bad = ~(np.isfinite(v) & (v > 0))
        if np.any(bad):
            i = int(np.argmax(bad))
            raise ValueError(f"atmosphere.{name}[{i}] = {v[i]}: must be finite and > 0")
    if not np.all(np.diff(m) > 0):
        i = int(np.argmin(np.diff(m) > 0))
        raise ValueError(f"atmosphere.column_mass is not strictly increasing at depth {i} "
                         f"({m[i]} -> {m[i + 1]})")
    v = np.asarray(atm.vmic)
    if not np.all(np.isfinite(v) & (v >= 0)):
        raise ValueError("atmosphere.vmic must be finite and >= 0")


def _eps(atm: ModelAtmosphere, abundances):
    """N_X/N_H for H..Zn from A(X) (30 or 92 values; default the atmosphere's)."""
    a = atm.abundances if abundances is None else jnp.asarray(abundances, dtype=float)
    a = a[:30]
    if jnp.shape(a) != (30,):
        raise ValueError(f"abundances must give A(X) for at least H..Zn (30), got {jnp.shape(a)}")
    a = jnp.where(a < -20, -20.0, a)  # absent elements (MARCS -99): a negligible trace
    return 10.0 ** (a - 12.0)


# ------------------------------------------------------------------------------------------
# physics of the layers
# ------------------------------------------------------------------------------------------


def layer_state(atm: ModelAtmosphere, abundances=None, vmic=None):
    """Equation of state of the model's layers: ``(LayerState, ContinuumState, EOSResult)``.

    Args:
        atm: the model atmosphere (T and P_gas per layer are used; n_e is recomputed).
        abundances: A(X) for H..Zn (30 values; or the model's 92), default the model's.
        vmic: microturbulence [km s^-1] (scalar or per layer), default the model's.
    """
    eps = _eps(atm, abundances)
    eos = eos_tp(atm.T, atm.P_gas, eps)
    cstate = C.continuum_state(atm.T, eos)
    ln_u = jax.vmap(log_partition_functions)(atm.T)
    v = atm.vmic if vmic is None else jnp.broadcast_to(jnp.asarray(vmic) * 1e5, atm.T.shape)
    ls = LayerState(T=atm.T, n_e=eos.n_e, n_hi=eos.n_atoms[:, 0, 0], n_species=eos.n_atoms,
                    ln_u=ln_u, vmic=v)
    return ls, cstate, eos


def _continuum(lam_cont, lam_vac, cstate):
    a_abs, a_scat = C.continuum_opacity(lam_cont, cstate)
    alpha_c = a_abs + a_scat  # (L, n_c)
    return jax.vmap(lambda row: jnp.interp(lam_vac, lam_cont, row))(alpha_c)


def _line_arrays(ll: LineList, idx, sp=None, ch=None):
    """Arrays of the lines ``idx``; species and charge (static ints) from the plan if given."""
    if sp is None:
        sp = np.asarray(ll.species)[idx]
        ch = np.asarray(ll.charge)[idx]
    return dict(
        lam0=ll.wavelength[idx], z_idx=jnp.asarray(sp - 1), c_idx=jnp.asarray(ch),
        log_gf=ll.log_gf[idx], E_lower=ll.E_lower[idx], gamma_rad=ll.gamma_rad[idx],
        gamma_stark=ll.gamma_stark[idx], vdw_mode=ll.vdw_mode[idx], vdw=ll.vdw[idx],
        vdw_alpha=ll.vdw_alpha[idx])


# ------------------------------------------------------------------------------------------
# plan
# ------------------------------------------------------------------------------------------


def synthesis_plan(atmosphere: ModelAtmosphere, linelist: LineList, wavelengths, *,
                   air: bool = True, abundances=None, vmic=None, line_cutoff: float = 3e-4,
                   max_window: float = 25.0, continuum_step: float = 1.0,
                   hydrogen: bool = True, check_range: bool = True) -> SynthesisPlan:
    """Decide which lines enter and over which pixels (see the module docstring).

    Needs concrete inputs (not traced). ``check_range``: raise if the wavelength grid extends
    beyond the line list's coverage (by more than 1 A), since lines there would be missing.
    """
    if _is_traced(atmosphere, linelist, wavelengths, abundances, vmic):
        raise ValueError("synthesis_plan needs concrete inputs; make the plan outside jit/grad "
                         "(e.g. from the reference model) and pass plan= to synthesize")
    _check_atmosphere(atmosphere)
    if not isinstance(linelist, LineList):
        raise TypeError(f"linelist must be a LineList, got {type(linelist).__name__}")
    lam = _check_wavelengths(wavelengths)
    if not (0 < line_cutoff < 1) or not max_window > 0:
        raise ValueError("need 0 < line_cutoff < 1 and max_window > 0")
    lam_vac = np.asarray(air_to_vacuum(jnp.asarray(lam))) if air else lam
    ll = linelist.to_vacuum()
    lw = np.asarray(ll.wavelength)
    if check_range and len(lw) and (lam_vac[0] < lw[0] - 1.0 or lam_vac[-1] > lw[-1] + 1.0):
        raise ValueError(
            f"wavelength grid {lam[0]:.3f}-{lam[-1]:.3f} A ({'air' if air else 'vacuum'}) "
            f"extends outside the line list's range {lw[0]:.3f}-{lw[-1]:.3f} A (vacuum); "
            "pass check_range=False to synthesize there anyway")
    n_c = max(2, int(math.ceil((lam_vac[-1] - lam_vac[0]) / continuum_step)) + 1)
    lam_cont = np.linspace(lam_vac[0], lam_vac[-1], n_c)

    supported = line_support(ll.species, ll.charge)
    near = (lw > lam_vac[0] - max_window) & (lw < lam_vac[-1] + max_window)
    cand = np.nonzero(supported & near)[0]
    n_skipped = int(np.sum(~supported & near & (np.asarray(ll.species) != 1)))
    groups, n_weak = [], 0
    if cand.size:
        ls, cstate, _ = layer_state(atmosphere, abundances, vmic)
        amp, dld, a = (np.asarray(v) for v in line_parameters(**_line_arrays(ll, cand),
                                                                layers=ls))
        alpha_c = np.asarray(_continuum(jnp.asarray(lam_cont), jnp.asarray(
            np.clip(lw[cand], lam_cont[0], lam_cont[-1])), cstate)).T  # (n, L)
        use = np.asarray(atmosphere.tau_ross) < _TAU_ROSS_MAX_WINDOW
        ratio = amp / (_SQRT_PI * dld * alpha_c)
        r = np.where(use[None, :], ratio / line_cutoff, 0.0)
        core = np.where(r > 1, dld * np.sqrt(np.log(np.maximum(r, 1.0))), 0.0)
        wing = np.sqrt(np.where(use[None, :], amp * a * dld / (np.pi * alpha_c * line_cutoff),
                                0.0))
        keep = np.max(r, axis=1) > 1
        n_weak = int(np.sum(~keep))
        half = np.minimum(np.max(np.maximum(core, wing), axis=1) + 3 * np.max(dld, axis=1),
                          max_window)
        # pixels: the larger count on either side of the centre
        lo = np.searchsorted(lam_vac, lw[cand] - half)
        hi = np.searchsorted(lam_vac, lw[cand] + half)
        ctr = np.searchsorted(lam_vac, lw[cand])
        npix = np.maximum(np.maximum(ctr - lo, hi - ctr), 2)
        # size classes in steps of sqrt(2) (few compiled shapes, <= 41 % padding)
        wpix = np.ceil(2.0 ** (np.ceil(2 * np.log2(npix)) / 2)).astype(int)
        # lines whose window misses the grid entirely
        keep &= (hi > 0) & (lo < lam_vac.size)
        for w in np.unique(wpix[keep]):
            sel = keep & (wpix == w)
            ii = cand[sel]
            groups.append((int(w), ii, ctr[sel], np.asarray(ll.species)[ii],
                           np.asarray(ll.charge)[ii]))
    balmer = H.balmer_levels_near(lam_vac[0], lam_vac[-1]) if hydrogen else ()
    return SynthesisPlan(lam=lam, lam_vac=lam_vac, lam_cont=lam_cont, air=air, groups=groups,
                         n_lines=int(sum(len(g[1]) for g in groups)),
                         n_skipped_species=n_skipped, n_weak=n_weak, balmer=tuple(balmer),
                         line_cutoff=line_cutoff, max_window=max_window)


# ------------------------------------------------------------------------------------------
# synthesis
# ------------------------------------------------------------------------------------------


def line_absorption(plan: SynthesisPlan, linelist_vac: LineList, layers: LayerState):
    """Line absorption coefficient [cm^-1], shape (n_layers, n_lambda), of the plan's lines."""
    lam = jnp.asarray(plan.lam_vac)
    n = lam.size
    n_l = layers.T.shape[0]
    wmax = max([g[0] for g in plan.groups], default=0)
    acc = jnp.zeros((n + 2 * wmax, n_l))  # pixels first: each scatter row is contiguous
    lam_pad = jnp.concatenate([jnp.full(wmax, lam[0]), lam, jnp.full(wmax, lam[-1])])
    for w, idx, ctr, sp, ch in plan.groups:
        arrs = _line_arrays(linelist_vac, idx, sp, ch)
        amp, dld, a = line_parameters(**arrs, layers=layers)  # (k, L)
        pix = (np.asarray(ctr)[:, None] + np.arange(-w, w)[None, :]) + wmax  # (k, 2w)
        valid = jnp.asarray((pix >= wmax) & (pix < n + wmax))
        lam_p = lam_pad[pix]  # (k, 2w)
        x = (lam_p[:, None, :] - arrs["lam0"][:, None, None]) / dld[:, :, None]
        prof = voigt_hjerting(a[:, :, None], x) * (amp / (_SQRT_PI * dld))[:, :, None]
        prof = jnp.where(valid[:, None, :], prof, 0.0)  # (k, L, 2w)
        vals = jnp.transpose(prof, (0, 2, 1)).reshape(-1, n_l)
        acc = acc.at[pix.reshape(-1)].add(vals)
    return acc[wmax:wmax + n].T


def _core(plan: SynthesisPlan, atm: ModelAtmosphere, ll_vac: LineList, abundances, vmic,
          flux_method: str):
    layers, cstate, eos = layer_state(atm, abundances, vmic)
    lam = jnp.asarray(plan.lam_vac)
    alpha_c = _continuum(jnp.asarray(plan.lam_cont), lam, cstate)
    alpha = alpha_c + line_absorption(plan, ll_vac, layers)
    if plan.balmer:
        alpha = alpha + H.balmer_absorption(lam, plan.balmer, layers)
    S = planck_lambda(lam[None, :], atm.T[:, None])
    tau = tr.optical_depth(alpha, atm.column_mass, atm.rho)
    tau_c = tr.optical_depth(alpha_c, atm.column_mass, atm.rho)
    f = tr.flux(tau, S, method=flux_method)
    fc = tr.flux(tau_c, S, method=flux_method)
    return Spectrum(f, fc), eos.converged


_COMPILED: dict = {}


def _plan_key(plan: SynthesisPlan):
    """Identity of a plan's static content: equal plans share one compiled function."""
    return (plan.lam_vac.tobytes(), plan.lam_cont.tobytes(), plan.balmer,
            tuple((g[0],) + tuple(np.asarray(a).tobytes() for a in g[1:]) for g in plan.groups))


def synthesize(atmosphere: ModelAtmosphere, linelist: LineList, wavelengths=None, *,
               air: bool = True, abundances=None, vmic=None, plan: SynthesisPlan | None = None,
               line_cutoff: float = 3e-4, max_window: float = 25.0, hydrogen: bool = True,
               flux_method: str = "expint", check_range: bool = True) -> Spectrum:
    """Emergent LTE spectrum of a plane-parallel model atmosphere.

    Args:
        atmosphere: :class:`~dastro.atmospheres.io.ModelAtmosphere` (its T, P_gas, rho,
            column_mass and vmic are used; n_e and populations come from the EOS).
        linelist: :class:`~dastro.rt.lines.LineList` (air or vacuum; converted internally).
        wavelengths: (n,) strictly increasing grid [A], air if ``air`` else vacuum; may be
            omitted when ``plan`` is given.
        air: medium of ``wavelengths`` (default True: air).
        abundances: A(X) = log10(N_X/N_H) + 12 for H..Zn (30, or the model's 92); default the
            model's own abundances. Differentiable.
        vmic: microturbulence [km s^-1], scalar or per layer; default the model's. Differentiable.
        plan: a :class:`SynthesisPlan` (required when any input is traced); else made here
            with ``line_cutoff``, ``max_window``, ``hydrogen``, ``check_range``.
        flux_method: ``"expint"`` (exact for piecewise-linear S) or ``"gauss"`` (8 mu points).

    Returns:
        :class:`Spectrum` ``(flux, continuum)``: surface flux F_lambda and the continuum-only
        flux [erg s^-1 cm^-2 A^-1] on the grid; ``.normalized`` is their ratio.

    Raises:
        ValueError: bad wavelengths (not increasing, NaN, outside 2000 A - 300 um or outside the
            line list), bad atmosphere values (non-monotonic depth, NaN, <= 0), traced inputs
            without a plan; :class:`~dastro.physics.EOSConvergenceError` if the chemical
            equilibrium fails (outside jit).
    """
    _check_atmosphere(atmosphere)
    if plan is None:
        if wavelengths is None:
            raise ValueError("give wavelengths or a plan")
        plan = synthesis_plan(atmosphere, linelist, wavelengths, air=air, abundances=abundances,
                              vmic=vmic, line_cutoff=line_cutoff, max_window=max_window,
                              hydrogen=hydrogen, check_range=check_range)
    elif wavelengths is not None and not _is_traced(wavelengths):
        w = np.asarray(wavelengths, dtype=float)
        if w.shape != plan.lam.shape or not np.allclose(w, plan.lam, rtol=0, atol=1e-9):
            raise ValueError("wavelengths differ from the plan's grid; make a new plan")
    if flux_method not in ("expint", "gauss"):
        raise ValueError(f"flux_method must be 'expint' or 'gauss', got {flux_method!r}")
    if plan._fn is None:
        key = _plan_key(plan)
        if key not in _COMPILED:
            if len(_COMPILED) >= 16:
                _COMPILED.pop(next(iter(_COMPILED)))
            _COMPILED[key] = eqx.filter_jit(
                lambda atm, ll, ab, vm, fm: _core(plan, atm, ll, ab, vm, fm))
        plan._fn = _COMPILED[key]
    ll_vac = linelist.to_vacuum()
    spec, converged = plan._fn(atmosphere, ll_vac, abundances, vmic, flux_method)
    if not _is_traced(converged) and not bool(np.all(np.asarray(converged))):
        raise ValueError("the equation of state did not converge in some layer of the model")
    return spec
