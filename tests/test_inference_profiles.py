"""Binned-profile likelihood: maximum at the truth, gradients, unit conversions, error model."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

from dastro.clusters.emulator import _emulate, load_table
from dastro.clusters.solver import Projected
from dastro.constants import K_PM
from dastro.inference.data import Profile
from dastro.inference.profiles import (
    PC_PER_ARCSEC_KPC,
    check_profile,
    profile_log_likelihood,
    profiles_factor,
    split_normal_logpdf,
)

TABLE = load_table()
#: (W0, g, log10 M [Msun], log10 rh [pc], distance [kpc], n_norm [stars], background
#: [stars / arcsec^2])
NAMES = ("W0", "g", "logM", "logrh", "distance", "n_norm", "background")
TRUTH = np.array([6.0, 1.5, 5.0, math.log10(3.0), 5.0, 2000.0, 2e-4])
R_DENSITY = np.geomspace(3.0, 1200.0, 12)  # arcsec; rt is about 1300 arcsec
R_KIN = np.geomspace(5.0, 600.0, 8)
KINDS = ("number_density", "vlos_dispersion", "pm_dispersion", "pmr_dispersion",
         "pmt_dispersion")


def build(theta):
    W0, g, logM, logrh = theta[0], theta[1], theta[2], theta[3]
    return _emulate(TABLE, W0, g).scale(10.0**logM, rh=10.0**logrh)


def log_like(theta, profiles):
    return profile_log_likelihood(build(theta), profiles, distance_kpc=theta[4],
                                  n_norm=theta[5], background=theta[6])


def synthetic_profiles():
    """Exact model values at TRUTH in sky units, with 2 % (below) and 3 % (above) errors."""
    model = build(jnp.asarray(TRUTH))
    d = TRUTH[4]
    radii = [R_DENSITY] + [R_KIN] * 4
    proj = model.projected(np.concatenate(radii) * PC_PER_ARCSEC_KPC * d)
    splits = np.cumsum([r.size for r in radii])[:-1]
    sigma, v2p, v2R, v2T = (np.split(np.asarray(q), splits) for q in proj)
    values = [TRUTH[5] * sigma[0] / float(model.M) * (PC_PER_ARCSEC_KPC * d) ** 2 + TRUTH[6],
              np.sqrt(v2p[1]), np.sqrt(0.5 * (v2R[2] + v2T[2])) / (K_PM * d),
              np.sqrt(v2R[3]) / (K_PM * d), np.sqrt(v2T[4]) / (K_PM * d)]
    return model, tuple(Profile(kind, R, v, 0.02 * v, 0.03 * v, sky=True)
                        for kind, R, v in zip(KINDS, radii, values, strict=True))


MODEL, PROFILES = synthetic_profiles()
VALUE_AND_GRAD = jax.jit(jax.value_and_grad(lambda theta: log_like(theta, PROFILES)))


def test_synthetic_data_are_sensible():
    nd, vlos, pm = PROFILES[:3]
    assert 0.05 < nd.value[0] < 1.0 and nd.value[-1] < 3 * TRUTH[6]
    assert 3.0 < vlos.value[0] < 8.0  # km/s, 1e5 Msun in 3 pc
    assert 0.1 < pm.value[0] < 0.4  # mas/yr at 5 kpc


def test_maximum_at_truth_along_each_parameter():
    best, grad = VALUE_AND_GRAD(jnp.asarray(TRUTH))
    assert np.isfinite(best)
    # the residuals vanish at the truth, and with them the gradient
    np.testing.assert_allclose(grad, 0.0, atol=1e-6 * float(jnp.abs(best)))
    steps = np.array([0.05, 0.05, 0.02, 0.02, 0.1, 40.0, 1e-5])
    for i, name in enumerate(NAMES):
        for frac in (-1.0, -0.1, -0.01, 0.01, 0.1, 1.0):
            theta = TRUTH.copy()
            theta[i] += frac * steps[i]
            value, _ = VALUE_AND_GRAD(jnp.asarray(theta))
            assert value < best, (name, frac, float(value), float(best))


def test_gradient_matches_finite_differences():
    # W0 away from the knots of the emulator grid and of the g_max(W0) table (steps 0.05),
    # where the second derivative jumps and central differences lose an order.
    theta = np.array([6.27, 1.3, 5.08, 0.45, 5.3, 2200.0, 1.5e-4])
    _, grad = VALUE_AND_GRAD(jnp.asarray(theta))
    grad = np.asarray(grad)
    fd = np.empty_like(grad)
    for i in range(theta.size):
        h = 1e-5 * abs(theta[i])
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] -= h
        fd[i] = (float(VALUE_AND_GRAD(jnp.asarray(up))[0])
                 - float(VALUE_AND_GRAD(jnp.asarray(down))[0])) / (2 * h)
    assert np.all(np.abs(grad) > 1.0)
    np.testing.assert_allclose(grad, fd, rtol=1e-5)


def test_jit_matches_eager_and_invalid_model_is_nan():
    eager = profile_log_likelihood(MODEL, PROFILES, distance_kpc=TRUTH[4], n_norm=TRUTH[5],
                                   background=TRUTH[6])
    jitted, _ = VALUE_AND_GRAD(jnp.asarray(TRUTH))
    assert float(eager) == pytest.approx(float(jitted), rel=1e-12)
    outside = TRUTH.copy()
    outside[0] = 20.0  # beyond the emulator's box
    assert np.isnan(float(VALUE_AND_GRAD(jnp.asarray(outside))[0]))


# ----------------------------------------------------------------------------- error model


def test_split_normal_reduces_to_the_gaussian():
    x = jnp.linspace(-5.0, 7.0, 41)
    np.testing.assert_allclose(split_normal_logpdf(x, 1.0, 1.7, 1.7),
                               norm.logpdf(x, 1.0, 1.7), rtol=1e-13)


def test_split_normal_is_normalised_and_continuous():
    lo, hi, mode = 0.5, 2.0, 3.0
    x = np.linspace(mode - 12 * lo, mode + 12 * hi, 200001)
    p = np.exp(np.asarray(split_normal_logpdf(x, mode, lo, hi)))
    assert np.trapezoid(p, x) == pytest.approx(1.0, rel=1e-9)
    eps = 1e-9
    left, at, right = (float(split_normal_logpdf(mode + e, mode, lo, hi))
                       for e in (-eps, 0.0, eps))
    assert left == pytest.approx(at, abs=1e-12) and right == pytest.approx(at, abs=1e-12)
    # model below the value: the lower error applies
    assert float(split_normal_logpdf(mode - lo, mode, lo, hi)) == pytest.approx(
        at - 0.5, rel=1e-14)
    assert float(split_normal_logpdf(mode + hi, mode, lo, hi)) == pytest.approx(
        at - 0.5, rel=1e-14)
    d = jax.grad(split_normal_logpdf)(mode, mode, lo, hi)
    assert float(d) == 0.0


# ----------------------------------------------------------------------------- mapping, units


class FakeModel:
    """Distinct analytic projected profiles, to check which one each kind uses."""

    M = 1e4

    def projected(self, R):
        R = jnp.asarray(R)
        return Projected(Sigma=1e3 * jnp.exp(-R), v2p=1.0 + R, v2R=4.0 + R, v2T=9.0 + R)


def sym(kind, R, value, err, sky=False):
    R, value = np.asarray(R, float), np.asarray(value, float)
    return Profile(kind, R, value, np.full(R.shape, err), np.full(R.shape, err), sky)


def test_each_kind_uses_its_projection_physical_units():
    R = np.array([0.0, 0.5, 2.0])
    obs = np.array([1.1, 2.0, 3.0])
    cases = {"vlos_dispersion": np.sqrt(1.0 + R), "pmr_dispersion": np.sqrt(4.0 + R),
             "pmt_dispersion": np.sqrt(9.0 + R), "pm_dispersion": np.sqrt(6.5 + R),
             "number_density": 300.0 * 1e3 * np.exp(-R) / 1e4 + 0.25}
    for kind, pred in cases.items():
        got = profile_log_likelihood(FakeModel(), sym(kind, R, obs, 0.3), n_norm=300.0,
                                     background=0.25)
        assert float(got) == pytest.approx(float(jnp.sum(norm.logpdf(obs, pred, 0.3))),
                                           rel=1e-13), kind


def test_sky_units_are_converted_with_the_distance():
    d = 7.5
    pc = PC_PER_ARCSEC_KPC * d  # pc per arcsec
    R_arcsec = np.array([10.0, 40.0, 90.0])
    R = R_arcsec * pc
    obs = np.array([0.1, 0.05, 0.02])
    pm = profile_log_likelihood(FakeModel(), sym("pmr_dispersion", R_arcsec, obs, 0.01, True),
                                distance_kpc=d)
    pred = np.sqrt(4.0 + R) / (K_PM * d)
    assert float(pm) == pytest.approx(float(jnp.sum(norm.logpdf(obs, pred, 0.01))), rel=1e-13)
    vlos = profile_log_likelihood(FakeModel(), sym("vlos_dispersion", R_arcsec, obs, 0.5, True),
                                  distance_kpc=d)
    pred = np.sqrt(1.0 + R)  # km/s whatever the frame
    assert float(vlos) == pytest.approx(float(jnp.sum(norm.logpdf(obs, pred, 0.5))), rel=1e-13)
    nd = profile_log_likelihood(FakeModel(), sym("number_density", R_arcsec, obs, 0.01, True),
                                distance_kpc=d, n_norm=50.0, background=0.003)
    pred = 50.0 * 1e3 * np.exp(-R) / 1e4 * pc**2 + 0.003
    assert float(nd) == pytest.approx(float(jnp.sum(norm.logpdf(obs, pred, 0.01))), rel=1e-13)


def test_one_normalisation_per_density_profile():
    R = np.array([0.1, 1.0])
    a = sym("number_density", R, [80.0, 30.0], 2.0)
    b = sym("number_density", R, [8.0, 3.0], 0.5)
    v = sym("vlos_dispersion", R, [1.0, 1.5], 0.1)
    both = profile_log_likelihood(FakeModel(), [a, v, b], n_norm=jnp.array([900.0, 90.0]),
                                  background=jnp.array([0.5, 0.1]))
    parts = (profile_log_likelihood(FakeModel(), a, n_norm=900.0, background=0.5)
             + profile_log_likelihood(FakeModel(), v)
             + profile_log_likelihood(FakeModel(), b, n_norm=90.0, background=0.1))
    assert float(both) == pytest.approx(float(parts), rel=1e-13)
    # ignored without a number_density profile
    assert float(profile_log_likelihood(FakeModel(), v, n_norm=jnp.ones(3))) == float(
        profile_log_likelihood(FakeModel(), v))
    with pytest.raises(ValueError, match=r"n_norm must be a scalar or have one entry per "
                                         r"number_density profile \(2\)"):
        profile_log_likelihood(FakeModel(), [a, b], n_norm=jnp.ones(3))


def test_profiles_factor_adds_the_log_likelihood():
    from numpyro.infer.util import log_density

    p = sym("vlos_dispersion", [0.1, 1.0], [1.0, 1.5], 0.1)

    def numpyro_model():
        profiles_factor("profiles", FakeModel(), [p])

    log_joint, trace = log_density(numpyro_model, (), {}, {})
    assert "profiles" in trace
    assert float(log_joint) == pytest.approx(float(profile_log_likelihood(FakeModel(), p)),
                                             rel=1e-14)


@pytest.mark.parametrize("profile, kwargs, message", [
    (Profile("density", np.ones(2), np.ones(2), np.ones(2), np.ones(2)), {},
     "unknown profile kind 'density'"),
    (Profile("vlos_dispersion", np.ones(3), np.ones(2), np.ones(2), np.ones(2)), {},
     "value has 2 bins, R has 3"),
    (Profile("vlos_dispersion", np.ones((2, 2)), np.ones(2), np.ones(2), np.ones(2)), {},
     r"R must be a non-empty 1D array, got shape \(2, 2\)"),
    (Profile("vlos_dispersion", np.ones(0), np.ones(0), np.ones(0), np.ones(0)), {},
     "non-empty"),
    (Profile("vlos_dispersion", np.ones(2), np.ones(2), np.array([1.0, 0.0]), np.ones(2)), {},
     r"err_lo must be finite and > 0; bad bins 1"),
    (Profile("vlos_dispersion", np.array([-1.0, 1.0]), np.ones(2), np.ones(2), np.ones(2)), {},
     r"R must be finite and >= 0; bad bins 0"),
    (Profile("vlos_dispersion", np.ones(2), np.ones(2), np.ones(2), np.ones(2), sky=True), {},
     "need distance_kpc"),
    (Profile("number_density", np.ones(2), np.ones(2), np.ones(2), np.ones(2)), {},
     "need n_norm"),
    ("vlos_dispersion", {}, "a Profile or a sequence of Profile"),
    ((), {}, "profiles is empty"),
    ((np.ones(2),), {}, "expected a dastro.inference.Profile"),
])
def test_bad_profiles_raise(profile, kwargs, message):
    with pytest.raises(ValueError, match=message):
        profile_log_likelihood(FakeModel(), profile, **kwargs)


def test_check_profile_returns_float_arrays():
    p = check_profile(Profile("pm_dispersion", [1, 2], [3, 4], [1, 1], [2, 2], sky=1))
    assert p.R.dtype == np.float64 and p.sky is True
