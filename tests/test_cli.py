"""The dastro command line."""

import re

import pytest

from dastro import __version__
from dastro.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_model_prints_scalars_in_physical_units_and_plots(tmp_path, capsys):
    png = tmp_path / "m.png"
    assert main(["model", "--W0", "7", "--g", "1", "--M", "1e5", "--rh", "3",
                 "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    rh = float(re.search(r"rh =\s+([0-9.eE+-]+)", out).group(1))
    virial = float(re.search(r"2K/\|U\| =\s+([0-9.eE+-]+)", out).group(1))
    assert rh == pytest.approx(3.0, rel=1e-6)
    assert virial == pytest.approx(1.0, abs=1e-6)
    assert png.stat().st_size > 10_000


def test_model_rejects_bad_input(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["model", "--W0", "-1", "--no-plot"])
    assert exit_info.value.code == 2
    assert "positive" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="g_max"):
        main(["model", "--W0", "9", "--g", "2.6", "--no-plot"])
    with pytest.raises(SystemExit, match="exactly one"):
        main(["model", "--W0", "5", "--M", "1e5", "--rh", "3", "--rt", "40", "--no-plot"])


def test_synth_subcommand_is_wired(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", "--help"])
    assert exit_info.value.code == 0
    assert "dastro synth" in capsys.readouterr().out
