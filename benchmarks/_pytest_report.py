"""Run a set of pytest tests in a subprocess and read each test's outcome and time from its
JUnit report (shared by the benchmark scripts that run the suite's slow checks)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_tests(args: list[str]) -> tuple[list[dict], float]:
    """pytest ``args`` from the repository root (``-p no:cacheprovider`` and a JUnit report
    added); returns one row per test (test, outcome, seconds, message) and the wall time (s).

    Raises:
        SystemExit: pytest wrote no report (collection failed), with its output.
    """
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        # -n 0: one process (the suite's addopts start two pytest-xdist workers); the slow
        # checks time their fits, which two at once on 2 cores would distort
        cmd = [sys.executable, "-m", "pytest", *args, "-q", "-p", "no:cacheprovider", "-n", "0",
               f"--junitxml={junit}"]
        # tests/conftest.py turns XLA's optimisation off for the compile-bound default suite
        # unless XLA_FLAGS is set; the slow checks are mostly sampling, so keep the default
        # (the recovery run at level 0 took 95 min, 2026-12-05)
        env = dict(os.environ)
        env.setdefault("XLA_FLAGS", "")
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        if not junit.exists():
            print(proc.stdout[-4000:], proc.stderr[-4000:])
            raise SystemExit(f"pytest produced no report (exit code {proc.returncode})")
        rows = []
        for case in ET.parse(junit).getroot().iter("testcase"):
            outcome, message = "passed", ""
            for tag in ("failure", "error", "skipped"):
                node = case.find(tag)
                if node is not None:
                    outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                    # the reason first, then (for the fits) their summary table
                    message = (node.get("message") or "")[:3000]
            name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
            rows.append({"test": name, "outcome": outcome,
                         "seconds": float(case.get("time", 0.0)), "message": message})
    return rows, wall


def write_report(rows: list[dict], wall: float, out: Path) -> int:
    """Print one line per test (outcome, seconds; the date if not run today) and write the
    rows to ``out`` as JSON; returns 0 if every test passed, else 1 (an exit code)."""
    today = time.strftime("%Y-%m-%d")
    print(f"{'test':<72} {'outcome':>8} {'seconds':>8}")
    for r in rows:
        when = "" if r.get("date", today) == today else f"  (run {r['date']})"
        print(f"{r['test']:<72} {r['outcome']:>8} {r['seconds']:8.1f}{when}")
        if r["message"]:
            print("    " + r["message"].splitlines()[0][:150])
    n_pass = sum(r["outcome"] == "passed" for r in rows)
    print(f"{n_pass} of {len(rows)} passed; this run {wall:.0f} s")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "rows": rows, "passed": n_pass, "total": len(rows), "wall_seconds_this_run": wall,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "date": today},
    }, indent=2))
    print(f"wrote {out}")
    return 0 if n_pass == len(rows) else 1
