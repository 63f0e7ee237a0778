"""Voigt profile and Faddeeva function: accuracy against scipy, AD, jit/vmap, invariants."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import voigt_profile as scipy_voigt_profile
from scipy.special import wofz

import dastro  # noqa: F401  (float64)
from dastro.rt.voigt import faddeeva, voigt_hjerting, voigt_profile, voigt_profile_x

SQRT_PI = np.sqrt(np.pi)

# the (x, a) plane of stellar lines and beyond: far wings of strong lines (x ~ 1e4),
# damping from a ~ 1e-12 (weak metal lines in cool giants) to 1e3 (hydrogen wings)
X_GRID = np.concatenate([[0.0], np.logspace(-4, 4, 241)])
A_GRID = np.concatenate([np.logspace(-12, 3, 241)])


def _relerr(got, ref):
    return np.abs(got - ref) / np.abs(ref)


def test_faddeeva_matches_wofz_over_the_plane():
    x, a = np.meshgrid(X_GRID, A_GRID)
    z = x + 1j * a
    got = np.asarray(faddeeva(z))
    ref = wofz(z)
    err_re = _relerr(got.real, ref.real)
    err_im = _relerr(got.imag[x > 0], ref.imag[x > 0])
    # requirement 1e-4; measured 1.9e-9 and 1.1e-12 (see dastro/rt/voigt.py)
    assert err_re.max() < 5e-9
    assert err_im.max() < 5e-12
    assert np.all(got.imag[x == 0] == 0.0) or np.allclose(got.imag[x == 0], ref.imag[x == 0])


def test_real_axis_and_negative_x():
    x = np.linspace(-30, 30, 2001)
    got = np.asarray(faddeeva(x + 0j))
    ref = wofz(x + 0j)
    assert np.max(np.abs(got.real - np.exp(-(x**2)))) < 1e-15
    assert np.max(_relerr(got.imag[x != 0], ref.imag[x != 0])) < 5e-12
    # w(-x + i a) = conj(w(x + i a))
    z = 3.7 + 0.2j
    assert complex(faddeeva(-np.conj(z))) == pytest.approx(np.conj(complex(faddeeva(z))))


def test_matches_scipy_voigt_profile():
    x = np.linspace(-2.0, 2.0, 401)  # Angstrom
    for sigma, gamma in [(0.05, 1e-4), (0.03, 0.03), (0.01, 0.5), (0.2, 0.0)]:
        got = np.asarray(voigt_profile(x, sigma, gamma))
        ref = scipy_voigt_profile(x, sigma, gamma)
        mask = ref > 1e-300
        assert np.max(_relerr(got[mask], ref[mask])) < 5e-9


def _analytic_grad(a, x):
    w = wofz(x + 1j * a)
    dw = -2 * (x + 1j * a) * w + 2j / SQRT_PI  # w'(z)
    return -dw.imag, dw.real  # dH/da, dH/dx


@pytest.mark.parametrize(
    "a,x",
    [
        (0.0, 0.0),  # line centre, on the axis
        (1e-12, 0.0),
        (1e-3, 0.0),  # branch boundary in a
        (5e-4, 3.0),
        (0.01, 1.0),
        (0.5, 7.9),  # near the far-region switch
        (0.5, 8.1),
        (2.0, 40.0),
        (1e-6, 500.0),
        (30.0, 0.3),
    ],
)
def test_gradients_match_analytic_derivative(a, x):
    ga, gx = jax.grad(voigt_hjerting, argnums=(0, 1))(a, x)
    ra, rx = _analytic_grad(a, x)
    assert np.isfinite(ga) and np.isfinite(gx)
    scale = np.abs(ra) + np.abs(rx)
    assert abs(float(ga) - ra) <= 1e-7 * scale + 1e-300
    assert abs(float(gx) - rx) <= 1e-7 * scale + 1e-300


def test_gradients_match_finite_differences():
    h = 1e-6
    for a, x in [(0.1, 0.7), (0.003, 2.2), (1.5, 5.0), (0.02, 12.0)]:
        ga, gx = jax.grad(voigt_hjerting, argnums=(0, 1))(a, x)
        fda = (voigt_hjerting(a + h, x) - voigt_hjerting(a - h, x)) / (2 * h)
        fdx = (voigt_hjerting(a, x + h) - voigt_hjerting(a, x - h)) / (2 * h)
        assert float(ga) == pytest.approx(float(fda), rel=1e-6, abs=1e-12)
        assert float(gx) == pytest.approx(float(fdx), rel=1e-6, abs=1e-12)


def test_second_derivative_finite_at_line_centre():
    d2 = jax.hessian(voigt_hjerting, argnums=(0, 1))(0.0, 0.0)
    assert np.all(np.isfinite(np.asarray(d2)))
    # d2H/dx2 at (0, 0) = -2 (H = exp(-x^2) on the axis)
    assert float(d2[1][1]) == pytest.approx(-2.0, rel=1e-10)


def test_jit_vmap_and_single_trace():
    a = jnp.array([0.0, 1e-4, 0.1, 3.0])
    x = jnp.linspace(-20, 20, 7)
    ref = wofz(x[None, :] + 1j * np.asarray(a)[:, None]).real

    @eqx.debug.assert_max_traces(max_traces=1)
    def f(a, x):
        return voigt_hjerting(a, x)

    fj = jax.jit(f)
    out1 = fj(a[:, None], x[None, :])
    out2 = fj(a[:, None] * 1.0001, x[None, :])  # same shapes: no retrace
    assert out2.shape == out1.shape
    vm = jax.vmap(jax.vmap(voigt_hjerting, in_axes=(None, 0)), in_axes=(0, None))(a, x)
    np.testing.assert_allclose(np.asarray(out1), ref, rtol=1e-8, atol=1e-300)
    np.testing.assert_allclose(np.asarray(vm), ref, rtol=1e-8, atol=1e-300)
    # gradient through vmap
    g = jax.vmap(jax.grad(voigt_hjerting, argnums=1), in_axes=(0, None))(a, 0.0)
    assert np.all(np.isfinite(np.asarray(g)))


_profile_jit = jax.jit(voigt_profile_x)
_GL_T, _GL_W = np.polynomial.legendre.leggauss(1500)


def _normalisation(a):
    """integral of H(a, x)/sqrt(pi) over the real line, by x = s tan(theta) and Gauss-Legendre."""
    s = 1.0 + a
    t, wt = _GL_T, _GL_W
    theta = t * np.pi / 2
    x = s * np.tan(theta)
    jac = s / np.cos(theta) ** 2 * np.pi / 2
    return float(np.sum(wt * np.asarray(_profile_jit(a, x)) * jac))


@settings(max_examples=25, deadline=None)
@given(st.floats(min_value=1e-3, max_value=50.0))
def test_normalisation_is_one(a):
    assert _normalisation(a) == pytest.approx(1.0, abs=2e-6)


_hjerting_jit = jax.jit(voigt_hjerting)


@settings(max_examples=50, deadline=None)
@given(
    st.floats(min_value=0.0, max_value=100.0, allow_subnormal=False),
    st.floats(min_value=0.0, max_value=1e3, allow_subnormal=False),
)
def test_symmetric_in_x_and_positive(a, x):
    hp = float(_hjerting_jit(a, x))
    hm = float(_hjerting_jit(a, -x))
    assert hp == hm
    # H > 0 everywhere except where it underflows: exp(-x^2) on the axis, a / (sqrt(pi) x^2)
    # for a below ~1e-300
    assert hp > 0.0 or (a < 1e-290 and x > 26.0)
    assert hp <= 1.0 + 1e-15  # H(a, x) <= H(0, 0) = 1
