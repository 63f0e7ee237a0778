"""The isotropic emulator against the exact solver: accuracy, smoothness, box, table integrity."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dastro.clusters import emulator as emu
from dastro.clusters import solve

TABLE = emu.load_table()


def test_table_metadata_and_size():
    meta = TABLE.metadata
    assert meta["table_version"] == emu.TABLE_VERSION
    assert meta["made_by"] == "scripts/build_cluster_table.py"
    assert "accuracy" in meta
    path = emu._DATA / emu.TABLE_NAME
    assert path.stat().st_size < 30e6


# Measured accuracy of the shipped table (1000 draws, build script): median 1e-7 (scalars) to
# 7e-5 (profiles, including r up to 0.99 rt); p99 2e-5 (scalars) to 5e-3 (profiles near rt).
# Issue 3's target (max 1e-5) is not reached yet; these bounds guard what is achieved.
MEDIAN_BOUND = {"rt": 1e-6, "rh": 1e-6, "M": 1e-6, "U": 1e-6, "K": 1e-6, "rhp": 1e-6,
                "phi": 1e-4, "rho": 2e-4, "mc": 2e-6, "v2": 1e-4, "Sigma": 2e-4, "v2p": 1e-4}


def test_random_models_match_the_exact_solver():
    acc = emu.measure_accuracy(12, seed=123)
    for name, row in acc["quantities"].items():
        assert row["median"] < 10 * MEDIAN_BOUND[name], (name, row)
        assert row["max"] < 0.05, (name, row)


def test_shipped_accuracy_table():
    acc = TABLE.metadata["accuracy"]
    assert acc["n"] >= 1000
    for name, row in acc["quantities"].items():
        assert row["median"] < MEDIAN_BOUND[name], (name, row)
        assert row["p99"] < 1e-2, (name, row)


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
    q_node = float(TABLE.q_nodes[10])
    g_node = float(emu.g_from_q(q_node, emu.g_hi(5.0) + emu.G_MARGIN))
    np.testing.assert_allclose(np.asarray(f(5.0, g_node - eps)), np.asarray(f(5.0, g_node + eps)),
                               rtol=1e-6)


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


def test_anisotropic_request_is_refused():
    with pytest.raises(ValueError, match="isotropic"):
        emu.emulate(5.0, 1.0, ra=5.0)


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
    np.savez_compressed(copy, **arrays)
    with pytest.raises(ValueError, match="SHA-256"):
        emu.load_table(copy)
    # A table from another layout version.
    meta = json.loads(str(arrays["meta"]))
    meta["table_version"] = emu.TABLE_VERSION + 1
    arrays["meta"] = np.asarray(json.dumps(meta))
    arrays["f"][3, 3, 3] /= 1.0001
    np.savez_compressed(copy, **arrays)
    with pytest.raises(ValueError, match="layout version"):
        emu.load_table(copy)
