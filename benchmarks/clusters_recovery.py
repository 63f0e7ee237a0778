"""Recovery of known cluster parameters by every variant of the star-level and profile models.

Runs the tests of tests/test_inference_models.py and tests/test_inference_fit.py marked slow
(minutes of NUTS each, too long for the default suite): 6D exact coordinates; missing velocity
components with an unknown, moving centre; sky units with proper-motion and line-of-sight
velocity errors and a distance; a radial selection function with a field of view; field
contamination; binned profiles; each on a small mock and again on a larger one with longer
chains. Each test asserts that the posterior means lie within 3 posterior standard deviations of
the truth and that the chains are healthy (R-hat, divergences). Prints one line per test
(outcome, seconds) and writes benchmarks/results/clusters_recovery.json.

Run: python benchmarks/clusters_recovery.py [-k EXPRESSION]   (pytest's -k, to pick tests;
the results of the tests not picked are kept from the previous run, with their dates)
"""

from __future__ import annotations

import argparse
import json
import time

from _pytest_report import ROOT, run_tests, write_report

OUT = ROOT / "benchmarks" / "results" / "clusters_recovery.json"
TESTS = ["tests/test_inference_models.py", "tests/test_inference_fit.py"]


def _merge_with_earlier(rows: list[dict], selected: bool) -> list[dict]:
    """With -k (a subset of the tests), keep the earlier results of the tests not run now,
    each with the date it was run, so that the file always covers every slow test."""
    if not selected or not OUT.exists():
        return rows
    now = {r["test"] for r in rows}
    earlier = json.loads(OUT.read_text()).get("rows", [])
    kept = [dict(r, date=r.get("date", "unknown")) for r in earlier if r["test"] not in now]
    return kept + rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-k", default=None, help="pytest -k expression selecting tests")
    args = parser.parse_args()
    args_k = ["-k", args.k] if args.k else []
    rows, wall = run_tests([*TESTS, "-m", "slow", *args_k])
    today = time.strftime("%Y-%m-%d")
    for r in rows:
        r["date"] = today
    rows = _merge_with_earlier(rows, selected=bool(args.k))
    raise SystemExit(write_report(rows, wall, OUT))

if __name__ == "__main__":
    main()
