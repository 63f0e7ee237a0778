"""The isotropic emulator against the exact solver: accuracy, smoothness, box, table integrity."""

import json
import math
import shutil

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dastro.clusters import emulator as emu
from dastro.clusters import g_max_isotropic, solve

TABLE = emu.load_table()


def test_table_metadata_and_size():
    meta = TABLE.metadata
    assert meta["table_version"] == emu.TABLE_VERSION
    assert meta["made_by"] == "scripts/build_cluster_table.py"
    assert "accuracy" in meta
    path = emu._DATA / emu.TABLE_NAME
    assert path.stat().st_size < 30e6


# Measured accuracy of the shipped table (181 x 49 nodes in (y, w), 10^4 draws, build script,
# 2026-12-05): medians 2e-10 (scalars) to 7.2e-7 (Sigma), maxima 2e-8 (scalars) to 7.7e-6
# (Sigma), every quantity inside issue 3's 1e-5. These bounds guard what is achieved.
MEDIAN_BOUND = {"rt": 1e-9, "rh": 1e-9, "M": 1e-9, "U": 1e-9, "K": 1e-9, "rhp": 1e-9,
                "A": 1e-14, "phi": 1e-6, "rho": 2e-6, "mc": 1e-6, "v2": 1e-6, "Sigma": 2e-6,
                "v2p": 1e-6}
MAX_ERROR = 1e-5  # issue 3, every quantity


@pytest.mark.slow  # compile-bound; run by benchmarks/slow_checks.py
def test_random_models_match_the_exact_solver():
    acc = emu.measure_accuracy(12, seed=123)
    for name, row in acc["quantities"].items():
        assert row["median"] < 10 * MEDIAN_BOUND[name], (name, row)
        assert row["max"] < MAX_ERROR, (name, row)
        worst = row["worst"]  # the draw of the largest error, inside the box
        assert 0.5 <= worst["W0"] <= 14.0, (name, worst)
        assert 0.0 <= worst["g"] <= float(emu.g_hi(worst["W0"])) + 1e-12, (name, worst)
        assert 0.0 <= worst.get("r_over_rt", 0.0) <= 1.0, (name, worst)


def test_shipped_accuracy_table():
    acc = TABLE.metadata["accuracy"]
    assert acc["n"] >= 10_000
    for name, row in acc["quantities"].items():
        assert row["median"] < MEDIAN_BOUND[name], (name, row)
        assert row["max"] < MAX_ERROR, (name, row)


def test_same_interface_and_units_as_the_exact_model():
    exact = solve(6.3, 1.4).scale(2e5, rh=3.5)
    fast = emu.emulate(6.3, 1.4).scale(2e5, rh=3.5)
    r = np.linspace(0.0, 1.2 * float(exact.rt), 30)
    for a, b in zip(exact.profiles(r), fast.profiles(r), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4,
                                   atol=1e-6 * float(np.max(np.abs(np.asarray(a)))))
    for name in ["rt", "rh", "rv", "M", "K", "U", "A", "s2", "sigma0_2"]:
        assert float(getattr(fast, name)) == pytest.approx(float(getattr(exact, name)),
                                                           rel=1e-5), name
    assert float(fast.projected_half_mass_radius()) == pytest.approx(
        float(exact.projected_half_mass_radius()), rel=1e-5)


def _scalar_and_profile(w0, g):
    m = emu._emulate(TABLE, w0, g)
    r = jnp.exp(m.ln_rt) * jnp.array([0.05, 0.5])
    return jnp.concatenate([jnp.stack([m.ln_rt, m.rh_model]), m._profiles(r).rho,
                            m._projected(r).Sigma])


def test_gradients_match_finite_differences_and_the_exact_solver():
    f = jax.jit(_scalar_and_profile)
    jac = jax.jacrev(f, argnums=(0, 1))(6.3, 1.4)
    for i, h in enumerate([1e-4, 1e-4]):
        args = [6.3, 1.4]
        args[i] += h
        up = np.asarray(f(*args))
        args[i] -= 2 * h
        down = np.asarray(f(*args))
        np.testing.assert_allclose(np.asarray(jac[i]), (up - down) / (2 * h), rtol=1e-5,
                                   atol=1e-9)


@pytest.mark.slow  # compile-bound; run by benchmarks/slow_checks.py
def test_radial_derivative_is_the_enclosed_mass():
    """d phi / dr = -G M(<r) / r^2 (Poisson's equation): the derivative of the W series in
    radius (its custom JVP, forward and reverse mode) against the separately tabulated M(<r)."""
    m = emu._emulate(TABLE, 7.3, 1.1)
    r = jnp.exp(m.ln_rt) * jnp.array([0.003, 0.04, 0.3, 0.8, 0.97])

    def phi(rr):
        return m._profiles(rr).phi

    slope_rev = jax.vmap(jax.grad(phi))(r)
    slope_fwd = jnp.diagonal(jax.jacfwd(phi)(r))
    expected = -m.G * m._profiles(r).mc / r**2
    np.testing.assert_allclose(np.asarray(slope_rev), np.asarray(expected), rtol=2e-5)
    np.testing.assert_allclose(np.asarray(slope_fwd), np.asarray(slope_rev), rtol=1e-12)


@pytest.mark.slow  # compile-bound; run by benchmarks/slow_checks.py
@settings(max_examples=6, deadline=None)
@given(st.floats(0.5, 14.0), st.floats(0.0, 1.0))
@example(14.0, 1.0)
@example(0.5, 0.0)
def test_hermite_grid_matches_the_series(w0, q):
    """The quintic Hermite grid (used by the fits) reproduces the Chebyshev series of W and
    M(<r), and their derivatives in W0, g and r, far below the emulator's own error."""
    g = float(q * emu.g_hi(w0))
    series = emu._emulate(TABLE, w0, g)
    rt = float(series.rt)
    r = jnp.asarray(np.concatenate([[0.0, 5e-4, 1e-3, 0.999999 * rt],
                                    np.geomspace(2e-3, 0.999 * rt, 40)]))

    def state(model_fn, params):
        m = model_fn(*params)
        return jnp.stack(m._state(r * m.rt / rt))

    exact_fn = lambda a, b: emu._emulate(TABLE, a, b)  # noqa: E731
    grid_fn = lambda a, b: emu._emulate(TABLE, a, b).gridded()  # noqa: E731
    a = state(exact_fn, (w0, g))
    b = state(grid_fn, (w0, g))
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-7, atol=1e-12 * w0)
    ja = jax.jacfwd(lambda p: state(exact_fn, p))(jnp.array([w0, g]))
    jb = jax.jacrev(lambda p: state(grid_fn, p))(jnp.array([w0, g]))
    ja, jb = np.asarray(ja), np.asarray(jb)  # (W or GM, radius, parameter)
    scale = np.max(np.abs(ja), axis=1, keepdims=True)
    assert np.all(np.abs(jb - ja) <= 2e-6 * scale), np.max(np.abs(jb - ja) / scale)
    slope_a = jax.vmap(jax.grad(lambda x: series._state(x)[0]))(r[1:-1])
    slope_b = jax.vmap(jax.grad(lambda x: series.gridded()._state(x)[0]))(r[1:-1])
    np.testing.assert_allclose(np.asarray(slope_b), np.asarray(slope_a), rtol=1e-4,
                               atol=1e-9 * w0)


def test_gradient_is_continuous_across_a_cell_boundary():
    """Derivatives just either side of a W0 node and a q node agree (the spline is C1)."""
    f = jax.jit(jax.grad(lambda w, g: emu._emulate(TABLE, w, g).ln_rt, argnums=(0, 1)))
    w_node = float(TABLE.w0_nodes[20])
    eps = 1e-9
    left = np.asarray(f(w_node - eps, 1.0))
    right = np.asarray(f(w_node + eps, 1.0))
    np.testing.assert_allclose(left, right, rtol=1e-6)
    q_node = float(emu.q_from_w(TABLE.w_nodes[10]))
    g_node = float(emu.g_from_q(q_node, emu.g_hi(5.0) + emu.G_MARGIN))
    np.testing.assert_allclose(np.asarray(f(5.0, g_node - eps)), np.asarray(f(5.0, g_node + eps)),
                               rtol=1e-6)


def test_scalar_grid_cell_boundaries_are_c1():
    """ln rt comes from the finer scalar grid: derivatives agree either side of one of its
    nodes that is not a node of the profile grid."""
    f = jax.jit(jax.grad(lambda w, g: emu._emulate(TABLE, w, g).ln_rt, argnums=(0, 1)))
    w_node = float(emu.w0_from_y(TABLE.y_fine_axis.x0 + 61 * TABLE.y_fine_axis.step))
    eps = 1e-9
    np.testing.assert_allclose(np.asarray(f(w_node - eps, 0.7)),
                               np.asarray(f(w_node + eps, 0.7)), rtol=1e-6)


@pytest.mark.parametrize(("i", "j"), [(1, 1), (61, 119), (302, 2), (659, 61)])
def test_scalars_at_fine_nodes_are_the_exact_models(i, j):
    """At a node of the scalar grid (most are not nodes of the profile grid) the emulated
    scalars are the exact solver's at g = g_from_q(q, the emulator's g_max(W0))."""
    w0 = float(emu.w0_from_y(TABLE.y_fine_axis.x0 + i * TABLE.y_fine_axis.step))
    q = float(emu.q_from_w(TABLE.w_fine_axis.x0 + j * TABLE.w_fine_axis.step))
    g = float(emu.g_from_q(q, TABLE.g_max(w0)))
    exact = solve(w0, g, rtol=1e-12, atol=1e-14)
    fast = emu.emulate(w0, g)
    for name in ["rt", "rh", "M", "U", "K"]:
        assert float(getattr(fast, name)) == pytest.approx(float(getattr(exact, name)),
                                                           rel=1e-9), name


def test_emulator_g_max_follows_the_solver_edge():
    """The emulator's g_max(W0) (a spline with knots on its own W0 nodes) is the solver's at
    those nodes and within 1e-7 of it between them."""
    nodes = np.asarray(TABLE.w0_nodes)
    np.testing.assert_allclose(np.asarray(TABLE.g_max(nodes)),
                               np.asarray(g_max_isotropic(nodes)), rtol=0, atol=1e-12)
    w0 = np.random.default_rng(3).uniform(0.5, 14.0, 500)
    np.testing.assert_allclose(np.asarray(TABLE.g_max(w0)), np.asarray(g_max_isotropic(w0)),
                               rtol=0, atol=1e-7)
    np.testing.assert_allclose(np.asarray(emu.g_hi(w0)),
                               np.asarray(TABLE.g_max(w0)) - emu.G_MARGIN, rtol=0, atol=0)


@pytest.mark.parametrize("q", [0.0, 1.0])
def test_central_surface_density_at_a_table_node(q):
    """At a node of the table (W0 = 0.5, q = 0 or 1: no interpolation in (W0, g)), Sigma and
    v2p at R <= r_in (no table there; ln Sigma continued evenly in R from r_in) are the exact
    solver's to 1e-7. rt ~ 0.6 to 4 r0 there; held at its value at r_in, Sigma(0) erred by
    1.2e-5."""
    g = float(emu.g_from_q(q, TABLE.g_max(0.5)))
    exact = solve(0.5, g, rtol=1e-12, atol=1e-14)
    fast = emu.emulate(0.5, g)
    R = np.array([0.0, 2e-4, 6e-4, emu.R_IN, 1.3 * emu.R_IN])
    a, b = exact.projected(R), fast.projected(R)
    np.testing.assert_allclose(np.asarray(b.Sigma), np.asarray(a.Sigma), rtol=1e-7)
    np.testing.assert_allclose(np.asarray(b.v2p), np.asarray(a.v2p), rtol=1e-7)
    # and the continuation is C1 at r_in (its slope there is the series')
    slope = jax.vmap(jax.grad(lambda r: jnp.log(fast._projected_model(r)[0])))(
        jnp.array([emu.R_IN * (1 - 1e-7), emu.R_IN * (1 + 1e-7)]))
    np.testing.assert_allclose(float(slope[0]), float(slope[1]), rtol=1e-4)


def test_vmap_over_models():
    w0 = jnp.array([1.0, 5.0, 12.0])
    g = jnp.array([0.2, 1.0, 1.9])
    rts = jax.vmap(lambda a, b: emu._emulate(TABLE, a, b).rt)(w0, g)
    for i in range(3):
        assert float(rts[i]) == pytest.approx(float(emu.emulate(float(w0[i]), float(g[i])).rt))


# ------------------------------------------------------------------ the box and bad input

@settings(max_examples=30, deadline=None)
@given(bad=st.one_of(st.floats(max_value=0.4999), st.floats(min_value=14.0001),
                     st.just(float("nan"))))
def test_W0_outside_the_box_is_rejected(bad):
    with pytest.raises(ValueError, match="W0"):
        emu.emulate(bad, 1.0)


def test_g_beyond_the_box_is_rejected_and_flagged_under_jit():
    edge = float(emu.g_hi(7.0))
    emu.emulate(7.0, edge - 1e-6)
    with pytest.raises(ValueError, match="outside the emulator box"):
        emu.emulate(7.0, edge + 1e-3)
    flagged = jax.jit(lambda w, g: emu._emulate(TABLE, w, g).rt)(7.0, edge + 1e-3)
    assert np.isnan(float(flagged))


def test_anisotropic_request_goes_to_the_anisotropic_table():
    from dastro.clusters.emulator_aniso import emulate_aniso

    fast = emu.emulate(5.0, 1.0, ra=5.0)
    assert float(fast.rt) == float(emulate_aniso(5.0, 1.0, 5.0).rt)
    assert 0.1 < float(fast.profiles(fast.rt * 0.5).beta) < 1.0  # radially anisotropic
    assert float(emu.emulate(5.0, 1.0, ra=math.inf).rt) == float(emu.emulate(5.0, 1.0).rt)
    with pytest.raises(ValueError, match="anisotropic table"):
        emu.emulate(5.0, 1.0, ra=5.0, table=TABLE)
    with pytest.raises(ValueError, match="ra"):
        emu.emulate(5.0, 1.0, ra=float("nan"))


def test_missing_or_corrupt_table_fails_clearly(tmp_path):
    with pytest.raises(ValueError, match="file not found"):
        emu.load_table(tmp_path / "nope.npz")
    src = emu._DATA / emu.TABLE_NAME
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a table")
    with pytest.raises(ValueError, match="cannot be read"):
        emu.load_table(broken)
    # Same file with one number changed: the hash no longer matches.
    copy = tmp_path / "edited.npz"
    shutil.copy(src, copy)
    with np.load(copy) as data:
        arrays = {k: np.array(data[k]) for k in data.files}
    arrays["f"][3, 3, 3] *= 1.0001
    np.savez(copy, **arrays)
    with pytest.raises(ValueError, match="SHA-256"):
        emu.load_table(copy)
    # A table from another layout version.
    meta = json.loads(str(arrays["meta"]))
    meta["table_version"] = emu.TABLE_VERSION + 1
    arrays["meta"] = np.asarray(json.dumps(meta))
    arrays["f"][3, 3, 3] /= 1.0001
    np.savez(copy, **arrays)
    with pytest.raises(ValueError, match="layout version"):
        emu.load_table(copy)


@pytest.mark.slow  # compile-bound; run by benchmarks/slow_checks.py
def test_first_table_load_may_come_inside_a_trace():
    # the table loads lazily: the first use may be g_hi or emulate inside jit or grad
    emu.load_table.cache_clear()
    try:
        got = jax.jit(jax.grad(lambda w0: emu.g_hi(w0)))(5.0)
    finally:
        emu.load_table.cache_clear()
    step = 1e-5
    fd = (emu.g_hi(5.0 + step) - emu.g_hi(5.0 - step)) / (2 * step)
    np.testing.assert_allclose(got, fd, rtol=1e-7)


# ------------------------------------------------------------ the fast evaluation paths


def _moments_both(g, w):
    """(ours, moments.py's) E_{g+3/2}, E_{g+5/2} and their (d/dg, d/dW) at points w."""
    from dastro.clusters import moments

    def ours(gg, ww):
        return jnp.stack(emu._moment_integrals(gg, ww))

    def theirs(gg, ww):
        return jnp.stack([moments.density_integral(ww, gg),
                          moments.second_moment_integrals(ww, gg)[0]])

    def with_derivatives(fn, jac):
        return jax.vmap(lambda ww: (fn(g, ww), *jac(fn, argnums=(0, 1))(g, ww)))(w)

    return (with_derivatives(ours, jax.jacfwd), with_derivatives(ours, jax.jacrev),
            with_derivatives(theirs, jax.jacrev), moments.second_moment_integrals(w, g)[1])


_moments_both_jit = jax.jit(_moments_both)


@settings(max_examples=15, deadline=None)
@given(st.floats(0.0, 3.45), st.lists(st.floats(1e-12, 14.0), min_size=8, max_size=8))
@example(0.0, [1e-12, 1e-6, 0.3, 1.0, 3.0, 7.0, 13.0, 14.0])
@example(3.45, [1e-9, 1e-3, 0.1, 2.0, 5.0, 9.0, 12.0, 13.9])
def test_moment_series_equal_the_incomplete_gamma_forms(g, w):
    """E_{g+3/2}(W) and E_{g+5/2}(W) from one power series equal moments.py's
    exp(W) gammainc(h, W) to 1e-12, with the same derivatives in W and g (forward and
    reverse mode of the closed-form JVP against jax's gammainc derivatives)."""
    fwd, rev, ref, ref_v2t = _moments_both_jit(jnp.asarray(g), jnp.asarray(w))
    np.testing.assert_allclose(np.asarray(fwd[0]), np.asarray(ref[0]), rtol=1e-12, atol=0.0)
    np.testing.assert_allclose(2.0 * np.asarray(fwd[0][:, 1]), np.asarray(ref_v2t), rtol=1e-12)
    for k in (1, 2):  # d/dg, d/dW
        np.testing.assert_allclose(np.asarray(fwd[k]), np.asarray(ref[k]), rtol=1e-9, atol=0.0)
        # d/dg sums terms that cancel at large W: rounding differs between the two modes
        np.testing.assert_allclose(np.asarray(rev[k]), np.asarray(fwd[k]), rtol=1e-10, atol=0.0)


_FRAC = np.concatenate([[0.0, 5e-4, 1e-3], np.geomspace(2e-3, 0.9999, 40), [1.0, 1.2]])


@jax.jit
def _general_paths(w0, g):
    m = emu._emulate(TABLE, w0, g)
    rt = jnp.exp(m.ln_rt)
    x = jnp.asarray(_FRAC) * rt
    w, _ = m._state(x)
    ours = jnp.stack(m._moments_model(x, w))
    general = jnp.stack(emu.ClusterModel._moments_model(m, x, w))
    # the projection as evaluated before: W by _state, then the two projected series
    inside = x < rt
    R_in = jnp.where(inside, jnp.clip(x, emu.R_IN, None), 0.5 * rt)
    w_R, _ = m._state(R_in)
    ln_w = jnp.log(jnp.where(w_R > 0, w_R, 1.0))
    both = emu._chebyshev(jnp.expand_dims(m._tau(jnp.log(R_in)), -1),
                          jnp.stack([m.ln_sigma_coef, m.ln_sv2_coef], axis=-2))

    def ln_projected(t):  # ln Sigma, ln Sigma v2p at t = ln R >= ln r_in
        w_t, _ = m._state_between(t)  # (_state clips t at r_in: its slope there is halved)
        ser = emu._chebyshev(m._tau(t), jnp.stack([m.ln_sigma_coef, m.ln_sv2_coef]))
        return ser + jnp.array([m.g + 2.0, m.g + 3.0]) * jnp.log(w_t)

    # below r_in, the even extension a + b R^2 with the slope at r_in (by autodiff here)
    slopes = jax.jvp(ln_projected, (jnp.asarray(emu.LN_R_IN),), (jnp.asarray(1.0),))[1]
    below = 0.5 * ((jnp.minimum(x, emu.R_IN) / emu.R_IN) ** 2 - 1.0)
    sigma = jnp.exp(both[..., 0] + (m.g + 2.0) * ln_w + slopes[0] * below)
    sv2 = jnp.exp(both[..., 1] + (m.g + 3.0) * ln_w + slopes[1] * below)
    separate = jnp.where(inside & (w_R > 0), jnp.stack([sigma, sv2]), 0.0)
    proj = m._projected(x)
    return ours, general, m._projected_model(x)[:2], separate, proj


@settings(max_examples=10, deadline=None)
@given(st.floats(0.5, 14.0), st.floats(0.0, 1.0))
@example(14.0, 1.0)
@example(0.5, 0.0)
@example(0.5, 1.0)
def test_emulated_moments_and_projection_equal_the_general_paths(w0, q):
    """The emulator's own rho, rho v2r, rho v2t (series) equal ClusterModel's moments.py path,
    and its one-pass projection equals W from _state plus the two projected series (below
    r_in, continued evenly with the slope at r_in from autodiff), to 1e-12 over radii from the
    centre to beyond rt."""
    g = float(q * emu.g_hi(w0))
    ours, general, proj_model, separate, proj = _general_paths(w0, g)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(general), rtol=1e-12, atol=0.0)
    np.testing.assert_allclose(np.asarray(proj_model), np.asarray(separate), rtol=1e-12,
                               atol=0.0)
    sigma, sv2 = np.asarray(separate)
    v2p = np.where(sigma > 0, sv2 / np.where(sigma > 0, sigma, 1.0), 0.0)
    np.testing.assert_allclose(np.asarray(proj.v2p), v2p, rtol=1e-12, atol=0.0)
    np.testing.assert_allclose(np.asarray(proj.Sigma), sigma, rtol=1e-12, atol=0.0)
    np.testing.assert_array_equal(np.asarray(proj.v2R), np.asarray(proj.v2p))
    np.testing.assert_array_equal(np.asarray(proj.v2T), np.asarray(proj.v2p))


def _combined_and_separate(model, frac):
    """(profiles_and_projected, (profiles, projected)) at radii frac x rt, as flat arrays."""
    r = jnp.asarray(frac) * model.rt
    both = model._profiles_and_projected(r)
    return (jnp.stack([*both[0], *both[1]]),
            jnp.stack([*model._profiles(r), *model._projected(r)]))


_combined_and_separate_jit = eqx.filter_jit(_combined_and_separate)


@settings(max_examples=6, deadline=None)
@given(st.floats(0.5, 14.0), st.floats(0.0, 1.0), st.booleans())
@example(0.5, 0.0, False)
@example(14.0, 1.0, True)
def test_profiles_and_projected_in_one_call_equal_the_separate_calls(w0, q, gridded):
    """profiles_and_projected reads W, ln GM and the projected series in one pass; it is the
    same arithmetic as profiles and projected called separately: equal to 1e-13 at every
    radius from the centre, below and across r_in, to beyond rt, in physical units, for the
    series and the gridded (quintic W, M) models."""
    model = emu.emulate(w0, float(q * emu.g_hi(w0))).scale(3e5, rh=4.0)
    model = model.gridded() if gridded else model
    combined, separate = _combined_and_separate_jit(model, _FRAC)
    assert np.all(np.isfinite(np.asarray(separate)))
    np.testing.assert_allclose(np.asarray(combined), np.asarray(separate), rtol=1e-13,
                               atol=0.0)


def test_profiles_and_projected_gradients_equal_the_separate_calls():
    """The one-pass call differentiates like the separate ones (W0, g; inside rt)."""
    frac = _FRAC[(_FRAC > 0) & (_FRAC < 1)]

    positive = np.array([i for i in range(11) if i != 6])  # all but beta (0, isotropic)

    def summaries(w0, g):
        combined, separate = _combined_and_separate(emu._emulate(TABLE, w0, g), frac)
        return (jnp.sum(jnp.log(combined[positive])), jnp.sum(jnp.log(separate[positive])))

    jac = np.asarray(jax.jit(jax.jacfwd(summaries, argnums=(0, 1)))(6.3, 1.4))
    assert np.all(np.isfinite(jac)) and np.all(np.abs(jac) > 1.0)
    np.testing.assert_allclose(jac[0], jac[1], rtol=1e-12)


def _everything(w0, g):
    m = emu._emulate(TABLE, w0, g)
    r = jnp.geomspace(1e-3, 0.999, 30) * jnp.exp(m.ln_rt)
    prof, proj = m._profiles(r), m._projected(r)
    return jnp.concatenate([prof.rho, prof.v2, prof.mc, proj.Sigma, proj.v2p,
                            jnp.stack([m.rt, m.rh, m.M, m.K])])


def _summary(w0, g):
    return jnp.sum(jnp.log(_everything(w0, g)))


@pytest.mark.slow  # compile-bound; run by benchmarks/slow_checks.py
def test_a_vmapped_batch_equals_single_models():
    """A batch (vmap: table cells read by a loop, series summed in chunks of models) gives
    the single-model values and gradients; 130 models so that one chunk is partial."""
    rng = np.random.default_rng(4)
    w0 = rng.uniform(0.5, 14.0, 130)
    g = rng.uniform(0.0, 1.0, 130) * np.asarray(emu.g_hi(jnp.asarray(w0)))
    batch = np.asarray(jax.jit(jax.vmap(_everything))(w0, g))
    grads = jax.jit(jax.vmap(jax.grad(_summary, argnums=(0, 1))))(w0, g)
    fwd = jax.jit(jax.vmap(jax.jacfwd(_summary, argnums=(0, 1))))(w0, g)
    one = jax.jit(_everything)
    single = jax.jit(jax.grad(_summary, argnums=(0, 1)))
    for i in [0, 57, 99, 100, 129]:
        # rounding differs between the two programs; near rt (rho ~ W^(g+3/2), W -> 0) it is
        # amplified to ~1e-12
        np.testing.assert_allclose(batch[i], np.asarray(one(w0[i], g[i])), rtol=1e-11)
        ref = single(w0[i], g[i])
        for k in range(2):
            assert float(grads[k][i]) == pytest.approx(float(ref[k]), rel=1e-11)
            assert float(fwd[k][i]) == pytest.approx(float(ref[k]), rel=1e-11)


@pytest.mark.parametrize("n_models", [3, 199, 230])
def test_batched_chebyshev_sums_equal_the_single_model_loop(n_models):
    """The batched series sum (chunks of models summed by an unrolled recurrence, the batch
    padded to whole chunks; below two chunks the loop) equals the loop for each model, with
    the points batched and the coefficients shared or batched."""
    rng = np.random.default_rng(n_models)
    tau = jnp.asarray(rng.uniform(0.0, 1.0, (n_models, 40)))
    coef = jnp.asarray(rng.normal(size=(n_models, 3, 1, 96)) / (1.0 + np.arange(96)) ** 2)
    batched = jax.jit(jax.vmap(emu._clenshaw_chunked))(tau, coef)
    shared = jax.jit(jax.vmap(emu._clenshaw_chunked, in_axes=(0, None)))(tau, coef[0])
    assert batched.shape == (n_models, 3, 40)
    for i in {0, n_models // 2, n_models - 1}:
        np.testing.assert_allclose(batched[i], emu._clenshaw(tau[i], coef[i]), rtol=0,
                                   atol=1e-13)
        np.testing.assert_allclose(shared[i], emu._clenshaw(tau[i], coef[0]), rtol=0,
                                   atol=1e-13)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 130), st.integers(0, 2**32 - 1))
def test_strided_chebyshev_sums_equal_numpys(n_terms, seed):
    """The Clenshaw sums over the residues of the index modulo the stride (the loop's and
    the unrolled one's) are the Chebyshev series: numpy's chebval to 2 n eps times the sum of
    |coefficients| (Clenshaw's rounding bound; measured at most 0.6 n eps over 300 draws),
    for any number of terms n (padding) and tau in [0, 1] with its ends."""
    rng = np.random.default_rng(seed)
    coef = rng.normal(size=(2, 1, n_terms)) * 0.95 ** np.arange(n_terms)
    tau = np.concatenate([[0.0, 1.0], rng.uniform(0.0, 1.0, 30)])
    ref = np.polynomial.chebyshev.chebval(2.0 * tau - 1.0, coef.reshape(2, n_terms).T)
    scale = np.sum(np.abs(coef), axis=-1)
    for total in (emu._clenshaw, emu._clenshaw_unrolled):
        out = np.asarray(total(jnp.asarray(tau), jnp.asarray(coef)))
        assert out.shape == ref.shape
        assert np.all(np.abs(out - ref) <= 2.0 * n_terms * 2.2e-16 * scale), total.__name__


_everything_jit = jax.jit(_everything)
_everything_jac = jax.jit(jax.jacrev(_everything, argnums=(0, 1)))


@pytest.mark.parametrize("w0, g", [(6.3, 1.4), (0.8, 0.05), (12.5, 0.3)])
def test_profile_gradients_match_finite_differences(w0, g):
    """d/d(W0, g) of rho, v2, mc, Sigma, v2p at 30 radii and of the scalars: reverse mode
    against central differences."""
    jac = _everything_jac(w0, g)
    for i, h in enumerate([1e-4, 1e-5]):
        args = [w0, g]
        args[i] += h
        up = np.asarray(_everything_jit(*args))
        args[i] -= 2 * h
        down = np.asarray(_everything_jit(*args))
        fd = (up - down) / (2 * h)
        np.testing.assert_allclose(np.asarray(jac[i]), fd, rtol=2e-5,
                                   atol=1e-7 * np.max(np.abs(fd)))


@settings(max_examples=40, deadline=None)
@given(st.floats(0.0, 1.0))
@example(0.0)
@example(1.0)
def test_truncation_grid_coordinate_inverts_and_differentiates(q):
    """w_from_q inverts q_from_w to rounding, with derivative 1/q'(w) (finite at g = 0)."""
    w = emu.w_from_q(q)
    assert float(emu.q_from_w(w)) == pytest.approx(q, abs=1e-15)
    slope = float(jax.grad(emu.w_from_q)(q))
    assert slope == pytest.approx(1.0 / float(jax.grad(emu.q_from_w)(w)), rel=1e-12)
    assert 1.0 / 1.23 < slope <= 3.0 + 1e-12


def _profile_errors(w0, g):
    """Largest relative errors of rho, mc, Sigma (radii up to 0.99 rt, as measure_accuracy)
    and of rt, against the exact solver."""
    exact = solve(w0, g, rtol=1e-12, atol=1e-14)
    fast = emu.emulate(w0, g)
    rt = float(exact.rt)
    r = np.geomspace(1e-3, 0.99, 36) * rt
    R = np.concatenate([[0.0], np.geomspace(1e-3, 0.99, 17)]) * rt
    a, b = exact.profiles(r), fast.profiles(r)
    pa, pb = exact.projected(R), fast.projected(R)

    def rel(x, y):
        return float(np.max(np.abs(np.asarray(y) / np.asarray(x) - 1.0)))

    return {"rho": rel(a.rho, b.rho), "mc": rel(a.mc, b.mc), "Sigma": rel(pa.Sigma, pb.Sigma),
            "rt": rel(exact.rt, fast.rt)}


@pytest.mark.parametrize("i", [0, 100])
def test_last_truncation_cell_at_a_W0_node(i):
    """At a W0 node (no interpolation in W0), mid last w cell (q ~ 0.987): the spline's end
    condition along w. With not-a-knot, rho and Sigma erred by 3e-5 - 4.9e-5 here at every W0
    (the node data are exact to < 1e-8, ln rt to 1e-9); with the end slopes of the quintic
    through the six end nodes, 2.6e-6 - 3.3e-6."""
    w0 = float(TABLE.w0_nodes[i])
    w = 0.5 * float(TABLE.w_nodes[-1] + TABLE.w_nodes[-2])
    g = float(emu.g_from_q(emu.q_from_w(w), TABLE.g_max(w0)))
    err = _profile_errors(w0, g)
    assert err["rho"] < 1e-5, err
    assert err["Sigma"] < 1e-5, err


@pytest.mark.parametrize(("w0", "g"), [(0.5040593164, 2.4017941450), (0.5258843266, 1.7537911094)])
def test_first_W0_cells(w0, g):
    """The two worst of 2000 random draws (seed 0) with not-a-knot end conditions along W0:
    rt erred by 2.3e-7 at W0 = 0.504 (the scalar grid's first cell; 100 times that in W at
    0.99 rt: rho 9e-5), Sigma by 1.3e-4 and mc by 5e-5 at W0 = 0.526 (the profile grid's
    first cell). With the end slopes of the quintic through the six end nodes: rt 4e-9 and
    7e-9, rho 1.3e-6 and 4.2e-6, Sigma 6.6e-6 and 7.4e-6, mc 2.2e-6 and 2.8e-6."""
    err = _profile_errors(w0, g)
    assert err["rt"] < 3e-8, err
    assert err["rho"] < 1e-5, err
    assert err["mc"] < 1e-5, err
    assert err["Sigma"] < 2e-5, err


@given(st.floats(0.5, 14.0))
@settings(max_examples=200, deadline=None)
def test_w0_grid_map_round_trip_and_monotone(w0):
    """y = y_from_w0(W0) maps [0.5, 14] onto [0, 1], increasing, and w0_from_y inverts it."""
    y = float(emu.y_from_w0(w0))
    assert 0.0 <= y <= 1.0
    assert float(emu.w0_from_y(y)) == pytest.approx(w0, rel=1e-14)
    assert float(jax.grad(emu.y_from_w0)(w0)) > 0.0
    assert float(emu.y_from_w0(0.5)) == 0.0
    assert float(emu.y_from_w0(14.0)) == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("q", [0.5, 0.95])
def test_second_W0_cell_of_the_uniform_grid(q):
    """Mid second cell of the earlier grid uniform in W0 (201 nodes, 0.0675 apart), W0 =
    0.60125: there its spline erred by 1.6e-5 - 1.7e-5 in ln Sigma (the only quantity of
    10^4 draws above 1e-5). On the grid uniform in y (0.043 apart there) the error along W0
    alone is 2.5e-7."""
    w0 = 0.5 + 1.5 * 0.0675
    g = float(emu.g_from_q(q, TABLE.g_max(w0)))
    err = _profile_errors(w0, g)
    assert err["Sigma"] < 1e-5, err
    assert err["rho"] < 1e-5, err


def _mid_w_cell(w0, q):
    """(W0, g) at the y node nearest W0, mid the w cell that contains q."""
    iy = int(np.argmin(np.abs(np.asarray(TABLE.y_nodes) - float(emu.y_from_w0(w0)))))
    iw = int(np.searchsorted(np.asarray(TABLE.w_nodes), float(emu.w_from_q(q)))) - 1
    w0 = float(emu.w0_from_y(TABLE.y_nodes[iy]))
    w = 0.5 * float(TABLE.w_nodes[iw] + TABLE.w_nodes[iw + 1])
    return w0, float(emu.g_from_q(emu.q_from_w(w), TABLE.g_max(w0)))


@pytest.mark.parametrize(("w0", "g", "sigma_bound"),
                         [(*_mid_w_cell(8.86, 0.74), 6e-6), (8.3422, 2.0854, 9e-6)])
def test_worst_cells_of_the_truncation_grid(w0, g, sigma_bound):
    """Where the table errs most. (1) Where the earlier 221 x 41 table did (measure_accuracy's
    worst draws, 2026-12-05): W0 = 8.86, q = 0.74, here at the nearest y node, mid w cell:
    ln rho and ln Sigma were offset by a near-constant -8e-6 to -1e-5 beyond 0.5 rt, the
    cubic's h^4 error along w (Sigma 9.9e-6 at 0.99 rt); with 49 w nodes 4.7e-6 (0.48 x, as
    h^4 predicts). (2) The worst of 10^4 draws of the 181 x 49 table, W0 = 8.3422,
    g = 2.0854 (q = 0.73): Sigma 7.7e-6 at 0.99 rt."""
    err = _profile_errors(w0, g)
    assert err["Sigma"] < sigma_bound, err
    assert err["rho"] < 7e-6, err
    assert err["rt"] < 3e-8, err


def test_table_of_another_w0_grid_map_is_refused(tmp_path):
    """A table whose metadata records other grid maps fails to load, naming them."""
    bad = tmp_path / "table.npz"
    with np.load(emu._DATA / emu.TABLE_NAME) as data:
        arrays = {k: np.asarray(data[k]) for k in data.files if k != "meta"}
        meta = json.loads(str(data["meta"]))
    meta["grid"] = dict(meta["grid"], y="uniform in W0")
    emu.save_table(bad, arrays, meta)
    with pytest.raises(ValueError, match="grid maps"):
        emu.load_table(bad)


def test_spline_slopes_are_interpaxs_clamped_cubic_spline():
    # the load-time knot slopes (numpy, emulator._spline_slope_matrix) against interpax's
    # CubicSpline with the same end slopes, along either axis
    import interpax

    rng = np.random.default_rng(3)
    x = np.linspace(0.3, 2.0, 23)
    f = rng.normal(size=(23, 17)) + np.sin(3.0 * x)[:, None]
    c = emu._end_slope_weights(emu.END_POINTS)
    for axis, nodes in ((0, x), (1, np.linspace(-1.0, 1.0, 17))):
        g = np.moveaxis(f, axis, 0)
        h = nodes[1] - nodes[0]
        first, last = c @ g[: emu.END_POINTS], c @ g[::-1][: emu.END_POINTS]
        ref = interpax.CubicSpline(nodes, g, axis=0, bc_type=((1, first / h), (1, -last / h)))
        np.testing.assert_allclose(emu._spline_slopes(nodes, f, axis),
                                   np.moveaxis(np.asarray(ref(nodes, 1)), 0, axis),
                                   rtol=0, atol=1e-11)
