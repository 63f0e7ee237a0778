"""Velocity errors integrated out by Gauss-Hermite (FitConfig(velocity_errors="marginal")).

The per-star marginal density is compared with a brute-force quadrature over the true
velocities of the exact local density (dastro.clusters.df_local), for one, two and three
components with errors; the numpyro model must then have no velocity latents and a finite,
differentiable log density.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import log_density

import dastro  # noqa: F401  (float64)
from dastro.clusters import emulate
from dastro.clusters.df_local import log_density_local
from dastro.inference import FitConfig, StarData, initial_values, star_model
from dastro.inference.models import _check_config, _log_density_error_marginal

MODEL = emulate(6.0, 1.2).scale(1e5, rh=3.0)
SIGMA_1D = float(jnp.sqrt(MODEL.s2))  # km/s, the velocity scale of the DF


def _stars():
    """Three stars at known 3D positions [pc] with velocities [km/s] inside the escape speed."""
    pos = np.array([[0.3, -0.2, 0.5], [1.5, 2.0, -1.0], [-4.0, 1.0, 2.5]])
    vel = np.array([[3.0, -2.0, 1.0], [-1.5, 4.0, 2.5], [2.0, 1.0, -1.0]])
    return pos, vel


def _brute_force(pos, v_obs, err):
    """log int p(pos, v) prod N(v_obs - v; err) dv on a +-6 err grid (trapezoid; err = 0
    components are not integrated)."""
    n = 41 if min(err) > 0 else 81  # trapezoid on a Gaussian: 0.3 err spacing is plenty
    axes = [np.linspace(v - 6 * e, v + 6 * e, n) if e > 0 else np.array([v])
            for v, e in zip(v_obs, err, strict=True)]
    grid = np.meshgrid(*axes, indexing="ij")
    lp = np.asarray(log_density_local(MODEL, *(np.full(grid[0].shape, c) for c in pos),
                                      *grid))
    for i, (v, e) in enumerate(zip(v_obs, err, strict=True)):
        if e > 0:
            shape = [1, 1, 1]
            shape[i] = n
            g = np.reshape(axes[i], shape)
            lp = lp - 0.5 * ((g - v) / e) ** 2 - math.log(e * math.sqrt(2 * math.pi))
    p = np.exp(lp)
    for i, e in enumerate(err):
        if e > 0:  # integrate, keeping the axis (size 1) so the others keep their places
            p = np.expand_dims(np.trapezoid(p, axes[i], axis=i), i)
    return float(np.log(np.squeeze(p)))


@pytest.mark.parametrize("errors", [(0.0, 0.0, 1.0), (0.8, 0.8, 0.0), (0.6, 0.9, 1.5)])
def test_gauss_hermite_matches_brute_force(errors):
    pos, vel = _stars()
    err = np.tile(np.asarray(errors), (3, 1))
    data = StarData.from_arrays(pos[:, 0], pos[:, 1], *vel.T, vx_err=err[:, 0],
                                vy_err=err[:, 1], vz_err=err[:, 2], z=pos[:, 2])
    config = FitConfig(velocity_errors="marginal", error_nodes=8)
    got = np.asarray(_log_density_error_marginal(
        MODEL, data, config, jnp.asarray(pos[:, 0]), jnp.asarray(pos[:, 1]),
        jnp.asarray(pos[:, 2]), tuple(jnp.asarray(v) for v in vel.T), (1.0, 1.0, 1.0), None))
    want = np.array([_brute_force(pos[i], vel[i], err[i]) for i in range(3)])
    # errors up to a third of the dispersion: the 8-node rule is good to ~1e-4 in log p
    assert max(errors) < 0.4 * SIGMA_1D
    np.testing.assert_allclose(got, want, atol=2e-4)
    # the errors matter at this tolerance: the convolved density differs from the local one
    exact = np.asarray(log_density_local(MODEL, *pos.T, *vel.T))
    assert np.max(np.abs(got - exact)) > 1e-3


@pytest.mark.slow  # ~40 s of compile; the rule itself is checked against brute force in the suite
def test_marginal_model_has_no_velocity_latents_and_a_finite_gradient():
    rng = np.random.default_rng(4)
    pos, vel = _stars()  # projected positions only: z is a latent
    n = 3
    data = StarData.from_arrays(pos[:, 0], pos[:, 1], *vel.T, vx_err=np.full(n, 0.5),
                                vy_err=np.full(n, 0.5),
                                vz_err=rng.uniform(0.5, 1.0, size=n))
    latent = FitConfig(fit_centre=False)
    marginal = FitConfig(fit_centre=False, velocity_errors="marginal")
    params = initial_values(data, marginal)
    assert not any(k.startswith("eps_v") for k in params)

    @jax.jit
    def logp(p):
        return log_density(star_model, (data, marginal), {}, p)[0]

    _, trace = log_density(star_model, (data, marginal), {}, params)
    assert np.isfinite(float(logp(params)))
    assert not any(k.startswith("eps_v") for k in trace)
    assert any(k.startswith("eps_v") for k in
               log_density(star_model, (data, latent), {}, initial_values(data, latent))[1])
    grads = jax.jit(jax.grad(logp))({k: jnp.asarray(v, float) for k, v in params.items()})
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grads.values())


def test_bad_error_options_are_named():
    data = StarData.from_arrays(np.arange(12.0), np.ones(12))
    with pytest.raises(ValueError, match="velocity_errors must be 'latent' or 'marginal'"):
        _check_config(data, FitConfig(velocity_errors="hierarchical"))
    with pytest.raises(ValueError, match="error_nodes = 0"):
        _check_config(data, FitConfig(velocity_errors="marginal", error_nodes=0))
