"""Partition functions and molecular equilibrium constants (shipped table ``eos_data.npz``).

The table is rebuilt by ``scripts/build_eos_data.py``; its ``metadata`` entry records the
package, version, file, SHA-256 and reference of each source.

* Atoms and ions H..Zn, stages I, II, III: Irwin (1981, ApJS 45, 621) fits
  ``ln Q = sum_{i=0}^{5} a_i (ln T)^i``. Valid box 1000 K <= T <= 16000 K. **Policy outside**:
  T is clamped to the box, so Q is held at its 16000 K value above 16000 K (continuous, zero
  derivative there). No pressure truncation of the partition function is applied.
* Molecules: Tsuji (1973, A&A 23, 411) fits ``log10 K_p = sum_{i=0}^{4} b_i theta^i``,
  ``theta = 5040 K / T``, ``K_p = prod_atoms p / p_molecule`` in cgs pressure units.
  **Policy**: theta is clamped to [0.5, 5.0] (T in [1008, 10080] K); above 10080 K K_p is held
  at its 10080 K value, where every default molecule is already negligible.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from dastro import constants as const

from .abundances import N_ELEMENTS

__all__ = [
    "IRWIN_T_RANGE",
    "MoleculeSet",
    "TSUJI_T_RANGE",
    "default_molecules",
    "eos_table_metadata",
    "log_partition_functions",
    "no_molecules",
]

IRWIN_T_RANGE = (1000.0, 16000.0)
TSUJI_T_RANGE = (1008.0, 10080.0)


@lru_cache(maxsize=1)
def _table():
    with np.load(Path(__file__).resolve().parents[1] / "data" / "eos_data.npz") as d:
        return {k: d[k] for k in d.files}


def eos_table_metadata() -> dict:
    """Provenance of the shipped partition-function/molecule table (a dict)."""
    return json.loads(str(_table()["metadata"]))


def log_partition_functions(T):
    """Natural log of the partition functions of H..Zn, stages I, II, III.

    Args:
        T: temperature [K], scalar (vmap for arrays). Clamped to 1000-16000 K (Irwin 1981).

    Returns:
        (30, 3) array ``ln Q[Z-1, stage-1]``. Bare nuclei (H III) have ``ln Q = 0``.
    """
    coef = jnp.asarray(_table()["irwin_coef"])  # (30, 3, 6)
    lt = jnp.log(jnp.clip(T, *IRWIN_T_RANGE))
    powers = lt ** jnp.arange(6.0)
    return coef @ powers


class MoleculeSet(eqx.Module):
    """Molecules included in the chemical equilibrium (data only; add molecules as rows).

    Fields:
        names: tuple of labels (static).
        composition: (n_mol, 30) float array; number of atoms of element Z in each molecule.
        log10k_coef: (n_mol, 5) Tsuji (1973) coefficients b_0..b_4 of
            ``log10 K_p(theta)`` with K_p in dyn cm^-2 to the power (atoms - 1).

    Only neutral molecules built from H..Zn are supported. Build a custom set with
    ``MoleculeSet(names, composition, log10k_coef)``, or select from the defaults with
    :meth:`select`.
    """

    names: tuple[str, ...] = eqx.field(static=True)
    composition: jnp.ndarray
    log10k_coef: jnp.ndarray

    def __check_init__(self):
        n = len(self.names)
        if np.shape(self.composition) != (n, N_ELEMENTS):
            raise ValueError(f"composition must have shape ({n}, 30)")
        if np.shape(self.log10k_coef) != (n, 5):
            raise ValueError(f"log10k_coef must have shape ({n}, 5)")
        if isinstance(self.composition, jax.core.Tracer):
            return
        comp = np.asarray(self.composition)
        if np.any(comp < 0) or np.any(comp.sum(axis=1) < 2):
            raise ValueError("each molecule needs >= 2 atoms and no negative counts")

    def select(self, names) -> MoleculeSet:
        """Subset by names (e.g. ``("HH", "CO")``)."""
        idx = [self.names.index(n) for n in names]
        return MoleculeSet(tuple(names), self.composition[np.array(idx)],
                           self.log10k_coef[np.array(idx)])

    def log_kn(self, T):
        """ln K_n [cm^-3 ^ (atoms - 1)], ``K_n = prod n_atom / n_molecule``, shape (n_mol,)."""
        theta = jnp.clip(5040.0 / T, 5040.0 / TSUJI_T_RANGE[1], 5040.0 / TSUJI_T_RANGE[0])
        log10kp = self.log10k_coef @ (theta ** jnp.arange(5.0))
        n_atoms = jnp.sum(self.composition, axis=1)
        return jnp.log(10.0) * log10kp - (n_atoms - 1.0) * jnp.log(const.k_B * T)


def default_molecules() -> MoleculeSet:
    """The default set: H2, OH, CH, NH, CO, CN, C2, N2, NO, O2, H2O, CO2, HCN, SiO, SiH, MgH,
    TiO, VO, CaH, SiS, CS, SO, FeH (Tsuji 1973 names ``HH, OH, ... FEH``)."""
    t = _table()
    return MoleculeSet(
        tuple(str(n) for n in t["mol_names"]),
        np.asarray(t["mol_composition"], dtype=float),
        np.asarray(t["mol_log10k_coef"], dtype=float),
    )


def no_molecules() -> MoleculeSet:
    """An empty set: pure atomic ionisation equilibrium (plus H-)."""
    return MoleculeSet((), np.zeros((0, N_ELEMENTS)), np.zeros((0, 5)))
