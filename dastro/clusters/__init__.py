"""Lowered-isothermal (LIMEPY-family) star-cluster models."""

from dastro.clusters.emulator import emulate
from dastro.clusters.solver import (
    G_MODEL,
    ClusterModel,
    LoweredIsothermal,
    Profiles,
    Projected,
    find_g_max,
    g_max,
    g_max_isotropic,
    solve,
    solve_batch,
)

__all__ = [
    "G_MODEL", "ClusterModel", "LoweredIsothermal", "Profiles", "Projected", "find_g_max",
    "g_max", "g_max_isotropic", "solve", "solve_batch", "emulate",
]
