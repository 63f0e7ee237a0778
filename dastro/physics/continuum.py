"""Continuous absorption and scattering coefficients in LTE, and Rosseland/Planck means.

Every source is written for **one wavelength and one layer** and returns a coefficient in
cm^-1 (per unit length; divide by rho for cm^2 g^-1). Wavelengths are **vacuum Angstrom**.
:func:`continuum_opacity` vmaps the sum over wavelengths (inner) and layers (outer); factors that
depend on wavelength only or on the layer only are then computed once per wavelength or per
layer by JAX's batching, which is what makes 80 layers x 1e5 wavelengths fast.

Sources, with the box in which each fit is valid and the policy outside it (``SOURCES``):

=============  ================================  ======================  =================
source         reference                          valid box               outside the box
=============  ================================  ======================  =================
H- bf          John 1988, A&A 193, 189, eq. 4     1250-16419 A, any T     0 above threshold;
                                                                          sigma(1250 A) below
H- ff          John 1988, eq. 6 and Table 3       1823 A-15 um,           0 below 1823 A;
                                                  1400-10080 K            T clamped; lambda^2
                                                                          extrapolation above
H I bf         Kramers + Menzel-Pekeris Gaunt     all lambda, all T       --
               (Gray 2005, eqs. 8.4-8.8)
H I, He III ff Kramers + Gaunt (Gray eq. 8.6)     all lambda, all T       --
He II bf       hydrogenic, as H I bf (Z = 2)      all lambda, all T       --
He- ff         John 1994 via Gray 2005 eq. 8.16   5063 A-15.2 um,         lambda, T clamped
                                                  2520-10080 K
H2+ bf+ff      Kurucz 1970 fit to Bates 1952      914 A-10 um,            lambda, T clamped
                                                  2500-12000 K
metal bf       TOPbase (C, Na, Mg, Al, Si, Ca I)  500 A-6 um,             0 beyond (T clamped)
               + TLUSTY Fe I (table)              2000-60000 K
Rayleigh H I   Dalgarno 1962 (Gray eq. 8.17)      lambda >= 1300 A        lambda clamped
Rayleigh He I  Dalgarno 1962 (Kurucz 1970)        lambda >= 600 A         lambda clamped
Rayleigh H2    Dalgarno & Williams 1962           lambda >= 1300 A        lambda clamped
Thomson        sigma_T n_e                        all                     --
=============  ================================  ======================  =================

The summed coefficient is defined for ``LAMBDA_RANGE`` = 500 A - 300 um and
1000 K <= T <= 60000 K; a wavelength outside the range (or NaN) raises ``ValueError`` outside
``jit`` and an ``eqx.error_if`` error inside. Below 1000 K values stay finite but second
derivatives can underflow to NaN.
Not included: level dissolution near series limits (Hummer & Mihalas 1988), He I
bound-free, H2- and collision-induced absorption, molecular bound-free (CH, OH).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from dastro import constants as const

from .eos import EOSResult
from .partition import MoleculeSet, default_molecules, log_partition_functions

__all__ = [
    "LAMBDA_RANGE",
    "SOURCES",
    "ContinuumState",
    "FitBox",
    "continuum_opacity",
    "continuum_state",
    "he_rayleigh_cross_section",
    "heii_bf",
    "heminus_ff",
    "h2_rayleigh_cross_section",
    "h2plus",
    "h_rayleigh_cross_section",
    "hi_bf",
    "hi_ff",
    "hminus_bf",
    "hminus_bf_cross_section",
    "hminus_ff",
    "hminus_ff_coefficient",
    "metal_bf",
    "metal_bf_metadata",
    "planck_mean",
    "rosseland_mean",
]

LAMBDA_RANGE = (500.0, 3.0e6)
_C_AA = const.c * 1e8  # speed of light [A s^-1]
_HC_K_AA = const.hc / const.k_B * 1e8  # hc/k [A K]
_CHI_H = 13.598434 * const.eV  # [erg]
_CHI_HEII = 54.417765 * const.eV  # [erg] (NIST)
_NU_H = _CHI_H / const.h  # H I ionisation frequency [Hz]
_R_H_CM = _NU_H / const.c  # Rydberg for H [cm^-1] (reduced mass included via chi_H)
#: Kramers constant: sigma_n = _KRAMERS Z^4 / (n^5 nu^3) [cm^2 Hz^3] (Gray 2005, eq. 8.4).
_KRAMERS = 64 * np.pi**4 * const.m_e * const.e_esu**10 / (3 * np.sqrt(3) * const.c * const.h**6)
#: Free-free constant: kappa = _FF Z^2 g n_e n_i / (nu^3 sqrt T) [cgs] (Rybicki & Lightman 5.18).
_FF = (4 * const.e_esu**6 / (3 * const.m_e * const.h * const.c)
       * np.sqrt(2 * np.pi / (3 * const.k_B * const.m_e)))
_N_EXPLICIT = 8  # H I levels treated one by one; higher ones as a continuum


class FitBox(NamedTuple):
    """Where a fit is valid, and what happens outside (``policy``, a sentence)."""

    lambda_min: float  # [A]
    lambda_max: float  # [A]
    T_min: float  # [K]
    T_max: float  # [K]
    policy: str


SOURCES: dict[str, FitBox] = {
    "hminus_bf": FitBox(1250.0, 16419.0, 0.0, np.inf,
                        "zero above the 16419 A threshold; sigma(1250 A) below 1250 A"),
    "hminus_ff": FitBox(1823.0, 150000.0, 1400.0, 10080.0,
                        "zero below 1823 A; theta clamped to [0.5, 3.6]; the lambda^2 form "
                        "extrapolates above 15 um"),
    "hi_bf": FitBox(0.0, np.inf, 0.0, np.inf, "valid everywhere (hydrogenic)"),
    "hi_ff": FitBox(0.0, np.inf, 0.0, np.inf, "valid everywhere (hydrogenic)"),
    "heii_bf": FitBox(0.0, np.inf, 0.0, np.inf, "valid everywhere (hydrogenic)"),
    "heminus_ff": FitBox(5063.0, 151878.0, 2520.0, 10080.0, "lambda and T clamped"),
    "h2plus": FitBox(914.0, 100000.0, 2500.0, 12000.0, "lambda and T clamped"),
    "metal_bf": FitBox(500.0, 60000.0, 2000.0, 60000.0,
                       "zero outside the wavelength grid; T clamped"),
    "rayleigh_h": FitBox(1300.0, np.inf, 0.0, np.inf, "lambda clamped to >= 1300 A"),
    "rayleigh_he": FitBox(600.0, np.inf, 0.0, np.inf, "lambda clamped to >= 600 A"),
    "rayleigh_h2": FitBox(1300.0, np.inf, 0.0, np.inf, "lambda clamped to >= 1300 A"),
    "thomson": FitBox(0.0, np.inf, 0.0, np.inf, "valid everywhere"),
}


# ------------------------------------------------------------------------------------------
# layer state
# ------------------------------------------------------------------------------------------


class ContinuumState(NamedTuple):
    """Number densities [cm^-3] the continuum needs at one layer (or a batch of layers).

    Build it from an :class:`~dastro.physics.eos.EOSResult` with :func:`continuum_state`, or
    by hand from a model atmosphere's own populations.
    """

    T: jnp.ndarray  # [K]
    n_e: jnp.ndarray
    n_hi: jnp.ndarray  # all neutral H atoms
    n_hii: jnp.ndarray  # protons
    n_hminus: jnp.ndarray
    n_hei: jnp.ndarray
    n_h2: jnp.ndarray
    n_metal: jnp.ndarray  # (..., 7) neutral C, Na, Mg, Al, Si, Ca, Fe (see metal_bf_metadata)
    n_heii: jnp.ndarray = 0.0  # He+ (hydrogenic bound-free); scalar 0 broadcasts
    n_heiii: jnp.ndarray = 0.0  # He++ (free-free)


def continuum_state(T, eos: EOSResult, molecules: MoleculeSet | None = None) -> ContinuumState:
    """Extract a :class:`ContinuumState` from an equation-of-state result.

    Args:
        T: temperature [K], the shape of the EOS batch.
        eos: result of :func:`~dastro.physics.eos.eos_tp` or ``eos_trho``.
        molecules: the molecule set used for ``eos`` (default set if None); H2 density is
            zero if it does not contain ``"HH"``.
    """
    names = (default_molecules() if molecules is None else molecules).names
    n_h2 = eos.n_molecules[..., names.index("HH")] if "HH" in names else jnp.zeros_like(eos.n_e)
    z = np.array(_metal_table()["Z"]) - 1
    return ContinuumState(
        T=jnp.asarray(T, dtype=float),
        n_e=eos.n_e,
        n_hi=eos.n_atoms[..., 0, 0],
        n_hii=eos.n_atoms[..., 0, 1],
        n_hminus=eos.n_hminus,
        n_hei=eos.n_atoms[..., 1, 0],
        n_h2=n_h2,
        n_metal=eos.n_atoms[..., z, 0],
        n_heii=eos.n_atoms[..., 1, 1],
        n_heiii=eos.n_atoms[..., 1, 2],
    )


# ------------------------------------------------------------------------------------------
# H-
# ------------------------------------------------------------------------------------------

# John (1988) eq. 4: coefficients C_1..C_6 of f(lambda) (lambda in micron).
_JOHN_BF = np.array([152.519, 49.534, -118.858, 92.536, -34.194, 4.982])
_JOHN_LAMBDA0 = 1.6419  # [micron]
# John (1988) Table 3: A_n..F_n, n = 1..6, for lambda > 0.3645 micron ...
_JOHN_FF_LONG = np.array([
    [0.0, 2483.3460, -3449.8890, 2200.0400, -696.2710, 88.2830],
    [0.0, 285.8270, -1158.3820, 2427.7190, -1841.4000, 444.5170],
    [0.0, -2054.2910, 8746.5230, -13651.1050, 8624.9700, -1863.8640],
    [0.0, 2827.7760, -11485.6320, 16755.5240, -10051.5300, 2095.2880],
    [0.0, -1341.5370, 5303.6090, -7510.4940, 4400.0670, -901.7880],
    [0.0, 208.9520, -812.9390, 1132.7380, -655.0200, 132.9850],
])
# ... and for 0.1823 < lambda < 0.3645 micron.
_JOHN_FF_SHORT = np.array([
    [518.1021, 473.2636, -482.2089, 115.5291, 0.0, 0.0],
    [-734.8666, 1443.4137, -737.1616, 169.6374, 0.0, 0.0],
    [1021.1775, -1977.3395, 1096.8827, -245.6490, 0.0, 0.0],
    [-479.0721, 922.3575, -521.1341, 114.2430, 0.0, 0.0],
    [93.1373, -178.9275, 101.7963, -21.9970, 0.0, 0.0],
    [-6.4285, 12.3600, -7.0571, 1.5097, 0.0, 0.0],
])


def hminus_bf_cross_section(lam):
    """H- photodetachment cross-section [cm^2 per H- ion] (John 1988, A&A 193, 189, eq. 4).

    ``sigma = 1e-18 lambda^3 (1/lambda - 1/lambda0)^{3/2} sum_n C_n (1/lambda - 1/lambda0)
    ^{(n-1)/2}``, lambda in micron, lambda0 = 1.6419 micron. Peak 4.0e-17 cm^2 at 8500 A.

    Args:
        lam: vacuum wavelength [A].

    Box 1250-16419 A; zero above the threshold, held at its 1250 A value below 1250 A.
    """
    lm = jnp.clip(lam, 1250.0, None) * 1e-4
    x = 1.0 / lm - 1.0 / _JOHN_LAMBDA0
    below = x > 0
    x = jnp.where(below, x, 1.0)  # safe branch: no NaN gradient from sqrt(0) beyond threshold
    sx = jnp.sqrt(x)
    f = jnp.polyval(jnp.asarray(_JOHN_BF[::-1]), sx)
    return jnp.where(below, 1e-18 * lm**3 * x * sx * f, 0.0)


def hminus_bf(lam, state: ContinuumState):
    """H- bound-free absorption [cm^-1], stimulated emission included."""
    stim = -jnp.expm1(-_HC_K_AA / (lam * state.T))
    return hminus_bf_cross_section(lam) * state.n_hminus * stim


def hminus_ff_coefficient(lam, T):
    """H- free-free coefficient k_ff [cm^4 dyn^-1] (John 1988, eq. 6, Table 3).

    ``kappa = k_ff * P_e * n(H I)``, stimulated emission included. Box 1823 A - 15 um,
    1400-10080 K: zero below 1823 A, theta = 5040/T clamped to [0.5, 3.6].
    """
    lm = jnp.clip(lam, 1823.0, None) * 1e-4
    theta = jnp.clip(5040.0 / T, 0.5, 3.6)
    lpow = jnp.stack([lm**2, jnp.ones_like(lm), 1 / lm, lm**-2, lm**-3, lm**-4])
    coef = jnp.where(lm > 0.3645, jnp.asarray(_JOHN_FF_LONG).T @ lpow,
                     jnp.asarray(_JOHN_FF_SHORT).T @ lpow)
    tpow = theta ** ((jnp.arange(1, 7) + 1) / 2.0)
    k = 1e-29 * jnp.dot(tpow, coef)
    return jnp.where(lam >= 1823.0, jnp.clip(k, 0.0, None), 0.0)


def hminus_ff(lam, state: ContinuumState):
    """H- free-free absorption [cm^-1] (John 1988)."""
    p_e = state.n_e * const.k_B * state.T
    return hminus_ff_coefficient(lam, state.T) * p_e * state.n_hi


# ------------------------------------------------------------------------------------------
# H I
# ------------------------------------------------------------------------------------------


def _gaunt_bf(n, lam):
    """Menzel & Pekeris (1935) bound-free Gaunt factor (Gray 2005, eq. 8.5)."""
    lr = lam * 1e-8 * _R_H_CM
    return 1.0 - 0.3456 / lr ** (1 / 3) * (lr / n**2 - 0.5)


def _hydrogenic_bf(lam, T, n_ion, z, chi, ln_u):
    """Bound-free absorption of a hydrogenic ion of nuclear charge z [cm^-1] (see hi_bf)."""
    nu = _C_AA / lam
    x = jnp.exp(-_HC_K_AA / (lam * T))  # exp(-h nu / kT)
    kt = const.k_B * T
    nu1 = chi / const.h
    n = jnp.arange(1.0, _N_EXPLICIT + 1.0)
    pops = 2 * n**2 * jnp.exp(-ln_u - chi * (1 - 1 / n**2) / kt)  # per ion
    gaunt = jnp.clip(_gaunt_bf(n, lam * z**2), 0.0, None)
    sig = jnp.where(nu >= nu1 / n**2, _KRAMERS * z**4 / (n**5 * nu**3) * gaunt, 0.0)
    explicit = jnp.dot(pops, sig)
    n_lo2 = (_N_EXPLICIT + 0.5) ** 2
    # long-wavelength branch: exp(h nu/kT) = 1/x; the floor keeps the unused branch (and its
    # derivatives) finite where x underflows
    e_lo = jnp.where(nu >= nu1 / n_lo2, jnp.exp(chi / (n_lo2 * kt)), 1.0 / jnp.maximum(x, 1e-30))
    tail = (2.0 * jnp.exp(-ln_u - chi / kt) * kt / (2 * chi) * (e_lo - 1.0)
            * _KRAMERS * z**4 / nu**3)
    return n_ion * (explicit + tail) * (1.0 - x)


def hi_bf(lam, state: ContinuumState):
    """H I bound-free absorption [cm^-1], stimulated emission included.

    Levels n = 1..8 explicitly with Kramers cross-sections ``7.91e-18 n (nu_n/nu)^3 g_bf``
    (Gray 2005, eq. 8.4) and Menzel-Pekeris Gaunt factors (eq. 8.5), LTE populations
    ``n(H I) 2 n^2 / U exp(-chi (1 - 1/n^2)/kT)``; levels n >= 9 as a continuum with g = 1:
    ``sum_n n^-3 exp(chi/(n^2 kT)) ~ kT/(2 chi) [exp(chi/(n_lo^2 kT)) - 1]`` with
    n_lo = max(8.5, sqrt(nu_1/nu)) (Gray eq. 8.8 in integral form). No level dissolution.
    """
    ln_u = log_partition_functions(state.T)[0, 0]
    return _hydrogenic_bf(lam, state.T, state.n_hi, 1.0, _CHI_H, ln_u)


def heii_bf(lam, state: ContinuumState):
    """He II bound-free absorption [cm^-1]: hydrogenic (Z = 2, chi = 54.4178 eV), as
    :func:`hi_bf` with frequencies scaled by Z^2 and cross-sections by Z^4 (Gray 2005, eq. 8.4).
    Edges at 227.8 n^2 A (911, 2050, 3645 A for n = 2, 3, 4). Matters above ~25000 K."""
    ln_u = log_partition_functions(state.T)[1, 1]
    return _hydrogenic_bf(lam, state.T, state.n_heii, 2.0, _CHI_HEII, ln_u)


def _gaunt_ff(lam, T):
    """Free-free Gaunt factor (Gray 2005, eq. 8.6), ``1 + 0.3456/(lambda R)^{1/3}
    (kT/h nu + 1/2)``."""
    lr = lam * 1e-8 * _R_H_CM
    return 1.0 + 0.3456 / lr ** (1 / 3) * (lam * T / _HC_K_AA + 0.5)


def hi_ff(lam, state: ContinuumState):
    """Hydrogenic free-free absorption [cm^-1] of p + e and He++ + e, stimulated emission
    included.

    ``kappa = 3.69e8 Z^2 g_ff n_e n_ion / (nu^3 sqrt T) (1 - exp(-h nu/kT))`` (Rybicki &
    Lightman 1979, eq. 5.18b) with the Gaunt factor of Gray (2005) eq. 8.6, evaluated at
    (lambda Z^2, T / Z^2) for Z = 2.
    """
    T = state.T
    nu = _C_AA / lam
    stim = -jnp.expm1(-_HC_K_AA / (lam * T))
    ions = _gaunt_ff(lam, T) * state.n_hii + 4.0 * _gaunt_ff(4.0 * lam, T / 4.0) * state.n_heiii
    return _FF * state.n_e * ions / (nu**3 * jnp.sqrt(T)) * stim


# ------------------------------------------------------------------------------------------
# He-, H2+
# ------------------------------------------------------------------------------------------


# Gray (2005) eq. 8.16: rows c0..c3 of the cubic in log10(lambda / A), columns theta^0..theta^4.
_HEMINUS_FF_COEFFS = np.array([
    [9.66736, -71.76242, 105.29576, -56.49259, 10.69206],
    [-10.50614, 48.28802, -70.43363, 37.80099, -7.15445],
    [2.74020, -10.62144, 15.50518, -8.33845, 1.57960],
    [-0.19923, 0.77485, -1.13200, 0.60994, -0.11564],
])


def heminus_ff(lam, state: ContinuumState):
    """He- free-free absorption [cm^-1], stimulated emission included.

    John (1994, MNRAS 269, 871) free-free coefficients through the polynomial fit of Gray
    (2005, eq. 8.16; 1 % of the table): ``alpha = 1e-26 * 10**f(log10 lambda, theta) * P_e *
    n(He I)`` [cm^-1], theta = 5040/T. Box 5063 A - 15.2 um, 2520-10080 K; lambda and T
    clamped (outside it the He- contribution is below 1 % of H- ff in every stellar layer).
    """
    log_lam = jnp.log10(jnp.clip(lam, 5063.0, 151878.0))
    theta = 5040.0 / jnp.clip(state.T, 2520.0, 10080.0)
    th = jnp.stack([jnp.ones_like(theta), theta, theta**2, theta**3, theta**4])
    c = _HEMINUS_FF_COEFFS @ th  # (4,) coefficients of the cubic in log10 lambda
    log_f = c[0] + log_lam * (c[1] + log_lam * (c[2] + log_lam * c[3]))
    p_e = state.n_e * const.k_B * state.T
    return 1e-26 * 10.0**log_f * p_e * state.n_hei


def h2plus(lam, state: ContinuumState):
    """H2+ bound-free + free-free absorption [cm^-1], stimulated emission included.

    Fit of Kurucz (1970) to Bates (1952, MNRAS 112, 40):
    ``kappa = n(H I, n=1) n(H+) exp(-E(nu)/kT + F(ln nu))`` with E a quintic in nu/1e15 [eV]
    and F a quartic in ln nu. Box 914 A - 10 um, 2500-12000 K; lambda and T clamped.
    """
    nu = _C_AA / jnp.clip(lam, 914.0, 100000.0)
    t = jnp.clip(state.T, 2500.0, 12000.0)
    x = nu * 1e-15
    e_ev = -7.342e-3 + x * (-2.409 + x * (1.028 + x * (-4.23e-1 + x * (1.224e-1
                                                                       - 1.351e-2 * x))))
    ln_nu = jnp.log(nu)
    f = -3.0233e3 + ln_nu * (3.7797e2 + ln_nu * (-1.82496e1 + ln_nu * (3.9207e-1
                                                                       - 3.1672e-3 * ln_nu)))
    u_h = jnp.exp(log_partition_functions(state.T)[0, 0])
    n_h1 = state.n_hi * 2.0 / u_h
    stim = -jnp.expm1(-_HC_K_AA / (lam * state.T))
    return n_h1 * state.n_hii * jnp.exp(f - e_ev / (const.k_B_eV * t)) * stim


# ------------------------------------------------------------------------------------------
# metals (table)
# ------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _metal_table():
    with np.load(Path(__file__).resolve().parents[1] / "data" / "metal_bf.npz") as d:
        return {k: d[k] for k in d.files}


def metal_bf_metadata() -> dict:
    """Provenance of the metal bound-free table (a dict)."""
    return json.loads(str(_metal_table()["metadata"]))


def metal_bf(lam, state: ContinuumState):
    """Bound-free absorption of neutral C, Na, Mg, Al, Si, Ca, Fe [cm^-1], stimulated emission
    included.

    ``kappa = sum_X n(X I) / U(X I, T) S_X(lambda, T) (1 - exp(-h nu / kT))`` with S the
    Boltzmann-weighted sum of level cross-sections from the shipped table (TOPbase; TLUSTY
    Fe I; ``scripts/build_metal_bf.py``): linear in log T, linear in lambda on a
    0.002-dex grid (edges are spread over one grid step). Box 500 A - 6 um, 2000-60000 K.
    """
    tab = _metal_table()
    llam, lt, logs = tab["log10_lambda"], tab["log10_T"], tab["log10_S"]
    z = np.asarray(tab["Z"]) - 1
    T = state.T
    # layer-only: interpolate log S in log T, weight by n/U, sum over elements -> (n_lambda,)
    ft = jnp.clip((jnp.log10(T) - lt[0]) / (lt[1] - lt[0]), 0.0, len(lt) - 1.000001)
    it = jnp.floor(ft).astype(int)
    wt = ft - it
    logs_t = (1 - wt) * jnp.asarray(logs)[:, it] + wt * jnp.asarray(logs)[:, it + 1]
    u = jnp.exp(log_partition_functions(T)[z, 0])
    row = jnp.sum((state.n_metal / u)[:, None] * 10.0 ** logs_t, axis=0)
    # wavelength-only: interpolation weights
    fl = (jnp.log10(lam) - llam[0]) / (llam[1] - llam[0])
    inside = (fl >= 0) & (fl <= len(llam) - 1)
    fl = jnp.clip(fl, 0.0, len(llam) - 1.000001)
    il = jnp.floor(fl).astype(int)
    wl = fl - il
    s = (1 - wl) * row[il] + wl * row[il + 1]
    stim = -jnp.expm1(-_HC_K_AA / (lam * T))
    return jnp.where(inside, s, 0.0) * stim


# ------------------------------------------------------------------------------------------
# scattering
# ------------------------------------------------------------------------------------------


def h_rayleigh_cross_section(lam):
    """Rayleigh scattering by ground-state H I [cm^2] (Dalgarno 1962; Gray 2005, eq. 8.17):
    ``5.799e-13/lambda^4 + 1.422e-6/lambda^6 + 2.784/lambda^8`` (lambda in A, clamped >= 1300).
    """
    x = 1.0 / jnp.clip(lam, 1300.0, None) ** 2
    return (5.799e-13 + (1.422e-6 + 2.784 * x) * x) * x * x


def he_rayleigh_cross_section(lam):
    """Rayleigh scattering by He I [cm^2] (Dalgarno 1962, as fitted in Kurucz 1970):
    ``5.484e-14/lambda^4 (1 + (2.44e5 + 5.94e10/(lambda^2 - 2.90e5))/lambda^2)^2``
    (lambda in A, clamped >= 600)."""
    l2 = jnp.clip(lam, 600.0, None) ** 2
    return 5.484e-14 / l2**2 * (1.0 + (2.44e5 + 5.94e10 / (l2 - 2.90e5)) / l2) ** 2


def h2_rayleigh_cross_section(lam):
    """Rayleigh scattering by H2 [cm^2] (Dalgarno & Williams 1962, ApJ 136, 690):
    ``(8.14e-13 + 1.28e-6/lambda^2 + 1.61/lambda^4)/lambda^4`` (lambda in A, clamped >= 1300).
    """
    x = 1.0 / jnp.clip(lam, 1300.0, None) ** 2
    return (8.14e-13 + (1.28e-6 + 1.61 * x) * x) * x * x


def _scattering(lam, state: ContinuumState):
    u_h = jnp.exp(log_partition_functions(state.T)[0, 0])
    return (h_rayleigh_cross_section(lam) * state.n_hi * 2.0 / u_h
            + he_rayleigh_cross_section(lam) * state.n_hei
            + h2_rayleigh_cross_section(lam) * state.n_h2
            + const.sigma_T * state.n_e)


def _absorption(lam, state: ContinuumState):
    return (hminus_bf(lam, state) + hminus_ff(lam, state) + hi_bf(lam, state)
            + hi_ff(lam, state) + heii_bf(lam, state) + heminus_ff(lam, state)
            + h2plus(lam, state) + metal_bf(lam, state))


ABSORBERS = {
    "hminus_bf": hminus_bf, "hminus_ff": hminus_ff, "hi_bf": hi_bf, "hi_ff": hi_ff,
    "heii_bf": heii_bf, "heminus_ff": heminus_ff, "h2plus": h2plus, "metal_bf": metal_bf,
}


# ------------------------------------------------------------------------------------------
# public wrapper
# ------------------------------------------------------------------------------------------


def _is_traced(*xs) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(xs))


def _check_lambda(lam, traced):
    lo, hi = LAMBDA_RANGE
    if traced:
        lam = jnp.asarray(lam, dtype=float)
        return eqx.error_if(lam, ~((lam >= lo) & (lam <= hi)),
                            f"wavelength must be within {lo}-{hi} A (vacuum)")
    arr = np.asarray(lam, dtype=float)
    ok = np.isfinite(arr) & (arr >= lo) & (arr <= hi)
    if not np.all(ok):
        raise ValueError(f"wavelength [A] outside every fit ({lo}-{hi} A): "
                         f"{arr[~ok].ravel()[:3].tolist()}")
    return jnp.asarray(lam, dtype=float)


def _check_state(state, traced):
    out = []
    for name, v in zip(state._fields, state, strict=True):
        if traced:
            v = jnp.asarray(v, dtype=float)
            bad = ~jnp.isfinite(v) | (v < 0) | ((v <= 0) if name == "T" else False)
            out.append(eqx.error_if(v, bad, f"state.{name} must be finite and >= 0 (T > 0)"))
        else:
            a = np.asarray(v, dtype=float)
            bad = ~np.isfinite(a) | (a < 0) | ((a <= 0) if name == "T" else False)
            if np.any(bad):
                raise ValueError(f"state.{name} must be finite and >= 0 (T > 0); got "
                                 f"{a[bad].ravel()[:3].tolist()}")
            out.append(jnp.asarray(a))
    st = ContinuumState(*out)
    shape = jnp.shape(st.T)
    return st._replace(n_heii=jnp.broadcast_to(st.n_heii, shape),
                       n_heiii=jnp.broadcast_to(st.n_heiii, shape),
                       n_metal=jnp.broadcast_to(st.n_metal, shape + (7,)))


def continuum_opacity(lam, state: ContinuumState, sources=None):
    """Continuous absorption and scattering coefficients on a (layers x wavelengths) grid.

    Args:
        lam: (n_lambda,) vacuum wavelengths [A] within ``LAMBDA_RANGE``.
        state: :class:`ContinuumState` with fields of shape (n_layers,) (``n_metal``:
            (n_layers, 7)); a single layer (scalars) is also accepted.
        sources: optional iterable of absorber names (keys of ``ABSORBERS``); default all.

    Returns:
        ``(alpha_abs, alpha_scat)`` [cm^-1], each (n_layers, n_lambda) (or (n_lambda,) for one
        layer). Absorption includes stimulated emission; scattering is Rayleigh (H I, He I,
        H2) + Thomson.

    Raises ``ValueError`` outside ``jit`` (an ``eqx.error_if`` error inside) for wavelengths
    outside ``LAMBDA_RANGE`` or NaN/negative state. Works under jit, vmap and grad.
    """
    traced = _is_traced(lam, state)
    lam = _check_lambda(lam, traced)
    state = _check_state(state, traced)
    if sources is None:
        absorb = _absorption
    else:
        fns = [ABSORBERS[s] for s in sources]

        def absorb(lam, st):
            return sum(f(lam, st) for f in fns)

    def one_layer(st):
        return jax.vmap(lambda lm: (absorb(lm, st), _scattering(lm, st)))(lam)

    if jnp.ndim(state.T) == 0:
        return one_layer(state)
    return jax.vmap(one_layer)(state)


# ------------------------------------------------------------------------------------------
# means
# ------------------------------------------------------------------------------------------


def _planck_weights(lam, T):
    """B_lambda and dB_lambda/dT up to a common constant, per unit wavelength."""
    u = _HC_K_AA / (lam * T)
    em1 = jnp.expm1(u)
    b = 1.0 / (lam**5 * em1)
    db = b * u * (em1 + 1.0) / (em1 * T)
    return b, db


def _trapz_weights(lam):
    d = jnp.diff(lam)
    return jnp.concatenate([d[:1] / 2, (d[1:] + d[:-1]) / 2, d[-1:] / 2])


def rosseland_mean(lam, alpha_total, T):
    """Rosseland mean ``1/alpha_R = int (1/alpha) dB/dT dlambda / int dB/dT dlambda``.

    Args:
        lam: (n,) increasing wavelengths [A]; should cover ~0.1-20 lambda_peak(T).
        alpha_total: (..., n) absorption + scattering [cm^-1] (or per gram).
        T: temperature [K], broadcastable with ``alpha_total[..., 0]``.
    The normalising integral is done on the same grid, so the weights sum to one.
    """
    w = _trapz_weights(lam)
    _, db = _planck_weights(lam, jnp.asarray(T)[..., None])
    return jnp.sum(w * db, -1) / jnp.sum(w * db / alpha_total, -1)


def planck_mean(lam, alpha_abs, T):
    """Planck mean ``alpha_P = int alpha B dlambda / int B dlambda`` (absorption only)."""
    w = _trapz_weights(lam)
    b, _ = _planck_weights(lam, jnp.asarray(T)[..., None])
    return jnp.sum(w * b * alpha_abs, -1) / jnp.sum(w * b, -1)

