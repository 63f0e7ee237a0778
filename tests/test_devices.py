"""dastro.devices: CPU cores as JAX devices for parallel chains."""

import subprocess
import sys

import jax
import pytest

from dastro.devices import use_cpu_cores


def test_cores_become_devices_in_a_fresh_process():
    code = ("from dastro.devices import use_cpu_cores; import jax; "
            "n = use_cpu_cores(3); print(n, jax.local_device_count())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["3", "3"]


def test_after_jax_started_the_devices_stay():
    jax.numpy.zeros(1).block_until_ready()  # the backend is up in this process
    before = jax.local_device_count()
    assert use_cpu_cores(before + 5) == before


def test_rejects_a_non_positive_count():
    with pytest.raises(ValueError, match="at least one device"):
        use_cpu_cores(-1)
