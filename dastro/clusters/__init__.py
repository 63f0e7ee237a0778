"""Lowered-isothermal (LIMEPY-family) star-cluster models."""

from dastro.clusters.df import (
    Centre,
    DFTables,
    df_tables,
    log_density_6d,
    log_density_R,
    log_density_xy,
    log_density_xy_pm,
    log_density_xy_v3,
    log_density_xy_vlos,
)
from dastro.clusters.emulator import emulate
from dastro.clusters.sample import MockCluster, sample, to_sky
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
    "Centre", "DFTables", "df_tables", "log_density_6d", "log_density_R", "log_density_xy",
    "log_density_xy_pm", "log_density_xy_v3", "log_density_xy_vlos",
    "MockCluster", "sample", "to_sky",
]
