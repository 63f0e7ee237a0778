"""Element data for H..Zn and scalable solar abundances.

Everything here is a small table of published facts:

* ``SYMBOLS``, ``ATOMIC_MASS``: IUPAC 2021 standard atomic weights (abridged) [amu].
* ``IONIZATION_ENERGY``: first and second ionisation energies [eV] from the NIST Atomic Spectra
  Database (Kramida et al., NIST ASD v5.10, 2022). The third stage (III) is the highest one
  dastro follows, so two energies per element suffice.
* ``ASPLUND2009``: present-day solar photospheric abundances A(X) = log10(N_X/N_H) + 12 of
  Asplund, Grevesse, Sauval & Scott (2009, ARA&A 47, 481), Table 1 (photospheric column;
  none is missing for H..Zn).

Abundances are scaled with :func:`abundances` by [M/H], [alpha/M] and individual [X/H].
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np

__all__ = [
    "ALPHA_ELEMENTS",
    "ASPLUND2009",
    "ATOMIC_MASS",
    "IONIZATION_ENERGY",
    "N_ELEMENTS",
    "SYMBOLS",
    "abundances",
    "atomic_number",
]

#: Number of elements followed by the equation of state (H..Zn).
N_ELEMENTS = 30

SYMBOLS = (
    "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne",
    "Na", "Mg", "Al", "Si", "P", "S", "Cl", "Ar", "K", "Ca",
    "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn",
)

#: Standard atomic weights [amu] (IUPAC 2021; conventional values for interval elements).
ATOMIC_MASS = np.array([
    1.008, 4.002602, 6.94, 9.0121831, 10.81, 12.011, 14.007, 15.999, 18.998403163, 20.1797,
    22.98976928, 24.305, 26.9815385, 28.085, 30.973761998, 32.06, 35.45, 39.948, 39.0983,
    40.078, 44.955908, 47.867, 50.9415, 51.9961, 54.938044, 55.845, 58.933194, 58.6934,
    63.546, 65.38,
])

#: Ionisation energies [eV]: column 0 is I -> II, column 1 is II -> III (NIST ASD).
#: H has no second ionisation; its entry is ``inf`` (no H III).
IONIZATION_ENERGY = np.array([
    [13.598434, np.inf],
    [24.587389, 54.417765],
    [5.391715, 75.640097],
    [9.322699, 18.211153],
    [8.298019, 25.154830],
    [11.260288, 24.383154],
    [14.534130, 29.601250],
    [13.618055, 35.121120],
    [17.422820, 34.970810],
    [21.564540, 40.962970],
    [5.139077, 47.286380],
    [7.646236, 15.035271],
    [5.985769, 18.828550],
    [8.151683, 16.345845],
    [10.486686, 19.769490],
    [10.360010, 23.337880],
    [12.967633, 23.813640],
    [15.759610, 27.629670],
    [4.340663, 31.625000],
    [6.113155, 11.871719],
    [6.561490, 12.799770],
    [6.828120, 13.575500],
    [6.746187, 14.634000],
    [6.766510, 16.486305],
    [7.434038, 15.639990],
    [7.902468, 16.199200],
    [7.881010, 17.084400],
    [7.639878, 18.168840],
    [7.726380, 20.292390],
    [9.394197, 17.964390],
])

#: Asplund et al. (2009) Table 1, photospheric A(X), H..Zn.
ASPLUND2009 = np.array([
    12.00, 10.93, 1.05, 1.38, 2.70, 8.43, 7.83, 8.69, 4.56, 7.93,
    6.24, 7.60, 6.45, 7.51, 5.41, 7.12, 5.50, 6.40, 5.03, 6.34,
    3.15, 4.95, 3.93, 5.64, 5.43, 7.50, 4.99, 6.22, 4.19, 4.56,
])

#: Elements scaled by [alpha/M] (the MARCS/APOGEE convention).
ALPHA_ELEMENTS = ("O", "Ne", "Mg", "Si", "S", "Ar", "Ca", "Ti")

_ALPHA_MASK = np.array([s in ALPHA_ELEMENTS for s in SYMBOLS], float)
_METAL_MASK = np.array([z > 2 for z in range(1, N_ELEMENTS + 1)], float)


def atomic_number(element: str | int) -> int:
    """Atomic number of ``element`` (a symbol such as ``"Fe"`` or an integer 1..30)."""
    if isinstance(element, (int, np.integer)):
        z = int(element)
    elif isinstance(element, str) and element.capitalize() in SYMBOLS:
        z = SYMBOLS.index(element.capitalize()) + 1
    else:
        raise ValueError(f"element must be a symbol H..Zn or an integer 1..30, got {element!r}")
    if not 1 <= z <= N_ELEMENTS:
        raise ValueError(f"element must be H..Zn (Z = 1..30), got Z = {z}")
    return z


def abundances(
    m_h=0.0,
    alpha_m=0.0,
    x_h: Mapping[str | int, float] | None = None,
    solar=None,
):
    """Number abundances relative to hydrogen, ``eps_X = N_X / N_H`` for H..Zn.

    ``A(X) = A_sun(X) + [M/H] (X heavier than He) + [alpha/M] (X in ALPHA_ELEMENTS)``,
    then any individual ``[X/H]`` given in ``x_h`` *replaces* the scaled value:
    ``A(X) = A_sun(X) + [X/H]``. H and He are never scaled by [M/H].

    Args:
        m_h: [M/H], dex (scalar; differentiable). Sensible range -5..+1.
        alpha_m: [alpha/M], dex (scalar; differentiable).
        x_h: optional mapping from element (symbol or Z) to [X/H] in dex (values may be
            traced arrays).
        solar: optional (30,) array of reference A(X); default Asplund et al. (2009).

    Returns:
        (30,) array ``eps``, ``eps[0] == 1`` (hydrogen).
    """
    a = jnp.asarray(ASPLUND2009 if solar is None else solar, dtype=float)
    if a.shape != (N_ELEMENTS,):
        raise ValueError(f"solar must have shape (30,), got {a.shape}")
    a = a + jnp.asarray(m_h) * _METAL_MASK + jnp.asarray(alpha_m) * _ALPHA_MASK
    if x_h:
        ref = jnp.asarray(ASPLUND2009 if solar is None else solar, dtype=float)
        for el, val in x_h.items():
            z = atomic_number(el)
            a = a.at[z - 1].set(ref[z - 1] + jnp.asarray(val))
    return 10.0 ** (a - 12.0)
