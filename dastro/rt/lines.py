"""Atomic and molecular line lists: one structure, four file formats, air and vacuum.

:class:`LineList` holds one array per line parameter (shape ``(n_lines,)``), sorted by
wavelength, with an explicit ``air`` flag. Readers: :func:`read_vald` (VALD3 extract-stellar
and extract-all, short and long formats), :func:`read_gfall` (Kurucz 160-column), and
:func:`read_moog`, :func:`read_turbospectrum`; :func:`read_linelist` detects the format.
A malformed line or a missing column raises ``ValueError`` naming the file and line number.

Conventions (all readers convert to these):

* ``wavelength`` [Angstrom], air or vacuum as ``air`` says (see :func:`air_to_vacuum`).
* ``species``: Z for atoms (1..92); for molecules the code of MOOG and Turbospectrum, the
  atomic numbers of the constituents in increasing order, two digits each after the first
  (CH = 106, CN = 607, TiO = 822, H2O = 10108). ``charge``: 0 neutral, 1 singly ionised...
* ``log_gf``; ``E_lower`` [eV], energy of the lower level.
* ``gamma_rad`` [s^-1] radiative damping (FWHM in angular frequency); 0 = not given.
* ``gamma_stark`` [cm^3 s^-1]: quadratic Stark width per electron, gamma_4 / n_e, at 10^4 K;
  0 = not given.
* van der Waals broadening by neutral hydrogen, as ``vdw_mode`` with ``vdw`` and ``vdw_alpha``:

  - ``VDW_UNSOLD`` (0): Unsold (1955) approximation times the enhancement factor ``vdw``
    (1 when the list gives nothing),
  - ``VDW_LOG_GAMMA`` (1): ``vdw`` = log10(gamma_6 / n_H) [cm^3 s^-1] at 10^4 K,
  - ``VDW_ABO`` (2): Anstee-Barklem-O'Mara cross-section ``vdw`` = sigma [bohr^2] at
    10^4 m s^-1 and velocity exponent ``vdw_alpha`` (VALD's packed ``sigma.alpha``),
  - ``VDW_LOG_C6`` (3): ``vdw`` = log10 C_6 [cm^6 s^-1] (MOOG).

Air and vacuum: VALD's conversion (Piskunov; the refractive index of Birch & Downs 1994,
Metrologia 31, 315, in the form of Morton 2000, ApJS 130, 403, eq. 8), applied above 2000 A
only; below 2000 A air and vacuum wavelengths coincide by convention (VALD, Kurucz).
"""

from __future__ import annotations

import math
import os
import re
import shlex
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "ELEMENT_SYMBOLS",
    "LineList",
    "VDW_ABO",
    "VDW_LOG_C6",
    "VDW_LOG_GAMMA",
    "VDW_UNSOLD",
    "air_to_vacuum",
    "molecule_code",
    "read_gfall",
    "read_linelist",
    "read_moog",
    "read_turbospectrum",
    "read_vald",
    "species_name",
    "vacuum_to_air",
]

VDW_UNSOLD, VDW_LOG_GAMMA, VDW_ABO, VDW_LOG_C6 = 0, 1, 2, 3

ELEMENT_SYMBOLS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn "
    "Ga Ge As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce "
    "Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn "
    "Fr Ra Ac Th Pa U"
).split()
_Z = {s: z for z, s in enumerate(ELEMENT_SYMBOLS, start=1)}
_ROMAN = ("I", "II", "III", "IV", "V", "VI")
HC_EV_CM = 1.239841984e-4  # h c / eV [eV cm]: E[eV] = HC_EV_CM * E[cm^-1] (CODATA 2018/2022)
AIR_VACUUM_LIMIT = 2000.0  # [A]: air = vacuum below (VALD, Kurucz convention)


# ------------------------------------------------------------------------------------------
# air and vacuum
# ------------------------------------------------------------------------------------------


def _n_air(lam_vac):
    """Refractive index of standard air at vacuum wavelength ``lam_vac`` [A] (VALD; Birch &
    Downs 1994 as given by Morton 2000, eq. 8)."""
    s2 = (1e4 / lam_vac) ** 2
    return 1.0 + 0.0000834254 + 0.02406147 / (130.0 - s2) + 0.00015998 / (38.9 - s2)


def vacuum_to_air(lam_vac):
    """Air wavelength [A] from vacuum wavelength [A]: ``lam_vac / n(lam_vac)`` above 2000 A.

    Pure JAX; works under jit, vmap and grad. Arrays of any shape.
    """
    lam = jnp.asarray(lam_vac, dtype=float)
    safe = jnp.where(lam >= AIR_VACUUM_LIMIT, lam, 5000.0)
    return jnp.where(lam >= AIR_VACUUM_LIMIT, safe / _n_air(safe), lam)


def air_to_vacuum(lam_air):
    """Vacuum wavelength [A] from air wavelength [A], the exact inverse of :func:`vacuum_to_air`
    above 2000 A: Piskunov's approximate inverse (as used by VALD) as the start, then three
    fixed-point steps ``lam_vac = lam_air * n(lam_vac)`` (contraction factor ~1e-7), so that
    ``vacuum_to_air(air_to_vacuum(x)) == x`` to rounding (< 1e-9 A)."""
    lam = jnp.asarray(lam_air, dtype=float)
    safe = jnp.where(lam >= AIR_VACUUM_LIMIT, lam, 5000.0)
    s2 = (1e4 / safe) ** 2
    n = (1.0 + 0.00008336624212083 + 0.02408926869968 / (130.1065924522 - s2)
         + 0.0001599740894897 / (38.92568793293 - s2))
    vac = safe * n
    for _ in range(3):
        vac = safe * _n_air(vac)
    return jnp.where(lam >= AIR_VACUUM_LIMIT, vac, lam)


# ------------------------------------------------------------------------------------------
# species
# ------------------------------------------------------------------------------------------


def molecule_code(formula: str) -> int:
    """MOOG/Turbospectrum code of a molecule: ``"TiO"`` -> 822, ``"H2O"`` -> 10108."""
    atoms: list[int] = []
    for sym, count in re.findall(r"([A-Z][a-z]?)(\d*)", formula):
        if sym not in _Z:
            raise ValueError(f"unknown element {sym!r} in {formula!r}")
        atoms += [_Z[sym]] * (int(count) if count else 1)
    if len(atoms) < 2 or "".join(re.findall(r"[A-Z][a-z]?\d*", formula)) != formula:
        raise ValueError(f"not a molecular formula: {formula!r}")
    atoms.sort()
    return int(str(atoms[0]) + "".join(f"{z:02d}" for z in atoms[1:]))


def _molecule_atoms(code: int) -> list[int]:
    s = str(code)
    head = len(s) % 2 or 2
    return [int(s[:head])] + [int(s[k : k + 2]) for k in range(head, len(s), 2)]


def species_name(species: int, charge: int) -> str:
    """``(26, 0)`` -> ``"Fe I"``; molecules by formula in Hill order, ``(106, 0)`` -> ``"CH"``,
    ``(822, 0)`` -> ``"OTi"``."""
    species, charge = int(species), int(charge)
    if species <= 92:
        return f"{ELEMENT_SYMBOLS[species - 1]} {_ROMAN[charge]}"
    atoms = _molecule_atoms(species)
    out = ""
    # Hill order: C, then H, then the others alphabetically (without C: all alphabetically)
    order = sorted(set(atoms), key=lambda z: ELEMENT_SYMBOLS[z - 1])
    if 6 in order:
        order = [6] + ([1] if 1 in order else []) + [z for z in order if z not in (1, 6)]
    for z in order:
        k = atoms.count(z)
        out += ELEMENT_SYMBOLS[z - 1] + (str(k) if k > 1 else "")
    return out + ("+" * charge)


def _parse_vald_species(text: str) -> tuple[int, int]:
    parts = text.split()
    if len(parts) != 2 or not parts[1].isdigit():
        raise ValueError(f"species {text!r} is not 'Symbol stage'")
    sym, stage = parts[0], int(parts[1])
    if stage < 1:
        raise ValueError(f"ionisation stage {stage} < 1 in {text!r}")
    if sym in _Z:
        return _Z[sym], stage - 1
    return molecule_code(sym), stage - 1


# ------------------------------------------------------------------------------------------
# the structure
# ------------------------------------------------------------------------------------------

_REQUIRED = ("wavelength", "species", "charge", "log_gf", "E_lower", "gamma_rad",
             "gamma_stark", "vdw_mode", "vdw", "vdw_alpha")


def _is_traced(tree) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(tree))


class LineList(eqx.Module):
    """Spectral lines, one array entry per line; see the module docstring for conventions.

    Fields (shape ``(n_lines,)``): wavelength [A], species (int), charge (int), log_gf,
    E_lower [eV], gamma_rad [s^-1], gamma_stark [cm^3 s^-1], vdw_mode (int), vdw, vdw_alpha;
    optional (None when the format lacks them): E_upper [eV], J_lower, J_upper, lande (mean
    effective Lande factor). ``air`` (static bool): wavelengths in standard air (else vacuum).
    Checked at construction when concrete.
    """

    wavelength: jax.Array
    species: jax.Array
    charge: jax.Array
    log_gf: jax.Array
    E_lower: jax.Array
    gamma_rad: jax.Array
    gamma_stark: jax.Array
    vdw_mode: jax.Array
    vdw: jax.Array
    vdw_alpha: jax.Array
    E_upper: jax.Array | None = None
    J_lower: jax.Array | None = None
    J_upper: jax.Array | None = None
    lande: jax.Array | None = None
    air: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        if _is_traced(self):
            return
        n = np.shape(self.wavelength)
        for name in _REQUIRED + ("E_upper", "J_lower", "J_upper", "lande"):
            v = getattr(self, name)
            if v is None:
                continue
            a = np.asarray(v)
            if a.shape != n or len(n) != 1:
                raise ValueError(f"LineList.{name} has shape {a.shape}, expected {n} (1-d)")
            if not np.all(np.isfinite(a)):
                i = int(np.argmax(~np.isfinite(a)))
                raise ValueError(f"LineList.{name}[{i}] = {a[i]} is not finite")
        lam = np.asarray(self.wavelength)
        checks = [
            ("wavelength", lam <= 0, "> 0"),
            ("species", (np.asarray(self.species) < 1), ">= 1"),
            ("charge", np.asarray(self.charge) < 0, ">= 0"),
            ("E_lower", np.asarray(self.E_lower) < 0, ">= 0"),
            ("gamma_rad", np.asarray(self.gamma_rad) < 0, ">= 0"),
            ("gamma_stark", np.asarray(self.gamma_stark) < 0, ">= 0"),
            ("vdw_mode", ~np.isin(np.asarray(self.vdw_mode), [0, 1, 2, 3]), "in {0, 1, 2, 3}"),
        ]
        for name, bad, need in checks:
            if np.any(bad):
                i = int(np.argmax(bad))
                raise ValueError(f"LineList.{name}[{i}] = {np.asarray(getattr(self, name))[i]}"
                                 f" must be {need}")

    def __len__(self) -> int:
        return int(np.shape(self.wavelength)[0])

    def to_vacuum(self) -> LineList:
        """The same lines with vacuum wavelengths."""
        if not self.air:
            return self
        return LineList(**{**_fields(self), "wavelength": air_to_vacuum(self.wavelength),
                           "air": False})

    def to_air(self) -> LineList:
        """The same lines with air wavelengths."""
        if self.air:
            return self
        return LineList(**{**_fields(self), "wavelength": vacuum_to_air(self.wavelength),
                           "air": True})

    def names(self) -> list[str]:
        """Species names, e.g. ``["Fe I", "Mg I", ...]``."""
        return [species_name(s, c) for s, c in zip(np.asarray(self.species),
                                                   np.asarray(self.charge), strict=True)]


def _fields(ll: LineList) -> dict:
    return {k: getattr(ll, k) for k in _REQUIRED + ("E_upper", "J_lower", "J_upper", "lande",
                                                     "air")}


def _build(rows: list[dict], air: bool, optional=()) -> LineList:
    """LineList from per-line dicts, sorted by wavelength (stable)."""
    if not rows:
        raise ValueError("no lines")
    order = np.argsort([r["wavelength"] for r in rows], kind="stable")
    cols = {}
    for k in _REQUIRED + tuple(optional):
        dtype = int if k in ("species", "charge", "vdw_mode") else float
        cols[k] = jnp.asarray(np.array([rows[i][k] for i in order], dtype=dtype))
    return LineList(**cols, air=air)


def _vdw_from_packed(w: float) -> tuple[int, float, float]:
    """VALD / Turbospectrum convention: < 0 log gamma6, >= 1 (VALD) or >= 20 (Turbospectrum)
    ABO sigma.alpha, 0 none."""
    if w < 0:
        return VDW_LOG_GAMMA, w, 0.0
    if w > 0:
        sigma = math.floor(w)
        return VDW_ABO, float(sigma), w - sigma
    return VDW_UNSOLD, 1.0, 0.0


# ------------------------------------------------------------------------------------------
# VALD
# ------------------------------------------------------------------------------------------

_VALD_RECORD = re.compile(r"^\s*'([^']*)'\s*,(.*)$")


def read_vald(path: str | os.PathLike) -> LineList:
    """Read a VALD3 line list: extract stellar or extract all/element, short or long format.

    Units come from the column header (``WL_air(A)``, ``WL_vac(nm)``, ``E_low(eV)``,
    ``Excit(cm^-1)``...). Rad., Stark and Waals are VALD's log10 gamma_rad [s^-1], log10
    gamma_4/n_e and log10 gamma_6/n_H [cm^3 s^-1] at 10^4 K (0 = none), Waals > 0 being ABO
    ``sigma.alpha``. Long format: E_upper, J_lower, J_upper and the mean Lande factor are kept.
    """
    src = str(path)
    lines = Path(path).read_text().splitlines()
    n_expected = None
    if lines and "lines selected" in lines[0]:
        nums = lines[0].split(",")
        try:
            n_expected = int(nums[2])
        except (IndexError, ValueError) as err:
            raise ValueError(f"{src}, line 1: cannot read the number of lines selected") from err
    hdr = next((k for k, s in enumerate(lines[:6]) if s.lstrip().startswith(("Spec Ion",
                                                                             "Elm Ion"))), None)
    if hdr is None:
        raise ValueError(f"{src}: no VALD column header ('Spec Ion ...' or 'Elm Ion ...')")
    head = lines[hdr]
    m = re.search(r"WL_(air|vac)\((A|nm)\)", head)
    if not m:
        raise ValueError(f"{src}, line {hdr + 1}: no WL_air(A)/WL_vac(A) column")
    air, wl_scale = m.group(1) == "air", (10.0 if m.group(2) == "nm" else 1.0)
    e_unit = re.search(r"(?:E_low|Excit)\((eV|cm\^-1)\)", head)
    if not e_unit:
        raise ValueError(f"{src}, line {hdr + 1}: no E_low/Excit column with unit")
    e_scale = 1.0 if e_unit.group(1) == "eV" else HC_EV_CM
    long = "J lo" in head
    has_vmic = "Vmic" in head
    has_depth = "depth" in head
    if long:
        cols = ["wl", "loggf", "elow", "jlo", "eup", "jup", "lande_lo", "lande_up", "lande",
                "rad", "stark", "waals"] + (["depth"] if has_depth else [])
    else:
        cols = ["wl", "elow"] + (["vmic"] if has_vmic else []) + ["loggf", "rad", "stark",
                                                                  "waals", "lande"]
        cols += ["depth"] if has_depth else []
    rows = []
    i = hdr + 1
    while i < len(lines) and (n_expected is None or len(rows) < n_expected):
        line = lines[i]
        rec = _VALD_RECORD.match(line)
        is_record = rec is not None and re.match(r"\s*[-+\d.]", rec.group(2) or "")
        if not is_record:
            if n_expected is not None:
                raise ValueError(
                    f"{src}, line {i + 1}: expected line record {len(rows) + 1} of "
                    f"{n_expected}, got {line!r}"
                )
            break
        try:
            z, charge = _parse_vald_species(rec.group(1))
        except ValueError as err:
            raise ValueError(f"{src}, line {i + 1}: {err}") from None
        fields = []
        for tok in rec.group(2).split(","):
            t = tok.strip()
            if t.startswith("'") or t == "":
                break
            try:
                fields.append(float(t))
            except ValueError:
                raise ValueError(f"{src}, line {i + 1}: {t!r} is not a number "
                                 f"(column {cols[len(fields)] if len(fields) < len(cols) else '?'})"
                                 ) from None
        if len(fields) < len(cols):
            raise ValueError(f"{src}, line {i + 1}: {len(fields)} numeric columns, expected "
                             f"{len(cols)} ({', '.join(cols)}); missing {cols[len(fields)]}")
        v = dict(zip(cols, fields, strict=False))
        mode, w, alpha = _vdw_from_packed(v["waals"])
        row = dict(
            wavelength=v["wl"] * wl_scale, species=z, charge=charge, log_gf=v["loggf"],
            E_lower=v["elow"] * e_scale, gamma_rad=10 ** v["rad"] if v["rad"] != 0 else 0.0,
            gamma_stark=10 ** v["stark"] if v["stark"] < 0 else 0.0,
            vdw_mode=mode, vdw=w, vdw_alpha=alpha, lande=v["lande"],
        )
        if long:
            row.update(E_upper=v["eup"] * e_scale, J_lower=v["jlo"], J_upper=v["jup"])
            for k in range(1, 4):  # level descriptions and references
                nxt = lines[i + k] if i + k < len(lines) else ""
                m_next = _VALD_RECORD.match(nxt)
                if not nxt.lstrip().startswith("'") or (
                        m_next and re.match(r"\s*[-+\d.]", m_next.group(2))):
                    raise ValueError(f"{src}, line {i + k + 1}: long format expects 3 quoted "
                                     "lines (lower level, upper level, references) per line")
            i += 3
        rows.append(row)
        i += 1
    if n_expected is not None and len(rows) < n_expected:
        raise ValueError(f"{src}, line {i + 1}: file ends after {len(rows)} of {n_expected} lines")
    optional = ("E_upper", "J_lower", "J_upper", "lande") if long else ("lande",)
    return _build(rows, air, optional)


# ------------------------------------------------------------------------------------------
# Kurucz gfall
# ------------------------------------------------------------------------------------------

# (name, start, end) of the fields used, FORMAT(F11.4,F7.3,F6.2,F12.3,F5.2,1X,A10,F12.3,F5.2,
# 1X,A10,3F6.2,A4,2I2,I3,F6.3,I3,F6.3,2I5,1X,A1,A1,1X,A1,A1,I1,A3,2I5,I6)
_GFALL = [("wl_nm", 0, 11), ("loggf", 11, 18), ("code", 18, 24), ("e1", 24, 36),
          ("j1", 36, 41), ("e2", 52, 64), ("j2", 64, 69), ("rad", 80, 86),
          ("stark", 86, 92), ("waals", 92, 98), ("g1", 144, 149), ("g2", 149, 154)]


def read_gfall(path: str | os.PathLike, air: bool = True) -> LineList:
    """Read a Kurucz line list in the 160-column gfall format.

    Wavelengths are in nm in the file (air above 200 nm in ``gfall*.dat``: pass ``air=False``
    for ``gfallvac`` files); energies in cm^-1 (negative = predicted level; the lower level
    is the lower of the two |E|); log10 damping constants, 0 = none; Lande factors x1000.
    """
    src = str(path)
    rows = []
    for k, line in enumerate(Path(path).read_text().splitlines()):
        if not line.strip():
            continue
        if len(line.rstrip()) < 98:
            raise ValueError(f"{src}, line {k + 1}: {len(line.rstrip())} characters; the gfall "
                             "format needs at least 98 (through the van der Waals column)")
        v = {}
        for name, a, b in _GFALL:
            t = line[a:b].strip()
            if name in ("g1", "g2") and t == "":
                v[name] = 0.0
                continue
            try:
                v[name] = float(t)
            except ValueError:
                raise ValueError(f"{src}, line {k + 1}: columns {a + 1}-{b} ({name}) = {t!r} "
                                 "is not a number") from None
        code = v["code"]
        species = int(code)
        charge = int(round((code - species) * 100))
        e1, e2 = abs(v["e1"]), abs(v["e2"])
        lo_first = e1 <= e2
        mode, w = (VDW_LOG_GAMMA, v["waals"]) if v["waals"] < 0 else (VDW_UNSOLD, 1.0)
        g_lo, g_up = (v["g1"], v["g2"]) if lo_first else (v["g2"], v["g1"])
        rows.append(dict(
            wavelength=v["wl_nm"] * 10.0, species=species, charge=charge, log_gf=v["loggf"],
            E_lower=min(e1, e2) * HC_EV_CM, E_upper=max(e1, e2) * HC_EV_CM,
            J_lower=v["j1"] if lo_first else v["j2"], J_upper=v["j2"] if lo_first else v["j1"],
            gamma_rad=10 ** v["rad"] if v["rad"] != 0 else 0.0,
            gamma_stark=10 ** v["stark"] if v["stark"] < 0 else 0.0,
            vdw_mode=mode, vdw=w, vdw_alpha=0.0, lande=0.5 * (g_lo + g_up) / 1000.0,
        ))
    if not rows:
        raise ValueError(f"{src}: no lines")
    return _build(rows, air, ("E_upper", "J_lower", "J_upper", "lande"))


# ------------------------------------------------------------------------------------------
# MOOG
# ------------------------------------------------------------------------------------------


def _moog_fields(line: str) -> list[str]:
    """Fixed (7e10.3) fields when the line is laid out so, else whitespace-separated."""
    fixed = [line[k : k + 10] for k in range(0, min(len(line), 70), 10)]
    ok = all(len(f.split()) <= 1 for f in fixed) and fixed and fixed[0].strip()
    if ok:
        return [f.strip() for f in fixed]
    return line.split()


def read_moog(path: str | os.PathLike, air: bool = True) -> LineList:
    """Read a MOOG line list: first line a comment, then wavelength [A], species code
    (``26.0`` Fe I, ``26.1`` Fe II, ``106.0`` CH, isotopes in further decimals ignored), E_low
    [eV], log gf, damping, [D0, EW]. MOOG files carry no medium: air by convention
    (``air=False`` for vacuum lists). Damping as MOOG reads it: 0 -> Unsold; negative values
    are log10; a value below 1e-15 is C_6 [cm^6 s^-1], between 1e-15 and 1e-5 gamma_6/n_H
    [cm^3 s^-1], above 1e-5 an Unsold enhancement factor.
    """
    src = str(path)
    rows = []
    names = ("wavelength", "species code", "E_low", "log gf")
    for k, line in enumerate(Path(path).read_text().splitlines()):
        if k == 0 or not line.strip():
            continue
        f = _moog_fields(line)
        if len([x for x in f[:4] if x != ""]) < 4:
            raise ValueError(f"{src}, line {k + 1}: needs wavelength, species, E_low and log gf;"
                             f" got {line!r}")
        vals = []
        for j, t in enumerate(f[:5]):
            try:
                vals.append(float(t) if t != "" else 0.0)
            except ValueError:
                col = names[j] if j < 4 else "damping"
                raise ValueError(f"{src}, line {k + 1}: {col} = {t!r} is not a number") from None
        wl, code, elow, loggf = vals[:4]
        damp = vals[4] if len(vals) > 4 else 0.0
        species = int(code)
        # atoms: first decimal = charge; molecules: decimals are isotopes, neutral
        charge = int(round((code - species) * 10 + 1e-9)) if species <= 92 else 0
        if damp == 0:
            mode, w = VDW_UNSOLD, 1.0
        else:
            lin = 10 ** damp if damp < 0 else damp
            if lin < 1e-15:
                mode, w = VDW_LOG_C6, math.log10(lin)
            elif lin < 1e-5:
                mode, w = VDW_LOG_GAMMA, math.log10(lin)
            else:
                mode, w = VDW_UNSOLD, lin
        rows.append(dict(wavelength=wl, species=species, charge=charge, log_gf=loggf,
                         E_lower=elow, gamma_rad=0.0, gamma_stark=0.0, vdw_mode=mode, vdw=w,
                         vdw_alpha=0.0))
    if not rows:
        raise ValueError(f"{src}: no lines")
    return _build(rows, air)


# ------------------------------------------------------------------------------------------
# Turbospectrum
# ------------------------------------------------------------------------------------------


def read_turbospectrum(path: str | os.PathLike) -> LineList:
    """Read a Turbospectrum (bsyn) line list, including the v19/v20 variants with a Stark
    column and NLTE level labels.

    Per species: ``'  26.000   '  ion  n_lines``, a quoted name line, then n lines of
    ``lambda [A, air]  E_low [eV]  log gf  fdamp  g_up  gamma_rad [s^-1]  [gamma_stark]
    'lev_lo' 'lev_up' ...``. fdamp: >= 20 ABO sigma.alpha, 0 < fdamp < 20 Unsold factor,
    < 0 log10 gamma_6/n_H at 10^4 K; gamma_stark: < 0 log10, > 0 linear, 0 none.
    ``J_upper = (g_up - 1) / 2``.
    """
    src = str(path)
    lines = Path(path).read_text().splitlines()
    rows = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        try:
            head = shlex.split(lines[i])
            code_s, ion, n = head[0], int(head[1]), int(head[2])
            code = float(code_s)
        except (ValueError, IndexError):
            raise ValueError(f"{src}, line {i + 1}: expected a species header "
                             f"\"'code' ion n_lines\", got {lines[i]!r}") from None
        species = int(code)  # molecules: '0606.012012' -> 606 (isotopes not kept)
        charge = ion - 1
        if i + 1 >= len(lines) or not lines[i + 1].lstrip().startswith("'"):
            raise ValueError(f"{src}, line {i + 2}: expected the quoted species name line")
        for k in range(n):
            j = i + 2 + k
            if j >= len(lines):
                raise ValueError(f"{src}, line {j}: file ends after {k} of {n} lines of "
                                 f"species {code_s.strip()}")
            try:
                t = shlex.split(lines[j], posix=True)
            except ValueError:
                t = lines[j].split()
            nums = []
            for tok in t[:7]:
                try:
                    nums.append(float(tok))
                except ValueError:
                    break
            if len(nums) < 6:
                missing = ["lambda", "E_low", "log gf", "fdamp", "g_up", "gamma_rad"][len(nums)]
                raise ValueError(f"{src}, line {j + 1}: {len(nums)} numbers, need 6 "
                                 f"(missing {missing}): {lines[j]!r}")
            wl, elow, loggf, fdamp, gu, rad = nums[:6]
            stark = nums[6] if len(nums) > 6 else 0.0
            if fdamp >= 20:
                mode, w, alpha = _vdw_from_packed(fdamp)
            elif fdamp < 0:
                mode, w, alpha = VDW_LOG_GAMMA, fdamp, 0.0
            else:
                mode, w, alpha = VDW_UNSOLD, (fdamp if fdamp > 0 else 1.0), 0.0
            rows.append(dict(
                wavelength=wl, species=species, charge=charge, log_gf=loggf, E_lower=elow,
                gamma_rad=rad, gamma_stark=10 ** stark if stark < 0 else stark,
                vdw_mode=mode, vdw=w, vdw_alpha=alpha, J_upper=(gu - 1) / 2,
            ))
        i += 2 + n
    if not rows:
        raise ValueError(f"{src}: no lines")
    return _build(rows, True, ("J_upper",))


# ------------------------------------------------------------------------------------------
# detection
# ------------------------------------------------------------------------------------------


def read_linelist(path: str | os.PathLike, format: str | None = None, **kw) -> LineList:
    """Read a line list; ``format`` one of ``"vald"``, ``"gfall"``, ``"moog"``,
    ``"turbospectrum"``, or None to detect it from the first lines."""
    readers = {"vald": read_vald, "gfall": read_gfall, "moog": read_moog,
               "turbospectrum": read_turbospectrum}
    if format is None:
        head = Path(path).read_text().splitlines()[:4]
        if not head:
            raise ValueError(f"{path}: empty file")
        if any(s.lstrip().startswith(("Spec Ion", "Elm Ion")) for s in head) or (
                "Wavelength region" in head[0]):
            format = "vald"
        elif re.match(r"^'\s*[\d.]+\s*'\s+\d+\s+\d+", head[0]):
            format = "turbospectrum"
        elif len(head[0].rstrip()) >= 140 and re.match(r"^\s*\d+\.\d{4}[\s-]", head[0]):
            format = "gfall"
        else:
            format = "moog"
    if format not in readers:
        raise ValueError(f"format must be one of {sorted(readers)}, got {format!r}")
    return readers[format](path, **kw)
