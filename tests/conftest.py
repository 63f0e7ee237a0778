"""Suite-wide pytest set-up."""

from pathlib import Path

import jax
import pytest

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


# The longest files first: pytest-xdist (--dist loadfile) hands out files in collection
# order, so a long file collected last keeps one worker busy while the other idles.
_LONG_FIRST = ("test_notebooks.py", "test_cluster_solver.py", "test_cluster_df.py",
               "test_inference_models.py", "test_synth.py", "test_continuum.py", "test_eos.py",
               "test_cluster_emulator.py", "test_cluster_df_local.py", "test_transfer.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(_LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable within files


@pytest.fixture(autouse=True, scope="module")
def _bound_memory_mappings():
    yield
    if _mappings() > _MAX_MAPPINGS:
        jax.clear_caches()
