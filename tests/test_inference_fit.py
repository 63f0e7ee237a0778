"""The star-level model: recovery of a known cluster, selection normalisation, bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dastro  # noqa: F401  (float64)
from dastro.clusters import emulate, sample, solve
from dastro.inference import FitConfig, Priors, StarData, initial_values, run_nuts, star_model
from dastro.inference.models import _check_config, _selection_log_norm

TRUTH = {"W0": 6.0, "g": 1.2, "log10_M": 5.0, "log10_rh": math.log10(3.0)}


@pytest.fixture(scope="module")
def mock():
    model = solve(TRUTH["W0"], TRUTH["g"]).scale(1e5, rh=3.0)
    return sample(model, 150, jax.random.PRNGKey(7))


@pytest.mark.slow  # ~90 s of NUTS; run by benchmarks/clusters_recovery.py
def test_exact_coordinates_recover_the_truth(mock):
    data = StarData.from_arrays(mock.x, mock.y, mock.vx, mock.vy, mock.vz, z=mock.z)
    config = FitConfig(fit_centre=False)
    result = run_nuts(star_model, data, config, var_names=list(TRUTH),
                      init_values=initial_values(data, config), num_warmup=150,
                      num_samples=150, num_chains=1, progress=False, seed=1)
    s = result.summary
    for name, value in TRUTH.items():
        assert abs(s.loc[name, "mean"] - value) < 3.5 * s.loc[name, "sd"], name
    assert result.divergence_fraction < 0.05
    # the mass is measured to a few per cent from 150 stars: the test can fail
    assert s.loc["log10_M", "sd"] < 0.05


def test_selection_normalisation_is_one_without_selection_and_a_fraction_with_it():
    model = emulate(6.0, 1.2).scale(1e5, rh=3.0)
    one = jnp.ones(())
    assert float(_selection_log_norm(model, FitConfig(), one, 0.0)) == 0.0
    big_field = FitConfig(field_radius=float(model.rt) * 2)
    assert float(_selection_log_norm(model, big_field, one, 0.0)) == pytest.approx(0.0,
                                                                                abs=1e-6)
    # a field of radius rh' (projected half-mass radius) holds half the stars
    rhp = float(model.projected_half_mass_radius())
    half = FitConfig(field_radius=rhp)
    assert float(_selection_log_norm(model, half, one, 0.0)) == pytest.approx(math.log(0.5),
                                                                           abs=1e-5)


def test_bad_configurations_are_named():
    n = 20
    rng = np.random.default_rng(0)
    sky = StarData.from_arrays(rng.normal(size=n), rng.normal(size=n), sky=True)
    with pytest.raises(ValueError, match="distance prior"):
        _check_config(sky, FitConfig())
    phys = StarData.from_arrays(rng.normal(size=n), rng.normal(size=n))
    with pytest.raises(ValueError, match="field_radius"):
        _check_config(phys, FitConfig(contamination=True))
    with pytest.raises(ValueError, match="outside field_radius"):
        _check_config(phys, FitConfig(field_radius=0.5))
    with pytest.raises(ValueError, match="num_chains"):
        run_nuts(star_model, phys, FitConfig(), var_names=["W0"], num_chains=0)
    _check_config(sky, FitConfig(priors=Priors(distance=(5.0, 0.1))))


def test_missing_velocities_are_masks_not_zeros():
    d = StarData.from_arrays([1.0, 2.0], [0.0, 1.0], vz=[3.0, np.nan], vz_err=[0.5, np.nan])
    assert d.has_vz.tolist() == [True, False]
    assert d.vz_err.tolist() == [0.5, 0.0]
    with pytest.raises(ValueError, match="vz_err"):
        StarData.from_arrays([1.0, 2.0], [0.0, 1.0], vz=[3.0, 1.0], vz_err=[-0.5, 1.0])


def _two_scales():
    import numpyro
    import numpyro.distributions as dist

    numpyro.sample("narrow", dist.Normal(0.0, 0.01))
    numpyro.sample("wide", dist.Normal(0.0, 1.0))


def test_tree_depth_caps_the_trajectories():
    """(warm-up, sampling) depths: 2**d - 1 leapfrog steps at most after warm-up."""
    r = run_nuts(_two_scales, var_names=["narrow", "wide"], num_warmup=30, num_samples=40,
                 num_chains=1, max_tree_depth=(10, 2), progress=False)
    steps = np.asarray(r.idata.sample_stats["n_steps"])
    assert steps.max() <= 3 and steps.min() >= 1


@pytest.mark.parametrize("depth", [0, 16, (7,), (7, 10, 12), 2.5, (7, "10"), None])
def test_bad_tree_depth_is_named(depth):
    with pytest.raises(ValueError, match="max_tree_depth"):
        run_nuts(_two_scales, var_names=["narrow"], num_chains=1, max_tree_depth=depth)


def test_blackjax_sampler_draws_the_target():
    """sampler="blackjax" (window adaptation + NUTS on numpyro's potential): moments of
    N(0, 0.01) x N(0, 1) within 5 Monte Carlo errors, no divergences."""
    r = run_nuts(_two_scales, var_names=["narrow", "wide"], num_warmup=200, num_samples=400,
                 num_chains=1, sampler="blackjax", progress=False, seed=3)
    post = r.idata.posterior
    for name, sd in (("narrow", 0.01), ("wide", 1.0)):
        x = np.asarray(post[name]).ravel()
        assert x.size == 400
        assert abs(x.mean()) < 5 * sd / math.sqrt(100)  # ESS >= 100 of 400
        assert 0.7 * sd < x.std() < 1.3 * sd
    assert r.divergences == 0
