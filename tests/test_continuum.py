"""Tests of dastro.physics.continuum against published tables, invariants and gradients."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dastro  # noqa: F401  (float64)
from dastro import constants as const
from dastro.physics import abundances, eos_tp
from dastro.physics import continuum as C

DATA = Path(__file__).parent / "data" / "physics"


@pytest.fixture(scope="module")
def solar():
    """ATLAS9 ksun.mod layers -> EOS -> continuum state (same abundances as the model)."""
    k = json.loads((DATA / "ksun_atlas9.json").read_text())
    T, P = np.array(k["T"]), np.array(k["P"])
    r = jax.jit(eos_tp)(T, P, np.array(k["eps"]))
    return T, r, C.continuum_state(T, r)


def _layer(state, j):
    return jax.tree_util.tree_map(lambda a: a[j], state)


# --- published cross-sections ---------------------------------------------------------------


def test_hminus_bf_vs_wishart_table():
    """John (1988) fit vs Wishart (1979) / Broad & Reinhardt (1976) values, 250-1600 nm."""
    d = json.loads((DATA / "hminus_bf_wishart.json").read_text())
    lam = np.array(d["wavelength_nm"]) * 10.0
    ref = np.array(d["sigma_1e-18"]) * 1e-18
    m = (lam >= 2500) & (lam <= 16000)
    got = np.asarray(C.hminus_bf_cross_section(lam[m]))
    np.testing.assert_allclose(got, ref[m], rtol=0.01)


def test_hminus_bf_threshold_and_peak():
    lam = np.linspace(4000.0, 16000.0, 1201)
    s = np.asarray(C.hminus_bf_cross_section(lam))
    assert lam[np.argmax(s)] == pytest.approx(8500.0, abs=150.0)
    assert s.max() == pytest.approx(4.0e-17, rel=0.02)
    assert float(C.hminus_bf_cross_section(16419.5)) == 0.0
    assert float(C.hminus_bf_cross_section(16410.0)) > 0.0
    assert float(C.hminus_bf_cross_section(30000.0)) == 0.0


def test_hminus_ff_vs_bell_berrington_table():
    """John (1988) ff fit vs Bell & Berrington (1987) Table 1: 2278 A - 15.2 um, theta 0.5-3.6."""
    d = json.loads((DATA / "hminus_ff_bell_berrington.json").read_text())
    theta = np.array(d["theta"])
    lam = np.array(d["wavelength_nm"]) * 10.0
    ref = np.array(d["k_ff_1e-26"]) * 1e-26
    ll, tt = np.meshgrid(lam, 5040.0 / theta, indexing="ij")
    got = np.asarray(jax.vmap(C.hminus_ff_coefficient)(ll.ravel(), tt.ravel())).reshape(ll.shape)
    m = lam >= 2000.0
    np.testing.assert_allclose(got[m], ref[m], rtol=0.02)


def test_hydrogen_lyman_edge_cross_section():
    """Exact H I 1s threshold cross-section is 6.30e-18 cm^2; Menzel-Pekeris Gaunt gives 6.5."""
    s = C.ContinuumState(T=jnp.asarray(3000.0), n_e=jnp.asarray(0.0), n_hi=jnp.asarray(1.0),
                         n_hii=jnp.asarray(0.0), n_hminus=jnp.asarray(0.0),
                         n_hei=jnp.asarray(0.0), n_h2=jnp.asarray(0.0), n_metal=jnp.zeros(7))
    assert float(C.hi_bf(911.0, s)) == pytest.approx(6.30e-18, rel=0.05)
    assert float(C.hi_bf(913.0, s)) < 1e-6 * float(C.hi_bf(911.0, s))  # edge


def test_heii_is_hydrogenic_with_z2():
    """He II 1s threshold: sigma_H(threshold) / Z^2, edge at 227.8 A; n=2 edge at 911.3 A."""
    s = C.ContinuumState(T=jnp.asarray(3000.0), n_e=jnp.asarray(0.0), n_hi=jnp.asarray(0.0),
                         n_hii=jnp.asarray(0.0), n_hminus=jnp.asarray(0.0),
                         n_hei=jnp.asarray(0.0), n_h2=jnp.asarray(0.0), n_metal=jnp.zeros(7),
                         n_heii=jnp.asarray(1.0))
    h = C.ContinuumState(*(jnp.asarray(v) for v in (3000.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0)),
                         n_metal=jnp.zeros(7))
    assert float(C.heii_bf(227.0, s)) == pytest.approx(float(C.hi_bf(908.0, h)) / 4, rel=0.02)
    assert float(C.heii_bf(229.0, s)) < 1e-6 * float(C.heii_bf(227.0, s))


def test_thomson_and_rayleigh_limits():
    s = C.ContinuumState(*(jnp.asarray(v) for v in (6000.0, 1e14, 0.0, 0.0, 0.0, 0.0, 0.0)),
                         n_metal=jnp.zeros(7))
    _, sc = C.continuum_opacity(jnp.array([5000.0]), s)
    assert float(sc[0]) == pytest.approx(const.sigma_T * 1e14, rel=1e-12)
    lam = jnp.array([20000.0, 40000.0])
    r = np.asarray(C.h_rayleigh_cross_section(lam))
    assert r[0] / r[1] == pytest.approx(16.0, rel=0.01)  # lambda^-4 far from resonance
    assert float(C.h_rayleigh_cross_section(5000.0)) == pytest.approx(1.0e-27, rel=0.1)


# --- the solar photosphere ------------------------------------------------------------------


def test_solar_photosphere_shape(solar):
    """Layer with T ~ 6200 K of the ATLAS9 Sun: who dominates where (Gray 2005, ch. 8)."""
    T, r, state = solar
    j = int(np.argmin(np.abs(T - 6300.0)))
    s = _layer(state, j)
    lam = jnp.array([3640.0, 3660.0, 5000.0, 8500.0, 12000.0, 16400.0, 22000.0])
    parts = {n: np.asarray(jax.vmap(lambda lm, f=f: f(lm, s))(lam)) for n, f in
             C.ABSORBERS.items()}
    a, sc = C.continuum_opacity(lam, s)
    tot = np.asarray(a + sc)
    np.testing.assert_allclose(sum(parts.values()), np.asarray(a), rtol=1e-12)
    assert np.all(parts["hminus_bf"][2:5] / tot[2:5] > 0.6)  # H- bf dominates the optical
    assert parts["hminus_ff"][6] / tot[6] > 0.6  # H- ff dominates the IR
    assert tot[5] < tot[4] and tot[5] < tot[6]  # opacity minimum at 1.6 micron
    assert tot[0] > tot[1]  # Balmer jump
    # kappa per H atom per unit P_e at 5000 A: a few 1e-26 cm^2/dyn (Gray Fig. 8.5 scale)
    pe = float(r.n_e[j]) * const.k_B * T[j]
    k5000 = tot[2] / float(state.n_hi[j]) / pe
    assert 1.5e-26 < k5000 < 6e-26


def test_rosseland_vs_atlas9(solar):
    """Continuum-only Rosseland mean vs ATLAS9 ABROSS (lines included there): 0.6-1.0."""
    T, r, state = solar
    k = json.loads((DATA / "ksun_atlas9.json").read_text())
    if "abross" not in k:
        pytest.skip("fixture without ABROSS")
    grid = jnp.asarray(np.geomspace(500.0, 3e5, 1500))
    a, sc = jax.jit(C.continuum_opacity)(grid, state)
    kr = np.asarray(C.rosseland_mean(grid, a + sc, T)) / np.asarray(r.rho)
    ratio = kr / np.array(k["abross"])
    assert np.all((ratio > 0.6) & (ratio < 1.0)), ratio


def test_means_identities():
    lam = jnp.asarray(np.geomspace(1000.0, 3e5, 2000))
    T = 6000.0
    const_k = jnp.full(lam.shape, 3.0)
    assert float(C.rosseland_mean(lam, const_k, T)) == pytest.approx(3.0, rel=1e-12)
    assert float(C.planck_mean(lam, const_k, T)) == pytest.approx(3.0, rel=1e-12)
    k = 1.0 + (lam / 5000.0) ** 2
    kr, kp = float(C.rosseland_mean(lam, k, T)), float(C.planck_mean(lam, k, T))
    assert float(k.min()) < kr < kp < float(k.max())


# --- shapes, jit/vmap, gradients -------------------------------------------------------------


def test_batch_equals_single_layer(solar):
    T, r, state = solar
    lam = jnp.array([3000.0, 6000.0, 20000.0])
    a, sc = C.continuum_opacity(lam, _layer(state, slice(10, 13)))
    a1, sc1 = C.continuum_opacity(lam, _layer(state, 11))
    assert a.shape == (3, 3)
    np.testing.assert_allclose(np.asarray(a[1]), np.asarray(a1), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(sc[1]), np.asarray(sc1), rtol=1e-10)


@pytest.mark.parametrize("lam", [1500.0, 5000.0, 16000.0])
def test_gradients_vs_finite_differences(lam):
    """d ln alpha(lambda) / d (T, ln P, [Fe/H]) through EOS + continuum vs central differences."""
    eps0 = abundances()

    def ln_alpha(t, lnp, feh):
        eps = eps0.at[25].multiply(10.0**feh)
        r = eos_tp(t, jnp.exp(lnp), eps)
        s = C.continuum_state(t, r)
        a, sc = C.continuum_opacity(jnp.array([lam]), s)
        return jnp.log(a[0] + sc[0])

    x0 = (5800.0, np.log(1e5), 0.0)
    g = jax.grad(ln_alpha, argnums=(0, 1, 2))(*x0)
    for i, h in enumerate((1.0, 1e-3, 1e-3)):
        up, dn = list(x0), list(x0)
        up[i] += h
        dn[i] -= h
        fd = (float(ln_alpha(*up)) - float(ln_alpha(*dn))) / (2 * h)
        assert float(g[i]) == pytest.approx(fd, rel=1e-4, abs=1e-9), (i, float(g[i]), fd)


def test_jit_traces_once(solar):
    _, _, state = solar
    count = []

    @jax.jit
    def f(lam, s):
        count.append(1)
        return C.continuum_opacity(lam, s)[0]

    f(jnp.array([5000.0, 6000.0]), state)
    f(jnp.array([7000.0, 8000.0]), state)
    assert len(count) == 1


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("lam", [100.0, 5e6, np.nan, -5000.0])
def test_wavelength_outside_every_fit(solar, lam):
    _, _, state = solar
    with pytest.raises(ValueError, match="wavelength"):
        C.continuum_opacity(jnp.array([5000.0, lam]), state)


def test_bad_state_raises(solar):
    _, _, state = solar
    bad = state._replace(T=state.T.at[3].set(-1.0))
    with pytest.raises(ValueError, match="state.T"):
        C.continuum_opacity(jnp.array([5000.0]), bad)
    bad = state._replace(n_e=state.n_e.at[0].set(jnp.nan))
    with pytest.raises(ValueError, match="state.n_e"):
        C.continuum_opacity(jnp.array([5000.0]), bad)


def test_bad_wavelength_inside_jit(solar):
    _, _, state = solar
    f = jax.jit(lambda lam: C.continuum_opacity(lam, state)[0])
    with pytest.raises(Exception, match="wavelength must be within"):
        jax.block_until_ready(f(jnp.array([50.0])))


def test_sources_declare_boxes():
    for name in C.ABSORBERS:
        box = C.SOURCES[name]
        assert box.lambda_min < box.lambda_max and box.T_min < box.T_max and box.policy


@settings(max_examples=25, deadline=None)
@given(st.floats(500.0, 3.0e6), st.floats(2500.0, 50000.0), st.floats(8.0, 20.0))
def test_property_positive_and_finite(lam, T, log_n):
    n = 10.0**log_n
    s = C.ContinuumState(T=jnp.asarray(T), n_e=jnp.asarray(1e-3 * n), n_hi=jnp.asarray(n),
                         n_hii=jnp.asarray(1e-3 * n), n_hminus=jnp.asarray(1e-8 * n),
                         n_hei=jnp.asarray(0.1 * n), n_h2=jnp.asarray(1e-2 * n),
                         n_metal=jnp.full(7, 1e-5 * n))
    a, sc = _ONE(jnp.array([lam]), s)
    assert np.all(np.isfinite(np.asarray(a))) and float(a[0]) >= 0.0 and float(sc[0]) > 0.0


_ONE = jax.jit(C.continuum_opacity)


def test_gradients_finite_at_edges():
    """No NaN gradients at thresholds, box edges and beyond them (jnp.where traps)."""
    s = C.ContinuumState(*(jnp.asarray(v) for v in (6000.0, 1e13, 1e17, 1e13, 1e9, 1e16, 1e12)),
                         n_metal=jnp.full(7, 1e12))

    def f(lam, T):
        a, sc = C.continuum_opacity(jnp.atleast_1d(lam), s._replace(T=T))
        return jnp.sum(a + sc)

    g = jax.jit(jax.grad(f, argnums=(0, 1)))
    for lam in (914.0, 1250.0, 1823.0, 3645.0, 16419.0, 16420.0, 20000.0, 60000.0, 2e5):
        for T in (1400.0, 2500.0, 10080.0, 12000.0, 16000.0, 50000.0):
            gl, gt = g(lam, T)
            assert np.isfinite(float(gl)) and np.isfinite(float(gt)), (lam, T)


@settings(max_examples=30, deadline=None)
@given(st.floats(4000.0, 140000.0), st.floats(1.01, 2.0), st.floats(1400.0, 10080.0))
def test_property_monotone_where_physics_says(lam, factor, T):
    """H- ff grows with wavelength (~lambda^2); Rayleigh falls (~lambda^-4) longward of 1300 A."""
    assert float(C.hminus_ff_coefficient(lam * factor, T)) > float(C.hminus_ff_coefficient(lam, T))
    for f in (C.h_rayleigh_cross_section, C.he_rayleigh_cross_section,
              C.h2_rayleigh_cross_section):
        assert float(f(lam * factor)) < float(f(lam))


@pytest.mark.slow  # second-order compile ~25 s; first derivatives stay in the suite
def test_second_derivatives_finite():
    s = C.ContinuumState(*(jnp.asarray(v) for v in (6000.0, 1e13, 1e17, 1e13, 1e9, 1e16, 1e12)),
                         n_metal=jnp.full(7, 1e12), n_heii=jnp.asarray(1e10),
                         n_heiii=jnp.asarray(1e8))

    def f(lam, T):
        a, sc = C.continuum_opacity(jnp.atleast_1d(lam), s._replace(T=T))
        return jnp.log(jnp.sum(a + sc))

    h = jax.jit(jax.hessian(f, argnums=(0, 1)))
    for lam in (600.0, 3645.0, 16420.0, 1e5):
        for T in (1000.0, 2500.0, 10080.0, 50000.0):  # the documented range starts at 1000 K
            assert np.all(np.isfinite(np.asarray(jax.tree_util.tree_leaves(h(lam, T))))), (lam, T)
