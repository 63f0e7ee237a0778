"""Formal solution (dastro.rt.transfer): exact grey and Milne-Eddington results."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sp
from scipy.interpolate import CubicSpline

import dastro  # noqa: F401  (float64)
from dastro.rt import transfer as tr

# Hopf function q(tau) of the exact grey atmosphere (Chandrasekhar 1950, Radiative Transfer,
# Table XIII; Mihalas 1978, Stellar Atmospheres, 2nd ed., Table 3-2); q(inf) = 0.710446.
HOPF_TAU = [0, 0.01, 0.03, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 1.0, 1.5, 2.0, 2.5, 3.0]
HOPF_Q = [0.577350, 0.588236, 0.601242, 0.610758, 0.627919, 0.649550, 0.663365, 0.673090,
          0.680240, 0.685801, 0.698540, 0.705226, 0.707916, 0.709191, 0.709806]
Q_INF = 0.710446


def hopf_q(tau):
    cs = CubicSpline(HOPF_TAU, HOPF_Q)
    tail = Q_INF - (Q_INF - HOPF_Q[-1]) * np.exp(-1.2 * (tau - 3.0))
    return np.where(tau <= 3.0, cs(np.minimum(tau, 3.0)), tail)


def chandrasekhar_h(mu, n=96, iters=3000):
    """H-function of conservative isotropic scattering, 1/H(mu) = 1/2 int mu' H/(mu+mu')."""
    x, w = np.polynomial.legendre.leggauss(n)
    m, w = 0.5 * (x + 1), 0.5 * w
    h = np.ones(n)
    for _ in range(iters):
        h = 0.5 * (h + 1.0 / np.sum(0.5 * w * m * h / (m[:, None] + m), axis=1))  # damped
    mu = np.atleast_1d(mu)
    return 1.0 / np.sum(0.5 * w * m * h / (mu[:, None] + m), axis=1)


GREY_TAU = np.geomspace(1e-6, 100.0, 80)


def test_exp1_against_scipy():
    x = np.concatenate([np.geomspace(1e-12, 650, 3000), [1.999, 2.0, 2.001]])
    e1 = np.asarray(tr._exp1(jnp.asarray(x)))
    assert np.max(np.abs(e1 / sp.exp1(x) - 1)) < 1e-12
    e3, e4 = tr.expint_34(jnp.asarray(x))
    keep = x < 300
    assert np.max(np.abs(np.asarray(e3)[keep] / sp.expn(3, x[keep]) - 1)) < 1e-9
    assert np.max(np.abs(np.asarray(e4)[keep] / sp.expn(4, x[keep]) - 1)) < 1e-8
    assert float(tr.expint_34(0.0)[0]) == pytest.approx(0.5)
    assert float(tr.expint_34(0.0)[1]) == pytest.approx(1 / 3)


def test_grey_hopf_conserves_flux():
    # S = B = sigma T^4 / pi with T^4 = 3/4 Teff^4 (tau + q(tau)); units sigma Teff^4 = 1.
    S = 0.75 / np.pi * (GREY_TAU + hopf_q(GREY_TAU))
    F = np.asarray(tr.flux_at_depth(GREY_TAU, S))
    assert np.max(np.abs(F - 1.0)) < 1e-3
    for method in ("expint", "gauss"):
        assert float(tr.flux(GREY_TAU, S, method=method)) == pytest.approx(1.0, abs=2e-4)
    # the Eddington approximation q = 2/3 does not conserve flux at depth: the test can fail
    S_edd = 0.75 / np.pi * (GREY_TAU + 2.0 / 3.0)
    assert np.max(np.abs(np.asarray(tr.flux_at_depth(GREY_TAU, S_edd)) - 1)) > 1e-2


def test_grey_limb_darkening_is_chandrasekhar_h():
    # I(0, mu) = sqrt(3) F H(mu) / (4 pi) for the exact grey atmosphere (Chandrasekhar 1950)
    S = 0.75 / np.pi * (GREY_TAU + hopf_q(GREY_TAU))
    mu = np.array([0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0])
    inten = np.asarray(tr.intensity(GREY_TAU, S, mu))
    h = chandrasekhar_h(mu)
    assert h[-1] == pytest.approx(2.9078, abs=2e-4)  # H(1), Chandrasekhar's table
    np.testing.assert_allclose(inten, np.sqrt(3) * h / (4 * np.pi), rtol=1e-3)
    np.testing.assert_allclose(inten / inten[-1], h / h[-1], rtol=1e-3)


def test_milne_eddington_line_profile():
    # S = a + b tau_c, line/continuum opacity ratio eta(lambda) constant with depth:
    # I(0, mu) = a + b mu / (1 + eta), F = 2 pi (a/2 + b / (3 (1 + eta))) exactly.
    m = np.geomspace(1e-9, 1e3, 80)
    rho = np.geomspace(1e-12, 1e-6, 80)
    kappa_c = 0.3
    x = np.linspace(-6, 6, 41)
    eta = 10.0 * np.asarray(jax.vmap(lambda xx: jnp.real(jnp.exp(-xx**2)))(x))
    alpha = kappa_c * rho[:, None] * (1.0 + eta[None, :])
    tau = tr.optical_depth(alpha, m, rho)
    tau_c = kappa_c * m
    np.testing.assert_allclose(np.asarray(tau), tau_c[:, None] * (1 + eta), rtol=1e-12)
    a, b = 1.0, 2.5
    S = jnp.broadcast_to((a + b * tau_c)[:, None], tau.shape)
    for mu in (0.2, 0.7, 1.0):
        np.testing.assert_allclose(np.asarray(tr.intensity(tau, S, mu)),
                                   a + b * mu / (1 + eta), rtol=1e-9)
    F = 2 * np.pi * (a / 2 + b / (3 * (1 + eta)))
    np.testing.assert_allclose(np.asarray(tr.flux(tau, S)), F, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(tr.flux(tau, S, method="gauss", n_mu=4)), F,
                               rtol=1e-9)


def test_eddington_barbier():
    # exact for linear S; approximate (few %) for the curved S = B(T(tau)) of a grey
    # atmosphere at 5000 A, Teff = 5777 K
    tau = GREY_TAU
    T = (0.75 * 5777.0**4 * (tau + hopf_q(tau))) ** 0.25
    from dastro.rt.line_opacity import planck_lambda
    S = np.asarray(planck_lambda(5000.0, T))
    for mu in (0.3, 0.6, 1.0):
        i_mu = float(tr.intensity(tau, S, mu))
        assert i_mu == pytest.approx(np.interp(mu, tau, S), rel=0.05)
    F = float(tr.flux(tau, S))
    assert F == pytest.approx(np.pi * np.interp(2 / 3, tau, S), rel=0.05)


def test_second_order_convergence():
    # S = exp(-tau): I(0, 1) = 1/2 exactly; the piecewise-linear error is O(h^2)
    errs, hs = [], []
    for n in (40, 80, 160, 320):
        tau = np.linspace(0.0, 40.0, n)
        errs.append(abs(float(tr.intensity(tau, np.exp(-tau), 1.0)) - 0.5))
        hs.append(tau[1])
    order = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert 1.9 < order < 2.1


def test_gradients_finite_and_match_differences():
    tau = jnp.asarray(np.concatenate([[1e-5, 1e-5], np.geomspace(2e-5, 30, 30)]))  # coincident
    S = jnp.asarray(np.linspace(1.0, 3.0, tau.size) ** 2)

    @jax.jit  # compiled once: eager differences and gradients took ~50 s of dispatch
    def f(t, s):
        return tr.flux(t, s) + tr.intensity(t, s, 0.5) + jnp.sum(tr.flux_at_depth(t, s))

    gt, gs = jax.jit(jax.grad(f, argnums=(0, 1)))(tau, S)
    assert np.all(np.isfinite(gt)) and np.all(np.isfinite(gs))
    for k in (3, 10, 25):
        h = 1e-6 * float(S[k])
        e = jnp.zeros_like(S).at[k].set(h)
        fd = (f(tau, S + e) - f(tau, S - e)) / (2 * h)
        assert float(gs[k]) == pytest.approx(float(fd), rel=1e-4)
        h = 1e-4 * float(tau[k])
        e = jnp.zeros_like(tau).at[k].set(h)
        fd = (f(tau + e, S) - f(tau - e, S)) / (2 * h)
        assert float(gt[k]) == pytest.approx(float(fd), rel=2e-4, abs=1e-8)


def test_isothermal_flux_is_pi_s():
    tau = np.geomspace(1e-4, 50, 40)
    assert float(tr.flux(tau, np.full(40, 2.0))) == pytest.approx(2 * np.pi * 1.0)
    with pytest.raises(ValueError, match="method"):
        tr.flux(tau, np.ones(40), method="simpson")
