"""Cubic and bicubic Hermite interpolation (dastro.clusters.uniform_grid)."""

import interpax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dastro.clusters import solver
from dastro.clusters.uniform_grid import (
    bicubic_hermite,
    bicubic_stack,
    cubic_hermite,
    uniform_axis,
)

coef = st.floats(-3.0, 3.0, allow_nan=False)


@settings(max_examples=25, deadline=None)
@given(st.lists(coef, min_size=4, max_size=4), st.floats(-1.0, 2.5))
def test_cubic_hermite_is_exact_for_cubics_on_uneven_nodes(c, x):
    nodes = np.array([-1.0, -0.7, 0.1, 0.2, 1.3, 2.5])
    poly = np.polynomial.Polynomial(c)
    value = cubic_hermite(x, nodes, poly(nodes), poly.deriv()(nodes))
    assert float(value) == pytest.approx(poly(x), abs=1e-12 * (1 + sum(map(abs, c))))
    slope = jax.grad(lambda t: cubic_hermite(t, nodes, poly(nodes), poly.deriv()(nodes)))(x)
    assert float(slope) == pytest.approx(poly.deriv()(x), abs=1e-10 * (1 + sum(map(abs, c))))


@settings(max_examples=25, deadline=None)
@given(st.lists(coef, min_size=16, max_size=16), st.floats(0.0, 1.5), st.floats(-2.0, 1.0))
def test_bicubic_hermite_is_exact_for_bicubics(c, x, y):
    a = np.asarray(c).reshape(4, 4)  # p(x, y) = sum a[i, j] x^i y^j

    def mono(t, i, d):  # d-th derivative of t^i
        t = np.asarray(t, float)
        return 0.0 * t if d > i else np.prod(np.arange(i - d + 1, i + 1)) * t ** (i - d)

    def p(x, y, dx=0, dy=0):
        return sum(a[i, j] * mono(x, i, dx) * mono(y, j, dy)
                   for i in range(4) for j in range(4))

    xn, yn = np.linspace(0.0, 1.5, 7), np.linspace(-2.0, 1.0, 5)
    X, Y = np.meshgrid(xn, yn, indexing="ij")
    ax, ay = uniform_axis("x", xn), uniform_axis("y", yn)
    stack = bicubic_stack(p(X, Y), p(X, Y, 1), p(X, Y, 0, 1), p(X, Y, 1, 1), ax, ay)
    scale = 1 + np.abs(a).sum() * 10
    assert float(bicubic_hermite(x, y, ax, ay, stack)) == pytest.approx(
        float(p(x, y)), abs=1e-12 * scale)
    grad = jax.grad(lambda s, t: bicubic_hermite(s, t, ax, ay, stack), (0, 1))(x, y)
    np.testing.assert_allclose(np.asarray(grad), [p(x, y, 1), p(x, y, 0, 1)],
                               atol=1e-10 * scale)


def test_bicubic_hermite_matches_interpax_with_the_same_slopes():
    rng = np.random.default_rng(3)
    xn, yn = np.linspace(0.5, 14.0, 12), np.linspace(0.0, 1.0, 9)
    f = rng.normal(size=(12, 9, 5))
    fx, fy, fxy = (rng.normal(size=f.shape) for _ in range(3))
    ref = interpax.Interpolator2D(jnp.asarray(xn), jnp.asarray(yn), jnp.asarray(f),
                                  method="cubic", fx=fx, fy=fy, fxy=fxy)
    ax, ay = uniform_axis("W0", xn), uniform_axis("q", yn)
    stack = bicubic_stack(f, fx, fy, fxy, ax, ay)
    for x, y in zip(rng.uniform(0.5, 14.0, 20), rng.uniform(0.0, 1.0, 20), strict=True):
        np.testing.assert_allclose(np.asarray(bicubic_hermite(x, y, ax, ay, stack)),
                                   np.asarray(ref(x, y)), rtol=1e-12, atol=1e-12)


def test_g_max_isotropic_is_the_not_a_knot_spline():
    with np.load(solver._DATA / solver.G_MAX_TABLE) as data:
        w0, g = data["W0"], data["g_max"]
    x = np.random.default_rng(0).uniform(w0[0], w0[-1], 200)
    ref = interpax.CubicSpline(jnp.asarray(w0), jnp.asarray(g), bc_type="not-a-knot")(x)
    np.testing.assert_allclose(np.asarray(solver.g_max_isotropic(x)), np.asarray(ref),
                               rtol=0, atol=1e-13)


# between nodes, near the minimum of g_max (W0 ~ 7.9; a monotone cubic was 6e-5 off there),
# at the emulator's lower edge and where the poles crowd (small W0)
@pytest.mark.slow  # compile-bound; run by benchmarks/slow_checks.py
@pytest.mark.parametrize("w0", [0.125, 0.525, 4.025, 7.925, 7.975, 12.025])
def test_g_max_isotropic_follows_find_g_max_between_nodes(w0):
    assert float(solver.g_max_isotropic(w0)) == pytest.approx(solver.find_g_max(w0), abs=2e-8)


def test_g_max_nodes_are_smooth():
    """Differences of the shipped nodes are those of a smooth curve: no node sits on a later
    pole (which the 0.01 scan once picked at W0 <= 0.3: fourth differences of 5e-2) and the
    bisection noise is far below what the emulator's q coordinate tolerates (eighth
    differences: 3e-8 from the curve itself, 6e-7 with the former 1e-8 bisection)."""
    with np.load(solver._DATA / solver.G_MAX_TABLE) as data:
        w0, g = data["W0"], data["g_max"]
    fine = g[w0 <= 14.0 + 1e-9]  # uniform 0.05 steps
    assert np.max(np.abs(np.diff(fine, 4))) < 1e-5
    assert np.max(np.abs(np.diff(fine[6:], 8))) < 1e-7


@pytest.mark.parametrize("nodes", [[0.0, 1.0, 3.0], [1.0], [2.0, 1.0, 0.0], [[0.0, 1.0]]])
def test_uniform_axis_rejects_bad_nodes(nodes):
    with pytest.raises(ValueError, match="grid nodes"):
        uniform_axis("grid", nodes)


def test_matmul_constant_value_and_derivatives_are_the_plain_product():
    from dastro.clusters.uniform_grid import matmul_constant

    rng = np.random.default_rng(1)
    m = rng.normal(size=(6, 9))
    x = jnp.asarray(rng.normal(size=(2, 6)))
    mj, mtj = jnp.asarray(m), jnp.asarray(np.ascontiguousarray(m.T))
    ct = jnp.asarray(rng.normal(size=(2, 9)))

    def loss(f):
        return lambda x: jnp.sum(ct * f(x))

    np.testing.assert_allclose(matmul_constant(x, mj, mtj), x @ m, rtol=1e-13)
    np.testing.assert_allclose(jax.grad(loss(lambda x: matmul_constant(x, mj, mtj)))(x),
                               jax.grad(loss(lambda x: x @ mj))(x), rtol=1e-13)
    dx = jnp.ones_like(x)
    np.testing.assert_allclose(jax.jvp(lambda x: matmul_constant(x, mj, mtj), (x,), (dx,))[1],
                               dx @ m, rtol=1e-13)


def test_bicubic_hermite_under_vmap_equals_one_point_at_a_time():
    """Under vmap the cells are read by a loop over the batch (custom_vmap); values, forward
    and reverse derivatives, nested vmap and a batch of tables agree with single points."""
    rng = np.random.default_rng(5)
    xn, yn = np.linspace(0.5, 14.0, 12), np.linspace(0.0, 1.0, 9)
    ax, ay = uniform_axis("x", xn), uniform_axis("y", yn)
    f = rng.normal(size=(12, 9, 2, 3))
    stack = jnp.asarray(bicubic_stack(f, rng.normal(size=f.shape), rng.normal(size=f.shape),
                                      rng.normal(size=f.shape), ax, ay))
    x = jnp.asarray(np.concatenate([[3.3], rng.uniform(0.0, 15.0, 6)]))  # some outside
    y = jnp.asarray(rng.uniform(-0.1, 1.0, 7))

    def one(s, t, table=stack):
        return bicubic_hermite(s, t, ax, ay, table)

    single = np.stack([np.asarray(one(a, b)) for a, b in zip(x, y, strict=True)])
    tol = {"rtol": 1e-13, "atol": 1e-14}  # rounding: fused (jit) against op by op
    np.testing.assert_allclose(np.asarray(jax.jit(jax.vmap(one))(x, y)), single, **tol)
    nested = jax.vmap(jax.vmap(one))(x.reshape(7, 1), y.reshape(7, 1))
    np.testing.assert_allclose(np.asarray(nested)[:, 0], single, **tol)
    tables = jnp.stack([stack, 2.0 * stack])
    np.testing.assert_allclose(np.asarray(jax.vmap(lambda a, b, s: one(a, b, s))(
        x[:2], y[:2], tables)), single[:2] * np.array([1.0, 2.0])[:, None, None], **tol)
    jac_fwd = jax.vmap(jax.jacfwd(one, argnums=(0, 1)))(x, y)
    jac_rev = jax.vmap(jax.jacrev(one, argnums=(0, 1)))(x, y)
    for i, (a, b) in enumerate(zip(x, y, strict=True)):
        ref = jax.jacrev(one, argnums=(0, 1))(a, b)
        for k in range(2):
            np.testing.assert_allclose(np.asarray(jac_fwd[k][i]), np.asarray(ref[k]), rtol=1e-13,
                                       atol=1e-13)
            np.testing.assert_allclose(np.asarray(jac_rev[k][i]), np.asarray(ref[k]), rtol=1e-13,
                                       atol=1e-13)
    # and the derivative itself, against central differences inside a cell
    h = 1e-6
    fd = (one(x[0] + h, y[0]) - one(x[0] - h, y[0])) / (2 * h)
    np.testing.assert_allclose(np.asarray(jac_rev[0][0]), np.asarray(fd), rtol=1e-6, atol=1e-8)


def test_vmapped_cell_reads_agree_on_the_accelerator_path(monkeypatch):
    """On the CPU a vmapped batch reads the cells by a loop; elsewhere by the plain vmap
    (chosen at trace time from jax.default_backend): both give the single-point values."""
    rng = np.random.default_rng(2)
    ax = uniform_axis("W0", np.linspace(0.5, 14.0, 9))
    ay = uniform_axis("q", np.linspace(0.0, 1.0, 7))
    stack = jnp.asarray(rng.normal(size=(9, 7, 4, 3)))
    x, y = jnp.asarray(rng.uniform(0.5, 14.0, 11)), jnp.asarray(rng.uniform(0.0, 1.0, 11))

    def batch():
        return np.asarray(jax.jit(jax.vmap(lambda a, b: bicubic_hermite(a, b, ax, ay, stack)))(
            x, y))

    on_cpu = batch()
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    elsewhere = batch()
    single = np.stack([np.asarray(bicubic_hermite(a, b, ax, ay, stack))
                       for a, b in zip(x, y, strict=True)])
    np.testing.assert_allclose(on_cpu, single, rtol=1e-13)
    np.testing.assert_allclose(elsewhere, single, rtol=1e-13)
