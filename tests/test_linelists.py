"""Line-list readers (VALD, gfall, MOOG, Turbospectrum), air/vacuum, LineList validation."""

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dastro  # noqa: F401  (float64)
from dastro.rt.lines import (
    VDW_ABO,
    VDW_LOG_C6,
    VDW_LOG_GAMMA,
    VDW_UNSOLD,
    LineList,
    air_to_vacuum,
    molecule_code,
    read_gfall,
    read_linelist,
    read_moog,
    read_turbospectrum,
    read_vald,
    species_name,
    vacuum_to_air,
)

DATA = Path(__file__).parent / "data" / "linelists"
SUBSET = {
    "turbospectrum": DATA / "ges_subset.ts",
    "vald_short": DATA / "ges_subset_vald_short.txt",
    "vald_long": DATA / "ges_subset_vald_long.txt",
    "gfall": DATA / "ges_subset_gfall.dat",
    "moog": DATA / "ges_subset_moog.txt",
}


@pytest.fixture(scope="module")
def lists():
    return {k: read_linelist(p) for k, p in SUBSET.items()}


# ----------------------------------------------------------------------- real data


def test_gaia_eso_excerpt_values():
    ll = read_turbospectrum(DATA / "ges_5170_5174.ts")
    lam = np.asarray(ll.wavelength)
    assert len(ll) == 105 and ll.air
    assert np.all(np.diff(lam) >= 0) and lam[0] >= 5170 and lam[-1] <= 5174
    names = ll.names()
    assert {"Fe I", "Fe II", "Mg I", "Ti I", "Ni I"} <= set(names)
    # Mg b2, verbatim in the file:
    #   5172.684  2.712 -0.363  729.238    3.0  9.77E+07 'p' 's' ...
    k = names.index("Mg I")
    assert lam[k] == 5172.684 and float(ll.E_lower[k]) == 2.712
    assert float(ll.log_gf[k]) == -0.363 and float(ll.gamma_rad[k]) == 9.77e07
    assert int(ll.vdw_mode[k]) == VDW_ABO and float(ll.vdw[k]) == 729.0
    assert float(ll.vdw_alpha[k]) == pytest.approx(0.238, abs=1e-12)
    assert float(ll.J_upper[k]) == 1.0 and int(ll.species[k]) == 12 and int(ll.charge[k]) == 0
    # an Fe II line with a log gamma6 (fdamp < 0)
    k = int(np.argmin(np.abs(lam - 5170.776)))
    assert names[k] == "Fe II" and int(ll.vdw_mode[k]) == VDW_LOG_GAMMA
    assert float(ll.vdw[k]) == -7.59


def test_all_formats_give_the_same_lines(lists):
    ref = lists["turbospectrum"]
    for name, ll in lists.items():
        assert len(ll) == 12 and ll.air, name
        np.testing.assert_allclose(np.asarray(ll.wavelength), np.asarray(ref.wavelength),
                                   rtol=0, atol=1e-9, err_msg=name)
        np.testing.assert_array_equal(np.asarray(ll.species), np.asarray(ref.species), name)
        np.testing.assert_array_equal(np.asarray(ll.charge), np.asarray(ref.charge), name)
        np.testing.assert_allclose(np.asarray(ll.log_gf), np.asarray(ref.log_gf), atol=1e-12)
        np.testing.assert_allclose(np.asarray(ll.E_lower), np.asarray(ref.E_lower), atol=1e-6,
                                   err_msg=name)  # gfall: cm^-1 to 3 decimals
        # the log gamma6 values survive every format
        m = np.asarray(ref.vdw_mode) == VDW_LOG_GAMMA
        np.testing.assert_array_equal(np.asarray(ll.vdw_mode)[m], VDW_LOG_GAMMA)
        np.testing.assert_allclose(np.asarray(ll.vdw)[m], np.asarray(ref.vdw)[m], atol=1e-12)
    # ABO sigma.alpha: VALD and Turbospectrum carry it, gfall and MOOG fall back to Unsold
    m = np.asarray(ref.vdw_mode) == VDW_ABO
    assert m.sum() == 4
    for name in ("vald_short", "vald_long"):
        ll = lists[name]
        np.testing.assert_array_equal(np.asarray(ll.vdw_mode)[m], VDW_ABO)
        np.testing.assert_allclose(np.asarray(ll.vdw)[m], np.asarray(ref.vdw)[m])
        np.testing.assert_allclose(np.asarray(ll.vdw_alpha)[m], np.asarray(ref.vdw_alpha)[m],
                                   atol=1e-12)
        np.testing.assert_allclose(np.asarray(ll.gamma_rad), np.asarray(ref.gamma_rad),
                                   rtol=2e-3)  # VALD: log10 to 3 decimals
    for name in ("gfall", "moog"):
        np.testing.assert_array_equal(np.asarray(lists[name].vdw_mode)[m], VDW_UNSOLD)


def test_long_formats_keep_levels(lists):
    for name in ("vald_long", "gfall"):
        ll = lists[name]
        e_photon = 1.239841984e-4 * 1e8 / np.asarray(air_to_vacuum(ll.wavelength))
        np.testing.assert_allclose(np.asarray(ll.E_upper) - np.asarray(ll.E_lower), e_photon,
                                   atol=2e-4, err_msg=name)
        np.testing.assert_allclose(np.asarray(ll.J_upper),
                                   np.asarray(lists["turbospectrum"].J_upper), err_msg=name)
    assert float(lists["gfall"].lande[0]) == 1.0


def test_species_codes():
    assert molecule_code("TiO") == 822 and molecule_code("CH") == 106
    assert molecule_code("C2") == 606 and molecule_code("H2O") == 10108
    assert molecule_code("CN") == 607
    assert species_name(26, 1) == "Fe II" and species_name(822, 0) == "OTi"
    assert species_name(10108, 0) == "H2O"
    with pytest.raises(ValueError):
        molecule_code("Xx2")


def test_vald_molecules_vacuum_nm_and_cm1(tmp_path):
    text = """\
                                                     Damping parameters   Lande  Central
Spec Ion      WL_vac(nm) Excit(cm^-1) Vmic log gf*  Rad.   Stark  Waals  factor  depth  Reference
'TiO 1',       700.00316,  7712.0000, 1.0,  0.389, 6.944, 0.000, 0.000, 99.000, 0.123, ' x '
'Fe 1',        700.18136, 33095.9400, 1.0, -1.560, 8.410,-5.270,-7.208,  1.410, 0.103, ' y '
"""
    p = tmp_path / "v.txt"
    p.write_text(text)
    ll = read_vald(p)
    assert not ll.air and len(ll) == 2
    np.testing.assert_allclose(np.asarray(ll.wavelength), [7000.0316, 7001.8136])
    assert int(ll.species[0]) == 822 and ll.names()[1] == "Fe I"
    assert float(ll.E_lower[1]) == pytest.approx(33095.94 * 1.239841984e-4)
    assert float(ll.gamma_stark[1]) == pytest.approx(10**-5.27)
    assert int(ll.vdw_mode[0]) == VDW_UNSOLD and float(ll.vdw[0]) == 1.0


def test_moog_damping_conventions(tmp_path):
    p = tmp_path / "m.txt"
    p.write_text("comment\n"
                 "  5000.000      26.0     1.000    -1.000     0.000\n"
                 "  5001.000      26.1     2.000    -2.000    -7.500\n"
                 "  5002.000      26.0     3.000    -3.000   -31.500\n"
                 "  5003.000     106.0     0.100    -4.000     2.500     3.465\n"
                 "5004.0 22.0 0.5 -0.5\n")
    ll = read_moog(p)
    assert np.asarray(ll.vdw_mode).tolist() == [VDW_UNSOLD, VDW_LOG_GAMMA, VDW_LOG_C6,
                                                VDW_UNSOLD, VDW_UNSOLD]
    np.testing.assert_allclose(np.asarray(ll.vdw), [1.0, -7.5, -31.5, 2.5, 1.0])
    assert ll.names() == ["Fe I", "Fe II", "Fe I", "CH", "Ti I"]


# ----------------------------------------------------------------------- malformed input


def _write(tmp_path, src, lineno, old, new):
    lines = src.read_text().splitlines()
    assert old in lines[lineno - 1], lines[lineno - 1]
    lines[lineno - 1] = lines[lineno - 1].replace(old, new, 1)
    out = tmp_path / src.name
    out.write_text("\n".join(lines) + "\n")
    return out


def test_malformed_vald(tmp_path):
    src = SUBSET["vald_short"]
    f = _write(tmp_path, src, 5, "-0.330", "-0.3x0")
    with pytest.raises(ValueError, match=r"vald_short\.txt, line 5: '-0\.3x0' is not a number"):
        read_vald(f)
    f = _write(tmp_path, src, 6, " 1.0, -0.646,", " 1.0,")  # a column lost
    with pytest.raises(ValueError, match=r"vald_short\.txt, line 6: .*missing"):
        read_vald(f)
    f = _write(tmp_path, src, 7, "'Fe 1'", "'Fe'")
    with pytest.raises(ValueError, match=r"vald_short\.txt, line 7: species 'Fe'"):
        read_vald(f)
    f = _write(tmp_path, src, 1, "    12,", "    13,")  # header promises more lines
    with pytest.raises(ValueError, match=r"vald_short\.txt, line 16: expected line record 13"):
        read_vald(f)
    f = _write(tmp_path, SUBSET["vald_long"], 4, "-2.467", "-2.467")
    lines = f.read_text().splitlines()
    del lines[5]  # one level description of the first line lost
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"vald_long\.txt, line 7: long format expects 3"):
        read_vald(f)


def test_malformed_turbospectrum(tmp_path):
    src = SUBSET["turbospectrum"]
    f = _write(tmp_path, src, 7, "  6.61E+06 ", " ")  # gamma_rad missing
    with pytest.raises(ValueError, match=r"ges_subset\.ts, line 7: 5 numbers, need 6 "
                                         r"\(missing gamma_rad\)"):
        read_turbospectrum(f)
    f = _write(tmp_path, src, 1, "1         1", "1         2")
    with pytest.raises(ValueError, match=r"ges_subset\.ts, line 4: 3 numbers, need 6"):
        read_turbospectrum(f)
    lines = src.read_text().splitlines()
    lines[-3] = lines[-3].replace("1         1", "1         5")
    (tmp_path / "t.ts").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"t\.ts, line 2\d: file ends after 1 of 5"):
        read_turbospectrum(tmp_path / "t.ts")


def test_malformed_gfall_and_moog(tmp_path):
    f = _write(tmp_path, SUBSET["gfall"], 3, " -0.646", " -0.6#6")
    with pytest.raises(ValueError, match=r"gfall\.dat, line 3: columns 12-18 \(loggf\)"):
        read_gfall(f)
    lines = SUBSET["gfall"].read_text().splitlines()
    lines[1] = lines[1][:90]
    (tmp_path / "g.dat").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"g\.dat, line 2: 90 characters"):
        read_gfall(tmp_path / "g.dat")
    f = _write(tmp_path, SUBSET["moog"], 4, "     3.283", "     3.2x3")
    with pytest.raises(ValueError, match=r"moog\.txt, line 4: E_low = '3\.2x3'"):
        read_moog(f)
    f = _write(tmp_path, SUBSET["moog"], 5, "    -1.721     0.000", "")
    with pytest.raises(ValueError, match=r"moog\.txt, line 5: needs wavelength"):
        read_moog(f)


# ----------------------------------------------------------------------- air and vacuum


def test_air_vacuum_known_values_and_round_trip():
    # 5000 A in air is 5001.3948 A in vacuum (n - 1 = 2.79e-4 in the optical)
    assert float(air_to_vacuum(5000.0)) == pytest.approx(5001.39485, abs=1e-4)
    assert float(vacuum_to_air(6564.61)) == pytest.approx(6562.797, abs=2e-3)  # H alpha
    lam = np.geomspace(2000.5, 1e5, 200001)
    assert np.max(np.abs(np.asarray(vacuum_to_air(air_to_vacuum(lam))) - lam)) < 1e-8
    lam = np.geomspace(2001.0, 1e5, 200001)
    assert np.max(np.abs(np.asarray(air_to_vacuum(vacuum_to_air(lam))) - lam)) < 1e-8
    # below 2000 A the two coincide by convention
    assert float(air_to_vacuum(1500.0)) == 1500.0 and float(vacuum_to_air(1999.0)) == 1999.0


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=2000.7, max_value=3e5))
def test_air_vacuum_round_trip_property(lam):
    assert abs(float(vacuum_to_air(air_to_vacuum(lam))) - lam) < 1e-8
    assert abs(float(air_to_vacuum(vacuum_to_air(lam))) - lam) < 1e-8


def test_air_vacuum_under_jit_and_grad():
    d = jax.grad(lambda x: air_to_vacuum(x))(5000.0)
    assert 1.00026 < float(d) < 1.00030
    out = jax.jit(jax.vmap(vacuum_to_air))(jnp.array([1000.0, 5000.0, 20000.0]))
    assert np.all(np.isfinite(np.asarray(out)))
    g = jax.grad(lambda x: vacuum_to_air(x))(1500.0)
    assert float(g) == 1.0


def test_linelist_medium_conversion(lists):
    ll = lists["vald_long"]
    vac = ll.to_vacuum()
    assert not vac.air and vac.to_vacuum() is vac
    back = vac.to_air()
    np.testing.assert_allclose(np.asarray(back.wavelength), np.asarray(ll.wavelength),
                               rtol=0, atol=1e-8)
    assert np.all(np.asarray(vac.wavelength) - np.asarray(ll.wavelength) > 1.4)


# ----------------------------------------------------------------------- validation


def _columns(n):
    return dict(
        wavelength=np.linspace(5000, 5010, n), species=np.full(n, 26), charge=np.zeros(n, int),
        log_gf=np.full(n, -1.0), E_lower=np.full(n, 2.0), gamma_rad=np.full(n, 1e8),
        gamma_stark=np.full(n, 1e-6), vdw_mode=np.ones(n, int), vdw=np.full(n, -7.5),
        vdw_alpha=np.zeros(n),
    )


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 20),
    field=st.sampled_from(["wavelength", "log_gf", "E_lower", "gamma_rad", "gamma_stark",
                           "vdw", "vdw_mode", "charge"]),
    kind=st.sampled_from(["nan", "negative"]),
    where=st.floats(0, 1),
)
def test_linelist_rejects_bad_values(n, field, kind, where):
    cols = _columns(n)
    LineList(**{k: jnp.asarray(v) for k, v in cols.items()})
    i = min(int(where * n), n - 1)
    v = cols[field].astype(float).copy()
    if kind == "nan":
        if field in ("vdw_mode", "charge"):
            v[i] = 7  # out of range instead
            if field == "charge":
                v[i] = -1
        else:
            v[i] = np.nan
    else:
        if field in ("log_gf", "vdw"):
            return  # negative is legal
        v[i] = -1.0 if field != "wavelength" else -5000.0
    cols[field] = v.astype(cols[field].dtype)
    with pytest.raises(ValueError, match=f"LineList.{field}"):
        LineList(**{k: jnp.asarray(x) for k, x in cols.items()})


def test_linelist_shapes_and_pytree():
    cols = _columns(4)
    with pytest.raises(ValueError, match="LineList.log_gf has shape"):
        LineList(**{**{k: jnp.asarray(v) for k, v in cols.items()}, "log_gf": jnp.ones(3)})
    ll = LineList(**{k: jnp.asarray(v) for k, v in cols.items()})
    g = eqx.filter_grad(lambda ll: jnp.sum(10 ** ll.log_gf))(ll)  # gradients flow to atomic data
    np.testing.assert_allclose(np.asarray(g.log_gf), np.log(10) * 0.1)
