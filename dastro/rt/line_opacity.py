"""LTE line absorption: populations, widths, damping and the Voigt profile, per line and layer.

For a line of species s (element Z, charge c) at vacuum wavelength lambda_0 the absorption
coefficient [cm^-1] at wavelength lambda is (e.g. Gray 2005, *The Observation and Analysis of
Stellar Photospheres*, 3rd ed., eqs. 11.12-11.13 and 11.46)::

    alpha(lambda) = (pi e^2 / m_e c) (lambda_0^2 / c) g f (n_s / U_s(T)) exp(-E_low / kT)
                    x (1 - exp(-h c / lambda_0 k T)) x H(a, x) / (sqrt(pi) Delta_lambda_D)

* ``n_s``: number density of the species from the equation of state
  (:func:`dastro.physics.eos_tp`), ``U_s`` its Irwin (1981) partition function; the factor
  ``exp(-E_low/kT) g_low / U_s`` is the Boltzmann population of the lower level, and
  ``(1 - exp(-h nu / kT))`` is stimulated emission in LTE.
* Doppler width ``Delta_lambda_D = (lambda_0 / c) sqrt(2 k T / m + xi^2)`` (xi:
  microturbulence), ``x = (lambda - lambda_0) / Delta_lambda_D``.
* Damping ``a = Gamma lambda_0^2 / (4 pi c Delta_lambda_D)`` with ``Gamma`` the full width at
  half maximum in angular frequency [s^-1], the sum of

  - radiative: the list's ``gamma_rad``; if 0, the classical value
    ``8 pi^2 e^2 / (3 m_e c lambda^2)`` (Gray eq. 11.19);
  - quadratic Stark: ``gamma_stark n_e (T / 10^4 K)^(1/6)``; if 0,
    ``1e-8 n*^5 n_e (T/10^4)^(1/6)`` cm^3 s^-1 with the upper level's effective quantum
    number ``n*^2 = (c + 1)^2 13.6 eV / (chi - E_up)`` (the rough estimate of Kurucz's
    SYNTHE; used only when the list gives nothing);
  - van der Waals by neutral hydrogen (``n_H``), by ``vdw_mode``:
    0 Unsold (1955): ``17 C_6^(2/5) v^(3/5) n_H`` times the list's enhancement factor,
    ``C_6 = 0.3e-30 [(chi - E_up)^-2 - (chi - E_low)^-2]`` (energies in eV; Gray eqs.
    11.29-11.30); 1: ``10^vdw n_H (T / 10^4 K)^0.3``; 2: Anstee, Barklem & O'Mara
    (Anstee & O'Mara 1995, MNRAS 276, 859; Barklem, Piskunov & O'Mara 2000, A&AS 142, 467,
    eq. 3): ``Gamma = 2 (4/pi)^(alpha/2) Gamma_fn((4 - alpha)/2) v sigma (v / v0)^(-alpha) n_H``
    with ``sigma`` in bohr^2 at ``v0 = 10^4 m/s``; 3: ``17 (10^vdw)^(2/5) v^(3/5) n_H``.
    ``v = sqrt(8 k T / pi (1/m_H + 1/m_s))`` is the mean relative speed.

Species handled: atoms and ions of H..Zn up to charge 2 (the elements of the equation of
state). Lines of heavier elements and molecules are **skipped** (their number is reported by
:func:`line_support`). Hydrogen lines are treated separately in :mod:`dastro.rt.hydrogen`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dastro import constants as const
from dastro.physics.abundances import ATOMIC_MASS, IONIZATION_ENERGY, N_ELEMENTS

__all__ = ["LayerState", "line_parameters", "line_support", "planck_lambda"]

_SIGMA_LINE = np.pi * const.e_esu**2 / (const.m_e * const.c)  # [cm^2 s^-1]
_HC_EV_AA = const.hc / const.eV * 1e8  # h c [eV A]
_HC_K_AA = const.hc / const.k_B * 1e8  # h c / k [A K]
_CHI_H_EV = 13.598434
_M_H = ATOMIC_MASS[0] * const.amu
_V0_ABO = 1.0e6  # [cm s^-1]
# Ionisation energy out of each stage; stage III (charge 2) uses the II->III energy as a rough
# stand-in (only for the van der Waals/Stark estimates, never for populations).
_CHI = np.where(np.isfinite(IONIZATION_ENERGY), IONIZATION_ENERGY, 1.0e3)


class LayerState:
    """Per-layer inputs of the line opacity (arrays of shape (n_layers,) unless noted).

    Built by :func:`dastro.rt.synth.layer_state` from a model atmosphere and the equation of
    state; a plain container (a JAX pytree) so that it can be traced.
    """

    def __init__(self, T, n_e, n_hi, n_species, ln_u, vmic):
        self.T = T  # [K]
        self.n_e = n_e  # [cm^-3]
        self.n_hi = n_hi  # neutral H atoms [cm^-3]
        self.n_species = n_species  # (n_layers, 30, 3) [cm^-3]
        self.ln_u = ln_u  # (n_layers, 30, 3) ln partition functions
        self.vmic = vmic  # [cm s^-1]

    def tree_flatten(self):
        return (self.T, self.n_e, self.n_hi, self.n_species, self.ln_u, self.vmic), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children)


jax.tree_util.register_pytree_node(LayerState, LayerState.tree_flatten,
                                   LayerState.tree_unflatten)


def line_support(species, charge):
    """Boolean mask (numpy) of the lines this module computes: atoms/ions Z = 2..30
    (hydrogen is :mod:`dastro.rt.hydrogen`), charge 0..2."""
    s = np.asarray(species)
    c = np.asarray(charge)
    return (s >= 2) & (s <= N_ELEMENTS) & (c >= 0) & (c <= 2)


def planck_lambda(lam, T):
    """Planck function B_lambda [erg s^-1 cm^-2 A^-1 sr^-1]; lam [A], broadcastable with T."""
    lam_cm = lam * 1e-8
    u = _HC_K_AA / (lam * T)
    return 2.0 * const.h * const.c**2 / lam_cm**5 / jnp.expm1(u) * 1e-8


def line_parameters(lam0, z_idx, c_idx, log_gf, E_lower, gamma_rad, gamma_stark, vdw_mode,
                    vdw, vdw_alpha, layers: LayerState):
    """Strength, Doppler width and damping of each line in each layer.

    Args:
        lam0: (n,) vacuum wavelengths [A]. z_idx, c_idx: (n,) int, Z - 1 (0..29) and charge
            (0..2) -- only supported lines (:func:`line_support`). log_gf, E_lower [eV],
            gamma_rad [s^-1], gamma_stark [cm^3 s^-1], vdw_mode, vdw, vdw_alpha: as in
            :class:`dastro.rt.lines.LineList`.
        layers: :class:`LayerState`.

    Returns:
        ``(amp, dlam_d, a)``, each (n, n_layers): ``amp`` [cm^-1 A] is the integrated line
        absorption coefficient (``alpha(lambda) = amp H(a, x) / (sqrt(pi) dlam_d)``),
        ``dlam_d`` the Doppler width [A], ``a`` the damping parameter.
    """
    T = layers.T[None, :]
    lam = lam0[:, None]
    kt_ev = const.k_B_eV * T
    n_s = layers.n_species[:, z_idx, c_idx].T  # (n, L)
    ln_u = layers.ln_u[:, z_idx, c_idx].T
    mass = jnp.asarray(ATOMIC_MASS)[z_idx][:, None] * const.amu
    stim = -jnp.expm1(-_HC_K_AA / (lam * T))
    ln_pop = jnp.log(n_s) - ln_u - E_lower[:, None] / kt_ev + log_gf[:, None] * np.log(10.0)
    # (pi e^2/m_e c)(lambda^2/c) N_low gf [cm^-1 cm]; x 1e8 -> [cm^-1 A]
    amp = _SIGMA_LINE * (lam * 1e-8) ** 2 / const.c * jnp.exp(ln_pop) * stim * 1e8
    dlam_d = lam / const.c * jnp.sqrt(2 * const.k_B * T / mass + layers.vmic[None, :] ** 2)

    # --- damping [s^-1] ---
    g_rad = jnp.where(gamma_rad > 0, gamma_rad, 2.2233e15 / lam0**2)[:, None]
    chi = jnp.asarray(_CHI)[z_idx, jnp.minimum(c_idx, 1)][:, None]
    e_up = (E_lower + _HC_EV_AA / lam0)[:, None]
    d_up = jnp.maximum(chi - e_up, 0.1)
    d_lo = jnp.maximum(chi - E_lower[:, None], 0.2)
    t4 = T / 1.0e4
    n_star5 = ((c_idx[:, None] + 1.0) ** 2 * _CHI_H_EV / d_up) ** 2.5
    g_stark_coef = jnp.where(gamma_stark > 0, gamma_stark, 0.0)[:, None] + jnp.where(
        gamma_stark > 0, 0.0, 1e-8)[:, None] * n_star5
    g4 = g_stark_coef * layers.n_e[None, :] * t4 ** (1.0 / 6.0)

    v_rel = jnp.sqrt(8 * const.k_B * T / np.pi * (1 / _M_H + 1 / mass))
    n_h = layers.n_hi[None, :]
    mode = vdw_mode[:, None]
    vdw_c = vdw[:, None]
    c6_unsold = 0.3e-30 * (1.0 / d_up**2 - 1.0 / d_lo**2)
    c6_unsold = jnp.maximum(c6_unsold, 1e-40)
    log_c6 = jnp.where(mode == 3, vdw_c, -30.0)
    c6 = jnp.where(mode == 3, 10.0**log_c6, c6_unsold)
    g6_c6 = 17.0 * c6**0.4 * v_rel**0.6 * n_h * jnp.where(mode == 0, vdw_c, 1.0)
    log_g6 = jnp.where(mode == 1, vdw_c, -30.0)
    g6_log = 10.0**log_g6 * n_h * t4**0.3
    alpha = jnp.where(mode == 2, vdw_alpha[:, None], 0.3)
    sigma = jnp.where(mode == 2, vdw_c, 300.0) * const.a0**2
    g6_abo = (2.0 * (4.0 / np.pi) ** (alpha / 2) * jnp.exp(jax.scipy.special.gammaln(
        (4.0 - alpha) / 2)) * v_rel * sigma * (v_rel / _V0_ABO) ** (-alpha) * n_h)
    g6 = jnp.where(mode == 1, g6_log, jnp.where(mode == 2, g6_abo, g6_c6))
    gamma = g_rad + g4 + g6
    a = gamma * lam**2 * 1e-8 / (4 * np.pi * const.c * dlam_d)
    return amp, dlam_d, a
