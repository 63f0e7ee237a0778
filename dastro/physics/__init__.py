"""LTE microphysics shared by dastro's atmospheres and radiative transfer.

* :mod:`~dastro.physics.abundances`: element data (H..Zn) and scalable solar abundances.
* :mod:`~dastro.physics.partition`: partition functions and molecular equilibrium constants.
* :mod:`~dastro.physics.eos`: Saha-Boltzmann ionisation, H-, molecules, electron density.
* :mod:`~dastro.physics.continuum`: continuous absorption and scattering coefficients.

Importing :mod:`dastro` switches JAX to float64, which this package needs (number densities
span 40 decades). See ``docs/physics.md`` for validity ranges and accuracy.
"""

from .abundances import ASPLUND2009, SYMBOLS, abundances, atomic_number
from .eos import EOSConvergenceError, EOSResult, eos_tp, eos_trho, log_saha, saha_fractions
from .partition import MoleculeSet, default_molecules, log_partition_functions, no_molecules

__all__ = [
    "ASPLUND2009",
    "EOSConvergenceError",
    "EOSResult",
    "MoleculeSet",
    "SYMBOLS",
    "abundances",
    "atomic_number",
    "default_molecules",
    "eos_trho",
    "eos_tp",
    "log_partition_functions",
    "log_saha",
    "no_molecules",
    "saha_fractions",
]
