"""Single-star phase-space densities: normalisation, consistency of the marginals, mock
histograms, -inf handling, gradients and input validation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from dastro.clusters import df, solve
from dastro.clusters.sample import sample

# Two model configurations only (compilation dominates the run time).
ISO = (7.0, 1.0, None)
ANISO = (5.0, 1.5, 3.0)


@pytest.fixture(scope="module")
def iso_model():
    return solve(*ISO).scale(2e5, rh=4.0)


# The densities accept the model or its DFTables; the tests pass tables, built once, so that
# each jitted density compiles only its per-star part (test_model_and_tables_agree checks
# that both paths give the same numbers).
@pytest.fixture(scope="module")
def iso(iso_model):
    return df.df_tables(iso_model)


@pytest.fixture(scope="module")
def aniso():
    return df.df_tables(solve(*ANISO))  # model units


@pytest.fixture(scope="module", params=["iso", "aniso"])
def model(request, iso, aniso):
    return iso if request.param == "iso" else aniso


def _vmax(t):
    return math.sqrt(2.0 * float(t.W[0])) * float(t.s)


def _gl(a, b, n, power=3):
    """Gauss-Legendre nodes on [a, b] with endpoint clustering at b ((b - x) ~ (1 - t)^power)."""
    t, w = np.polynomial.legendre.leggauss(n)
    t = 0.5 * (t + 1.0)
    w = 0.5 * w
    x = a + (b - a) * (1.0 - (1.0 - t) ** power)
    return x, w * (b - a) * power * (1.0 - t) ** (power - 1)


def _radial_nodes(m, n=400):
    """Nodes in R over [0, rt], uniform-ish in asinh(R / r0) with the rt edge resolved."""
    rt, r0 = float(m.rt), float(m.r0)
    e, we = _gl(0.0, math.asinh(rt / r0), n)
    return r0 * np.sinh(e), we * r0 * np.cosh(e)


def _p(fn, m, *coords, **kw):
    return np.exp(np.asarray(fn(m, *[np.atleast_1d(np.asarray(c, float)) for c in coords],
                                **kw)))


def test_projected_position_normalised(model):
    """2 pi int R Sigma(R) / M dR = 1 (measured ~1e-9)."""
    R, w = _radial_nodes(model)
    p = _p(df.log_density_R, model, R)
    assert abs(np.sum(p * w) - 1.0) < 1e-4


def test_tables_match_line_of_sight_quadrature(iso, aniso):
    """The Sigma and (R, speed) tables against the per-star line-of-sight quadrature they
    replace (measured: Sigma ~1e-8; H_k median ~2e-8, max ~8e-6 in log)."""
    rng = np.random.default_rng(5)
    rt = float(iso.rt)
    R = jnp.asarray(rt * np.concatenate([rng.uniform(0, 1, 300) ** 2, [0.0, 0.999]]))
    for tab in (iso, aniso):
        Rt = R * float(tab.rt) / rt
        got = jax.jit(jax.vmap(lambda r, tab=tab: df._one_xy(tab, r, 0.0)))(Rt)
        want = jax.jit(jax.vmap(lambda r, tab=tab: df._one_xy_direct(tab, r, 0.0)))(Rt)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)
    w_R = jax.vmap(lambda r: df._w_at(iso, r))(R)
    e = jnp.asarray(np.concatenate([rng.uniform(0, 0.999, 300), [0.0, 0.5]]))
    c = e**2 * w_R
    for k in range(3):
        got = jax.jit(jax.vmap(lambda r, c, k=k: df._one_vel_table(iso, k, r, 0.0, c)))(R, c)
        want = jax.jit(jax.vmap(lambda r, c, k=k: df._log_h(iso, k, r, c)))(R, c)
        err = np.abs(np.asarray(got - want))
        assert np.max(err) < 2e-5 and np.median(err) < 1e-7, (k, np.max(err), np.median(err))


def test_projected_density_matches_solver_sigma(iso, iso_model):
    R = np.linspace(0.02, 0.98, 9) * float(iso.rt)
    sigma = np.asarray(iso_model.projected(R).Sigma / iso_model.M)
    p = _p(df.log_density_xy, iso, R * np.cos(1.0), R * np.sin(1.0))
    np.testing.assert_allclose(p, sigma, rtol=1e-6)


@pytest.mark.parametrize("frac", [0.05, 0.3, 0.7])
def test_vlos_marginal_integrates_to_position_density(model, frac):
    R = frac * float(model.rt)
    vmax = _vmax(model)
    v, w = _gl(0.0, vmax, 200)
    v = np.concatenate([-v, v])
    w = np.concatenate([w, w])
    p = _p(df.log_density_xy_vlos, model, np.full_like(v, R), np.zeros_like(v), v)
    p_r = _p(df.log_density_xy, model, R, 0.0)[0]
    assert abs(np.sum(p * w) / p_r - 1.0) < 1e-4


@pytest.mark.parametrize("frac", [0.05, 0.5])
def test_pm_marginal_integrates_to_position_density(model, frac):
    R = frac * float(model.rt)
    vmax = _vmax(model)
    v, wv = _gl(0.0, vmax, 120)
    th = np.linspace(0.0, 2.0 * np.pi, 24, endpoint=False) + 0.1
    V, TH = np.meshgrid(v, th, indexing="ij")
    W = (wv * v)[:, None] * np.full(th.shape, 2.0 * np.pi / th.size)
    # star at angle 0.7 on the sky, so the anisotropic density depends on the angle
    x, y = R * math.cos(0.7), R * math.sin(0.7)
    p = _p(df.log_density_xy_pm, model, np.full(V.size, x), np.full(V.size, y),
           (V * np.cos(TH)).ravel(), (V * np.sin(TH)).ravel())
    p_r = _p(df.log_density_xy, model, x, y)[0]
    assert abs(np.sum(p * W.ravel()) / p_r - 1.0) < 1e-4


def test_v3_marginal_integrates_to_position_density(iso):
    """Isotropic: the density depends on |v| only, so int 4 pi v^2 p dv = Sigma / M."""
    R = 0.2 * float(iso.rt)
    v, w = _gl(0.0, _vmax(iso), 200)
    d = np.array([0.3, -0.5, 0.81])
    d = d / np.linalg.norm(d)
    p = _p(df.log_density_xy_v3, iso, np.full_like(v, R), np.zeros_like(v),
           v * d[0], v * d[1], v * d[2])
    p_r = _p(df.log_density_xy, iso, R, 0.0)[0]
    assert abs(np.sum(4 * np.pi * v**2 * p * w) / p_r - 1.0) < 1e-4


def test_v3_aniso_marginal_integrates_over_vz_to_pm(aniso):
    """int p(x, y, vx, vy, vz) dvz = p(x, y, vx, vy) for the anisotropic model."""
    x, y, vx, vy = 0.8, -0.5, 0.4, 0.3
    p_pm = _p(df.log_density_xy_pm, aniso, x, y, vx, vy)[0]

    def fz(vz):
        return _p(df.log_density_xy_v3, aniso, x, y, vx, vy, vz)[0]

    vmax = _vmax(aniso)
    val = integrate.quad(fz, -vmax, vmax, limit=200, epsrel=1e-10, epsabs=0.0)[0]
    assert abs(val / p_pm - 1.0) < 1e-4


def test_6d_integrates_over_z_to_v3(model):
    x, y = 0.7, 0.4
    vel = np.array([0.3, -0.2, 0.25]) * float(model.s)
    p3 = _p(df.log_density_xy_v3, model, x, y, *vel)[0]
    zt = math.sqrt(float(model.rt) ** 2 - x * x - y * y)

    def f6(z):
        return _p(df.log_density_6d, model, x, y, z, *vel)[0]

    val = integrate.quad(f6, -zt, zt, points=[0.0], limit=400, epsrel=1e-10, epsabs=0.0)[0]
    assert abs(val / p3 - 1.0) < 1e-4


def test_6d_normalisation_isotropic(iso, iso_model):
    """int f / M d^3x d^3v = (4 pi)^2 int int r^2 v^2 f / M dv dr = 1."""
    r, wr = _gl(0.0, float(iso.rt), 300)
    phi = np.asarray(iso_model.potential(r))
    t, wt = _gl(0.0, 1.0, 80)
    v = np.sqrt(2.0 * phi)[:, None] * t[None, :]
    wv = np.sqrt(2.0 * phi)[:, None] * wt[None, :]
    R = np.broadcast_to(r[:, None], v.shape).ravel()
    p = _p(df.log_density_6d, iso, R, 0 * R, 0 * R, v.ravel(), 0 * R, 0 * R).reshape(v.shape)
    total = (4 * np.pi) ** 2 * np.sum(wr[:, None] * r[:, None] ** 2 * wv * v**2 * p)
    assert abs(total - 1.0) < 1e-4


def test_histograms_of_mock_stars(iso, iso_model):
    """R and (for a ring) v_los histograms of 20000 mock stars agree with the densities."""
    mock = sample(iso_model, 20000, jax.random.key(11))
    R = np.hypot(mock.x, mock.y)
    edges = np.quantile(R, np.linspace(0, 1, 21))
    edges[0], edges[-1] = 0.0, float(iso.rt)
    expected = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        x, w = np.polynomial.legendre.leggauss(40)
        Rn = 0.5 * (b - a) * (x + 1) + a
        expected.append(np.sum(0.5 * (b - a) * w * _p(df.log_density_R, iso, Rn)))
    counts = np.histogram(R, edges)[0]
    chi2 = np.sum((counts - 20000 * np.array(expected)) ** 2 / (20000 * np.array(expected)))
    assert stats.chi2.sf(chi2, len(counts) - 1) > 1e-3

    ring = (R > 1.0) & (R < 3.0)
    vz = np.asarray(mock.vz)[ring]
    v_edges = np.linspace(-3, 3, 13) * np.std(vz)
    v_edges[0], v_edges[-1] = -_vmax(iso), _vmax(iso)
    Rn, wR = _gl(1.0, 3.0, 32, power=1)
    exp_counts = []
    for a, b in zip(v_edges[:-1], v_edges[1:], strict=True):
        x, w = np.polynomial.legendre.leggauss(12)
        vn = 0.5 * (b - a) * (x + 1) + a
        RR, VV = np.meshgrid(Rn, vn, indexing="ij")
        p = _p(df.log_density_xy_vlos, iso, RR.ravel(), 0 * RR.ravel(), VV.ravel())
        weights = (wR * 2 * np.pi * Rn)[:, None] * (0.5 * (b - a) * w)[None, :]
        exp_counts.append(20000 * np.sum(weights.ravel() * p))
    exp_counts = np.array(exp_counts)
    counts = np.histogram(vz, v_edges)[0]
    assert abs(counts.sum() / exp_counts.sum() - 1) < 5 / math.sqrt(counts.sum())
    chi2 = np.sum((counts - exp_counts) ** 2 / exp_counts)
    assert stats.chi2.sf(chi2, len(counts)) > 1e-3


KINDS = ["6d", "xy", "xy_vlos", "xy_pm", "xy_v3"]
_ZERO = df.Centre()


@jax.jit
def _all_densities(m, x, y, z, vx, vy, vz, centre=_ZERO):
    """All five densities in one compiled function (one compilation per model structure)."""
    return {kind: _one_kind(kind, m, (x, y, z, vx, vy, vz), centre) for kind in KINDS}


def test_impossible_stars_get_minus_inf_individually(model):
    rt = float(model.rt)
    vesc0 = _vmax(model)
    s = float(model.s)
    # good star; beyond rt; escaping at the centre; good star
    x = np.array([0.1 * rt, 1.2 * rt, 0.0, 0.3 * rt])
    y = np.array([0.05 * rt, 0.0, 0.0, 0.0])
    z = np.zeros(4)
    v = np.array([0.5 * s, 0.1 * s, 1.01 * vesc0, 0.2 * s])
    out = _all_densities(model, x, y, z, v, 0.5 * v, v)
    for name, val in out.items():
        val = np.asarray(val)
        assert np.all(np.isfinite(val[[0, 3]])), name
        assert val[1] == -np.inf, name
        if name != "xy":
            assert val[2] == -np.inf, name
        assert not np.any(np.isnan(val)), name


def _perturbed(model, theta):
    """The model with (mass unit, length unit, g, W0) set from theta[:4]; centre theta[4:]."""
    import equinox as eqx

    m = eqx.tree_at(lambda m: (m.mass_unit, m.length_unit, m.g, m.W0), model,
                    tuple(theta[:4]))
    return m, df.Centre(*theta[4:9])


@pytest.mark.slow  # 75 s; run with pytest -m slow
def test_gradients_ignore_impossible_stars(iso_model):
    """Gradients of the good stars are unchanged by adding -inf stars (no NaN leaks)."""
    rt = float(iso_model.rt)
    s = math.sqrt(float(iso_model.s2))
    x = np.array([0.1, 0.5, 2.0, 1.5 * rt, 0.2])
    vz = np.array([0.3 * s, 0.3 * s, 0.3 * s, 0.1 * s, 10.0 * _vmax(df.df_tables(iso_model))])
    data = (x, 0.5 * x, 0.1 * x, 0.2 * vz, -0.3 * vz, vz)
    good = np.array([True, True, True, False, False])
    theta0 = jnp.array([iso_model.mass_unit, iso_model.length_unit, 1.0, 7.0,
                        0.01, -0.02, 0.1, -0.1, 0.05])

    def loglike(theta, mask):
        m, c = _perturbed(iso_model, theta)
        out = _all_densities(m, *data, centre=c)
        # the fast star (index 4) is a possible star for the position-only density
        return jnp.stack([jnp.sum(jnp.where(mask | ((k == "xy") & (np.arange(5) == 4)),
                                            out[k], 0.0)) for k in KINDS])

    jac = jax.jit(jax.jacrev(loglike))
    g_all = jac(theta0, jnp.ones(5, bool))  # includes the -inf stars: -inf values, finite grads
    g_good = jac(theta0, jnp.asarray(good))
    assert np.all(np.isfinite(g_all))
    np.testing.assert_allclose(g_all, g_good, rtol=1e-9, atol=1e-12)
    vals = np.asarray(jax.jit(loglike)(theta0, jnp.ones(5, bool)))
    assert np.all(vals == -np.inf)
    assert np.all(np.isfinite(np.asarray(jax.jit(loglike)(theta0, jnp.asarray(good)))))


@pytest.mark.parametrize("kinds", [
    ("6d", "xy_vlos"),
    pytest.param(("xy", "xy_pm", "xy_v3"), marks=pytest.mark.slow),  # 2 min of compiling
])
@pytest.mark.slow  # ~1 min of compiling; star_model's gradients go through df_local instead
def test_gradients_match_finite_differences(iso_model, kinds):
    """d/d(mass unit, length unit, g, W0, centre) of each log-likelihood of 20 mock stars
    (tables rebuilt inside) vs central differences; the solver's own gradients are tested
    in test_cluster_solver.py."""
    mock = sample(iso_model, 20, jax.random.key(3))
    data = (mock.x, mock.y, mock.z, mock.vx, mock.vy, mock.vz)

    @jax.jit
    def loglike(theta):
        m, c = _perturbed(iso_model, theta)
        return jnp.stack([jnp.sum(_one_kind(k, m, data, c)) for k in kinds])

    theta = np.array([float(iso_model.mass_unit), float(iso_model.length_unit), 1.05, 6.9,
                      0.02, -0.01, 0.1, -0.1, 0.05])
    jac = np.asarray(jax.jit(jax.jacrev(loglike))(jnp.asarray(theta)))
    typical = np.abs(theta[:4]).tolist() + [1.0] * 5
    value = np.abs(np.asarray(loglike(jnp.asarray(theta))))
    for i in range(theta.size):
        step = 1e-5 * typical[i]
        tp, tm = theta.copy(), theta.copy()
        tp[i] += step
        tm[i] -= step
        fd = (np.asarray(loglike(jnp.asarray(tp))) - np.asarray(loglike(jnp.asarray(tm))))
        fd = fd / (2 * step)
        tol = 1e-6 * np.abs(fd) + 1e-8 * value / typical[i]
        assert np.all(np.abs(jac[:, i] - fd) < tol), (i, jac[:, i], fd)


@pytest.mark.slow
def test_gradient_through_the_solver():
    """End to end: d/d(W0, g, M, rh) of the xy+vlos log-likelihood, solve included."""
    truth = solve(*ISO).scale(2e5, rh=4.0)
    mock = sample(truth, 20, jax.random.key(4))

    def loglike(theta):
        m = solve(theta[0], theta[1]).scale(theta[2], rh=theta[3])
        return jnp.sum(df.log_density_xy_vlos(m, mock.x, mock.y, mock.vz))

    theta = np.array([6.9, 1.05, 2.1e5, 4.1])
    grad = np.asarray(jax.grad(loglike)(jnp.asarray(theta)))
    # Five-point differences with a 1e-4 relative step: the solver's ~1e-11 relative noise
    # in the log-likelihood (|log L| ~ 100) is then ~1e-5 in the difference, where the
    # two-point rule at 1e-5 had ~1e-4, as large as the tolerance (failed at 1.07x in d/dg).
    for i in range(4):
        step = 1e-4 * abs(theta[i])

        def at(k, i=i, step=step):
            t = theta.copy()
            t[i] += k * step
            return float(loglike(jnp.asarray(t)))

        fd = (8 * (at(1) - at(-1)) - (at(2) - at(-2))) / (12 * step)
        assert abs(grad[i] - fd) < 1e-4 * abs(fd) + 1e-9, (i, grad[i], fd)


def _one_kind(kind, m, data, c):
    x, y, z, vx, vy, vz = data
    return {
        "6d": lambda: df.log_density_6d(m, x, y, z, vx, vy, vz, centre=c),
        "xy": lambda: df.log_density_xy(m, x, y, centre=c),
        "xy_vlos": lambda: df.log_density_xy_vlos(m, x, y, vz, centre=c),
        "xy_pm": lambda: df.log_density_xy_pm(m, x, y, vx, vy, centre=c),
        "xy_v3": lambda: df.log_density_xy_v3(m, x, y, vx, vy, vz, centre=c),
    }[kind]()


def test_model_and_tables_agree(iso, iso_model):
    tab = iso
    x = np.array([0.3, 1.0, 2.0])
    a = df.log_density_xy_vlos(iso_model, x, x, x)
    b = df.log_density_xy_vlos(tab, x, x, x)
    np.testing.assert_allclose(a, b, rtol=1e-14)
    c = jax.jit(lambda t, x: df.log_density_xy_vlos(t, x, x, x))(tab, x)
    np.testing.assert_allclose(c, a, rtol=1e-12)
    # 2-D batches keep their shape
    d = df.log_density_xy_vlos(tab, x[None, :].repeat(2, 0), x[None, :].repeat(2, 0),
                               x[None, :].repeat(2, 0))
    assert d.shape == (2, 3)
    np.testing.assert_allclose(d[1], a, rtol=1e-12)


# ----------------------------------------------------------------------------- bad input

finite = st.floats(-50, 50, allow_nan=False)


@settings(max_examples=20, deadline=None)
@given(st.lists(finite, min_size=1, max_size=5), st.integers(0, 4),
       st.sampled_from([np.nan, np.inf, -np.inf]))
def test_non_finite_coordinates_raise(xs, where, bad):
    tab = _TAB
    x = np.array(xs, float)
    y = np.zeros_like(x)
    x[where % x.size] = bad
    with pytest.raises(ValueError, match="x must be finite"):
        df.log_density_xy(tab, x, y)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5))
def test_mismatched_shapes_raise(n, k):
    if n == k:
        k += 1
    with pytest.raises(ValueError, match="same shape"):
        df.log_density_xy_vlos(_TAB, np.zeros(n), np.zeros(n), np.zeros(k))


@settings(max_examples=20, deadline=None)
@given(st.floats(-1e6, -1e-300))
def test_negative_projected_radius_raises(R):
    with pytest.raises(ValueError, match="R must be finite and >= 0"):
        df.log_density_R(_TAB, np.array([1.0, R]))


def test_bad_centre_and_mass_raise():
    with pytest.raises(ValueError, match="centre.vz must be finite"):
        df.log_density_xy(_TAB, [1.0], [1.0], centre=df.Centre(vz=np.nan))
    with pytest.raises(ValueError, match="centre must be"):
        df.log_density_xy(_TAB, [1.0], [1.0], centre=(0.0, 0.0))
    with pytest.raises(NotImplementedError, match="multimass"):
        df.log_density_xy(_TAB, [1.0], [1.0], mass=[1.0])


_TAB = df.df_tables(solve(*ISO))


def test_public_exports():
    import dastro.clusters as c
    from dastro.clusters import sample as sample_mod

    for name in ["Centre", "DFTables", "df_tables", "log_density_6d", "log_density_xy",
                 "log_density_xy_vlos", "log_density_xy_pm", "log_density_xy_v3",
                 "log_density_R"]:
        assert name in c.__all__ and getattr(c, name) is getattr(df, name)
    for name in ["sample", "MockCluster", "to_sky"]:
        assert name in c.__all__ and callable(getattr(c, name))
    assert sample_mod is sample
