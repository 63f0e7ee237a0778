"""Spectral synthesis (dastro.rt.synth) on the solar ATLAS9 and MARCS models."""

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dastro  # noqa: F401  (float64)
from dastro.atmospheres.io import read_atmosphere
from dastro.rt.lines import LineList, read_turbospectrum
from dastro.rt.synth import synthesis_plan, synthesize

DATA = Path(__file__).parent / "data"
MSUN = DATA / "atmospheres" / "msun.mod"
KSUN = DATA / "atmospheres" / "ksun.mod"
GES_5170 = DATA / "linelists" / "ges_5170_5174.ts"
MG_B = (5167.3216, 5172.6843, 5183.6042)  # air

# Solar equivalent widths of the Mg b triplet [mA]: Moore, Minnaert & Houtgast (1966), The
# Solar Spectrum 2935 A to 8770 A (NBS Monograph 61): 935, 1259, 1584 mA.
MG_B_EW_MMH66 = np.array([935.0, 1259.0, 1584.0])
# Solar continuum surface flux near 5175 A: Neckel & Labs (1984, Sol. Phys. 90, 205) continuum
# irradiance ~2.0 W m^-2 nm^-1 at 1 AU, times (1 AU / R_sun)^2 -> 9.3e6 erg s^-1 cm^-2 A^-1.
CONT_5175_NL84 = 9.3e6


@pytest.fixture(scope="module")
def msun():
    return read_atmosphere(MSUN)


@pytest.fixture(scope="module")
def ksun():
    return read_atmosphere(KSUN)


@pytest.fixture(scope="module")
def ges():
    return read_turbospectrum(GES_5170)


def _mgb(ges_all=None):
    ll = read_turbospectrum(GES_5170)
    i = int(np.argmin(np.abs(np.asarray(ll.wavelength) - 5172.684)))
    one = jax.tree_util.tree_map(lambda a: a[i:i + 1] if eqx.is_array(a) else a, ll)
    # the other two triplet lines: same multiplet 3p 3P - 4s 3S (NIST log gf -0.86 and -0.16;
    # GES values), ABO broadening as 5172
    lam = jnp.asarray([5167.3216, 5172.6843, 5183.6042])
    return LineList(wavelength=lam, species=jnp.full(3, 12), charge=jnp.zeros(3, int),
                    log_gf=jnp.asarray([-0.931, -0.363, -0.167]), E_lower=jnp.asarray(
                        [2.709, 2.712, 2.717]), gamma_rad=jnp.full(3, one.gamma_rad[0]),
                    gamma_stark=jnp.full(3, one.gamma_stark[0]), vdw_mode=jnp.full(3, 2),
                    vdw=jnp.full(3, one.vdw[0]), vdw_alpha=jnp.full(3, one.vdw_alpha[0]),
                    air=True)


@pytest.fixture(scope="module")
def mgb_spectra(msun, ksun):
    ll = _mgb()
    wl = np.arange(5155.0, 5195.0, 0.02)
    out = {}
    for name, atm in (("marcs", msun), ("atlas", ksun)):
        s = synthesize(atm, ll, wl, check_range=False, hydrogen=False)
        out[name] = (wl, np.asarray(s.flux), np.asarray(s.continuum))
    return out


def _ew(wl, f, c, lo, hi):
    m = (wl >= lo) & (wl < hi)
    return float(np.sum(1 - f[m] / c[m]) * (wl[1] - wl[0]) * 1e3)


@pytest.mark.slow  # 2.5 min of synthesis; run with pytest -m slow
def test_solar_continuum_flux(mgb_spectra):
    for name in ("marcs", "atlas"):
        wl, f, c = mgb_spectra[name]
        fc = float(np.interp(5175.0, wl, c))
        assert fc == pytest.approx(CONT_5175_NL84, rel=0.10), name
        assert np.all(np.diff(c) < 0)  # continuum falls toward the red here
    c_m = mgb_spectra["marcs"][2]
    c_a = mgb_spectra["atlas"][2]
    np.testing.assert_allclose(c_a, c_m, rtol=0.03)  # ATLAS9 vs MARCS solar models


@pytest.mark.slow  # shares the 2.5-min solar synthesis above
def test_mg_b_equivalent_widths(mgb_spectra):
    edges = [5155.0, 5170.0, 5178.0, 5195.0]
    for name in ("marcs", "atlas"):
        wl, f, c = mgb_spectra[name]
        ews = np.array([_ew(wl, f, c, edges[k], edges[k + 1]) for k in range(3)])
        np.testing.assert_allclose(ews, MG_B_EW_MMH66, rtol=0.25, err_msg=name)
        assert ews[0] < ews[1] < ews[2]
    n_m = mgb_spectra["marcs"][1] / mgb_spectra["marcs"][2]
    n_a = mgb_spectra["atlas"][1] / mgb_spectra["atlas"][2]
    print("EW marcs/atlas [mA]:", [_ew(*mgb_spectra[k], edges[0], edges[-1]) for k in
                                  ("marcs", "atlas")])
    assert np.max(np.abs(n_m - n_a)) < 0.1  # cores: the models' upper layers differ
    wing = (n_m > 0.6) & (n_a > 0.6)
    assert np.max(np.abs(n_m - n_a)[wing]) < 0.03
    ew_m = _ew(*mgb_spectra["marcs"], edges[0], edges[-1])
    ew_a = _ew(*mgb_spectra["atlas"], edges[0], edges[-1])
    assert ew_a == pytest.approx(ew_m, rel=0.08)


@pytest.mark.slow  # ~30 s
def test_h_alpha_wings(msun):
    ll = _mgb()
    wl = np.arange(6540.0, 6586.0, 0.05)
    s = synthesize(msun, ll, wl, check_range=False)
    n = np.asarray(s.normalized)
    depth = {d: 1 - np.interp(6562.8 + d, wl, n) for d in (-10.0, -5.0, -2.0, 2.0, 5.0, 10.0)}
    # symmetric wings decreasing outward; the solar flux atlas (Kurucz 2005) has about
    # 1 - F/Fc ~ 0.2-0.3 at 2 A, ~0.06-0.1 at 5 A and ~0.02-0.04 at 10 A from the centre
    assert depth[2.0] == pytest.approx(depth[-2.0], rel=0.05)
    print('H-alpha depths', depth)
    assert 0.12 < depth[2.0] < 0.45
    assert 0.03 < depth[5.0] < 0.15
    assert 0.005 < depth[10.0] < 0.06
    assert depth[2.0] > depth[5.0] > depth[10.0]
    assert np.min(n) < 0.5


@pytest.fixture(scope="module")
def small(msun, ges):
    wl = np.arange(5172.3, 5173.2, 0.02)
    plan = synthesis_plan(msun, ges, wl, check_range=False, hydrogen=False)
    return wl, plan


@pytest.mark.slow  # ~2.5 min; run with pytest -m slow (transfer gradients stay in the suite)
def test_gradients_match_finite_differences(msun, ges, small):
    wl, plan = small
    w = jnp.asarray(np.cos(np.arange(wl.size)))

    def loss(T, P, ab, vmic, log_gf):
        atm = eqx.tree_at(lambda a: (a.T, a.P_gas), msun, (T, P))
        ll = eqx.tree_at(lambda x: x.log_gf, ges, log_gf)
        return jnp.sum(w * synthesize(atm, ll, abundances=ab, vmic=vmic, plan=plan).normalized)

    args = (msun.T, msun.P_gas, msun.abundances[:30], jnp.asarray(1.0), ges.log_gf)
    grads = jax.grad(loss, argnums=(0, 1, 2, 3, 4))(*args)
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g)))
    i_mg = int(np.argmin(np.abs(np.asarray(ges.wavelength) - 5172.684)))
    checks = [(0, 20), (0, 35), (1, 20), (1, 35), (2, 11), (2, 25), (3, None), (4, i_mg)]
    for argnum, k in checks:
        x = args[argnum]
        h = 1e-4 * (abs(float(x[k])) if k is not None else 1.0) + 1e-6
        if argnum == 2:
            h = 1e-4
        e = jnp.zeros_like(x).at[k].set(h) if k is not None else h
        up = list(args)
        dn = list(args)
        up[argnum] = x + e
        dn[argnum] = x - e
        fd = (loss(*up) - loss(*dn)) / (2 * h)
        g = grads[argnum] if k is None else grads[argnum][k]
        assert float(g) == pytest.approx(float(fd), rel=2e-3, abs=1e-6 * abs(float(fd)) + 1e-9), \
            (argnum, k)


def test_traced_call_needs_plan(msun, ges, small):
    wl, _ = small
    with pytest.raises(ValueError, match="plan"):
        jax.jit(lambda T: synthesize(eqx.tree_at(lambda a: a.T, msun, T), ges, wl,
                                     check_range=False).flux)(msun.T)


@pytest.mark.slow
def test_jit_matches_eager(msun, ges, small):
    wl, plan = small
    f = jax.jit(lambda T: synthesize(eqx.tree_at(lambda a: a.T, msun, T), ges, plan=plan).flux)
    np.testing.assert_allclose(np.asarray(f(msun.T)),
                               np.asarray(synthesize(msun, ges, plan=plan).flux), rtol=1e-12)


def test_bad_input(msun, ges):
    wl = np.arange(5171.0, 5172.0, 0.05)
    with pytest.raises(ValueError, match="strictly increasing"):
        synthesize(msun, ges, wl[::-1])
    with pytest.raises(ValueError, match="NaN"):
        synthesize(msun, ges, np.where(wl > 5171.5, np.nan, wl))
    with pytest.raises(ValueError, match="line list's range"):
        synthesize(msun, ges, np.arange(5160.0, 5161.0, 0.05))
    with pytest.raises(ValueError, match="validity"):
        synthesize(msun, ges, np.arange(1000.0, 1001.0, 0.05), check_range=False)
    bad_m = msun.column_mass.at[10].set(msun.column_mass[9])
    with pytest.raises(ValueError, match="column_mass"):
        synthesize(eqx.tree_at(lambda a: a.column_mass, msun, bad_m), ges, wl)
    with pytest.raises(ValueError, match="T"):
        synthesize(eqx.tree_at(lambda a: a.T, msun, msun.T.at[3].set(jnp.nan)), ges, wl)
    with pytest.raises(ValueError, match="P_gas"):
        synthesize(eqx.tree_at(lambda a: a.P_gas, msun, -msun.P_gas), ges, wl)


def test_missing_column_in_line_list(tmp_path):
    text = GES_5170.read_text().splitlines()
    # cut the fifth line record down to three numbers
    k = next(i for i, s in enumerate(text) if s.strip() and s.lstrip()[0].isdigit())
    text[k] = " ".join(text[k].split()[:3])
    p = tmp_path / "bad.ts"
    p.write_text("\n".join(text) + "\n")
    with pytest.raises(ValueError, match=r"bad.ts, line \d+"):
        read_turbospectrum(p)


@pytest.mark.slow  # ~45 s; the empty-range refusal is a fast test of its own below
def test_cli_writes_csv_fits_and_plot(tmp_path):
    from astropy.table import Table

    from dastro.rt.cli_synth import run_synth

    base = [str(MSUN), str(GES_5170), "--start", "5172.5", "--end", "5172.9", "--step",
            "0.05", "--no-hydrogen", "--no-progress"]
    assert run_synth(base + ["-o", str(tmp_path / "s.csv"), "--plot",
                             str(tmp_path / "s.png")]) == 0
    t = Table.read(tmp_path / "s.csv", format="ascii.csv")
    assert len(t) == 9 and np.all(t["normalized"] <= 1.0 + 1e-12)
    assert (tmp_path / "s.png").stat().st_size > 1000
    assert run_synth(base + ["-o", str(tmp_path / "s.fits")]) == 0  # same plan: no recompile
    tf = Table.read(tmp_path / "s.fits")
    assert tf.meta["MEDIUM"] == "air"
    np.testing.assert_allclose(tf["flux"], t["flux"], rtol=1e-12)


@pytest.mark.slow
def test_cli_chunks_with_progress(tmp_path):
    from astropy.table import Table

    from dastro.rt.cli_synth import run_synth

    args = [str(MSUN), str(GES_5170), "--start", "5172.5", "--end", "5172.9", "--step", "0.05",
            "--no-hydrogen", "--chunk", "0.2", "-o", str(tmp_path / "c.csv")]
    assert run_synth(args) == 0
    assert len(Table.read(tmp_path / "c.csv", format="ascii.csv")) == 9


def test_cli_rejects_an_empty_wavelength_range():
    from dastro.rt.cli_synth import run_synth

    with pytest.raises(SystemExit):
        run_synth([str(MSUN), str(GES_5170), "--start", "5172", "--end", "5171", "-o", "x.csv"])
