"""Readers and writers of star catalogues and binned profiles for cluster fits.

Catalogues (:func:`read_catalogue`, :func:`write_catalogue`)
-----------------------------------------------------------
A catalogue is a table with one row per star, read by ``astropy.table.Table.read`` from CSV
(``.csv``), ECSV (``.ecsv``) or FITS (``.fits``, ``.fit``, optionally ``.gz``). Each field of
:class:`~dastro.inference.data.StarData` is looked up under the file column given in
``columns``, or else under the first of these names found in the table (exact match first,
then case-insensitive):

========= ======================================  ==========================================
field     default column names                    unit (physical / sky)
========= ======================================  ==========================================
x         x, dra, ra_offset, xi                    pc / arcsec (Delta RA cos Dec, east)
y         y, ddec, dec_offset, eta                 pc / arcsec (north)
vx        vx, pmra, pmx                            km/s / mas/yr
vy        vy, pmdec, pmy                           km/s / mas/yr
vz        vz, vlos, rv, radial_velocity            km/s
parallax  parallax, plx                            mas
mag       mag, gmag, phot_g_mean_mag               magnitudes (unit ignored)
<f>_err   <c>_err, <c>_error, e_<c>, <f>_err,     same as the field
          <f>_error, e_<f>   (c: value column)
========= ======================================  ==========================================

Only x and y are required. A column that is absent makes its field missing for every star;
``columns={"parallax": None}`` ignores a column that is present.

Units. Units in the file (ECSV and FITS headers) are converted with ``astropy.units`` to the
canonical units above. ``units`` gives units (strings) for columns that have none (CSV) or
whose unit astropy does not recognise; it may not contradict a recognised unit in the file.
An error column without a unit takes the unit of its value column; any other column without
a unit is taken to be in the canonical unit. The catalogue is a *sky* catalogue if x is an
angle and *physical* if x is a length; ``sky=True/False`` must agree with x's unit, and is
required when x has no unit. Plane-of-sky velocities must match: proper motions for a sky
catalogue, km/s for a physical one. Mixing the two (angles with km/s) is an error, since the
conversion needs the distance, which is a fitted parameter.

Missing values. Masked entries (empty CSV fields, ECSV nulls, FITS nulls) and NaN in the
velocity and parallax columns mean "not observed" and become the ``has_*`` masks. Nothing is
dropped: a missing or NaN position, a missing error where its value is observed, a negative
error, an infinite value, a missing required column, a unit that does not convert or fewer
than :data:`MIN_STARS` stars raise a ValueError naming the column and the (0-based) rows.

Binned profiles (:func:`read_profiles`)
---------------------------------------
One ECSV file per profile, with the profile kind in the table metadata and units in the
header::

    # %ECSV 1.0
    # ---
    # datatype:
    # - {name: R, unit: arcmin, datatype: float64}
    # - {name: value, unit: km / s, datatype: float64}
    # - {name: err_lo, unit: km / s, datatype: float64}
    # - {name: err_hi, unit: km / s, datatype: float64}
    # meta: {kind: vlos_dispersion}
    # schema: astropy-2.0
    R value err_lo err_hi
    0.25 12.1 0.8 0.9
    0.75 10.4 0.6 0.7

Columns: ``R`` (projected radius of the bin), ``value``, and either ``err`` (symmetric 1-sigma
error) or both ``err_lo`` and ``err_hi`` (1-sigma errors below and above the value). ``kind`` is
one of :data:`~dastro.inference.data.PROFILE_KINDS`. R in an angle (arcsec, arcmin, deg) makes a
sky profile, in a length (pc) a physical one. Values: number densities in 1/arcsec2,
1/arcmin2, 1/deg2 (sky) or 1/pc2 (physical); ``vlos_dispersion`` in km/s; proper-motion
dispersions (``pm``, ``pmr``, ``pmt``) in mas/yr (sky) or km/s (physical). They are converted to
the canonical units of :class:`~dastro.inference.data.Profile` (arcsec or pc; 1/arcsec2 or
1/pc2; mas/yr or km/s). R must be finite and >= 0 (not necessarily increasing), values
finite, errors finite and > 0.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from os import PathLike
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import MaskedColumn, Table

from dastro.inference.data import PROFILE_KINDS, Profile, StarData, _rows
from dastro.inference.profiles import check_profile

__all__ = ["MIN_STARS", "describe", "read_catalogue", "read_profiles", "write_catalogue"]

log = logging.getLogger(__name__)

#: Fewest stars a catalogue may have.
MIN_STARS = 10

_VALUE_FIELDS = ("x", "y", "vx", "vy", "vz", "parallax", "mag")
_ERROR_FIELDS = ("x_err", "y_err", "vx_err", "vy_err", "vz_err", "parallax_err")
FIELDS = _VALUE_FIELDS + _ERROR_FIELDS
_DEFAULT_NAMES = {
    "x": ("x", "dra", "ra_offset", "xi"),
    "y": ("y", "ddec", "dec_offset", "eta"),
    "vx": ("vx", "pmra", "pmx"),
    "vy": ("vy", "pmdec", "pmy"),
    "vz": ("vz", "vlos", "rv", "radial_velocity"),
    "parallax": ("parallax", "plx"),
    "mag": ("mag", "gmag", "phot_g_mean_mag"),
}
_ARCSEC = u.arcsec
_PM = u.mas / u.yr
_KMS = u.km / u.s


def _canonical_unit(field: str, sky: bool):
    base = field.removesuffix("_err")
    if base in ("x", "y"):
        return _ARCSEC if sky else u.pc
    if base in ("vx", "vy"):
        return _PM if sky else _KMS
    if base == "vz":
        return _KMS
    if base == "parallax":
        return u.mas
    return None  # mag


def _table_format(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    for ext, fmt in ((".csv", "ascii.csv"), (".ecsv", "ascii.ecsv"), (".fits", "fits"),
                     (".fit", "fits")):
        if name.endswith(ext):
            return fmt
    raise ValueError(f"{path}: unknown table format; use .csv, .ecsv, .fits or .fit "
                     "(optionally .gz), or pass format= (an astropy.table format name)")


def _read_table(path, format) -> tuple[Path, Table]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    fmt = format or _table_format(path)
    return path, Table.read(path, format=fmt)


def _find(table: Table, names: Iterable[str]) -> str | None:
    cols = list(table.colnames)
    lower = {c.lower(): c for c in cols}
    for name in names:
        if name in cols:
            return name
    for name in names:
        if name.lower() in lower:
            return lower[name.lower()]
    return None


def _error_names(field: str, value_col: str) -> list[str]:
    base = field.removesuffix("_err")
    names = [f"{value_col}_err", f"{value_col}_error", f"e_{value_col}",
             f"{base}_err", f"{base}_error", f"e_{base}"]
    return list(dict.fromkeys(names))


def _resolve_columns(table: Table, columns: Mapping[str, str | None]) -> dict[str, str]:
    """{field: file column name} of the fields present in the table."""
    unknown = sorted(set(columns) - set(FIELDS))
    if unknown:
        raise ValueError(f"columns: unknown field(s) {unknown}; fields are {list(FIELDS)}")
    found = {}
    for field in _VALUE_FIELDS:
        if field in columns:
            name = columns[field]
            if name is None:
                continue
            if name not in table.colnames:
                raise ValueError(f"column {name!r} (given for {field}) is not in the table; "
                                 f"its columns are {list(table.colnames)}")
            found[field] = name
        else:
            name = _find(table, _DEFAULT_NAMES[field])
            if name is not None:
                found[field] = name
    for field in ("x", "y"):
        if field not in found:
            raise ValueError(
                f"required column {field} is missing: none of {list(_DEFAULT_NAMES[field])} "
                f"is in the table (columns {list(table.colnames)}); pass columns="
                f"{{'{field}': <name>}}")
    for field in _ERROR_FIELDS:
        base = field.removesuffix("_err")
        if field in columns:
            name = columns[field]
            if name is None:
                continue
            if base not in found:
                raise ValueError(f"columns: {field} is given ({name!r}) but {base} is not "
                                 "in the table")
            if name not in table.colnames:
                raise ValueError(f"column {name!r} (given for {field}) is not in the table; "
                                 f"its columns are {list(table.colnames)}")
            found[field] = name
        elif base in found:
            name = _find(table, _error_names(field, found[base]))
            if name is not None:
                found[field] = name
    return found


def _values(table: Table, name: str, field: str) -> np.ndarray:
    """A column as float64 with masked entries set to NaN."""
    col = table[name]
    if col.ndim != 1:
        raise ValueError(f"column {name!r} ({field}) must be one value per row, got shape "
                         f"{col.shape}")
    if col.dtype.kind not in "biuf":
        raise ValueError(f"column {name!r} ({field}) is not numeric (dtype {col.dtype}); "
                         "check for text entries in it")
    mask = np.ma.getmaskarray(col)
    arr = np.array(np.ma.getdata(col), dtype=float)
    arr[mask] = np.nan
    return arr


def _parse_unit(field: str, text) -> u.UnitBase:
    try:
        return u.Unit(text)
    except (ValueError, TypeError) as err:
        raise ValueError(f"units[{field!r}] = {text!r} is not a unit astropy knows ({err})") \
            from None


def _unit(table: Table, name: str, field: str, given, inherited):
    """The unit of column `name`: from the file, else `units`, else its value column's."""
    file_unit = table[name].unit
    recognised = file_unit is not None and not isinstance(file_unit, u.UnrecognizedUnit)
    if recognised:
        if given is not None and given != file_unit:
            raise ValueError(f"column {name!r} ({field}) has unit {file_unit} in the file but "
                             f"units[{field!r}] = {given}; remove one")
        return file_unit
    if given is not None:
        return given
    if file_unit is not None:
        raise ValueError(f"column {name!r} ({field}) has unit {file_unit!s} that astropy does "
                         f"not recognise; pass units={{'{field}': <unit>}}")
    return inherited


def _convert(arr, unit, target, name, field):
    if unit is None or target is None:
        return arr
    try:
        return (arr * unit).to_value(target)
    except u.UnitConversionError:
        raise ValueError(f"column {name!r} ({field}) has unit {unit} that does not convert to "
                         f"{target}") from None


def _decide_sky(x_name, x_unit, sky):
    if x_unit is None:
        if sky is None:
            raise ValueError(f"column {x_name!r} (x) has no unit: pass sky=True (arcsec, mas/yr) "
                             "or sky=False (pc, km/s), or units={'x': ...}")
        return bool(sky)
    if x_unit.is_equivalent(u.arcsec):
        unit_sky = True
    elif x_unit.is_equivalent(u.pc):
        unit_sky = False
    else:
        raise ValueError(f"column {x_name!r} (x) has unit {x_unit}, which is neither an angle "
                         "(sky catalogue) nor a length (physical catalogue)")
    if sky is not None and bool(sky) != unit_sky:
        what = "an angle" if unit_sky else "a length"
        raise ValueError(f"sky={sky} but column {x_name!r} (x) is {what} ({x_unit})")
    return unit_sky


def _check_plane_velocity(name, field, unit, sky):
    if unit is None:
        return
    if sky and unit.is_equivalent(_KMS):
        raise ValueError(
            f"positions are angles (sky catalogue) but column {name!r} ({field}) is a velocity "
            f"in {unit}; a sky catalogue needs proper motions (e.g. mas/yr). Convert the "
            "velocities to proper motions, or the positions to pc")
    if not sky and unit.is_equivalent(_PM):
        raise ValueError(
            f"positions are lengths (physical catalogue) but column {name!r} ({field}) is a "
            f"proper motion in {unit}; a physical catalogue needs km/s. Convert the proper "
            "motions to km/s, or the positions to angles")


def read_catalogue(path: str | PathLike, *, columns: Mapping[str, str | None] | None = None,
                   units: Mapping[str, str] | None = None, sky: bool | None = None,
                   format: str | None = None) -> StarData:
    """Read a star catalogue (CSV, ECSV or FITS) into a validated :class:`StarData`.

    See the module docstring for the column names, units and missing-value rules.

    Args:
        path: the table file; its format follows the extension unless ``format`` is given.
        columns: {field: file column name} for fields whose column is not found under a
            default name; a None value ignores that field.
        units: {field: unit string} for columns without a (recognised) unit in the file.
        sky: True for a sky catalogue (arcsec, mas/yr), False for a physical one (pc,
            km/s); None (default) decides from the unit of x.
        format: an ``astropy.table`` format name, overriding the extension.

    Returns:
        The catalogue, in canonical units. A summary (:func:`describe`) and the column
        mapping are logged at INFO level (logger ``dastro.inference.io``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: see the module docstring; the message names the column and the rows.
    """
    path, table = _read_table(path, format)
    columns = dict(columns or {})
    units = dict(units or {})
    unknown = sorted(set(units) - set(FIELDS))
    if unknown:
        raise ValueError(f"units: unknown field(s) {unknown}; fields are {list(FIELDS)}")
    given = {field: _parse_unit(field, text) for field, text in units.items()}
    found = _resolve_columns(table, columns)
    n = len(table)
    if n < MIN_STARS:
        raise ValueError(f"{path}: {n} stars (rows); at least {MIN_STARS} are needed")

    file_units = {}
    for field in FIELDS:
        if field in found:
            base = field.removesuffix("_err")
            inherited = file_units.get(base) if field.endswith("_err") else None
            file_units[field] = _unit(table, found[field], field, given.get(field), inherited)
    is_sky = _decide_sky(found["x"], file_units["x"], sky)
    for field in ("vx", "vy", "vx_err", "vy_err"):
        if field in found:
            _check_plane_velocity(found[field], field, file_units[field], is_sky)

    arrays, mapping = {}, []
    for field, name in found.items():
        target = _canonical_unit(field, is_sky)
        arrays[field] = _convert(_values(table, name, field), file_units[field], target, name,
                                 field)
        note = "" if file_units[field] in (None, target) else f" [{file_units[field]}]"
        mapping.append(f"{field} <- {name}{note}")
    _validate(arrays, found)

    data = StarData.from_arrays(
        arrays["x"], arrays["y"], arrays.get("vx"), arrays.get("vy"), arrays.get("vz"),
        x_err=arrays.get("x_err"), y_err=arrays.get("y_err"), vx_err=arrays.get("vx_err"),
        vy_err=arrays.get("vy_err"), vz_err=arrays.get("vz_err"),
        parallax=arrays.get("parallax"), parallax_err=arrays.get("parallax_err"),
        mag=arrays.get("mag"), sky=is_sky,
    )
    log.info("%s: %s\n%s", path, ", ".join(mapping), describe(data))
    return data


def _validate(arrays: dict, found: dict) -> None:
    """Per-column checks, with the file's column names in the messages."""
    for field in ("x", "y", "mag"):
        if field in arrays:
            bad = np.flatnonzero(~np.isfinite(arrays[field]))
            if bad.size:
                raise ValueError(f"column {found[field]!r} ({field}) is missing, NaN or "
                                 f"infinite at rows {_rows(bad)}; every star needs it")
    for field in ("vx", "vy", "vz", "parallax"):
        if field in arrays:
            bad = np.flatnonzero(np.isinf(arrays[field]))
            if bad.size:
                raise ValueError(f"column {found[field]!r} ({field}) is infinite at rows "
                                 f"{_rows(bad)} (use NaN or an empty entry for 'missing')")
    for field in _ERROR_FIELDS:
        if field not in arrays:
            continue
        err = arrays[field]
        base = field.removesuffix("_err")
        negative = np.flatnonzero(err < 0)
        if negative.size:
            raise ValueError(f"column {found[field]!r} ({field}) has negative errors at rows "
                             f"{_rows(negative)}")
        observed = np.isfinite(arrays[base])
        bad = np.flatnonzero(observed & ~np.isfinite(err))
        if bad.size:
            raise ValueError(f"column {found[field]!r} ({field}) is missing, NaN or infinite at "
                             f"rows {_rows(bad)}, where {found[base]!r} ({base}) is observed")


def describe(data: StarData) -> str:
    """A short human-readable summary of a catalogue: size, units, observed components."""
    n = data.n
    pos, vel = ("arcsec", "mas/yr") if data.sky else ("pc", "km/s")

    def count(mask):
        k = int(np.sum(mask))
        return f"{k} ({100.0 * k / n:.0f}%)" if n else "0"

    R = np.hypot(data.x, data.y)
    lines = [
        f"{n} stars, {'sky' if data.sky else 'physical'} units (positions {pos}, "
        f"plane-of-sky velocities {vel}, vz km/s, parallax mas)",
        f"  R from {R.min():.4g} to {R.max():.4g} {pos}" if n else "  no stars",
        f"  vx: {count(data.has_vx)}, vy: {count(data.has_vy)}, vz: {count(data.has_vz)}, "
        f"parallax: {count(data.has_parallax)}",
        f"  both proper motions: {count(data.has_vx & data.has_vy)}, all three velocities: "
        f"{count(data.has_vx & data.has_vy & data.has_vz)}, none: "
        f"{count(~(data.has_vx | data.has_vy | data.has_vz))}",
    ]
    with_err = [f for f in _ERROR_FIELDS if np.any(np.asarray(getattr(data, f)) > 0)]
    lines.append(f"  non-zero errors in: {', '.join(with_err) if with_err else 'none'}")
    if data.mag is not None:
        lines.append(f"  mag from {np.min(data.mag):.3g} to {np.max(data.mag):.3g}")
    return "\n".join(lines)


def write_catalogue(data: StarData, path: str | PathLike, *, overwrite: bool = False) -> None:
    """Write a catalogue so that :func:`read_catalogue` reads it back unchanged.

    ECSV (``.ecsv``, recommended) and FITS keep the units; CSV does not, so read a CSV back
    with ``sky=data.sky``. Missing values are written as masked (empty) entries, positions and
    errors always, mag only if present.

    Args:
        data: the catalogue.
        path: output file; the format follows the extension (.ecsv, .csv, .fits, .fit).
        overwrite: replace an existing file.
    """
    path = Path(path)
    fmt = _table_format(path)
    table = Table(meta={"sky": bool(data.sky),
                        "origin": "dastro.inference.io.write_catalogue"})
    masks = {"vx": data.has_vx, "vy": data.has_vy, "vz": data.has_vz,
             "parallax": data.has_parallax}
    for field in ("x", "x_err", "y", "y_err", "vx", "vx_err", "vy", "vy_err", "vz", "vz_err",
                  "parallax", "parallax_err"):
        values = np.asarray(getattr(data, field), dtype=float)
        unit = _canonical_unit(field, data.sky)
        has = masks.get(field.removesuffix("_err"))
        if has is None:
            table[field] = values * unit
        else:
            table[field] = MaskedColumn(values, mask=~np.asarray(has, bool), unit=unit)
    if data.mag is not None:
        table["mag"] = np.asarray(data.mag, dtype=float)
    table.write(path, format=fmt, overwrite=overwrite)


# ----------------------------------------------------------------------------- profiles

_DENSITY_UNITS = {True: u.arcsec**-2, False: u.pc**-2}


def _profile_value_unit(kind: str, sky: bool):
    if kind == "number_density":
        return _DENSITY_UNITS[sky]
    if kind == "vlos_dispersion":
        return _KMS
    return _PM if sky else _KMS


def _profile_column(table: Table, path: Path, name: str) -> tuple[np.ndarray, u.UnitBase]:
    col = table[name]
    if col.dtype.kind not in "biuf" or col.ndim != 1:
        raise ValueError(f"{path}: column {name!r} must be numeric, one value per row")
    if col.unit is None or isinstance(col.unit, u.UnrecognizedUnit):
        raise ValueError(f"{path}: column {name!r} needs a unit in the header "
                         f"(got {col.unit})")
    mask = np.ma.getmaskarray(col)
    if mask.any():
        raise ValueError(f"{path}: column {name!r} has missing entries at rows "
                         f"{_rows(np.flatnonzero(mask))}")
    return np.array(np.ma.getdata(col), dtype=float), col.unit


def _read_profile(path: Path) -> Profile:
    path, table = _read_table(path, "ascii.ecsv")
    kind = table.meta.get("kind")
    if kind is None:
        raise ValueError(f"{path}: no 'kind' in the table metadata (# meta: {{kind: ...}}); "
                         f"kinds are {list(PROFILE_KINDS)}")
    if kind not in PROFILE_KINDS:
        raise ValueError(f"{path}: unknown profile kind {kind!r}; kinds are "
                         f"{list(PROFILE_KINDS)}")
    have = set(table.colnames)
    missing = [c for c in ("R", "value") if c not in have]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; columns are "
                         f"{list(table.colnames)}")
    if "err" in have and have & {"err_lo", "err_hi"}:
        raise ValueError(f"{path}: give either 'err' or 'err_lo' and 'err_hi', not both")
    if "err" in have:
        err_names = ("err", "err")
    elif {"err_lo", "err_hi"} <= have:
        err_names = ("err_lo", "err_hi")
    else:
        raise ValueError(f"{path}: errors missing: need column 'err', or 'err_lo' and "
                         f"'err_hi'; columns are {list(table.colnames)}")

    R, R_unit = _profile_column(table, path, "R")
    if R_unit.is_equivalent(u.arcsec):
        sky = True
    elif R_unit.is_equivalent(u.pc):
        sky = False
    else:
        raise ValueError(f"{path}: column 'R' has unit {R_unit}, which is neither an angle "
                         "(sky profile) nor a length (physical profile)")
    R = (R * R_unit).to_value(u.arcsec if sky else u.pc)
    target = _profile_value_unit(kind, sky)
    converted = {}
    for name in ("value", *err_names):
        arr, unit = _profile_column(table, path, name)
        try:
            converted[name] = (arr * unit).to_value(target)
        except u.UnitConversionError:
            frame = "sky (R is an angle)" if sky else "physical (R is a length)"
            raise ValueError(f"{path}: column {name!r} of a {kind} profile has unit {unit}, "
                             f"which does not convert to {target}, needed for a {frame} "
                             "profile") from None
    profile = Profile(kind=kind, R=R, value=converted["value"], err_lo=converted[err_names[0]],
                      err_hi=converted[err_names[1]], sky=sky)
    try:
        return check_profile(profile)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def read_profiles(path_or_paths: str | PathLike | Iterable[str | PathLike]
                  ) -> tuple[Profile, ...]:
    """Read binned profiles from ECSV files (layout in the module docstring), one per file.

    Args:
        path_or_paths: one file or an iterable of files.

    Returns:
        A tuple of :class:`Profile` in canonical units, in the order of the files.

    Raises:
        FileNotFoundError: a file does not exist.
        ValueError: a missing kind, column or unit, an unknown kind, a unit that does not
            convert, non-finite or negative R, non-finite values, errors <= 0; the message
            names the file and the column.
    """
    if isinstance(path_or_paths, (str, PathLike)):
        paths = [path_or_paths]
    else:
        paths = list(path_or_paths)
    if not paths:
        raise ValueError("read_profiles: no files given")
    return tuple(_read_profile(Path(p)) for p in paths)
