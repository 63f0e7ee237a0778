"""Radiative transfer inputs: line lists and the Voigt profile (see docs/rt_inputs.md).

``dastro.rt.lines`` reads VALD, Kurucz (gfall), MOOG and Turbospectrum line lists into a
``LineList`` and converts air and vacuum wavelengths; ``dastro.rt.voigt`` computes the Faddeeva
function and the Voigt profile in JAX.
"""

from dastro.rt.lines import (
    LineList,
    air_to_vacuum,
    read_gfall,
    read_linelist,
    read_moog,
    read_turbospectrum,
    read_vald,
    vacuum_to_air,
)
from dastro.rt.voigt import faddeeva, voigt_hjerting, voigt_profile, voigt_profile_x

__all__ = [
    "LineList",
    "air_to_vacuum",
    "faddeeva",
    "read_gfall",
    "read_linelist",
    "read_moog",
    "read_turbospectrum",
    "read_vald",
    "vacuum_to_air",
    "voigt_hjerting",
    "voigt_profile",
    "voigt_profile_x",
]
