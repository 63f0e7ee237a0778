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


# The longest files first: with --dist loadfile and --no-loadscope-reorder (pyproject.toml)
# pytest-xdist hands out files in collection order, so a long file collected last keeps one
# worker busy while the other idles. Without --no-loadscope-reorder xdist reorders the files
# by their number of tests, which undid this order (measured 2026-12-05: 1940 CPU-s of tests
# on 2 workers took 1117 s, 150 s above an even split). Order: CPU seconds per file in that
# run, most first; the rest follow in collection order.
_LONG_FIRST = ("test_cluster_solver.py", "test_continuum.py", "test_cluster_emulator.py",
               "test_cluster_emulator_aniso.py", "test_inference_models.py",
               "test_cluster_df.py", "test_notebooks.py", "test_eos.py",
               "test_cluster_df_local.py", "test_transfer.py", "test_synth.py", "test_voigt.py",
               "test_cluster_sample.py", "test_uniform_grid.py", "test_cluster_moments.py",
               "test_inference_profiles.py", "test_cli.py", "test_inference_fit.py",
               "test_inference_error_marginal.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(_LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable within files


@pytest.fixture(autouse=True, scope="module")
def _bound_memory_mappings():
    yield
    if _mappings() > _MAX_MAPPINGS:
        jax.clear_caches()
