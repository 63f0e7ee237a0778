"""Pointwise DF densities (dastro.clusters.df_local) against the line-of-sight densities of
dastro.clusters.df, the 6D density, gammainc, and finite differences."""

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import dastro  # noqa: F401  (float64)
from dastro.clusters import df, emulate, solve
from dastro.clusters.df_local import _log_e, _log_e_h, log_density_local, radius_at_potential
from dastro.clusters.emulator import _emulate, load_table

STAR = (1.2, -0.7, 0.9, 3.0, -2.0, 4.5)


@pytest.fixture(scope="module")
def king():
    return solve(6.0, 1.3).scale(1e5, rh=3.0)


@settings(max_examples=30, deadline=None)
@given(st.floats(0.0, 3.0), st.integers(0, 3), st.floats(1e-4, 14.0))
@example(2.2250738585072014e-308, 0, 0.5)  # jax's gammainc gives NaN here
def test_series_matches_incomplete_gamma(g, k, x):
    """log E_h(x) = x + log P(h, x), P the regularised lower incomplete gamma function; the
    reference is mpmath's (jax's gammainc is NaN for h below ~1e-300, where P -> 1)."""
    h = g + 0.5 * k
    ours = float(_log_e(jnp.asarray(g), jnp.asarray(k), jnp.asarray(x), 64))
    with mpmath.workdps(30):
        ref = x if h == 0 else x + float(mpmath.log(mpmath.gammainc(h, 0, x, regularized=True)))
    assert ours == pytest.approx(ref, abs=1e-12, rel=1e-12)


@settings(max_examples=20, deadline=None)
@given(st.floats(0.05, 3.0), st.integers(0, 3), st.floats(1e-3, 14.0))
def test_series_derivatives_match_mpmath(g, k, x):
    """The closed-form derivatives of log E_h(x) in g and x (its custom JVP) against
    mpmath's numerical derivatives of log(exp(x) P(h, x))."""
    h = g + 0.5 * k
    d_g, d_x = jax.grad(_log_e, argnums=(0, 2))(jnp.asarray(g), jnp.asarray(k),
                                                 jnp.asarray(x), 64)

    def ref(hh, xx):
        return xx + mpmath.log(mpmath.gammainc(hh, 0, xx, regularized=True))

    with mpmath.workdps(30):
        ref_h = float(mpmath.diff(lambda t: ref(t, x), h))
        ref_x = float(mpmath.diff(lambda t: ref(h, t), x))
    assert float(d_g) == pytest.approx(ref_h, rel=1e-9, abs=1e-10)
    assert float(d_x) == pytest.approx(ref_x, rel=1e-9, abs=1e-10)


def test_full_velocities_match_6d_density(king):
    a = float(log_density_local(king, *STAR))
    b = float(df.log_density_6d(king, *STAR))
    assert a == pytest.approx(b, abs=1e-9)
    aniso = solve(6.0, 1.3, 5.0).scale(1e5, rh=3.0)
    assert float(log_density_local(aniso, *STAR)) == pytest.approx(
        float(df.log_density_6d(aniso, *STAR)), abs=1e-9)


@pytest.mark.parametrize("mask,fn,nv", [((1, 1, 1), "log_density_xy_v3", 3),
                                        ((0, 0, 1), "log_density_xy_vlos", 1),
                                        ((1, 1, 0), "log_density_xy_pm", 2),
                                        ((0, 0, 0), "log_density_xy", 0)])
def test_line_of_sight_integral_gives_projected_densities(king, mask, fn, nv):
    """int dz of the pointwise density (missing components integrated analytically)."""
    x, y, _, *v = STAR
    zz = np.linspace(-float(king.rt), float(king.rt), 40001)
    lp = log_density_local(king, x, y, zz, *v, *[bool(m) for m in mask])
    integral = np.log(np.trapezoid(np.exp(np.asarray(lp)), zz))
    args = {3: v, 1: v[2:], 2: v[:2], 0: []}[nv]
    assert integral == pytest.approx(float(getattr(df, fn)(king, x, y, *args)), abs=1e-5)


def test_gradients_through_the_emulator_match_finite_differences():
    """d/d(W0, g, ln M, ln rh) of the summed local log density of stars with every subset of
    velocity components (the likelihood NUTS differentiates), emulator included, vs central
    differences."""
    rng = np.random.default_rng(5)
    pos = rng.normal(0.0, 1.5, (3, 12))
    vel = rng.normal(0.0, 3.0, (3, 12))
    masks = [np.arange(12) % 4 != 0, np.arange(12) % 4 != 1, np.arange(12) % 3 != 0]
    table = load_table()

    @jax.jit
    def total(theta):
        model = _emulate(table, theta[0], theta[1]).scale(
            jnp.exp(theta[2]), rh=jnp.exp(theta[3]))
        return jnp.sum(log_density_local(model, *pos, *vel, *masks))

    theta = np.array([6.0, 1.1, np.log(1e5), np.log(3.0)])
    grad = np.asarray(jax.jit(jax.grad(total))(jnp.asarray(theta)))
    assert np.isfinite(float(total(jnp.asarray(theta))))
    for i, h in enumerate((1e-4, 1e-4, 1e-5, 1e-5)):
        e = np.zeros(4)
        e[i] = h
        fd = (float(total(jnp.asarray(theta + e))) - float(total(jnp.asarray(theta - e)))) / (2 * h)
        assert grad[i] == pytest.approx(fd, rel=2e-5, abs=1e-6), (i, grad[i], fd)


def test_outside_support_is_minus_inf_with_zero_gradient(king):
    far = log_density_local(king, 0.0, 0.0, 2 * float(king.rt), 0.0, 0.0, 0.0)
    fast = log_density_local(king, 0.1, 0.0, 0.0, 500.0, 0.0, 0.0)
    assert far == -jnp.inf and fast == -jnp.inf
    grad = jax.grad(lambda vz: jnp.sum(jnp.where(
        jnp.isfinite(log_density_local(king, 0.1, 0.0, 0.0, 500.0, 0.0, vz)), 0.0, 0.0)))(1.0)
    assert np.isfinite(grad)


def test_anisotropic_models_need_all_components():
    aniso = solve(6.0, 1.3, 5.0)
    with pytest.raises(ValueError, match="anisotropic"):
        log_density_local(aniso, 0.1, 0.2, 0.3, 0.1, 0.1, 0.1, True, True, False)
    # complete data given as numpy mask arrays is accepted inside a trace (as in the fits),
    # and gives the same density as with Python bools; traced masks are refused
    x = np.array([0.1, 0.4])
    full = np.ones(2, bool)

    def density(masks):
        return log_density_local(aniso, x, 0.2 * x, 0.3 * x, 0.1 * x, 0.1 * x, 0.1 * x, *masks)

    inside_jit = jax.jit(lambda: density((full, full, full)))()
    np.testing.assert_allclose(np.asarray(inside_jit), np.asarray(density((True,) * 3)),
                               rtol=1e-12)
    with pytest.raises(ValueError, match="anisotropic"):
        jax.jit(lambda m: density((m, full, full)))(full)


def test_escape_radius_inverts_the_potential_and_differentiates():
    m = emulate(6.0, 1.2).scale(1e5, rh=3.0)
    w = jnp.array([0.0, 0.01, 0.5, 2.0, 3.3, 5.9, 6.0])
    r = jax.jit(radius_at_potential)(m, w)
    assert float(r[0]) == pytest.approx(float(m.rt), rel=1e-12)
    assert float(r[-1]) == 0.0
    np.testing.assert_allclose(np.asarray(m.potential(r[1:-1]) / m.s2), np.asarray(w[1:-1]),
                               atol=1e-12)
    table = load_table()

    @jax.jit
    def f(W0):
        return radius_at_potential(_emulate(table, W0, 1.2).scale(1e5, rh=3.0), 2.0)

    fd = (f(6.0 + 1e-5) - f(6.0 - 1e-5)) / 2e-5
    assert float(jax.jit(jax.grad(f))(6.0)) == pytest.approx(float(fd), rel=1e-5)


_scalar_and_per_point = jax.jit(lambda h, x: (
    jax.value_and_grad(lambda a, b: jnp.sum(_log_e_h(a, b, 64)), argnums=(0, 1))(h, x),
    jax.value_and_grad(lambda a, b: jnp.sum(_log_e_h(a * jnp.ones_like(b), b, 64)),
                       argnums=(0, 1))(h, x)))


@settings(max_examples=15, deadline=None)
@given(st.floats(0.0, 5.0), st.integers(0, 2**32 - 1))
def test_log_e_with_one_h_equals_the_series_with_h_per_point(h, seed):
    """With one h (a model's: the emulators' moments) log E_h sums its series from the
    coefficients, computed once, by strided Horner sums; it equals the nested series with h
    per point, in value and in the gradients in h and x, to rounding."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(np.concatenate([[1e-8, 14.0], rng.uniform(1e-3, 14.0, 60)]))
    (value, (dh, dx)), (ref, (ref_dh, ref_dx)) = _scalar_and_per_point(h, x)
    assert float(value) == pytest.approx(float(ref), rel=1e-13)
    assert float(dh) == pytest.approx(float(ref_dh), rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(np.asarray(dx), np.asarray(ref_dx), rtol=1e-13)
