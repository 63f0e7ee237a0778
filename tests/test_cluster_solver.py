"""The exact lowered-isothermal solver against astro-limepy and against physics it must obey."""

import json
import math
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad, solve_ivp

from dastro.clusters import G_MODEL, g_max, solve, solve_batch
from dastro.clusters.solver import _as_arrays, _solve, find_g_max

REFERENCE = Path(__file__).parent / "data" / "limepy_reference.npz"
SCALARS = ["rt", "rh", "rv", "M", "U", "K", "Kr", "A"]
PROFILES = ["phi", "rho", "mc", "v2", "v2r", "v2t"]
PROJECTED = ["Sigma", "v2p", "v2R", "v2T"]


def _load_reference():
    ref = np.load(REFERENCE)
    models = [tuple(row) for row in ref["index"]]
    return ref, models


REF, REF_MODELS = _load_reference()


def _tag(W0, g, ra):
    return f"{W0:g}_{g:g}_{'inf' if np.isinf(ra) else f'{ra:g}'}"


def _model(W0, g, ra):
    return solve(W0, g, None if np.isinf(ra) else ra)


def test_reference_file_has_provenance():
    meta = json.loads(str(REF["meta"]))
    assert meta["astro-limepy"] == "1.3.0"
    assert meta["made_by"] == "scripts/make_limepy_reference.py"
    assert len(REF_MODELS) > 100


@pytest.mark.parametrize("W0, g, ra", REF_MODELS, ids=[_tag(*m) for m in REF_MODELS])
def test_matches_limepy_reference(W0, g, ra):
    """All scalars and profiles agree with astro-limepy to 1e-6 relative.

    Near rt the profiles fall to zero; there the comparison allows an absolute 1e-9 of the
    central value, the accuracy of the reference itself (its ODE atol is 1e-13 and it
    stops at W = 1e-8).
    """
    tag = _tag(W0, g, ra)
    m = _model(W0, g, ra)
    for name in SCALARS:
        ref = float(REF[f"{tag}/scalar/{name}"])
        assert float(getattr(m, name)) == pytest.approx(ref, rel=1e-6), name
    assert float(m.projected_half_mass_radius()) == pytest.approx(
        float(REF[f"{tag}/scalar/rhp"]), rel=1e-6)

    r = REF[f"{tag}/r"]
    prof = m.profiles(r)
    for name in PROFILES:
        ref = REF[f"{tag}/{name}"]
        ours = np.asarray(getattr(prof, name))
        np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-9 * np.abs(ref[0]) + 1e-300,
                                   err_msg=name)
    np.testing.assert_allclose(np.asarray(prof.beta), REF[f"{tag}/beta"], atol=1e-6)

    R = REF[f"{tag}/R"]
    proj = m.projected(R)
    for name in PROJECTED:
        ref = REF[f"{tag}/{name}"]
        np.testing.assert_allclose(np.asarray(getattr(proj, name)), ref, rtol=1e-6,
                                   atol=1e-9 * np.abs(ref[0]), err_msg=name)


@pytest.mark.slow  # compile-bound; run by benchmarks/slow_checks.py
def test_skipped_reference_models_are_infinite_or_huge():
    """Where astro-limepy gave rt > 1e5 r0, dastro flags the model or agrees it is huge."""
    for W0, g, ra in REF["skipped"]:
        model = _solve(*_as_arrays(W0, g, None if np.isinf(ra) else ra), 1e-10, 1e-12)
        if bool(model.valid):
            assert float(np.exp(model.ln_rt)) > 1e5, (W0, g, ra)


@pytest.mark.parametrize("W0, g, ra", [(6.0, 1.2, None), (4.0, 0.3, 8.0), (10.0, 2.1, None)])
def test_live_limepy_comparison(W0, g, ra):
    lp = pytest.importorskip("limepy")
    kw = {} if ra is None else {"ra": ra}
    ref = lp.limepy(W0, g, ode_rtol=1e-12, ode_atol=1e-12, G=0.004302, M=2e5, rh=4.0, **kw)
    m = solve(W0, g, ra).scale(2e5, rh=4.0, G=0.004302)
    for name in ["rt", "rh", "rv", "r0", "M", "U", "K", "Kr"]:
        assert float(getattr(m, name)) == pytest.approx(float(np.ravel(getattr(ref, name))[0]),
                                                        rel=1e-6), name
    assert float(m.A) == pytest.approx(float(np.ravel(ref.A)[0]), rel=1e-6)
    r = ref.r[1:-1]
    prof = m.profiles(r)
    for name in ["phi", "rho", "mc", "v2", "v2r", "v2t"]:
        want = getattr(ref, name)[1:-1]
        np.testing.assert_allclose(np.asarray(getattr(prof, name)), want, rtol=1e-6,
                                   atol=1e-8 * abs(want[0]), err_msg=name)


# ------------------------------------------------------------------ physics checks, no limepy

@pytest.mark.parametrize("W0, g, ra", [(0.5, 3.0, None), (5.0, 0.0, None), (9.0, 1.0, None),
                                       (13.0, 2.0, None), (6.0, 1.5, 10.0), (3.0, 2.5, 3.0)])
def test_virial_ratio_is_one(W0, g, ra):
    m = solve(W0, g, ra)
    assert float(2 * m.K / abs(m.U)) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("W0, g, ra", [(7.0, 1.0, None), (4.0, 2.0, 6.0)])
def test_enclosed_mass_is_integral_of_density(W0, g, ra):
    m = solve(W0, g, ra)
    rho = jax.jit(lambda r: m.profiles(r).rho)
    rt = float(m.rt)
    for frac in [0.01, 0.2, 0.7, 1.0]:
        x = frac * rt
        edges = [0.0, *[e for e in (0.5, 2.0, 10.0) if e < x], x]
        total = sum(quad(lambda r: 4 * np.pi * r**2 * float(rho(r)), a, b, epsrel=1e-12)[0]
                    for a, b in zip(edges[:-1], edges[1:], strict=False))
        assert float(m.profiles(x).mc) == pytest.approx(total, rel=1e-8)


# Lane-Emden first zeros xi_1(n) (Horedt 2004, Polytropes, Table 2.1).
LANE_EMDEN_XI1 = {1.5: 3.65375374, 2.5: 5.35527546, 3.5: 9.53580534, 4.5: 31.83646477}


@pytest.mark.parametrize("g", [0.0, 1.0, 2.0, 3.0])
def test_small_W0_limit_is_a_polytrope(g):
    """For W0 -> 0, rho ~ W^(g+3/2): a polytrope of index n = g + 3/2 with rt = xi_1 sqrt(W0/9).

    The correction is linear in W0; a Richardson step over W0 = 1e-3, 2e-3 removes it.
    """
    def scaled_rt(w0):
        return float(solve(w0, g).rt) / math.sqrt(w0 / 9.0)

    a, b = scaled_rt(1e-3), scaled_rt(2e-3)
    extrapolated = 2 * a - b
    assert extrapolated == pytest.approx(LANE_EMDEN_XI1[g + 1.5], rel=2e-6)


def test_large_W0_core_is_the_isothermal_sphere():
    """A Woolley model with W0 = 25 has an isothermal core: rho = rho0 exp(-psi(3 r / r0)),
    psi'' + 2 psi' / xi = exp(-psi) (the Emden isothermal equation, solved here by scipy)."""
    m = solve(25.0, 0.0)
    xi = np.linspace(0.05, 15.0, 40)  # r up to 5 r0
    sol = solve_ivp(lambda x, y: [y[1], np.exp(-y[0]) - 2 * y[1] / x],
                    [1e-6, xi[-1]], [1e-12 / 6, 1e-6 / 3], t_eval=xi, rtol=1e-12, atol=1e-14)
    want = np.exp(-sol.y[0])
    ours = np.asarray(m.profiles(xi / 3.0).rho)
    np.testing.assert_allclose(ours, want, rtol=1e-8)


# ------------------------------------------------------------------ gradients

def _fd(f, x, h):
    return (f(x + h) - f(x - h)) / (2 * h)


@eqx.filter_jit
def _quantities(W0, g, ra):
    """rt/r0, rh/r0, and rho, v2, Sigma at fixed r/rt (model units)."""
    m = _solve(W0, g, ra, 1e-12, 1e-14)
    rt = jnp.exp(m.ln_rt)
    p = m._profiles(jnp.array([0.05, 0.4]) * rt)
    s = m._projected(jnp.array([0.1]) * rt)
    return jnp.concatenate([jnp.stack([rt, m.rh_model]), p.rho, p.v2, s.Sigma])


# One compiled reverse-mode Jacobian of the isotropic quantities, shared by the gradient tests
# (compiling reverse mode through the ODE solve and its event costs ~50 s).
_iso_jacobian = jax.jit(jax.jacrev(lambda W0, g: _quantities(W0, g, None), argnums=(0, 1)))


# The anisotropic case is slow (~45 s); the ra gradient stays in the default suite through
# test_public_solve_under_plain_grad.
@pytest.mark.parametrize("W0, g, ra", [(5.0, 1.0, None), (7.0, 0.0, None), (3.0, 0.002, None),
                                       pytest.param(6.0, 1.5, 8.0, marks=pytest.mark.slow)])
def test_gradients_match_finite_differences(W0, g, ra):
    args = [jnp.asarray(W0), jnp.asarray(g)] + ([] if ra is None else [jnp.asarray(ra)])

    def f(*a):
        return _quantities(a[0], a[1], None if ra is None else a[2])

    if ra is None:
        jac = _iso_jacobian(*args)
    else:
        jac = jax.jacrev(f, argnums=tuple(range(len(args))))(*args)
    for i, h in enumerate([1e-4, 1e-4, 1e-3][: len(args)]):
        def shifted(x, i=i):
            a = list(args)
            a[i] = x
            return np.asarray(f(*a))
        fd = _fd(shifted, args[i], h)
        np.testing.assert_allclose(np.asarray(jac[i]), fd, rtol=1e-5, atol=1e-10,
                                   err_msg=f"d/d{['W0', 'g', 'ra'][i]}")


def test_gradient_near_g_max():
    W0 = 5.0
    gm = g_max(W0)
    g = gm - 0.05

    def ln_rt(x):
        return float(jnp.log(_quantities(jnp.asarray(W0), jnp.asarray(x), None)[0]))

    jac = _iso_jacobian(jnp.asarray(W0), jnp.asarray(g))
    rt = float(_quantities(jnp.asarray(W0), jnp.asarray(g), None)[0])
    grad = float(jac[1][0]) / rt  # d ln rt / dg
    fd = _fd(ln_rt, g, 1e-5)
    assert grad == pytest.approx(fd, rel=1e-5)
    assert grad > 0  # rt grows without bound towards g_max


def test_public_solve_under_plain_grad():
    """jax.grad through solve() itself (not _solve): its validity checks skip tracers."""
    W0, g, ra = 5.0, 1.5, 3.0

    def rt(w):
        return solve(w, g, ra).rt

    grad = float(jax.jit(jax.grad(rt))(jnp.asarray(W0)))  # eager grad: ~70 s of dispatch
    fd = float(_fd(lambda w: float(rt(w)), W0, 1e-4))
    assert np.isfinite(grad)
    assert grad == pytest.approx(fd, rel=1e-6)


def test_isotropic_ra_is_gradient_safe():
    """model.ra is inf for isotropic models; using it must not poison other gradients."""
    m = solve(5.0, 1.0)

    def f(rh):
        s = m.scale(1e5, rh=rh)
        inv_ra2 = jnp.where(jnp.isinf(s.ra), 0.0, 1.0 / s.ra**2)
        return s.rt * (1.0 + inv_ra2) + 0.0 * jnp.where(jnp.isinf(s.ra), 0.0, s.ra)

    grad = float(jax.grad(f)(3.0))
    assert np.isfinite(grad)
    assert grad == pytest.approx(float(m.rt / m.rh), rel=1e-12)
    assert np.isinf(float(m.scale(1e5, rh=3.0).ra))
    ma = solve(5.0, 1.0, 4.0)
    assert float(jax.grad(lambda rh: ma.scale(1e5, rh=rh).ra)(3.0)) == pytest.approx(
        float(ma.ra / ma.rh), rel=1e-12)


# ------------------------------------------------------------------ batches and validity

def test_batch_equals_single_solves():
    W0 = np.array([2.0, 6.0, 9.0])
    g = np.array([0.5, 1.0, 1.8])
    batch = solve_batch(W0, g)
    for i in range(3):
        single = solve(W0[i], g[i])
        assert float(batch.rt[i]) == pytest.approx(float(single.rt), rel=1e-12)
        assert float(batch.rh[i]) == pytest.approx(float(single.rh), rel=1e-10)


def test_batch_mixing_isotropic_and_anisotropic():
    batch = solve_batch([5.0, 5.0], [1.0, 1.0], [np.inf, 4.0])
    iso = solve(5.0, 1.0)
    aniso = solve(5.0, 1.0, 4.0)
    assert float(batch.rt[0]) == pytest.approx(float(iso.rt), rel=1e-10)
    assert float(batch.rt[1]) == pytest.approx(float(aniso.rt), rel=1e-10)


def test_infinite_model_raises_outside_jit_and_is_flagged_inside():
    with pytest.raises(ValueError, match="g_max"):
        solve(9.0, 2.6)
    flagged = jax.jit(lambda w, g: _solve(w, g, None, 1e-11, 1e-13))(9.0, 2.6)
    assert not bool(flagged.valid)
    assert math.isnan(float(flagged.rt))
    batch = solve_batch([9.0, 9.0], [1.0, 2.6])
    assert bool(batch.valid[0]) and not bool(batch.valid[1])


@pytest.mark.slow  # compile-bound; run by benchmarks/slow_checks.py
def test_g_max_is_the_first_pole_of_rt():
    """rt(g) grows without bound towards g_max(W0); beyond it the family ends."""
    gm = g_max(7.0)
    assert 2.2 < gm < 2.24
    assert gm == pytest.approx(find_g_max(7.0), abs=1e-4)  # table vs direct computation
    ln_rt = [float(_solve(*_as_arrays(7.0, gm - d, None), 1e-10, 1e-12).ln_rt)
             for d in (1e-1, 1e-2, 1e-3, 1e-4)]
    assert np.all(np.diff(ln_rt) > 0.5)  # rt keeps growing as g -> g_max
    with pytest.raises(ValueError, match="g_max"):
        solve(7.0, gm + 1e-3)
    # polytropic limit: g_max -> 3.5 as W0 -> 0
    assert 3.44 < g_max(0.5) < 3.5
    # radial anisotropy lowers g_max
    assert g_max(7.0, 5.0) < g_max(7.0, 20.0) < gm


@pytest.mark.parametrize("W0", [7.0, 9.0, 11.0])
def test_islands_beyond_g_max_are_rejected(W0):
    """(W0, 2.5): the ODE reaches W = 0 again (rt of 1e5 - 1e10 r0), past the first pole of
    rt(g); astro-limepy calls these converged. They are not members of the family."""
    raw = _solve(*_as_arrays(W0, 2.5, None), 1e-10, 1e-12)
    assert bool(raw.reaches_edge) and float(raw.ln_rt) > math.log(1e5)
    assert not bool(raw.valid)
    with pytest.raises(ValueError, match="g_max"):
        solve(W0, 2.5)


# ------------------------------------------------------------------ bad input

finite_ok = st.floats(min_value=0.5, max_value=12.0)


@settings(max_examples=40, deadline=None)
@given(bad=st.one_of(st.floats(max_value=0.0), st.just(float("nan")), st.floats(min_value=30.001)))
def test_bad_W0_is_rejected(bad):
    with pytest.raises(ValueError, match="W0"):
        solve(bad, 1.0)


@settings(max_examples=40, deadline=None)
@given(bad=st.one_of(st.floats(max_value=-1e-12), st.just(float("nan")),
                     st.floats(min_value=3.5)))
def test_bad_g_is_rejected(bad):
    with pytest.raises(ValueError, match="g"):
        solve(5.0, bad)


@settings(max_examples=40, deadline=None)
@given(bad=st.one_of(st.floats(max_value=0.0), st.just(float("nan")), st.just(-math.inf)))
def test_bad_ra_is_rejected(bad):
    with pytest.raises(ValueError, match="ra"):
        solve(5.0, 1.0, bad)


def test_non_scalar_parameters_are_rejected():
    with pytest.raises(ValueError, match="W0 must be a scalar"):
        solve(np.array([5.0, 6.0]), 1.0)
    with pytest.raises(ValueError, match="batch element 1"):
        solve_batch([5.0, -1.0], [1.0, 1.0])


@settings(max_examples=20, deadline=None)
@given(bad=st.one_of(st.floats(max_value=0.0), st.just(float("nan"))))
def test_bad_scaling_is_rejected(bad):
    m = solve(5.0, 1.0)
    with pytest.raises(ValueError, match="M"):
        m.scale(bad, rh=3.0)
    with pytest.raises(ValueError, match="rh"):
        m.scale(1e5, rh=bad)


def test_scale_needs_exactly_one_radius():
    m = solve(5.0, 1.0)
    with pytest.raises(ValueError, match="exactly one"):
        m.scale(1e5)
    with pytest.raises(ValueError, match="exactly one"):
        m.scale(1e5, rh=3.0, rt=30.0)


def test_negative_or_nan_radii_are_rejected():
    m = solve(5.0, 1.0)
    with pytest.raises(ValueError, match="index 1"):
        m.profiles(np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="R must be"):
        m.projected(np.array([np.nan]))


# ------------------------------------------------------------------ units and shapes

@settings(max_examples=10, deadline=None)
@given(M=st.floats(1e3, 1e7), rh=st.floats(0.5, 20.0))
def test_scaling_to_physical_units(M, rh):
    m = solve(6.0, 1.0)
    s = m.scale(M, rh=rh)
    assert float(s.M) == pytest.approx(M, rel=1e-12)
    assert float(s.rh) == pytest.approx(rh, rel=1e-12)
    # dimensional analysis: v^2 ~ G M / r, scaling rt and rh together
    assert float(s.rt / s.rh) == pytest.approx(float(m.rt / m.rh), rel=1e-12)
    v2_model = float(m.profiles(0.0).v2)
    v2_phys = float(s.profiles(0.0).v2)
    G = 4.300917270036279e-3
    expected = v2_model * (G * M / rh) / (G_MODEL * float(m.M) / float(m.rh))
    assert v2_phys == pytest.approx(expected, rel=1e-10)


def test_profiles_keep_the_shape_of_r_and_vanish_outside_rt():
    m = solve(5.0, 1.0)
    r = np.linspace(0.0, 2.0 * float(m.rt), 12).reshape(3, 4)
    p = m.profiles(r)
    assert p.rho.shape == (3, 4)
    outside = r > float(m.rt)
    assert np.all(np.asarray(p.rho)[outside] == 0.0)
    assert np.allclose(np.asarray(p.mc)[outside], float(m.M), rtol=1e-12)
    assert np.all(np.asarray(p.phi)[outside] < 0)  # Keplerian continuation below phi(rt)
    assert np.all(np.diff(np.asarray(p.mc).ravel()) >= 0)
