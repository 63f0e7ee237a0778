"""Lowered-isothermal (LIMEPY-family) star-cluster models."""

from dastro.clusters.solver import (
    G_MODEL,
    ClusterModel,
    LoweredIsothermal,
    Profiles,
    Projected,
    g_max,
    solve,
    solve_batch,
)

__all__ = [
    "G_MODEL", "ClusterModel", "LoweredIsothermal", "Profiles", "Projected", "g_max", "solve",
    "solve_batch",
]
