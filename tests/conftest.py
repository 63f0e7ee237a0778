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


@pytest.fixture(autouse=True, scope="module")
def _bound_memory_mappings():
    yield
    if _mappings() > _MAX_MAPPINGS:
        jax.clear_caches()
