"""ATLAS and MARCS model-atmosphere readers and writers, on real files (tests/data/atmospheres)."""

import gzip
import math
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dastro import constants as const
from dastro.atmospheres import (
    ModelAtmosphere,
    iter_atmospheres,
    read_atlas,
    read_atmosphere,
    read_marcs,
    write_atlas,
    write_marcs,
)
from dastro.atmospheres.io import _mean_nucleus_mass, _tau_from_kappa

DATA = Path(__file__).parent / "data" / "atmospheres"
KSUN = DATA / "ksun.mod"
MSUN = DATA / "msun.mod"


@pytest.fixture(scope="module")
def ksun():
    return read_atlas(KSUN)


@pytest.fixture(scope="module")
def msun():
    return read_marcs(MSUN)


def _at_tau1(atm, name):
    return float(np.interp(0.0, np.log10(np.asarray(atm.tau_ross)), np.asarray(getattr(atm, name))))


def _assert_same(a: ModelAtmosphere, b: ModelAtmosphere, rtol=0.0):
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=rtol, atol=0)


# ----------------------------------------------------------------- values from the real files


def test_ksun_values_match_the_file(ksun):
    assert ksun.kind == "atlas" and ksun.n_depth == 72
    assert float(ksun.teff) == 5777.0 and float(ksun.logg) == 4.437 and float(ksun.m_h) == 0.0
    # first and last rows of the deck (lines 24 and 95 of ksun.mod)
    assert float(ksun.column_mass[0]) == 1.41555036e-03
    assert float(ksun.T[0]) == 3758.5 and float(ksun.P_gas[0]) == 3.935e01
    assert float(ksun.n_e[0]) == 6.292e09 and float(ksun.kappa_ross[0]) == 4.566e-04
    assert float(ksun.vmic[0]) == 1.998e05
    assert float(ksun.extras["v_sound"][0]) == 6.551e05
    assert float(ksun.T[-1]) == 9821.8 and float(ksun.column_mass[-1]) == 7.50543737e00
    assert float(ksun.extras["pradk"]) == 1.4601
    assert float(ksun.extras["mixing_length"]) == 1.25
    # ABUNDANCE CHANGE 1 0.92040 2 0.07834 ... 26 -4.54: A(X) = log10 N_X/N_H + 12
    ab = np.asarray(ksun.abundances)
    assert ab[0] == 12.0
    assert ab[1] == pytest.approx(math.log10(0.07834 / 0.92040) + 12, abs=1e-12)
    assert ab[25] == pytest.approx(-4.54 - math.log10(0.92040) + 12, abs=1e-12)
    assert set(ksun.derived) == {"rho", "tau_ross"}


def test_msun_values_match_the_file(msun):
    assert msun.kind == "marcs" and msun.n_depth == 56
    assert float(msun.teff) == 5777.0
    assert float(msun.logg) == pytest.approx(math.log10(2.7542e04), abs=1e-12)
    assert float(msun.vmic[0]) == pytest.approx(1.0e5)
    # k = 1 rows of the two structure tables (lines 26 and 83)
    assert float(msun.tau_ross[0]) == pytest.approx(1e-5, rel=1e-14)
    assert float(msun.tau_5000[0]) == pytest.approx(10**-4.9174, rel=1e-14)
    assert float(msun.T[0]) == 4066.8 and float(msun.P_gas[0]) == 2.670e02
    assert float(msun.n_e[0]) == pytest.approx(2.117e-02 / (const.k_B * 4066.8), rel=1e-14)
    assert float(msun.kappa_ross[0]) == 1.840e-03 and float(msun.rho[0]) == 1.001e-09
    assert float(msun.column_mass[0]) == 9.747804e-03
    assert float(msun.extras["depth"][0]) == -6.931e07
    assert float(msun.extras["log_pp_H2O"][0]) == -8.79
    assert float(msun.extras["log_pp_HI"][-1]) == 5.27
    assert float(msun.T[-1]) == 9934.3 and float(msun.column_mass[-1]) == 7.949527
    ab = np.asarray(msun.abundances)
    assert ab[0] == 12.0 and ab[7] == 8.66 and ab[25] == 7.45 and ab[42] == -99.0
    assert float(msun.extras["flux"]) == 6.3157e10
    assert float(msun.extras["X"]) == 0.73826 and float(msun.extras["c12_c13"]) == 89.0


def test_atlas_and_marcs_suns_agree(ksun, msun):
    """The two solar models, at tau_ross = 1 (ATLAS rho and tau_ross are derived)."""
    assert _at_tau1(ksun, "T") == pytest.approx(_at_tau1(msun, "T"), rel=0.01)
    for name in ("P_gas", "n_e", "rho", "column_mass"):
        assert _at_tau1(ksun, name) == pytest.approx(_at_tau1(msun, name), rel=0.06), name


def test_derived_quantities_reproduce_marcs(msun):
    """The recipes used for ATLAS decks, checked on MARCS, which lists rho and tau_ross."""
    tau = _tau_from_kappa(msun.column_mass, msun.kappa_ross)
    np.testing.assert_allclose(tau, np.asarray(msun.tau_ross), rtol=1e-2)
    T, P, ne = (np.asarray(v) for v in (msun.T, msun.P_gas, msun.n_e))
    rho = (P / (const.k_B * T) - ne) * _mean_nucleus_mass(msun.abundances)
    # MARCS's density is 0.8 % above the ideal gas of atoms in amu (its own EOS and masses)
    np.testing.assert_allclose(rho, np.asarray(msun.rho), rtol=1.2e-2)


def test_hydrostatic_equilibrium_in_atlas_deck(ksun):
    """dP_total/dm = g: P_gas + P_rad grows with column mass at the rate g (ATLAS has no
    turbulent pressure here); a check that the columns were not mixed up."""
    g = 10 ** float(ksun.logg)
    m = np.asarray(ksun.column_mass)
    p = np.asarray(ksun.P_gas)
    slope = np.diff(p) / np.diff(m)
    # P_rad contributes a few per cent at the top; the gas pressure carries the weight below
    assert np.median(slope[20:]) == pytest.approx(g, rel=0.03)


# ---------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("path", [KSUN, MSUN])
def test_round_trip_exact(path, tmp_path):
    a = read_atmosphere(path)
    out = tmp_path / "model.mod"
    (write_atlas if a.kind == "atlas" else write_marcs)(a, out)
    b = read_atmosphere(out)
    _assert_same(a, b)
    # and a second pass gives the same text
    out2 = tmp_path / "model2.mod"
    (write_atlas if a.kind == "atlas" else write_marcs)(b, out2)
    assert out.read_text() == out2.read_text()


@pytest.mark.parametrize("name", ["atlas_grid_excerpt.txt", "marcs_grid_excerpt.txt"])
def test_grid_models_round_trip(name, tmp_path):
    for k, a in enumerate(iter_atmospheres(DATA / name)):
        out = tmp_path / f"m{k}.mod"
        (write_atlas if a.kind == "atlas" else write_marcs)(a, out)
        _assert_same(a, read_atmosphere(out))


def test_marcs_written_as_atlas(msun, tmp_path):
    out = tmp_path / "msun_as_atlas.dat"
    write_atlas(msun, out)
    a = read_atlas(out)
    for name in ("column_mass", "T", "P_gas", "n_e", "kappa_ross", "vmic"):
        np.testing.assert_allclose(np.asarray(getattr(a, name)),
                                   np.asarray(getattr(msun, name)), rtol=6e-4)
    np.testing.assert_allclose(np.asarray(a.abundances)[:30], np.asarray(msun.abundances)[:30],
                               atol=0.006)
    np.testing.assert_allclose(np.asarray(a.tau_ross)[5:], np.asarray(msun.tau_ross)[5:],
                               rtol=1e-2)


def test_grids_and_gzip(tmp_path):
    atlas = list(iter_atmospheres(DATA / "atlas_grid_excerpt.txt"))
    assert [(float(a.teff), float(a.logg), float(a.m_h)) for a in atlas] == [
        (5750.0, 4.5, 0.0), (5750.0, 4.5, -2.0)]
    # [M/H] = -2 scales the metals, not H and He
    d = np.asarray(atlas[1].abundances) - np.asarray(atlas[0].abundances)
    assert d[25] == pytest.approx(-2.0, abs=0.01) and abs(d[1]) < 0.01
    gz = tmp_path / "marcs.txt.gz"
    with open(DATA / "marcs_grid_excerpt.txt", "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    marcs = list(iter_atmospheres(gz))
    assert [(float(a.teff), round(float(a.logg), 3), float(a.m_h)) for a in marcs] == [
        (4500.0, 2.0, -1.0), (5750.0, 4.5, 0.0)]
    assert float(marcs[0].extras["mass"]) == 1.0  # spherical model
    assert float(marcs[0].extras["radius"]) > 1e11


# ------------------------------------------------------------------------ bad files


def _corrupt(tmp_path, src, lineno, old, new, name=None):
    lines = src.read_text().splitlines()
    assert old in lines[lineno - 1], lines[lineno - 1]
    lines[lineno - 1] = lines[lineno - 1].replace(old, new, 1)
    out = tmp_path / (name or src.name)
    out.write_text("\n".join(lines) + "\n")
    return out


def test_bad_atlas_rows_name_file_line_and_column(tmp_path):
    # line 30 of ksun.mod is depth point 7
    f = _corrupt(tmp_path, KSUN, 30, "3889.9", "-3889.9")
    with pytest.raises(ValueError, match=r"ksun\.mod, line 30: column T = -3889\.9"):
        read_atlas(f)
    f = _corrupt(tmp_path, KSUN, 30, "1.388E+10", "NaN      ")
    with pytest.raises(ValueError, match=r"ksun\.mod, line 30: column XNE = nan"):
        read_atlas(f)
    f = _corrupt(tmp_path, KSUN, 30, "3.20195919E-03", "2.50000000E-03")
    with pytest.raises(ValueError, match=r"ksun\.mod, line 30: column RHOX does not increase"):
        read_atlas(f)
    f = _corrupt(tmp_path, KSUN, 30, " 8.453E-02", "")  # drop one number
    with pytest.raises(ValueError, match=r"ksun\.mod, line 30: expected 10 numbers"):
        read_atlas(f)
    f = _corrupt(tmp_path, KSUN, 23, "XNE,", "")
    with pytest.raises(ValueError, match=r"ksun\.mod, line 23: READ DECK6 lacks column\(s\) XNE"):
        read_atlas(f)


def test_truncated_files(tmp_path):
    short = tmp_path / "short.mod"
    short.write_text("\n".join(KSUN.read_text().splitlines()[:40]) + "\n")
    with pytest.raises(ValueError, match=r"short\.mod, line 40: file ends after 17 of 72"):
        read_atlas(short)
    short.write_text("\n".join(MSUN.read_text().splitlines()[:60]) + "\n")
    with pytest.raises(ValueError, match=r"short\.mod, line 60: file ends after 35 of 56"):
        read_marcs(short)
    (tmp_path / "x.mod").write_text("hello\nworld\n")
    with pytest.raises(ValueError, match=r"x\.mod, line 1: neither"):
        read_atmosphere(tmp_path / "x.mod")


def test_bad_marcs_rows(tmp_path):
    # line 36 of msun.mod is depth point 11 of the first table
    f = _corrupt(tmp_path, MSUN, 36, "3.382E+03", "-3.382E+03")
    with pytest.raises(ValueError, match=r"msun\.mod, line 36: column Pg = -3382\.0"):
        read_marcs(f)
    f = _corrupt(tmp_path, MSUN, 36, " -3.00 ", " -3.30 ")
    with pytest.raises(ValueError, match=r"msun\.mod, line 36: column lgTauR does not increase"):
        read_marcs(f)
    f = _corrupt(tmp_path, MSUN, 36, " 11 ", " 12 ")
    with pytest.raises(ValueError, match=r"msun\.mod, line 36: expected depth point 11"):
        read_marcs(f)


# --------------------------------------------------------------- structure validation


def _valid_columns(n, seed):
    rng = np.random.default_rng(seed)
    m = np.cumsum(rng.uniform(0.1, 1.0, n)) * 1e-2
    return dict(
        column_mass=m,
        tau_ross=np.cumsum(rng.uniform(0.1, 1.0, n)) * 1e-3,
        T=rng.uniform(3000, 10000, n),
        P_gas=m * 2.7e4,
        n_e=rng.uniform(1e9, 1e15, n),
        rho=rng.uniform(1e-10, 1e-6, n),
        vmic=np.full(n, 1e5),
    )


def _make(cols, **kw):
    return ModelAtmosphere(
        **{k: jnp.asarray(v) for k, v in cols.items()},
        teff=jnp.asarray(5777.0), logg=jnp.asarray(4.44), m_h=jnp.asarray(0.0),
        alpha_m=jnp.asarray(0.0), abundances=jnp.full(92, 5.0), **kw,
    )


FIELDS = ["column_mass", "tau_ross", "T", "P_gas", "n_e", "rho"]


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 40),
    seed=st.integers(0, 2**31),
    field=st.sampled_from(FIELDS),
    kind=st.sampled_from(["nan", "inf", "negative", "zero", "swap"]),
    where=st.floats(0, 1),
)
def test_structure_rejects_bad_values(n, seed, field, kind, where):
    cols = _valid_columns(n, seed)
    _make(cols)  # the valid one is accepted
    i = min(int(where * n), n - 1)
    v = cols[field].copy()
    if kind == "nan":
        v[i] = np.nan
    elif kind == "inf":
        v[i] = np.inf
    elif kind == "negative":
        v[i] = -abs(v[i])
    elif kind == "zero":
        v[i] = 0.0
    else:
        if field not in ("column_mass", "tau_ross"):
            return  # only the depth scales must be monotonic
        j = i - 1 if i > 0 else 1
        v[i], v[j] = v[j], v[i]
    cols[field] = v
    with pytest.raises(ValueError, match=f"column {field}"):
        _make(cols)


def test_structure_other_checks():
    cols = _valid_columns(5, 0)
    with pytest.raises(ValueError, match="at least 2"):
        _make({k: v[:1] for k, v in cols.items()})
    bad = dict(cols, T=cols["T"][:4])
    with pytest.raises(ValueError, match="column T has 4 points"):
        _make(bad)
    with pytest.raises(ValueError, match="vmic"):
        _make(dict(cols, vmic=-cols["vmic"]))
    with pytest.raises(ValueError, match="tau_5000"):
        _make(cols, tau_5000=jnp.asarray(cols["tau_ross"][::-1]))
    with pytest.raises(ValueError, match="extras"):
        _make(cols, extras={"x": jnp.ones(3)})


def test_structure_is_a_pytree_for_jit_and_grad(msun):
    @jax.jit
    def surface_cooling(atm):
        return jnp.sum(atm.T * atm.rho) / jnp.sum(atm.rho)

    val = surface_cooling(msun)
    grads = jax.grad(surface_cooling)(msun)  # zeros in column_mass: no validation on unflatten
    assert np.isfinite(float(val))
    assert np.all(np.isfinite(np.asarray(grads.T)))
    # vmap over a stack of models of the same grid
    models = list(iter_atmospheres(DATA / "atlas_grid_excerpt.txt"))
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *models)
    out = jax.vmap(lambda a: a.T[30])(stacked)
    assert out.shape == (2,)
