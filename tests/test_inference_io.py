"""Catalogue and profile readers: round trips, units, missing values, every error path."""

import logging
import tempfile
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.table import MaskedColumn, Table
from hypothesis import given, settings
from hypothesis import strategies as st

from dastro.inference.data import Profile, StarData
from dastro.inference.io import (
    MIN_STARS,
    describe,
    read_catalogue,
    read_profiles,
    write_catalogue,
)

N = 25


def mock(n=N, *, sky=True, seed=0, missing=True, mag=True) -> StarData:
    rng = np.random.default_rng(seed)
    vx = rng.normal(0, 1, n)
    vy = rng.normal(0, 1, n)
    vz = rng.normal(0, 10, n)
    plx = rng.normal(0.2, 0.05, n)
    if missing:
        vx[::3] = np.nan
        vy[::3] = np.nan
        vz[1::2] = np.nan
        plx[::4] = np.nan
    return StarData.from_arrays(
        rng.normal(0, 100, n), rng.normal(0, 100, n), vx, vy, vz,
        x_err=np.full(n, 0.01), y_err=np.full(n, 0.02), vx_err=rng.uniform(0.01, 0.1, n),
        vy_err=rng.uniform(0.01, 0.1, n), vz_err=rng.uniform(0.5, 2, n), parallax=plx,
        parallax_err=np.full(n, 0.03), mag=rng.uniform(12, 20, n) if mag else None, sky=sky)


def assert_same(a: StarData, b: StarData):
    assert a.sky == b.sky
    for field in StarData._fields:
        va, vb = getattr(a, field), getattr(b, field)
        if field == "sky":
            continue
        if va is None or vb is None:
            assert va is None and vb is None, field
            continue
        if np.asarray(va).dtype == bool:
            np.testing.assert_array_equal(va, vb, err_msg=field)
        else:
            np.testing.assert_allclose(va, vb, rtol=1e-12, atol=0, err_msg=field)


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("ext", ["ecsv", "fits", "fits.gz"])
@pytest.mark.parametrize("sky", [True, False])
def test_round_trip_with_units(tmp_path, ext, sky):
    data = mock(sky=sky)
    path = tmp_path / f"cat.{ext}"
    write_catalogue(data, path)
    assert_same(read_catalogue(path), data)


def test_round_trip_csv_needs_the_unit_system(tmp_path):
    data = mock(sky=False)
    path = tmp_path / "cat.csv"
    write_catalogue(data, path)
    assert_same(read_catalogue(path, sky=False), data)
    with pytest.raises(ValueError, match="has no unit: pass sky=True"):
        read_catalogue(path)


def test_write_refuses_to_overwrite(tmp_path):
    path = tmp_path / "cat.ecsv"
    write_catalogue(mock(), path)
    with pytest.raises(OSError):
        write_catalogue(mock(), path)
    write_catalogue(mock(seed=1), path, overwrite=True)
    assert_same(read_catalogue(path), mock(seed=1))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(MIN_STARS, 40),
       sky=st.booleans(), ext=st.sampled_from(["ecsv", "csv", "fits"]))
def test_random_masks_survive_a_round_trip(seed, n, sky, ext):
    rng = np.random.default_rng(seed)
    values = {k: rng.normal(0, 5, n) for k in ("vx", "vy", "vz", "parallax")}
    for v in values.values():
        v[rng.random(n) < rng.random()] = np.nan
    errs = {f"{k}_err": rng.uniform(0, 1, n) for k in values}
    data = StarData.from_arrays(rng.normal(0, 50, n), rng.normal(0, 50, n), values["vx"],
                                values["vy"], values["vz"], parallax=values["parallax"],
                                sky=sky, **errs)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"cat.{ext}"
        write_catalogue(data, path)
        back = read_catalogue(path, sky=sky)
    assert_same(back, data)


# ----------------------------------------------------------------------------- defaults, units


def gaia_like(n=N, seed=0):
    rng = np.random.default_rng(seed)
    return Table({
        "DRA": rng.normal(0, 2, n), "ddec": rng.normal(0, 2, n),
        "pmra": rng.normal(0, 1, n), "pmra_error": rng.uniform(0.01, 0.1, n),
        "pmdec": rng.normal(0, 1, n), "e_pmdec": rng.uniform(0.01, 0.1, n),
        "radial_velocity": rng.normal(0, 10, n), "radial_velocity_error": np.full(n, 1.0),
        "plx": rng.normal(0.2, 0.05, n), "plx_err": np.full(n, 0.03),
        "phot_g_mean_mag": rng.uniform(12, 20, n), "source_id": np.arange(n),
    })


def test_default_names_and_unit_conversion(tmp_path):
    t = gaia_like()
    t["DRA"].unit = t["ddec"].unit = u.arcmin
    for name in ("pmra", "pmra_error", "pmdec", "e_pmdec"):
        t[name].unit = u.mas / u.yr
    t["radial_velocity"].unit = t["radial_velocity_error"].unit = u.m / u.s
    t["plx"].unit = t["plx_err"].unit = u.mas
    path = tmp_path / "gaia.ecsv"
    t.write(path)
    data = read_catalogue(path)
    assert data.sky
    np.testing.assert_allclose(data.x, 60 * t["DRA"].data, rtol=1e-14)
    np.testing.assert_allclose(data.y, 60 * t["ddec"].data, rtol=1e-14)
    np.testing.assert_allclose(data.vx_err, t["pmra_error"].data)
    np.testing.assert_allclose(data.vy_err, t["e_pmdec"].data)
    np.testing.assert_allclose(data.vz, 1e-3 * t["radial_velocity"].data, rtol=1e-14)
    np.testing.assert_allclose(data.vz_err, 1e-3)
    np.testing.assert_allclose(data.parallax_err, 0.03)
    np.testing.assert_allclose(data.mag, t["phot_g_mean_mag"].data)
    assert data.has_vx.all() and data.has_vz.all() and data.has_parallax.all()


def test_degrees_and_kpc(tmp_path):
    rng = np.random.default_rng(1)
    t = Table({"x": rng.normal(0, 0.1, N) * u.deg, "y": rng.normal(0, 0.1, N) * u.deg})
    t.write(tmp_path / "deg.fits")
    data = read_catalogue(tmp_path / "deg.fits")
    assert data.sky
    np.testing.assert_allclose(data.x, 3600 * t["x"].value, rtol=1e-14)
    t = Table({"x": rng.normal(0, 0.01, N) * u.kpc, "y": rng.normal(0, 0.01, N) * u.kpc,
               "vx": rng.normal(0, 1, N) * u.km / u.s, "vy": rng.normal(0, 1, N) * u.m / u.s})
    t.write(tmp_path / "kpc.ecsv")
    data = read_catalogue(tmp_path / "kpc.ecsv")
    assert not data.sky
    np.testing.assert_allclose(data.x, 1e3 * t["x"].value, rtol=1e-14)
    np.testing.assert_allclose(data.vy, 1e-3 * t["vy"].value, rtol=1e-14)
    assert not data.has_vz.any() and not data.has_parallax.any() and data.mag is None


def test_csv_units_argument_and_explicit_columns(tmp_path):
    rng = np.random.default_rng(2)
    t = Table({"ra_off": rng.normal(0, 1, N), "dec_off": rng.normal(0, 1, N),
               "mu_a": rng.normal(0, 1, N), "sig_mu_a": np.full(N, 0.05),
               "vx": rng.normal(0, 1, N)})
    t.write(tmp_path / "c.csv")
    data = read_catalogue(
        tmp_path / "c.csv", columns={"x": "ra_off", "y": "dec_off", "vx": "mu_a",
                                     "vx_err": "sig_mu_a"},
        units={"x": "arcmin", "y": "arcmin", "vx": "mas / yr"})
    assert data.sky
    np.testing.assert_allclose(data.x, 60 * t["ra_off"].data, rtol=1e-14)
    np.testing.assert_allclose(data.vx, t["mu_a"].data)
    # the error column inherits the unit of its value column
    np.testing.assert_allclose(data.vx_err, 0.05)
    t["sig_mu_a"] = np.full(N, 0.05)
    data = read_catalogue(tmp_path / "c.csv", columns={"x": "ra_off", "y": "dec_off",
                                                       "vx": "mu_a", "vx_err": "sig_mu_a"},
                          units={"x": "arcmin", "y": "arcmin", "vx": "arcsec/yr"})
    np.testing.assert_allclose(data.vx_err, 50.0, rtol=1e-14)
    # columns={field: None} ignores a column that is present
    data = read_catalogue(tmp_path / "c.csv", columns={"x": "ra_off", "y": "dec_off",
                                                       "vx": None}, sky=True)
    assert not data.has_vx.any()


def test_missing_components_from_masks_and_nan(tmp_path):
    n = 12
    vx = MaskedColumn(np.arange(n, dtype=float), mask=np.arange(n) % 3 == 0, unit="km/s")
    vz = np.linspace(-5, 5, n)
    vz[[2, 7]] = np.nan
    vz_err = np.full(n, 1.0)
    vz_err[[2, 7]] = np.nan  # error missing where the value is missing: fine
    t = Table({"x": np.linspace(0, 1, n) * u.pc, "y": np.zeros(n) * u.pc, "vx": vx,
               "vz": vz * u.km / u.s, "vz_err": vz_err * u.km / u.s})
    for ext in ("ecsv", "fits", "csv"):
        path = tmp_path / f"m.{ext}"
        t.write(path)
        data = read_catalogue(path, sky=False)
        np.testing.assert_array_equal(data.has_vx, np.arange(n) % 3 != 0)
        np.testing.assert_array_equal(data.has_vz, ~np.isin(np.arange(n), [2, 7]))
        assert not data.has_vy.any()
        assert np.all(data.vx[~data.has_vx] == 0) and np.all(data.vz_err[~data.has_vz] == 0)
        np.testing.assert_allclose(data.vx[data.has_vx], vx.data[~vx.mask])


def test_describe_and_log(tmp_path, caplog):
    data = mock(n=24)
    text = describe(data)
    assert "24 stars, sky units" in text
    assert f"vx: {int(data.has_vx.sum())} (" in text
    assert f"vz: {int(data.has_vz.sum())} (" in text
    assert "all three velocities" in text
    write_catalogue(data, tmp_path / "c.ecsv")
    with caplog.at_level(logging.INFO, logger="dastro.inference.io"):
        read_catalogue(tmp_path / "c.ecsv")
    assert "vx <- vx" in caplog.text and "24 stars" in caplog.text


# ----------------------------------------------------------------------------- errors


def write(tmp_path, table, name="t.ecsv"):
    path = tmp_path / name
    table.write(path, overwrite=True)
    return path


def base_table(n=N):
    rng = np.random.default_rng(5)
    return Table({"x": rng.normal(0, 1, n) * u.arcsec, "y": rng.normal(0, 1, n) * u.arcsec,
                  "pmra": rng.normal(0, 1, n) * u.mas / u.yr,
                  "pmra_err": np.full(n, 0.1) * u.mas / u.yr})


def test_missing_required_column(tmp_path):
    t = base_table()
    del t["y"]
    with pytest.raises(ValueError, match=r"required column y is missing.*'pmra'"):
        read_catalogue(write(tmp_path, t))
    with pytest.raises(ValueError, match=r"column 'yy' \(given for y\) is not in the table"):
        read_catalogue(write(tmp_path, t), columns={"y": "yy"})


def test_bad_arguments(tmp_path):
    path = write(tmp_path, base_table())
    with pytest.raises(ValueError, match="columns: unknown field"):
        read_catalogue(path, columns={"ra": "x"})
    with pytest.raises(ValueError, match="units: unknown field"):
        read_catalogue(path, units={"ra": "deg"})
    with pytest.raises(ValueError, match=r"vz_err is given \('pmra_err'\) but vz"):
        read_catalogue(path, columns={"vz_err": "pmra_err"})
    (tmp_path / "t.txt").write_text("x y\n")
    with pytest.raises(ValueError, match="unknown table format"):
        read_catalogue(tmp_path / "t.txt")
    with pytest.raises(FileNotFoundError):
        read_catalogue(tmp_path / "nope.ecsv")


def test_nan_or_masked_position(tmp_path):
    t = base_table()
    t["x"][[3, 11]] = np.nan
    with pytest.raises(ValueError, match=r"column 'x' \(x\) is missing, NaN .* rows 3, 11"):
        read_catalogue(write(tmp_path, t))
    t = base_table()
    t["y"] = MaskedColumn(t["y"], mask=np.arange(N) == 4)
    with pytest.raises(ValueError, match=r"column 'y' \(y\) is missing, NaN .* rows 4;"):
        read_catalogue(write(tmp_path, t))


def test_negative_or_missing_error(tmp_path):
    t = base_table()
    t["pmra_err"][[0, 9]] = -0.1
    with pytest.raises(ValueError, match=r"'pmra_err' \(vx_err\) has negative errors at rows "
                                         r"0, 9"):
        read_catalogue(write(tmp_path, t))
    t = base_table()
    t["pmra_err"][5] = np.nan
    with pytest.raises(ValueError, match=r"'pmra_err' \(vx_err\) is missing.* rows 5, where "
                                         r"'pmra' \(vx\) is observed"):
        read_catalogue(write(tmp_path, t))


def test_infinite_velocity(tmp_path):
    t = base_table()
    t["pmra"][2] = np.inf
    with pytest.raises(ValueError, match=r"'pmra' \(vx\) is infinite at rows 2"):
        read_catalogue(write(tmp_path, t))


def test_bad_units(tmp_path):
    t = base_table()
    t["x"].unit = u.kg
    with pytest.raises(ValueError, match=r"'x' \(x\) has unit kg, which is neither an angle"):
        read_catalogue(write(tmp_path, t))
    t = base_table()
    t["pmra_err"].unit = u.s
    with pytest.raises(ValueError, match=r"'pmra_err' \(vx_err\) has unit s that does not "
                                         r"convert to mas / yr"):
        read_catalogue(write(tmp_path, t))
    t = base_table()
    t["pmra"].unit = u.km / u.s
    with pytest.raises(ValueError, match=r"positions are angles .* 'pmra' \(vx\) is a velocity"):
        read_catalogue(write(tmp_path, t))
    t = base_table()
    t["x"].unit = t["y"].unit = u.pc
    with pytest.raises(ValueError, match=r"positions are lengths .* proper motion"):
        read_catalogue(write(tmp_path, t))
    with pytest.raises(ValueError, match=r"sky=True but column 'x' \(x\) is a length"):
        read_catalogue(write(tmp_path, t), sky=True, columns={"vx": None})
    path = write(tmp_path, base_table())
    with pytest.raises(ValueError, match=r"has unit arcsec in the file but units\['x'\]"):
        read_catalogue(path, units={"x": "deg"})
    with pytest.raises(ValueError, match=r"units\['x'\] = 'furlongs' is not a unit"):
        read_catalogue(path, units={"x": "furlongs"})
    t = base_table()
    t["x"].unit = u.Unit("blargh", parse_strict="silent")
    with pytest.raises(ValueError, match="does not recognise"):
        read_catalogue(write(tmp_path, t))
    data = read_catalogue(write(tmp_path, t), units={"x": "arcmin"})
    np.testing.assert_allclose(data.x, 60 * t["x"].value, rtol=1e-14)


def test_too_few_stars(tmp_path):
    with pytest.raises(ValueError, match=f"9 stars .* at least {MIN_STARS}"):
        read_catalogue(write(tmp_path, base_table(9)))


def test_text_column(tmp_path):
    t = base_table()
    t["x"] = [str(i) if i != 3 else "n/a" for i in range(N)]
    with pytest.raises(ValueError, match=r"'x' \(x\) is not numeric"):
        read_catalogue(write(tmp_path, t, "t.csv"), sky=True)


# ----------------------------------------------------------------------------- profiles


def profile_table(kind="vlos_dispersion", R_unit="arcmin", v_unit="km/s", asym=True, k=5):
    R = np.linspace(0.1, 2.0, k)
    t = Table({"R": R * u.Unit(R_unit), "value": np.linspace(10, 6, k) * u.Unit(v_unit)},
              meta={"kind": kind})
    if asym:
        t["err_lo"] = np.full(k, 0.5) * u.Unit(v_unit)
        t["err_hi"] = np.full(k, 0.7) * u.Unit(v_unit)
    else:
        t["err"] = np.full(k, 0.6) * u.Unit(v_unit)
    return t


def test_read_profiles_and_convert(tmp_path):
    paths = [write(tmp_path, profile_table(), "vlos.ecsv"),
             write(tmp_path, profile_table("pm_dispersion", "deg", "arcsec/yr", asym=False),
                   "pm.ecsv"),
             write(tmp_path, profile_table("number_density", "pc", "1/pc2"), "nd.ecsv"),
             write(tmp_path, profile_table("number_density", "arcsec", "1/arcmin2"), "nd2.ecsv"),
             write(tmp_path, profile_table("pmt_dispersion", "pc", "m/s"), "pmt.ecsv")]
    vlos, pm, nd, nd2, pmt = read_profiles(paths)
    assert read_profiles(paths[0])[0].kind == "vlos_dispersion"
    R = np.linspace(0.1, 2.0, 5)
    assert vlos.sky and vlos.kind == "vlos_dispersion"
    np.testing.assert_allclose(vlos.R, 60 * R, rtol=1e-14)
    np.testing.assert_allclose(vlos.err_lo, 0.5)
    np.testing.assert_allclose(vlos.err_hi, 0.7)
    assert pm.sky
    np.testing.assert_allclose(pm.R, 3600 * R, rtol=1e-14)
    np.testing.assert_allclose(pm.value, 1e3 * np.linspace(10, 6, 5), rtol=1e-14)
    np.testing.assert_allclose(pm.err_lo, 600.0)
    np.testing.assert_allclose(pm.err_hi, 600.0)
    assert not nd.sky
    np.testing.assert_allclose(nd.value, np.linspace(10, 6, 5))
    assert nd2.sky
    np.testing.assert_allclose(nd2.value, np.linspace(10, 6, 5) / 3600, rtol=1e-14)
    assert not pmt.sky
    np.testing.assert_allclose(pmt.value, 1e-3 * np.linspace(10, 6, 5), rtol=1e-14)
    assert all(isinstance(p, Profile) for p in (vlos, pm, nd, nd2, pmt))


def test_profile_layout_in_docstring_parses(tmp_path):
    import dastro.inference.io as io

    doc = io.__doc__
    start = doc.index("# %ECSV")
    lines = [line.strip() for line in doc[start:].splitlines()]
    text = "\n".join(lines[: lines.index("0.75 10.4 0.6 0.7") + 1])
    (tmp_path / "doc.ecsv").write_text(text + "\n")
    (p,) = read_profiles(tmp_path / "doc.ecsv")
    assert p.kind == "vlos_dispersion" and p.sky
    np.testing.assert_allclose(p.R, [15.0, 45.0])


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.meta.pop("kind"), "no 'kind' in the table metadata"),
    (lambda t: t.meta.update(kind="density"), "unknown profile kind 'density'"),
    (lambda t: t.remove_column("value"), r"missing column\(s\) \['value'\]"),
    (lambda t: t.remove_column("err_hi"), "errors missing"),
    (lambda t: t.add_column(t["err_lo"], name="err"), "either 'err' or"),
    (lambda t: setattr(t["R"], "unit", None), "column 'R' needs a unit"),
    (lambda t: setattr(t["R"], "unit", u.s), "neither an angle"),
    (lambda t: setattr(t["value"], "unit", u.mas / u.yr), "'value' of a vlos_dispersion "
                                                          "profile has unit mas / yr"),
    (lambda t: t["R"].__setitem__(1, np.nan), r"R must be finite and >= 0; bad bins 1"),
    (lambda t: t["R"].__setitem__(2, -1.0), r"R must be finite and >= 0; bad bins 2"),
    (lambda t: t["value"].__setitem__(0, np.inf), r"value must be finite; bad bins 0"),
    (lambda t: t["err_lo"].__setitem__(3, 0.0), r"err_lo must be finite and > 0; bad bins 3"),
    (lambda t: t["err_hi"].__setitem__(4, -1.0), r"err_hi must be finite and > 0; bad bins 4"),
])
def test_profile_errors(tmp_path, edit, message):
    t = profile_table()
    edit(t)
    path = write(tmp_path, t, "p.ecsv")
    with pytest.raises(ValueError, match=message):
        read_profiles(path)


def test_profile_mixed_frames(tmp_path):
    with pytest.raises(ValueError, match=r"does not convert to mas / yr, needed for a sky"):
        read_profiles(write(tmp_path, profile_table("pm_dispersion", "arcsec", "km/s")))
    with pytest.raises(ValueError, match=r"does not convert to 1 / pc2, needed for a physical"):
        read_profiles(write(tmp_path, profile_table("number_density", "pc", "1/arcsec2")))
    t = profile_table()
    t["value"] = MaskedColumn(t["value"], mask=np.arange(5) == 1)
    with pytest.raises(ValueError, match=r"'value' has missing entries at rows 1"):
        read_profiles(write(tmp_path, t))
    with pytest.raises(ValueError, match="no files given"):
        read_profiles([])
