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
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", *TESTS, "-m", "slow", "-q", "-p", "no:cacheprovider",
               f"--junitxml={junit}"]
        if args.k:
            cmd += ["-k", args.k]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if not junit.exists():
            print(proc.stdout[-4000:], proc.stderr[-4000:])
            raise SystemExit(f"pytest produced no report (exit code {proc.returncode})")
        rows = []
        for case in ET.parse(junit).getroot().iter("testcase"):
            outcome = "passed"
            message = ""
            for tag in ("failure", "error", "skipped"):
                node = case.find(tag)
                if node is not None:
                    outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                    message = (node.get("message") or "")[:400]
            rows.append({"test": case.get("name"), "outcome": outcome,
                         "seconds": float(case.get("time", 0.0)), "message": message})
    today = time.strftime("%Y-%m-%d")
    for r in rows:
        r["date"] = today
    rows = _merge_with_earlier(rows, selected=bool(args.k))
    print(f"{'test':<62} {'outcome':>8} {'seconds':>8}")
    for r in rows:
        when = "" if r["date"] == today else f"  (run {r['date']})"
        print(f"{r['test']:<62} {r['outcome']:>8} {r['seconds']:8.1f}{when}")
        if r["message"]:
            print("    " + r["message"].splitlines()[0][:150])
    n_pass = sum(r["outcome"] == "passed" for r in rows)
    print(f"{n_pass} of {len(rows)} passed; this run {wall:.0f} s")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({
        "rows": rows, "passed": n_pass, "total": len(rows), "wall_seconds_this_run": wall,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "date": time.strftime("%Y-%m-%d")},
    }, indent=2))
    print(f"wrote {OUT}")
    raise SystemExit(0 if n_pass == len(rows) else 1)


if __name__ == "__main__":
    main()
