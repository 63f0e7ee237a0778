"""Mock clusters drawn from the DF: radial and velocity distributions, anisotropy, sky units,
and agreement with astro-limepy's sampler."""

import math

import jax
import numpy as np
import pytest
from scipy import stats

from dastro.clusters import solve
from dastro.clusters.sample import MockCluster, sample, to_sky
from dastro.constants import K_PM

N = 20000  # one sample size for every test: sample() compiles once per (n, model structure)


@pytest.fixture(scope="module")
def iso():
    m = solve(7.0, 1.0).scale(2e5, rh=4.0)
    return m, sample(m, N, jax.random.key(0))


@pytest.fixture(scope="module")
def aniso():
    m = solve(5.0, 1.5, 3.0)
    return m, sample(m, N, jax.random.key(1))


@pytest.fixture(scope="module", params=["iso", "aniso"])
def case(request, iso, aniso):
    return iso if request.param == "iso" else aniso


def _radii(mock):
    return np.sqrt(np.asarray(mock.x) ** 2 + np.asarray(mock.y) ** 2 + np.asarray(mock.z) ** 2)


def _radial_velocity(mock):
    pos = np.stack([mock.x, mock.y, mock.z], -1)
    vel = np.stack([mock.vx, mock.vy, mock.vz], -1)
    r = np.linalg.norm(pos, axis=-1)
    return np.sum(pos * vel, -1) / r, np.sum(vel**2, -1)


def test_radii_follow_enclosed_mass(case):
    """KS test of r against mc(r) / M (measured p ~ 0.4)."""
    m, mock = case
    r = _radii(mock)
    assert np.all(r < float(m.rt))
    grid = float(m.rt) * np.linspace(0.0, 1.0, 4001) ** 2
    cdf = np.asarray(m.profiles(grid).mc / m.M)
    p = stats.kstest(r, lambda x: np.interp(x, grid, cdf)).pvalue
    assert p > 1e-3


def test_velocity_moments_in_radial_bins(case):
    """<v^2> and <v_r^2> in 10 equal-count bins agree with v2(r), v2r(r) within 4.5 sigma."""
    m, mock = case
    r = _radii(mock)
    vr, v2 = _radial_velocity(mock)
    assert np.all(v2 < 2.0 * np.asarray(m.potential(r)))  # nobody above escape speed
    edges = np.quantile(r, np.linspace(0, 1, 11))
    which = np.clip(np.digitize(r, edges[1:-1]), 0, 9)
    prof = m.profiles(r)  # one call: every new shape would recompile
    for b in range(10):
        sel = which == b
        for sample_q, model_q in [(v2[sel], np.asarray(prof.v2)[sel]),
                                  (vr[sel] ** 2, np.asarray(prof.v2r)[sel])]:
            z = (sample_q.mean() - model_q.mean()) / (sample_q.std() / math.sqrt(sel.sum()))
            assert abs(z) < 4.5, (b, z)


def test_speed_distribution_ks(iso):
    """KS test of v^2 / v2(r) in the inner and outer halves against the model's CDF of the same
    statistic, built by drawing the radii again and using the exact speed distribution."""
    m, mock = iso
    r = _radii(mock)
    _, v2 = _radial_velocity(mock)
    phi = np.asarray(m.potential(r))
    s2 = float(m.s2)
    g = float(m.g)
    # y = v^2 / (2 phi) in [0, 1]; its conditional density is prop. to sqrt(y) E_g(w (1 - y))
    from scipy.special import gammainc

    y = v2 / (2.0 * phi)
    w = phi / s2
    yy = np.linspace(0.0, 1.0, 2001)
    cdf_at = []
    for wi, yi in zip(w[:4000], y[:4000], strict=True):
        x = wi * (1.0 - yy)
        dens = np.sqrt(yy) * np.exp(x) * gammainc(g, np.maximum(x, 1e-300))
        c = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(yy))])
        cdf_at.append(np.interp(yi, yy, c / c[-1]))
    # probability integral transform: uniform if the speeds follow the DF
    assert stats.kstest(np.array(cdf_at), "uniform").pvalue > 1e-3


def test_anisotropy_recovered(aniso):
    """beta = 1 - v2t / (2 v2r) in 6 radial bins matches the model within 4.5 sigma."""
    m, mock = aniso
    r = _radii(mock)
    vr, v2 = _radial_velocity(mock)
    vt2 = v2 - vr**2
    edges = np.quantile(r, np.linspace(0, 1, 7))
    which = np.clip(np.digitize(r, edges[1:-1]), 0, 5)
    betas = []
    prof = m.profiles(r)
    v2t_m, v2r_m = np.asarray(prof.v2t), np.asarray(prof.v2r)
    for b in range(6):
        sel = which == b
        beta_model = 1.0 - np.mean(v2t_m[sel]) / (2.0 * np.mean(v2r_m[sel]))
        # bootstrap-free error: delta method on the ratio of two means
        a, c = vt2[sel], vr[sel] ** 2
        ratio = a.mean() / (2 * c.mean())
        var = (a.var() / a.mean() ** 2 + c.var() / c.mean() ** 2
               - 2 * np.cov(a, c)[0, 1] / (a.mean() * c.mean())) * ratio**2 / sel.sum()
        beta = 1.0 - ratio
        assert abs(beta - beta_model) < 4.5 * math.sqrt(var), (b, beta, beta_model)
        betas.append(beta)
    assert betas[-1] > 0.3  # radially biased outskirts: the anisotropy is really there


def test_sky_units(iso):
    m, mock = iso
    sky = to_sky(mock, 5.0)
    np.testing.assert_allclose(sky["dra"].value, np.asarray(mock.x) / 5000.0 * 206264.80624709636,
                               rtol=1e-12)
    np.testing.assert_allclose(sky["pmdec"].value, np.asarray(mock.vy) / (K_PM * 5.0),
                               rtol=1e-9)
    assert sky["pmra"].unit.to_string() == "mas / yr"
    with pytest.raises(ValueError, match="distance"):
        to_sky(mock, -1.0)


def test_sample_with_distance_and_validation(iso):
    m, _ = iso
    import astropy.units as u

    mock = sample(m, N, jax.random.key(5), distance=8.0 * u.kpc)
    assert isinstance(mock, MockCluster)
    assert len(mock.sky) == N
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="n must be a positive integer"):
            sample(m, bad, jax.random.key(0))


def test_same_key_same_stars_different_key_different(iso):
    m, mock = iso
    again = sample(m, N, jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(again.vx), np.asarray(mock.vx))
    assert not np.allclose(np.asarray(sample(m, N, jax.random.key(9)).vx), np.asarray(mock.vx))


@pytest.mark.parametrize("ra", [None, 3.0])
def test_agrees_with_limepy_sampler(ra):
    """Two-sample KS tests of r, |v| and v_r against astro-limepy's sampler (model units)."""
    limepy = pytest.importorskip("limepy")
    W0, g = (7.0, 1.0) if ra is None else (5.0, 1.5)
    kwargs = {} if ra is None else {"ra": ra}
    lm = limepy.limepy(W0, g, **kwargs)
    ls = limepy.sample(lm, N=N, seed=7, verbose=False)
    m = solve(W0, g, ra)
    mock = sample(m, N, jax.random.key(7))
    r = _radii(mock)
    vr, v2 = _radial_velocity(mock)
    r_l = np.asarray(ls.r)
    v_l = np.asarray(ls.v)
    vr_l = np.asarray(ls.vr)
    for ours, theirs in [(r, r_l), (np.sqrt(v2), v_l), (np.abs(vr), np.abs(vr_l))]:
        assert stats.ks_2samp(ours, theirs).pvalue > 1e-3
