"""Radiative transfer: line lists, Voigt profile, line opacity, formal solution, synthesis.

``dastro.rt.lines`` reads VALD, Kurucz (gfall), MOOG and Turbospectrum line lists into a
``LineList`` and converts air and vacuum wavelengths; ``dastro.rt.voigt`` computes the Faddeeva
function and the Voigt profile in JAX (docs/rt_inputs.md). ``dastro.rt.line_opacity`` and
``dastro.rt.hydrogen`` give line absorption, ``dastro.rt.transfer`` the formal solution and
``dastro.rt.synth.synthesize`` the spectrum (docs/rt.md).
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
from dastro.rt.synth import Spectrum, SynthesisPlan, synthesis_plan, synthesize
from dastro.rt.voigt import faddeeva, voigt_hjerting, voigt_profile, voigt_profile_x

__all__ = [
    "LineList",
    "Spectrum",
    "SynthesisPlan",
    "air_to_vacuum",
    "faddeeva",
    "read_gfall",
    "read_linelist",
    "read_moog",
    "read_turbospectrum",
    "read_vald",
    "synthesis_plan",
    "synthesize",
    "vacuum_to_air",
    "voigt_hjerting",
    "voigt_profile",
    "voigt_profile_x",
]
