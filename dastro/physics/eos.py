"""LTE equation of state: Saha-Boltzmann ionisation, H-, molecules, and the electron density.

Physics (all in cgs, temperatures in K):

* Saha equation (e.g. Gray 2005, *The Observation and Analysis of Stellar Photospheres*, 3rd
  ed., eq. 1.20)::

      n_{i+1} n_e / n_i = S_i(T) = 2 (Q_{i+1} / Q_i) (2 pi m_e k T / h^2)^{3/2} exp(-chi_i / kT)

  for stages I -> II -> III of H..Zn, with partition functions Q from Irwin (1981) (see
  :mod:`dastro.physics.partition`) and NIST ionisation energies chi_i
  (:mod:`dastro.physics.abundances`). No lowering of the ionisation potential.
* H-: the same relation with Q(H-) = 1 and the electron affinity of hydrogen
  chi = 0.754195 eV (Lykke, Murray & Lineberger 1991, Phys. Rev. A 43, 6104).
* Molecules: ``n_A n_B ... / n_AB... = K_n(T)`` with Tsuji (1973) constants; which molecules
  enter is data (:class:`dastro.physics.partition.MoleculeSet`), so CO, OH, CN, TiO, ... are
  added by adding rows, not code.

Unknowns of the solve are ``y = (ln n_e, ln n_I(H), ..., ln n_I(Zn))`` (31 numbers per layer,
neutral atomic densities in cm^-3). The 31 residuals are written as differences of logarithms
of sums of positive terms (log-sum-exp), so they are well scaled for every T and P:

* charge:        ln(sum_X n_II + 2 n_III) - ln(n_e + n(H-))
* gas law:       ln(n_e + all atoms, ions, H-, molecules) - ln(P / kT)  (or mass density)
* abundances:    ln N_X - ln N_H - ln eps_X for X = He..Zn (N_X: all nuclei of X)

A bracketing bisection on the atomic-only problem gives the starting point; Newton's method
(optimistix ``Dogleg``, a trust-region Newton method) finishes it. Derivatives with respect to
T, P (or rho) and the abundances come from the implicit-function theorem in a
``jax.custom_jvp`` (``J dy = -df/dargs``): one 31x31 linear solve per layer, never
differentiation through the iterations; reverse mode works by transposition and higher
derivatives by applying the rule recursively.

Non-convergence: every result carries ``converged`` (a boolean per layer). Called outside
``jit`` the public functions raise :class:`EOSConvergenceError`; inside ``jit`` they return the
flag and the caller decides. Tested to converge for 2500 K <= T <= 50000 K and
1e-3 <= P_gas <= 1e9 dyn cm^-2 with the default molecules, for [M/H] from -4 to +1,
[alpha/M] = +0.4 and C/O = 1.5.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from dastro import constants as const

from .abundances import ATOMIC_MASS, IONIZATION_ENERGY, N_ELEMENTS, abundances
from .partition import MoleculeSet, default_molecules, log_partition_functions, no_molecules

__all__ = [
    "CHI_HMINUS",
    "EOSConvergenceError",
    "EOSResult",
    "eos_trho",
    "eos_tp",
    "log_saha",
    "saha_fractions",
]

#: Electron affinity of H [eV] (Lykke, Murray & Lineberger 1991).
CHI_HMINUS = 0.754195
#: ln[(2 pi m_e k / h^2)^{3/2}], so that (2 pi m_e k T / h^2)^{3/2} = exp(_LN_SAHA + 1.5 ln T).
_LN_SAHA = 1.5 * np.log(2.0 * np.pi * const.m_e * const.k_B / const.h**2)
# H has no third stage: a large finite energy keeps every expression finite (no inf - inf,
# no NaN gradients through masks) while making S_2(H) = 0 to machine precision.
_CHI = np.where(np.isfinite(IONIZATION_ENERGY), IONIZATION_ENERGY, 1.0e5)


class EOSConvergenceError(RuntimeError):
    """The chemical-equilibrium solve did not converge (raised outside ``jit`` only)."""


class EOSResult(NamedTuple):
    """Chemical equilibrium of one or many layers (leading dimensions = input batch shape).

    Attributes:
        n_e: electron number density [cm^-3].
        n_atoms: (..., 30, 3) densities of stages I, II, III of H..Zn [cm^-3].
        n_hminus: H- density [cm^-3].
        n_molecules: (..., n_mol) molecule densities [cm^-3], in ``MoleculeSet.names`` order.
        n_h_total: density of hydrogen nuclei in all forms [cm^-3].
        rho: mass density [g cm^-3].
        P_gas: gas pressure, electrons included [dyn cm^-2].
        converged: bool; False where Newton's method failed or the residual is > 1e-8.
    """

    n_e: jnp.ndarray
    n_atoms: jnp.ndarray
    n_hminus: jnp.ndarray
    n_molecules: jnp.ndarray
    n_h_total: jnp.ndarray
    rho: jnp.ndarray
    P_gas: jnp.ndarray
    converged: jnp.ndarray


def log_saha(T):
    """Logarithms of the Saha factors S(T) = n_{i+1} n_e / n_i [cm^-3] at one temperature.

    Args:
        T: temperature [K], scalar. Partition functions are Irwin (1981) fits, clamped to
            1000-16000 K (see :mod:`dastro.physics.partition`).

    Returns:
        ``(lnS1, lnS2, lnS_hminus)``: (30,) for I -> II, (30,) for II -> III (H: ~ -1e5/kT),
        and the scalar for H- -> H I + e (``n(H I) n_e / n(H-)``).
    """
    lnq = log_partition_functions(T)
    kt = const.k_B_eV * T
    base = np.log(2.0) + _LN_SAHA + 1.5 * jnp.log(T)
    ln_s1 = base + lnq[:, 1] - lnq[:, 0] - _CHI[:, 0] / kt
    ln_s2 = base + lnq[:, 2] - lnq[:, 1] - _CHI[:, 1] / kt
    ln_shm = base + lnq[0, 0] - 0.0 - CHI_HMINUS / kt
    return ln_s1, ln_s2, ln_shm


def saha_fractions(T, n_e):
    """Fractions of each element H..Zn in stages I, II, III for given T and n_e (atoms only).

    Args:
        T: temperature [K] (scalar).
        n_e: electron density [cm^-3] (scalar, > 0).

    Returns:
        (30, 3) fractions; each row sums to 1 (H- and molecules are ignored here).
    """
    ln_s1, ln_s2, _ = log_saha(T)
    lne = jnp.log(n_e)
    terms = jnp.stack([jnp.zeros_like(ln_s1), ln_s1 - lne, ln_s1 + ln_s2 - 2 * lne], axis=-1)
    return jax.nn.softmax(terms, axis=-1)


# ------------------------------------------------------------------------------------------
# one layer
# ------------------------------------------------------------------------------------------


def _species(y, ln_s1, ln_s2, ln_shm, ln_kn, comp):
    lne, ln0 = y[0], y[1:]
    ln1 = ln0 + ln_s1 - lne
    ln2 = ln1 + ln_s2 - lne
    lnhm = ln0[0] + lne - ln_shm
    lnmol = comp @ ln0 - ln_kn
    return lne, ln0, ln1, ln2, lnhm, lnmol


def _log_nuclei(ln0, ln1, ln2, lnhm, lnmol, comp):
    """ln N_X, all nuclei of each element (atoms, ions, H-, bound in molecules)."""
    lat = jax.nn.logsumexp(jnp.stack([ln0, ln1, ln2]), axis=0)
    lat = lat.at[0].set(jnp.logaddexp(lat[0], lnhm))
    if comp.shape[0] == 0:
        return lat
    # N_X = n_atoms,X (1 + sum_m c_mX n_m / n_atoms,X): log1p keeps every derivative finite
    # for elements in no molecule (c_mX = 0), unlike log(0 + tiny); the exponent is capped.
    expo = jnp.minimum(lnmol[:, None] - lat[None, :], 600.0)
    return lat + jnp.log1p(jnp.sum(comp * jnp.exp(expo), axis=0))


def _residual(y, args, mode):
    ln_s1, ln_s2, ln_shm, ln_kn, comp, ln_eps, ln_target, ln_mass = args
    lne, ln0, ln1, ln2, lnhm, lnmol = _species(y, ln_s1, ln_s2, ln_shm, ln_kn, comp)
    ln_pos = jax.nn.logsumexp(jnp.concatenate([ln1, ln2 + np.log(2.0)]))
    ln_neg = jnp.logaddexp(lne, lnhm)
    r_charge = ln_pos - ln_neg
    lnn = _log_nuclei(ln0, ln1, ln2, lnhm, lnmol, comp)
    if mode == "P":
        ln_tot = jax.nn.logsumexp(jnp.concatenate([lne[None], ln0, ln1, ln2, lnhm[None], lnmol]))
    else:
        ln_tot = jax.nn.logsumexp(lnn + ln_mass)
    r_gas = ln_tot - ln_target
    r_ab = lnn[1:] - lnn[0] - ln_eps[1:]
    return jnp.concatenate([r_charge[None], r_gas[None], r_ab])


def _bisect_atomic(ln_s1, ln_s2, ln_eps, ln_target, ln_mass, mode, n_iter=100):
    """Atoms-only electron density by bisection in ln n_e (monotone charge residual)."""
    ln_sum_eps = jax.nn.logsumexp(ln_eps)

    def ln_nh(lne):
        if mode == "P":
            return ln_target + jnp.log1p(-jnp.exp(lne - ln_target)) - ln_sum_eps
        return ln_target - jax.nn.logsumexp(ln_eps + ln_mass)

    def g(lne):
        terms = jnp.stack([jnp.zeros_like(ln_s1), ln_s1 - lne, ln_s1 + ln_s2 - 2 * lne])
        lnf = terms - jax.nn.logsumexp(terms, axis=0)
        ln_q = jax.nn.logsumexp(jnp.stack([lnf[1], lnf[2] + np.log(2.0)]), axis=0)
        return ln_nh(lne) + jax.nn.logsumexp(ln_eps + ln_q) - lne

    if mode == "P":
        lo, hi = ln_target - 80.0, ln_target - 1e-9
    else:
        top = ln_nh(0.0) + ln_sum_eps + np.log(2.0)
        lo, hi = top - 80.0, top + 1.0

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        pos = g(mid) > 0
        return jnp.where(pos, mid, lo), jnp.where(pos, hi, mid)

    lo, hi = jax.lax.fori_loop(0, n_iter, body, (lo, hi))
    lne = 0.5 * (lo + hi)
    terms = jnp.stack([jnp.zeros_like(ln_s1), ln_s1 - lne, ln_s1 + ln_s2 - 2 * lne])
    lnf0 = -jax.nn.logsumexp(terms, axis=0)
    return jnp.concatenate([lne[None], ln_nh(lne) + ln_eps + lnf0])


@partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _root(mode, max_steps, y0, args):
    """Root of ``_residual(., args, mode)`` by a trust-region (dogleg) Newton method."""
    solver = optx.Dogleg(rtol=1e-11, atol=1e-11, norm=optx.max_norm)
    sol = optx.root_find(lambda y, a: _residual(y, a, mode), solver, y0, args=args,
                         max_steps=max_steps, throw=False)
    return sol.value


@_root.defjvp
def _root_jvp(mode, max_steps, primals, tangents):
    """Implicit-function theorem: J dy = -(df/dargs) dargs at the root (any order)."""
    y0, args = primals
    _, args_dot = tangents
    y = _root(mode, max_steps, y0, args)
    _, f_dot = jax.jvp(lambda a: _residual(y, a, mode), (args,), (args_dot,))
    jac = jax.jacfwd(lambda yy: _residual(yy, args, mode))(y)
    return y, -jnp.linalg.solve(jac, f_dot)


def _solve_layer(T, target, eps, molecules: MoleculeSet, mode: str, max_steps: int):
    ln_s1, ln_s2, ln_shm = log_saha(T)
    ln_kn = molecules.log_kn(T)
    comp = molecules.composition
    ln_eps = jnp.log(eps)
    ln_mass = jnp.log(ATOMIC_MASS * const.amu)
    ln_target = jnp.log(target / (const.k_B * T)) if mode == "P" else jnp.log(target)
    args = (ln_s1, ln_s2, ln_shm, ln_kn, jnp.asarray(comp, dtype=float), ln_eps, ln_target,
            ln_mass)
    y0 = _bisect_atomic(ln_s1, ln_s2, ln_eps, ln_target, ln_mass, mode)
    if "HH" in molecules.names:  # start with H2 in equilibrium: n + 2 n^2 / K = n_atomic
        i = molecules.names.index("HH")
        n_at = jnp.exp(y0[1])
        q = 8.0 * n_at * jnp.exp(-ln_kn[i])
        y0 = y0.at[1].set(jnp.log(2.0 * n_at / (1.0 + jnp.sqrt(1.0 + q))))
    y0 = jax.lax.stop_gradient(y0)
    y = _root(mode, max_steps, y0, args)
    res = jnp.max(jnp.abs(_residual(jax.lax.stop_gradient(y), args, mode)))
    converged = (res < 1e-8) & jnp.all(jnp.isfinite(y))
    lne, ln0, ln1, ln2, lnhm, lnmol = _species(y, ln_s1, ln_s2, ln_shm, ln_kn, comp)
    lnn = _log_nuclei(ln0, ln1, ln2, lnhm, lnmol, comp)
    n_atoms = jnp.exp(jnp.stack([ln0, ln1, ln2], axis=-1))
    n_tot = jnp.exp(jax.nn.logsumexp(jnp.concatenate([lne[None], ln0, ln1, ln2, lnhm[None],
                                                      lnmol])))
    return EOSResult(
        n_e=jnp.exp(lne),
        n_atoms=n_atoms,
        n_hminus=jnp.exp(lnhm),
        n_molecules=jnp.exp(lnmol),
        n_h_total=jnp.exp(lnn[0]),
        rho=jnp.exp(jax.nn.logsumexp(lnn + ln_mass)),
        P_gas=n_tot * const.k_B * T,
        converged=converged,
    )


# ------------------------------------------------------------------------------------------
# public API
# ------------------------------------------------------------------------------------------


def _is_traced(*xs) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(xs))


def _check_positive(name: str, x, traced: bool):
    """Finite and > 0: ValueError outside jit, ``eqx.error_if`` inside."""
    if traced:
        x = jnp.asarray(x, dtype=float)
        return eqx.error_if(x, ~(jnp.isfinite(x) & (x > 0)), f"{name} must be finite and > 0")
    arr = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(arr) & (arr > 0)):
        bad = arr[~(np.isfinite(arr) & (arr > 0))].ravel()[:3]
        raise ValueError(f"{name} must be finite and > 0; got {bad.tolist()}")
    return jnp.asarray(x, dtype=float)


@eqx.filter_jit
def _solve_flat(T, target, eps, molecules, mode, max_steps):
    return jax.vmap(lambda t, p: _solve_layer(t, p, eps, molecules, mode, max_steps))(T, target)


def _run(T, target, eps, molecules, mode, max_steps, name):
    traced = _is_traced(T, target, eps, molecules)
    if eps is None:
        eps = abundances()
    if molecules is None:
        molecules = default_molecules()
    elif molecules is False:
        molecules = no_molecules()
    T = _check_positive("T", T, traced)
    target = _check_positive(name, target, traced)
    eps = _check_positive("eps", eps, traced)
    if jnp.shape(eps) != (N_ELEMENTS,):
        raise ValueError(f"eps must have shape (30,) (H..Zn), got {jnp.shape(eps)}")
    T, target = jnp.broadcast_arrays(T, target)
    shape = T.shape
    out = _solve_flat(T.reshape(-1), target.reshape(-1), eps, molecules, mode, max_steps)
    out = jax.tree_util.tree_map(lambda a: a.reshape(shape + a.shape[1:]), out)
    if not traced and not bool(np.all(np.asarray(out.converged))):
        i = int(np.argmin(np.asarray(out.converged).ravel()))
        raise EOSConvergenceError(
            f"chemical equilibrium did not converge at T = {float(T.ravel()[i]):.6g} K, "
            f"{name} = {float(target.ravel()[i]):.6g} (layer {i}); inside jit this is "
            "reported as EOSResult.converged == False"
        )
    return out


def eos_tp(T, P, eps=None, molecules=None, max_steps: int = 200) -> EOSResult:
    """Chemical equilibrium (ionisation, H-, molecules) at given temperature and gas pressure.

    Args:
        T: temperature [K], any shape; tested 2500-50000 K.
        P: gas pressure including electrons [dyn cm^-2], broadcastable with T; tested
            1e-3-1e9.
        eps: (30,) number abundances N_X / N_H for H..Zn (see
            :func:`dastro.physics.abundances.abundances`); default Asplund et al. (2009).
        molecules: a :class:`MoleculeSet`; ``None`` for the default set, ``False`` for none.
        max_steps: Newton iterations allowed.

    Returns:
        :class:`EOSResult` with the batch shape of ``broadcast(T, P)``.

    Raises (outside ``jit`` only):
        ValueError: T, P or eps not finite and positive.
        EOSConvergenceError: the solve failed for some layer (inside ``jit``:
            ``converged == False``).

    Works under ``jit``, ``vmap`` and ``grad`` (implicit-function-theorem derivatives with
    respect to T, P and eps).
    """
    return _run(T, P, eps, molecules, "P", max_steps, "P")


def eos_trho(T, rho, eps=None, molecules=None, max_steps: int = 200) -> EOSResult:
    """Chemical equilibrium at given temperature and mass density.

    Same as :func:`eos_tp` with the gas law replaced by mass conservation,
    ``rho = sum_X N_X m_X`` (electron mass neglected). ``rho`` in g cm^-3; tested
    1e-14 - 1e-4.
    """
    return _run(T, rho, eps, molecules, "rho", max_steps, "rho")
