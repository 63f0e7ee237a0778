"""The notebooks run, at a small size, and their fits land near the truth."""

import os
import runpy
from pathlib import Path

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"


def test_cluster_fit_notebook_runs(monkeypatch):
    monkeypatch.setenv("DASTRO_NOTEBOOK_SMALL", "1")
    ns = runpy.run_path(str(NOTEBOOKS / "cluster_fit.py"))
    z = ns["z_scores"]
    # 60 stars, one short chain: the mass and distance must still be within 4 sigma.
    assert abs(z["log10_M"]) < 4 and abs(z["distance"]) < 4
    assert ns["result"].n_draws == 60
    assert os.environ["DASTRO_NOTEBOOK_SMALL"] == "1"
