"""JAX devices of this machine: expose every CPU core as a device, for parallel chains."""

from __future__ import annotations

import os

import jax

__all__ = ["use_cpu_cores"]


def use_cpu_cores(n: int | None = None) -> int:
    """Expose ``n`` CPU cores (default: all) as separate JAX devices and return the count.

    Each NUTS chain is a small XLA:CPU program that uses about one core, so chains run on
    separate devices (numpyro's ``chain_method="parallel"``) finish up to ``n`` times sooner
    than chains vectorised on one device. JAX fixes its devices at its first computation: call
    this first (``import dastro.devices`` does not start JAX; ``import dastro.clusters`` does).
    Called later it changes nothing and returns the existing count.
    """
    n = int(n or os.cpu_count() or 1)
    if n < 1:
        raise ValueError(f"n = {n}: need at least one device")
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # backend already initialised: keep its devices
        pass
    return jax.local_device_count()
