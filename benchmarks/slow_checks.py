"""The suite's slow checks other than the fits' recovery tests (benchmarks/clusters_recovery.py).

Tests marked ``slow`` are left out of the default suite to keep it within its time budget on
2 cores; they are still checks (gradients against finite differences, vmapped batches against
single models, g_max as the pole of rt, table loading inside a trace, ...) and must pass.
Runs them (``pytest -m slow``, every test file but the two of clusters_recovery.py), prints
one line per test and writes benchmarks/results/slow_checks.json.

Run: python benchmarks/slow_checks.py
"""

from __future__ import annotations

from _pytest_report import ROOT, run_tests, write_report
from clusters_recovery import TESTS as RECOVERY_TESTS

OUT = ROOT / "benchmarks" / "results" / "slow_checks.json"


def main():
    ignore = [f"--ignore={path}" for path in RECOVERY_TESTS]
    rows, wall = run_tests(["tests", "-m", "slow", *ignore])
    raise SystemExit(write_report(rows, wall, OUT))


if __name__ == "__main__":
    main()
