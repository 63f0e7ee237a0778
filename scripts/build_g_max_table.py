"""Build dastro/data/g_max_isotropic.npz: the edge g_max(W0) of the isotropic model family.

g_max(W0) is the first g at which the truncation radius rt(g) of the exact solution
(dastro.clusters.solver) diverges; see dastro.clusters.solver.find_g_max. It is computed to
1e-12 on W0 = 0.05, 0.1, ..., 14 and 14.5, 15, ..., 30 and interpolated by a not-a-knot cubic
spline (solver.g_max_isotropic).

Run:  python scripts/build_g_max_table.py   (about 5 minutes)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

import dastro
from dastro.clusters.solver import G_MAX_TABLE, find_g_max

OUT = Path(dastro.__file__).parent / "data" / G_MAX_TABLE
#: Bisection tolerance. The emulator's truncation coordinate is q = ln(1 - g/g_max) /
#: ln(0.05/g_max), so node-to-node noise in g_max enters ln rt at q = 1 amplified ~ p/0.05
#: (rt ~ (g_max - g)^-p): 1e-8 noise is ~1e-7 in rt, 1e-12 is below 1e-10.
TOL = 1e-12


def main():
    t0 = time.time()
    w0 = np.concatenate([np.arange(0.05, 14.0 + 1e-9, 0.05), np.arange(14.5, 30.0 + 1e-9, 0.5)])
    g = np.array([find_g_max(w, tol=TOL) for w in tqdm(w0, desc="g_max(W0)")])
    meta = {
        "made_by": "scripts/build_g_max_table.py",
        "dastro_version": dastro.__version__,
        "definition": f"first pole of rt(g) at fixed W0 (find_g_max, tol {TOL:g}), isotropic",
        "seconds": round(time.time() - t0, 1),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, W0=w0, g_max=g, meta=np.asarray(json.dumps(meta)))
    print(f"wrote {OUT}: {len(w0)} nodes, g_max from {g.min():.4f} to {g.max():.4f}")


if __name__ == "__main__":
    main()
