"""Suite-wide pytest set-up."""

from pathlib import Path

import jax
import pytest

# JAX's persistent compilation cache, shared by the pytest-xdist workers: programs that
# several test files compile identically (the solver, the emulator, NUTS kernels) are compiled
# by the first process that needs them and read back by the others (and by later runs).
jax.config.update("jax_compilation_cache_dir", str(Path(__file__).parents[1] / ".jax_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

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
