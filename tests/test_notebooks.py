"""The notebooks run, at a small size, and their fits land near the truth."""

import os
import runpy
import warnings
from pathlib import Path

import numpy as np
import pytest

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"


def test_cluster_fit_notebook_runs(monkeypatch):
    monkeypatch.setenv("DASTRO_NOTEBOOK_SMALL", "1")
    ns = runpy.run_path(str(NOTEBOOKS / "cluster_fit.py"))
    z = ns["z_scores"]
    # 60 stars, one short chain: the mass and distance must still be within 4 sigma.
    assert abs(z["log10_M"]) < 4 and abs(z["distance"]) < 4
    assert ns["result"].n_draws == 60
    assert os.environ["DASTRO_NOTEBOOK_SMALL"] == "1"


# ~2 CPU-minutes even small: plan, reverse-mode and forward-mode programs each compile for
# 20-40 s (measured 121 s wall on 2 shared cores); run with -m slow, like the other long checks.
@pytest.mark.slow
def test_solar_spectrum_notebook_runs(monkeypatch):
    monkeypatch.setenv("DASTRO_NOTEBOOK_SMALL", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ns = runpy.run_path(str(NOTEBOOKS / "solar_spectrum.py"))
    # Central difference, h = 0.01 dex: its truncation error is 3e-5 relative (it falls as h^2).
    ad, fd = ns["d_ew_d_mg"], ns["d_ew_d_mg_fd"]
    assert ad > 0 and abs(fd - ad) < 3e-4 * abs(ad)
    assert abs(ns["d_ew_d_mg_fwd"] - ad) < 1e-6 * abs(ad)  # forward and reverse mode agree
    assert np.min(ns["jac_mg"]) < 0  # more Mg, deeper wings (the saturated core barely moves)
    fit, truth, sigma = ns["fit"], ns["truth"], ns["sigma"]
    for name, tol in [("A_Mg", 0.05), ("vmic", 0.15)]:
        assert 0 < sigma[name] < tol
        assert abs(fit[name] - truth[name]) < min(4 * sigma[name], tol)
    assert all(abs(z) < 0.5 for z in ns["remaining"].values())  # adam reached the minimum
    arrays = [ns["jac_mg"], ns["d_ew_d_ab"], ns["d_ew_d_T"], ns["model"], ns["observed"]]
    assert all(np.all(np.isfinite(np.asarray(a))) for a in arrays)
