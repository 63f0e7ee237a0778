"""Line absorption coefficients (dastro.rt.line_opacity) and Balmer lines (dastro.rt.hydrogen)."""

import jax.numpy as jnp
import numpy as np
import pytest

import dastro  # noqa: F401  (float64)
from dastro import constants as const
from dastro.rt import hydrogen as H
from dastro.rt.line_opacity import LayerState, line_parameters, line_support, planck_lambda


def _layers(T=5800.0, n_e=1e13, n_hi=1e17, n_s=1e10, vmic_kms=1.0):
    L = 1
    n_species = jnp.full((L, 30, 3), n_s)
    return LayerState(T=jnp.full(L, T), n_e=jnp.full(L, n_e), n_hi=jnp.full(L, n_hi),
                      n_species=n_species, ln_u=jnp.zeros((L, 30, 3)),
                      vmic=jnp.full(L, vmic_kms * 1e5))


def _line(mode=1, vdw=-7.5, alpha=0.0, gamma_rad=1e8, gamma_stark=1e-6, log_gf=0.0, E=0.0,
          lam=5000.0, z=26):
    f = lambda v: jnp.asarray([v])  # noqa: E731
    return dict(lam0=f(lam), z_idx=jnp.asarray([z - 1]), c_idx=jnp.asarray([0]),
                log_gf=f(log_gf), E_lower=f(E), gamma_rad=f(gamma_rad),
                gamma_stark=f(gamma_stark), vdw_mode=jnp.asarray([mode]), vdw=f(vdw),
                vdw_alpha=f(alpha))


def test_strength_and_widths_by_hand():
    lay = _layers()
    amp, dld, a = line_parameters(**_line(), layers=lay)
    lam, T = 5000.0, 5800.0
    stim = 1 - np.exp(-const.hc / (lam * 1e-8 * const.k_B * T))
    expect = (np.pi * const.e_esu**2 / (const.m_e * const.c) * (lam * 1e-8) ** 2 / const.c
              * 1e10 * stim * 1e8)
    assert float(amp[0, 0]) == pytest.approx(expect, rel=1e-12)
    m = 55.845 * const.amu
    assert float(dld[0, 0]) == pytest.approx(
        lam / const.c * np.sqrt(2 * const.k_B * T / m + 1e10), rel=1e-12)
    gamma = 1e8 + 1e-6 * 1e13 * (0.58) ** (1 / 6) + 10**-7.5 * 1e17 * 0.58**0.3
    assert float(a[0, 0]) == pytest.approx(
        gamma * lam**2 * 1e-8 / (4 * np.pi * const.c * float(dld[0, 0])), rel=1e-12)


def test_boltzmann_factor_and_gf_scaling():
    lay = _layers()
    a0, _, _ = line_parameters(**_line(E=0.0), layers=lay)
    a1, _, _ = line_parameters(**_line(E=2.0, log_gf=-1.0), layers=lay)
    ratio = float(a1[0, 0] / a0[0, 0])
    assert ratio == pytest.approx(0.1 * np.exp(-2.0 / (const.k_B_eV * 5800.0)), rel=1e-12)


def test_van_der_waals_modes_are_consistent():
    lay = _layers()
    # ABO with alpha = 0: Gamma = 2 Gamma_fn(2) v sigma n_H, independent of T scaling form
    _, dld, a_abo = line_parameters(**_line(mode=2, vdw=300.0, alpha=0.0, gamma_rad=0.0,
                                            gamma_stark=1e-30), layers=lay)
    m = 55.845 * const.amu
    v = np.sqrt(8 * const.k_B * 5800 / np.pi * (1 / (1.008 * const.amu) + 1 / m))
    g6 = 2 * v * 300 * const.a0**2 * 1e17
    g_rad = 2.2233e15 / 5000.0**2
    expect = (g6 + g_rad + 1e-30 * 1e13 * 0.58 ** (1 / 6)) * 5000.0**2 * 1e-8 / (
        4 * np.pi * const.c * float(dld[0, 0]))
    assert float(a_abo[0, 0]) == pytest.approx(expect, rel=1e-10)
    # typical solar Fe I: ABO and the Unsold estimate agree within a factor ~3 (Unsold low)
    _, _, a_uns = line_parameters(**_line(mode=0, vdw=1.0, E=2.0, gamma_rad=0.0,
                                          gamma_stark=1e-30), layers=lay)
    assert 1.0 < float(a_abo[0, 0] / a_uns[0, 0]) < 6.0
    # C6 given directly equals the Unsold value computed from the same C6
    for mode in (0, 1, 2, 3):
        _, _, a = line_parameters(**_line(mode=mode, vdw={0: 1.5, 1: -7.4, 2: 250.0,
                                                          3: -31.5}[mode], alpha=0.25),
                                  layers=lay)
        assert np.all(np.isfinite(np.asarray(a))) and float(a[0, 0]) > 0


def test_support_mask():
    sp = np.array([1, 2, 26, 30, 31, 56, 607])
    ch = np.array([0, 0, 1, 2, 0, 1, 0])
    np.testing.assert_array_equal(line_support(sp, ch), [False, True, True, True, False, False,
                                                         False])


def test_planck():
    # Wien limit and the Stefan-Boltzmann law as an integral
    lam = np.geomspace(500, 3e6, 20000)
    b = np.asarray(planck_lambda(jnp.asarray(lam), 5772.0))
    total = np.trapezoid(b, lam) * np.pi
    assert total == pytest.approx(const.sigma_SB * 5772.0**4, rel=1e-3)


def test_balmer_wavelengths_and_normalisation():
    assert H.balmer_wavelength(3) == pytest.approx(6564.6, abs=0.1)  # vacuum H-alpha
    assert H.balmer_wavelength(4) == pytest.approx(4862.7, abs=0.1)
    assert H.balmer_levels_near(5150.0, 5200.0) == [4]  # H-beta 288 A away
    assert H.balmer_levels_near(5500.0, 5600.0) == []
    assert H.balmer_levels_near(6500.0, 6600.0) == [3]
    lay = _layers(n_e=1e14, n_hi=1e17)
    lam = jnp.linspace(6564.6 - 400, 6564.6 + 400, 400001)
    alpha = np.asarray(H.balmer_absorption(lam, (3,), lay))[0]
    area = np.trapezoid(alpha, np.asarray(lam))
    f = 0.6407
    n_low = 1e17 * 8 * np.exp(-10.19881 / (const.k_B_eV * 5800.0))
    stim = 1 - np.exp(-const.hc / (6564.6e-8 * const.k_B * 5800.0))
    expect = np.pi * const.e_esu**2 / (const.m_e * const.c) * (6564.6e-8) ** 2 / const.c * f \
        * n_low * stim * 1e8
    # the wings beyond +-400 A hold ~1 % of the area
    assert area == pytest.approx(expect, rel=0.03)
    # more electrons: stronger Stark wings
    lay2 = _layers(n_e=1e15, n_hi=1e17)
    alpha2 = np.asarray(H.balmer_absorption(lam, (3,), lay2))[0]
    k = np.searchsorted(np.asarray(lam), 6564.6 + 10)
    assert alpha2[k] > alpha[k]
