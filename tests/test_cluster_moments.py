"""Closed-form DF moments against independent quadrature (mpmath) and scipy's Kummer function."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import hyp1f1

from dastro.clusters.moments import (
    _horner,
    _j0,
    _j1,
    density_integral,
    kummer_m1,
    kummer_m2,
    second_moment_integrals,
)

mpmath = pytest.importorskip("mpmath")
mpmath.mp.dps = 30


def _j_reference(m, h, W, q):
    """J^m_h(W, q) = int_0^W b^m exp(-q b) E_h(W - b) db by mpmath quadrature."""
    h, W, q = mpmath.mpf(h), mpmath.mpf(W), mpmath.mpf(q)

    def f(b):
        return b**m * mpmath.exp(-q * b + W - b) * mpmath.gammainc(h, 0, W - b, regularized=True)

    return float(mpmath.quad(f, [0, W / 2, W]))


@pytest.mark.parametrize("a, kummer", [(1, kummer_m1), (2, kummer_m2)])
def test_kummer_against_scipy(a, kummer):
    rng = np.random.default_rng(1)
    b = rng.uniform(a + 0.5, 8.0, 5000)
    z = np.concatenate([[0.0, 1.0, 40.0], 10 ** rng.uniform(-4, 3.5, 4997)])
    ours = np.asarray(jax.jit(kummer)(b, z))
    np.testing.assert_allclose(ours, hyp1f1(float(a), b, -z), rtol=1e-12)


@pytest.mark.parametrize("kummer", [kummer_m1, kummer_m2])
def test_kummer_is_continuous_across_branches(kummer):
    b, z_switch = jnp.asarray(3.3), 40.0
    below, above = z_switch * (1 - 1e-13), z_switch
    assert float(kummer(b, below)) == pytest.approx(float(kummer(b, above)), rel=1e-11)
    for arg in (0, 1):
        d = jax.grad(kummer, argnums=arg)
        assert float(d(b, below)) == pytest.approx(float(d(b, above)), rel=1e-10)


@pytest.mark.parametrize("h, W, q", [(0.5, 2.4e-9, 0.002), (1.7, 1e-4, 3.0), (0.5, 0.5, 0.5),
                                     (2.0, 5.0, 0.01), (0.5, 3e-3, 100.0), (3.5, 12.0, 40.0)])
def test_moment_integrals_against_quadrature(h, W, q):
    args = (jnp.asarray(h), jnp.asarray(W), jnp.asarray(q))
    assert float(_j0(*args)) == pytest.approx(_j_reference(0, h, W, q), rel=1e-12)
    assert float(_j1(*args)) == pytest.approx(_j_reference(1, h, W, q), rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(w=st.floats(1e-6, 14.0), g=st.floats(0.0, 3.4), p2=st.floats(1e-6, 1e3))
def test_moments_are_positive_and_anisotropy_is_radial(w, g, p2):
    rho = float(density_integral(w, g, p2))
    v2r, v2t = (float(x) for x in second_moment_integrals(w, g, p2))
    assert rho > 0 and v2r > 0 and v2t > 0
    # exp(-J^2 / 2 ra^2) suppresses tangential motion: beta = 1 - v2t / (2 v2r) in [0, 1)
    assert 0.0 <= 1.0 - v2t / (2.0 * v2r) < 1.0


@settings(max_examples=60, deadline=None)
@given(w=st.floats(1e-6, 14.0), g=st.floats(0.0, 3.4))
def test_isotropic_limit_of_anisotropic_moments(w, g):
    iso = float(density_integral(w, g))
    assert float(density_integral(w, g, 1e-14)) == pytest.approx(iso, rel=1e-10)
    v2r, v2t = second_moment_integrals(w, g, 1e-14)
    assert float(v2t) == pytest.approx(2.0 * float(v2r), rel=1e-10)


@jax.jit
def _moments_both_ways(w, g, p2):
    """(series, gammainc): isotropic and anisotropic moments and d rho / d g, stacked."""
    out = []
    for n in (64, None):
        values = [density_integral(w, g, None, n_terms=n), density_integral(w, g, p2, n_terms=n),
                  *second_moment_integrals(w, g, None, n_terms=n),
                  *second_moment_integrals(w, g, p2, n_terms=n),
                  jax.grad(lambda gg, n=n: density_integral(w, gg, p2, n_terms=n))(g)]
        out.append(jnp.stack(values))
    return out


@settings(max_examples=60, deadline=None)
@given(w=st.floats(1e-6, 14.0), g=st.floats(0.0, 3.4), p2=st.floats(0.0, 1e3))
def test_series_evaluation_matches_the_incomplete_gamma(w, g, p2):
    # n_terms = 64 (the emulators, W <= 14) sums E_h's power series instead of gammainc
    series, reference = (np.asarray(a) for a in _moments_both_ways(w, g, p2))
    np.testing.assert_allclose(series[:-1], reference[:-1], rtol=1e-12)
    np.testing.assert_allclose(series[-1], reference[-1], rtol=1e-8, atol=1e-12)


def test_density_vanishes_outside_and_is_monotonic_in_w():
    w = jnp.linspace(-1.0, 10.0, 200)
    rho = np.asarray(density_integral(w, 1.3))
    assert np.all(rho[np.asarray(w) <= 0] == 0.0)
    assert np.all(np.diff(rho) >= 0)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 70), st.integers(0, 2**32 - 1))
def test_strided_horner_is_the_polynomial(n_terms, seed):
    """_horner's residue chains (sum_j x^j P_j(x^s)) give the polynomial: numpy's polyval to
    4 n eps for positive coefficients (the series it sums have terms of one sign), at x from
    0 to 14 (W0's range) and with the per-model coefficients broadcast against the points."""
    rng = np.random.default_rng(seed)
    coef = rng.uniform(0.0, 1.0, (2, 1, n_terms)) / np.cumprod(np.arange(1.0, n_terms + 1))
    x = np.concatenate([[0.0, 14.0], rng.uniform(0.0, 14.0, 30)])
    ref = np.polynomial.polynomial.polyval(x, coef.reshape(2, n_terms).T)
    out = np.asarray(_horner(jnp.asarray(coef), jnp.asarray(x)))
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=4.0 * n_terms * 2.2e-16, atol=0.0)
