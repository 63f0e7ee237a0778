"""Suite-wide pytest set-up."""

import os
from pathlib import Path

# Most of the suite's time is XLA compiling programs that then run for milliseconds: with LLVM
# optimisation off the compile-bound tests take about half as long (solver gradients 170 s ->
# 89 s, measured 2026-12-05), which keeps the suite within its budget on 2 cores. The same
# programs (same HLO, no fast-math either way), only less optimised machine code; the
# benchmarks measure speed with the default. Set XLA_FLAGS yourself to override.
# Tried and rejected (2026-12-05): --xla_cpu_use_fusion_emitters=false (XLA's older emitters)
# compiles 2 - 4 times faster (an emulator value-and-gradient 6.2 -> 1.5 s at O0, 7.1 -> 3.3 s
# at O2), but with optimisation level 0 it miscompiled the exact solver's projection (Sigma
# 23 % off at 0.1 rt: tests/test_cluster_df.py::test_projected_density_matches_solver_sigma,
# correct in every other combination), so the suite keeps the code path users run.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import jax  # noqa: E402 -- after XLA_FLAGS, which the backend reads when it starts
import pytest  # noqa: E402

# Every XLA:CPU executable keeps its own memory mappings; one pytest process that compiles
# thousands of them reaches the kernel's per-process limit (vm.max_map_count, 65530 by
# default) and then crashes inside the compiler with a segmentation fault. Well below that,
# drop JAX's compiled executables (the next module recompiles what it needs).
_MAPS = Path("/proc/self/maps")
_MAX_MAPPINGS = 30_000


def _mappings() -> int:
    try:
        with _MAPS.open() as fh:
            return sum(1 for _ in fh)
    except OSError:  # not Linux: nothing to count
        return 0


@pytest.fixture(autouse=True, scope="module")
def _bound_memory_mappings():
    yield
    if _mappings() > _MAX_MAPPINGS:
        jax.clear_caches()
