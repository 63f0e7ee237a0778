"""Hydrogen Balmer lines (n = 2 -> u) in LTE with Stark, self- and Doppler broadening.

Method (adequate for the wings of H-alpha..H-epsilon in FGK stars, where the Stark core is far
narrower than the Doppler core and the wings are formed by the quasi-static Stark effect and by
resonance broadening by neutral hydrogen):

* Wavelengths: the standard-air values of the NIST Atomic Spectra Database (fine-structure
  weighted; H-alpha 6562.79 A ... H10 3797.90 A) converted to vacuum with
  :func:`dastro.rt.lines.air_to_vacuum` (H-alpha 6564.61 A); the Bohr formula
  ``1/lambda = R_H (1/4 - 1/u^2)`` would be 0.09 A too red for H-alpha.
* Oscillator strengths f(2 -> u) of Wiese & Fuhr (2009, J. Phys. Chem. Ref. Data 38, 565).
* Lower-level population ``n_HI g_2 exp(-E_2/kT) / U_H`` (g_2 = 8, E_2 = 10.19881 eV),
  stimulated emission included.
* Core: Voigt profile with the thermal Doppler width (plus microturbulence) and Lorentz width
  Gamma = radiative (classical) + self-broadening by H I with the Anstee-Barklem-O'Mara
  cross-sections of Barklem, Piskunov & O'Mara (2000, A&A 363, 1091): (sigma [bohr^2],
  alpha) = (1180, 0.677) H-alpha, (2320, 0.455) H-beta, (4208, 0.380) H-gamma; higher lines
  scale sigma as H-gamma times (u/5)^4 (an extrapolation, stated).
* Stark wings: quasi-static (Holtsmark 1919) linear Stark broadening with Griem's (1960, ApJ
  132, 883) line constant ``K_2u = 5.5e-5 (2 u)^4 / (u^2 - 4)`` [A per cgs field unit] and
  the Holtsmark normal field ``F_0 = 1.25e-9 n_e^(2/3)``; the asymptotic Holtsmark
  distribution ``W(beta) -> 1.496 beta^(-5/2)`` gives
  ``phi(dlambda) = 0.748 (K F_0)^(3/2) |dlambda|^(-5/2)`` per perturber kind; electrons are
  counted as quasi-static like ions in the far wing (Griem 1967, ApJ 147, 1092; a factor 2).
  The ``|dlambda|^(-5/2)`` wing is softened as ``(dlambda^2 + c^2)^(-5/4)`` with ``c`` three
  Doppler widths, and the Voigt core is scaled by ``1 - A_wing`` so the profile keeps unit area.
  Not included: the Stark core shape (irrelevant below the Doppler core in FGK stars), electron
  impact broadening near the core, level dissolution, Balmer fine structure.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from dastro import constants as const
from dastro.rt.lines import air_to_vacuum
from dastro.rt.voigt import voigt_hjerting

__all__ = ["BALMER_AIR", "BALMER_F", "balmer_absorption", "balmer_levels_near", "balmer_wavelength"]

R_H = 109677.583  # [cm^-1]
E2_EV = 10.19881  # energy of n = 2 [eV]
#: f(2 -> u), Wiese & Fuhr (2009)
BALMER_F = {3: 0.6407, 4: 0.1193, 5: 0.04467, 6: 0.02209, 7: 0.01270, 8: 0.008036,
            9: 0.005429, 10: 0.003851}
_BPO = {3: (1180.0, 0.677), 4: (2320.0, 0.455), 5: (4208.0, 0.380)}
_WINDOW = 300.0  # [A] Balmer lines centred within this distance of the grid are included
_SIGMA_LINE = np.pi * const.e_esu**2 / (const.m_e * const.c)
_M_H = 1.008 * const.amu
_HC_K_AA = const.hc / const.k_B * 1e8
_INT_WING = math.sqrt(math.pi) * math.gamma(0.75) / (2 * math.gamma(1.25))  # int_0^inf (1+u^2)^-5/4


#: standard-air wavelengths [A] (NIST ASD)
BALMER_AIR = {3: 6562.79, 4: 4861.35, 5: 4340.47, 6: 4101.74, 7: 3970.07, 8: 3889.05,
              9: 3835.38, 10: 3797.90}
_BALMER_VAC = {u: float(air_to_vacuum(w)) for u, w in BALMER_AIR.items()}


def balmer_wavelength(u: int) -> float:
    """Vacuum wavelength [A] of the Balmer line 2 -> u."""
    return _BALMER_VAC[u]


def balmer_levels_near(lam_min: float, lam_max: float) -> list[int]:
    """Upper levels u (3..10) whose line centre is within 300 A of [lam_min, lam_max] (vacuum)."""
    return [u for u in BALMER_F
            if lam_min - _WINDOW <= balmer_wavelength(u) <= lam_max + _WINDOW]


def _bpo(u):
    if u in _BPO:
        return _BPO[u]
    s, a = _BPO[5]
    return s * (u / 5.0) ** 4, a


def balmer_absorption(lam, levels, layers):
    """Absorption coefficient [cm^-1], shape (n_layers, n_lambda), of the given Balmer lines.

    Args:
        lam: (n,) vacuum wavelengths [A]. levels: upper levels u (static tuple).
        layers: :class:`dastro.rt.line_opacity.LayerState`.
    """
    T = layers.T[:, None]
    n_hi = layers.n_hi[:, None]
    ln_u_h = layers.ln_u[:, 0, 0][:, None]
    kt_ev = const.k_B_eV * T
    f0 = 1.25e-9 * layers.n_e[:, None] ** (2.0 / 3.0)
    v_rel = jnp.sqrt(8 * const.k_B * T / np.pi * (2.0 / _M_H))
    out = 0.0
    for u in levels:
        lam0 = balmer_wavelength(u)
        n_low = n_hi * jnp.exp(np.log(8.0) - E2_EV / kt_ev - ln_u_h)
        stim = -jnp.expm1(-_HC_K_AA / (lam0 * T))
        amp = _SIGMA_LINE * (lam0 * 1e-8) ** 2 / const.c * BALMER_F[u] * n_low * stim * 1e8
        dld = lam0 / const.c * jnp.sqrt(2 * const.k_B * T / _M_H + layers.vmic[:, None] ** 2)
        sigma, alpha = _bpo(u)
        g_self = (2.0 * (4.0 / np.pi) ** (alpha / 2) * math.gamma((4.0 - alpha) / 2) * v_rel
                  * sigma * const.a0**2 * (v_rel / 1e6) ** (-alpha) * n_hi)
        g_rad = 2.2233e15 / lam0**2
        a = (g_rad + g_self) * lam0**2 * 1e-8 / (4 * np.pi * const.c * dld)
        kf = 5.5e-5 * (2.0 * u) ** 4 / (u**2 - 4.0) * f0
        c = 3.0 * dld
        cw = 2.0 * 0.748 * kf**1.5
        area = cw * c ** (-1.5) * 2.0 * _INT_WING
        dl = lam[None, :] - lam0
        wing = cw * (dl**2 + c**2) ** (-1.25)
        core = voigt_hjerting(a, dl / dld) / (math.sqrt(math.pi) * dld)
        out = out + amp * ((1.0 - jnp.minimum(area, 0.5)) * core + wing)
    return out + 0.0 * layers.T[:, None] * lam[None, :]



