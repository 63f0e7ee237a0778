"""Fast, smooth emulator of anisotropic lowered-isothermal (LIMEPY) models, from the exact solver.

The anisotropic companion of ``emulator.py`` (read that first): the same radial scheme, one more
parameter. Density and mean-square velocities are closed-form functions of W and r / ra
(``moments.py``), so per model the table holds only
- ln(W / (1 - r / rt)) (since version 9; W / (1 - r / rt) itself before) and ln(G M(<r)) at
  N = 96 Chebyshev nodes of tau = ln(r / r_in) / ln(rt / r_in), r_in = 1e-3 r0, rt the node
  model's own (so that the rows are read in the tau of ln rt as interpolated with them:
  :meth:`EmulatedAnisotropic._tau`);
- ln Sigma, ln(Sigma v2p), ln(Sigma v2R), ln(Sigma v2T) at the same nodes in R, minus
  (g + 2) ln W(R) (Sigma) and (g + 3) ln W(R) (the others) and minus the logarithms of their
  edge factors, Kummer functions of z = (R / ra)^2 W(R) (:func:`edge_log_factors`; since
  version 7), so that they stay smooth up to rt also where r >> ra;
- the scalars ln rt, ln rh, ln(G M), ln(-U), ln K, ln Kr (radial kinetic energy; not K / 3 with
  anisotropy) and ln rhp (model units);
each as its residual against the isotropic model at the same (W0, g) from the isotropic
table (:func:`isotropic_companion`; since version 4). The residual vanishes at ra = inf and
stays small and smooth for nearly isotropic models, which are most of the box in ra, so that
there the table inherits the isotropic table's accuracy (a grid 3 times finer in W0 and 2.6
times in g). ln rt, whose error near rt is amplified ~rt / (rt - r) in W, has its residual
on a grid RT_REFINEMENT = 4 times finer in x, w and v (241 x 73 x 73; only the ODE is
solved there, ~5 ms per model; 2 times finer up to version 5, whose ln rt error, p99 1.5e-6
and max 1.4e-5, was most of the profiles' error near rt: 100 times that at 0.99 rt).

Parameters and the validity box. ra is the anisotropy radius in units of r0; the grid uses
s = 1 / (1 + log10 ra) (s = 0 isotropic, s = 1 at ra = r0; as s -> 0 the models approach
isotropy with every derivative, since 1 / ra^2 = 100 * 10^(-2/s)). Radially anisotropic
models with small ra are finite only for small g, and at large W0 not at all (g_max(14, ra)
= 0 for ra <~ 30 r0); near that cliff even g = 0 models reach rt ~ 1e5 - 1e9 r0. Here g_max
is the edge of models with rt < 1e6 r0 (the first g at which rt exceeds 1e6 r0, diverges or
stops rising; away from the cliff this is solver.find_g_max to ~1e-4). The box is
    0.5 <= W0 <= 14,   ra >= ra_min(W0)  (s <= s_max(W0)),   0 <= g <= g_max(W0, ra) - 0.05,
with the analytic s_max(W0) = (1 + (W0 / 3.95)^6)^(-1/6) (ra_min = r0 for W0 <~ 2.5, rising
steeply above: 1.3 r0 at W0 = 4, 6 r0 at W0 = 7, 350 r0 at W0 = 14; :func:`ra_min`), a smooth
curve below s_crit(W0) - 0.02, where g_max(W0, s_crit) = G_FLOOR = 0.8. Closer to the cliff
(g_max < 0.8) the models change too fast with ra for this table: a first slice that went down
to g_max = 0.15 had errors of 10 % there. g_max(W0, s) comes from
``dastro/data/g_max_aniso.npz`` (``scripts/build_g_max_aniso_table.py``).

Table coordinates. The table is a rectangle in (x, w, v):
- x = sqrt(W0) (nodes denser at small W0, where rt changes fastest);
- w of q = ln(1 - g / g_max) / ln(0.05 / g_max) as in the isotropic emulator (ln rt is close
  to linear in q near the pole of rt(g)), by the isotropic table's map (emulator.q_from_w, a
  cubic: 3 times more nodes in q at g = 0, where a uniform q grid is coarsest in g, uniform
  in q at the g_max edge; since version 5). Up to version 4 the map was w = q (1 + Q_C) /
  (1 + Q_C q), Q_C = 2, as dense at g = 0 but 3 times sparser in q at the edge, where the
  rows' shapes change fastest: a design study along w (21 lines of fixed (x, v) nodes, 19
  nodes, exact solves at the midpoints) had row errors up to 1.5e-3 in the last cells with
  it (1e-6 in the middle), 5.9e-5 at most with the cubic, 2.0e-4 with a uniform q grid
  (in its first cells).
- v of y = ln(1 + (R / ra)^2) / ln(1 + k^2), k = R(W0) / ra_min(W0): y = sin(A v) / sin(A),
  A = 1.1 (nodes 2.2 times denser at ra_min), :func:`v_from_ra` (table version 3). Anisotropy
  acts through (r / ra)^2, and the models start to change where ra falls to a scale R(W0)
  of the cluster, log10 R = 1.27 + 0.111 W0 + 0.79 tanh((W0 - 6.7) / 1.83) (fitted to where
  rt starts to change with ra; 3.4 r0 at W0 = 0.5, ~4e3 r0 at 14), so y spreads that turn
  over the whole axis. Up to version 2 the table used the g_max table's coordinate, u = s /
  s_max(W0) = sin(V_A v) / sin(V_A), V_A = 1.4, in which the models turned anisotropic within
  one or two cells at W0 >~ 9 (design study, along v: ln rt interpolation errors up to 1.3e-2
  with 13 nodes in u, 2.5e-3 with 19; 6.4e-5 with 19 nodes in the new v).
  The g_max table keeps u (:func:`v_from_u`).
What limited the first slice (rt error p99 8.5e-3, max 3.7e-2) was not the interpolation order
but kinks and noise in these coordinates: s_max(W0) was min(1, s_crit - 0.02) through nodes
of s_crit bisected to 2e-3 (a kink at W0 ~ 3.8 and wiggles elsewhere). Now s_max is analytic.

g_max and the q coordinate (diagnosed for issue 3). Near q = 1 the table's ln rt is close to
p ln(g_max_true - g) with g = g_max_ref - 0.05 (p ~ 1), so an error d of the g_max that
defines q, between table nodes, enters ln rt as ~p d / 0.05, 20 times amplified. Sampled along
lines in one table coordinate (100 points over 5 - 10 cells, the others fixed, against the
exact solver at the same (W0, g, ra)), the version-2 table (61 x 15 x 13, g_max a cubic on
every other x node and every v node, nodes bisected to 1e-5) had errors that vanished at the
nodes and changed sign from one cell to the next: up to 9e-4 in ln rt along x at W0 ~ 10.5,
q = 1 -- the g_max cubic's error, not the smooth O(h^4) error of the table, which along x at
W0 = 12 - 14 is 1e-6 - 4e-6 per cell. Against g_max nodes refined to 1e-9, a cubic through
the table's own 61 x 13 nodes is off by up to 8.5e-4 in g (W0 ~ 9, v ~ 0.45, where g_max
starts to fall with anisotropy: flat in v up to u ~ 0.5, then down by 0.6 - 0.8 within a few
v cells at large W0). Now:
- g_max is tabulated on a grid 2 x 3 times denser (121 x 37 in (x, v), v of u: every node
  of the version-2 table is a node; since version 3 the table's v nodes are not, and g_fine
  there is the quintic's value), each node the first g at which rt reaches 1e6 r0, to 1e-9,
  and interpolated by a C2 quintic Hermite (:func:`quintic_weights`; on a grid of half the
  density its errors are <= 1e-4, so ~2e-6 on the full grid if they fall as h^6):
  :func:`g_max_aniso`, the box edge.
- The q coordinate uses g_max_ref = g_tab + q^4 (g_fine - g_tab) (:func:`_g_max_ref`), g_tab
  the cubic through g_fine's values at the table's nodes. Both agree at the nodes, so the table
  holds the same models either way. Measured (300 draws): with g_fine alone the error near
  q = 1 falls (rt max 2.0e-3), but the table's function is less smooth in v at moderate q,
  where g_fine's sharp turn with anisotropy enters g(q) (rt p99 9.0e-4); g_tab alone gives
  rt p99 5.0e-4 and max 3.2e-3; the blend rt p99 4.7e-4, max 2.3e-3.
Up to version 2 the table's resolution in v limited it at W0 >~ 9, where the models turned
anisotropic within one or two v cells (along v at a node of x and w, W0 = 12.9, q = 0.54,
1.8e-3 between v nodes); the v of ra of version 3 spreads that turn. The 19 nodes in w (15
before) brought the error along w near q = 1 (x and v at nodes, W0 = 12.9, u = 0.97) from
1.7e-4 to 5.1e-5 per cell, as h^4 predicts.
Accuracy (table metadata, 10^4 draws, median / p99 / max; version 10): rt 5.5e-10 / 1.8e-8 /
1.8e-7 (version 9: max 2.7e-7; version 7, with the C1 g_tab: 5.9e-10 / 1.4e-7 / 1.4e-6;
version 5: 2.9e-9 / 1.5e-6 / 1.4e-5), every scalar max <= 7.6e-6, mc <= 2.4e-5, phi to 0.99
rt 2.1e-7 / 3.7e-6 / 1.8e-5 (version 8: 2.5e-7 / 1.7e-5 / 8.5e-5; version 5: 4.8e-7 /
1.6e-4 / 1.2e-3), every mean-square velocity, intrinsic and projected, max <= 6.3e-5
(version 6: up to 1.2e-3, without the edge factors), rho 6.2e-7 / 1.4e-5 / 6.4e-5 (version 9:
9.8e-5, version 8: 2.5e-4, version 6: 4.5e-4), Sigma 1.3e-6 / 9.9e-6 / 7.2e-5 (version 9:
1.1e-4, version 8: 2.9e-4, version 6: 1.1e-3; 96 Chebyshev nodes in tau since the second
version-5 build: with 64 the worst draw's own row erred 2e-2 at 0.99 rt): issue 3's 1e-4 for
every quantity at every draw. Version 9's two changes: the W series is a logarithm (version
8's worst draws, W0 2.84, g 2.23, ra 1.17 r0 and W0 7.30, g 1.45, ra 8.49 r0, next to ra_min
and the g_max edge, had W wrong by a constant 7.5e-5 / 8.5e-5 beyond ~0.3 rt while G M(<r)
was right to 1e-6: outside the mass W / (1 - r / rt) = G M / r, whose value at fixed tau
changes like rt^-tau across the table's cells, its logarithm linearly in ln rt; 1.6e-6 /
1.5e-6 now), and the rows are read in their own tau (:meth:`EmulatedAnisotropic._tau`).
Version 10's two (the same rows; ln rt's grid solved again where the edge changed): near
isotropy the box edge is g_tab (:func:`_g_edge`: version 9's worst draw, W0 8.64, g 2.12, ra
6.4e3 r0, sat in the first v cell of ln rt's finer grid, which holds u = s / s_max from 0 to
~0.5, where g_fine's interpolation errors in u became structure at that grid's scale in v),
and ln rt is read where its nodes' own interpolated g is the model's (:func:`_w_at_model_g`:
the next worst draw, W0 9.48, g 2.22, ra 994 r0, in the blend of the two edges, had ln rt off
by 2.8e-7 with errors alternating in sign along x from one fine cell to the next). ln rt's
worst is now 1.8e-7 at W0 7.98, g 2.00, ra 98 r0, where the edge is g_fine.

Interpolation. Along (x, w, v) a tensor-product cubic Hermite interpolant whose node slopes
are finite differences of the node values (five-point central, six-point on the first and
last two nodes of each axis: :func:`_fd_matrix`): C1 everywhere
(values and slopes are shared by neighbouring cells), O(h^4) accurate, and local (6 nodes per
axis); read from its Hermite stack (:func:`hermite_stack`, built at load), a model reads the
2 x 2 x 2 nodes of its cell. Along tau the Chebyshev
interpolant (``emulator._chebyshev``). Outside the box :func:`emulate_aniso` raises a
ValueError naming the parameter; under jit the model is flagged (``valid`` False, NaN outputs).

The rows are stored as float32 (since version 4: 31.7 MB instead of 57.9, the same accuracy
to two digits in every statistic over 300 draws; they are residuals, and ln rt, whose float32
rounding would be ~1e-6 of rt and ~1e-4 of W at 0.99 rt, comes from the float64 finer grid),
read lazily, and checked on load: layout version, SHA-256 of the
arrays, and the SHA-256s of the g_max table and of the isotropic table it was built with
(its rows are residuals against the latter). Its metadata carries the measured accuracy
(``measure_accuracy``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import custom_vmap
from jax.custom_derivatives import SymbolicZero

from dastro.clusters.emulator import (
    _N_MOMENT_TERMS,
    G_MARGIN,
    LN_R_IN,
    N_GRID,
    Q_SLOPE_AT_ZERO,
    W0_MAX,
    W0_MIN,
    EmulatedLoweredIsothermal,
    EmulatorTable,
    _central_density_integral,
    _chebyshev,
    chebyshev_coefficient_matrix,
    error_statistics,
    g_from_q,
    load_table,
    profile_error,
    q_from_g,
)
from dastro.clusters.emulator import TABLE_NAME as ISO_TABLE_NAME
from dastro.clusters.emulator import q_from_w as _q_from_w_iso
from dastro.clusters.emulator import w_from_q as _w_from_q_iso
from dastro.clusters.moments import density_integral, second_moment_integrals
from dastro.clusters.moments import kummer_m1 as _kummer_m1
from dastro.clusters.moments import kummer_m2 as _kummer_m2
from dastro.clusters.solver import G_MODEL, _check_scalar, _is_concrete
from dastro.clusters.uniform_grid import UniformAxis, matmul_constant, uniform_axis

__all__ = ["AnisoTable", "EmulatedAnisotropic", "aniso_scale", "emulate_aniso", "g_hi_aniso",
           "g_max_aniso", "load_aniso_table", "measure_accuracy", "ra_min", "s_max"]

TABLE_NAME = "limepy_aniso_table.npz"
#: Layout version of the table; bump when pack/unpack or the grid definition change.
#: 10: near isotropy the box edge is g_tab (_g_edge; the ln rt grid solved again there);
#: 9: the W series is ln(W / (1 - r/rt)), its residual a ratio to the companion (pack);
#: 8: g_tab, which defines q between the nodes, is C2 (_g_tab; the ln rt grid solved again);
#: 7: the projected series are divided by their edge factors (edge_log_factors); 6: ln rt's
#: grid RT_REFINEMENT = 4 times finer (was 2); 5: w is the isotropic table's map
#: of q (emulator.q_from_w); 4: rows are residuals against the isotropic companion
#: (isotropic_companion), and ln rt has its own finer grid; 3: the table's v coordinate is
#: v_from_ra (the scale R(W0)); 2: it was v_from_u (s / s_max).
TABLE_VERSION = 10
#: ln rt (its residual) is tabulated on a grid this many times finer along x, w and v than the
#: rows: near rt a relative error e of rt is one of ~e rt / (rt - r) in W (100 e at 0.99 rt).
RT_REFINEMENT = 4
#: The node slopes of the rows' and ln rt's Hermite interpolant (:func:`_fd_matrix`), as
#: recorded with the accuracy the table's metadata reports.
NODE_SLOPES = "finite differences: 5-point central, 6-point on the first and last two nodes"
#: The interpolant of g_max between the table's nodes in the q coordinate (:func:`_g_tab`).
G_TAB = "C2 quintic Hermite through g_fine at the table's (x, v) nodes (version 8)"
#: The box edge g_max(W0, ra) between the table's nodes (:func:`_g_edge`).
G_EDGE = ("g_tab up to the table's second v node, blended into g_fine by a C2 smoothstep up "
          "to its fourth (version 10)")
G_MAX_TABLE_NAME = "g_max_aniso.npz"
G_MAX_TABLE_VERSION = 3
#: The box in s stops where g_max(W0, s) has fallen to about this value: closer to the cliff
#: (g_max -> 0 as ra falls) the models change too fast with ra for the table (rt ~ 1e5 r0).
G_FLOOR = 0.8
N_SCALARS = 7
N_SERIES = 6  # W, ln GM, Sigma, Sigma v2p, Sigma v2R, Sigma v2T
#: Below this s (ra > 1e99 r0) the model is isotropic to double precision.
_S_ISO = 0.01
#: The anisotropic edge of the box, s_max(W0) = (1 + (W0 / S_MAX_C)^S_MAX_P)^(-1 / S_MAX_P): a
#: smooth (analytic) curve below s_crit(W0) - 0.02 at every W0 (see :func:`s_max`).
S_MAX_C = 3.95
S_MAX_P = 6.0
#: The g_max table's coordinate along anisotropy (and the emulator table's up to version 2):
#: u = sin(V_A v) / sin(V_A), v uniform in [0, 1]; the nodes are ~6 times denser in u at the
#: anisotropic edge (u = 1) than at isotropy (u = 0). See :func:`v_from_u`.
V_A = 1.4
#: The emulator table's coordinate along anisotropy (version 3, :func:`v_from_ra`): log10 of
#: the scale R(W0) [r0] = R_C0 + R_C1 W0 + R_C2 tanh((W0 - R_W1) / R_DW), and the stretch
#: TAB_A of v (nodes 2.2 times denser at ra_min than at isotropy).
R_C0, R_C1, R_C2, R_W1, R_DW = 1.27, 0.111, 0.79, 6.7, 1.83
TAB_A = 1.1
#: The coordinate maps as recorded in a table's metadata (load_aniso_table checks them).
W_MAP = {"q_from_w": "emulator.q_from_w", "slope_at_zero": Q_SLOPE_AT_ZERO}
V_MAP = {"R_log10": [R_C0, R_C1, R_C2, R_W1, R_DW], "A": TAB_A}
_DATA = Path(__file__).resolve().parents[1] / "data"


# ----------------------------------------------------------------------------- coordinates


def s_from_ra(ra):
    """s = 1 / (1 + log10 ra) (ra in r0; inf -> 0). NaN for ra <= 0.1 r0 is avoided: values
    there come out negative or infinite and are flagged by the caller."""
    ra = jnp.asarray(ra, float)
    finite = jnp.isfinite(ra) & (ra > 0)
    ra_safe = jnp.where(finite, ra, 10.0)
    return jnp.where(finite, 1.0 / (1.0 + jnp.log10(ra_safe)), jnp.where(ra > 0, 0.0, jnp.nan))


def ra_from_s_np(s) -> float:
    """ra = 10^(1/s - 1) [r0] (inf at s = 0); plain Python, for scripts."""
    s = float(s)
    return math.inf if s <= 1.0 / 301.0 else 10.0 ** (1.0 / s - 1.0)


def _inv_ra2(ra):
    """1 / ra^2, 0 for ra = inf, differentiable in ra."""
    finite = jnp.isfinite(ra)
    ra_safe = jnp.where(finite, ra, 1.0)
    return jnp.where(finite, 1.0 / ra_safe**2, 0.0)


# ----------------------------------------------------------------------------- C1 cubic


@functools.cache
def _fd_matrix(n: int) -> np.ndarray:
    """(n, n) first-derivative matrix (times the node spacing) on a uniform grid: central
    five-point stencils (fourth order) inside, six-point stencils (fifth order) on the first
    and last two nodes, which stay within the end cells' 6-node windows.

    Five-point one-sided stencils at the ends (up to table version 8's first measurement)
    have a 6 times larger error constant than the central ones, and the end cells erred
    most: along v at 6 lines through the last corner (exact solves at the midpoints of the
    last 6 cells before ra_min), W's error to 0.99 rt in the last two cells fell from up to
    1.6e-4 / 1.9e-4 to 1.1e-4 / 6.1e-5, the cells further in unchanged."""
    if n < 6:
        raise ValueError(f"a table axis needs at least 6 nodes, got {n}")
    d = np.zeros((n, n))
    for i in range(n):
        width = 5 if 2 <= i <= n - 3 else 6
        lo = min(max(i - 2, 0), n - width)
        offsets = np.arange(lo, lo + width) - i
        vander = np.vander(offsets.astype(float), width, increasing=True).T  # rows: powers
        rhs = np.zeros(width)
        rhs[1] = 1.0
        d[i, lo:lo + width] = np.linalg.solve(vander, rhs)
    return d


@functools.cache
def _hermite_stencils(n: int):
    """Per cell i: the first node of its 6-node window and the (4, 6) weights of
    (f_i, f_{i+1}, h f'_i, h f'_{i+1}) on that window."""
    d = _fd_matrix(n)
    eye = np.eye(n)
    starts = np.clip(np.arange(n - 1) - 2, 0, n - 6)
    weights = np.zeros((n - 1, 4, 6))
    for i in range(n - 1):
        k = starts[i]
        for b, row in enumerate([eye[i], eye[i + 1], d[i], d[i + 1]]):
            outside = np.delete(row, np.arange(k, k + 6))
            assert not np.any(outside), (n, i, b)
            weights[i, b] = row[k:k + 6]
    return starts.astype(np.int32), weights


def _cell(x, x0: float, h: float, n: int):
    """Cell index i (0 .. n - 2) of x on the grid x0 + h * arange(n) and t = (x - x_i) / h."""
    y = (x - x0) / h
    i = jnp.clip(jnp.floor(y), 0, n - 2).astype(jnp.int32)
    return i, y - i


def hermite_weights(x, x0: float, h: float, n: int):
    """(start, weights): f(x) = sum_k weights[k] f[start + k] for the C1 cubic Hermite
    interpolant on the uniform grid x0 + h * arange(n) (x inside the grid; slopes by fourth-
    order finite differences). Differentiable in x; its slope is continuous across nodes."""
    starts, stencils = _hermite_stencils(n)
    i, t = _cell(x, x0, h, n)
    t2 = t * t
    t3 = t2 * t
    basis = jnp.stack([2 * t3 - 3 * t2 + 1, 3 * t2 - 2 * t3, t3 - 2 * t2 + t, t3 - t2])
    return jnp.asarray(starts)[i], basis @ jnp.asarray(stencils)[i]


# ----------------------------------------------------------------------------- C2 quintic
#: Stencil width of the quintic's node derivatives (sixth order) and its window per cell.
_Q_STENCIL = 7
_Q_WINDOW = 8


@functools.cache
def _fd_matrix_q(n: int, deriv: int) -> np.ndarray:
    """(n, n) matrix of the deriv-th derivative (times h^deriv) at the nodes of a uniform grid,
    from seven-point stencils (central inside, one-sided at the ends)."""
    if n < _Q_WINDOW:
        raise ValueError(f"a quintic axis needs at least {_Q_WINDOW} nodes, got {n}")
    d = np.zeros((n, n))
    for i in range(n):
        lo = min(max(i - _Q_STENCIL // 2, 0), n - _Q_STENCIL)
        offsets = np.arange(lo, lo + _Q_STENCIL) - i
        vander = np.vander(offsets.astype(float), _Q_STENCIL, increasing=True).T
        rhs = np.zeros(_Q_STENCIL)
        rhs[deriv] = math.factorial(deriv)
        d[i, lo:lo + _Q_STENCIL] = np.linalg.solve(vander, rhs)
    return d


@functools.cache
def _quintic_stencils(n: int):
    """Per cell i: the first node of its 8-node window and the (6, 8) weights of
    (f_i, f_{i+1}, h f'_i, h f'_{i+1}, h^2 f''_i, h^2 f''_{i+1}) on that window."""
    d1, d2 = _fd_matrix_q(n, 1), _fd_matrix_q(n, 2)
    eye = np.eye(n)
    starts = np.clip(np.arange(n - 1) - 3, 0, n - _Q_WINDOW)
    weights = np.zeros((n - 1, 6, _Q_WINDOW))
    for i in range(n - 1):
        k = starts[i]
        rows = [eye[i], eye[i + 1], d1[i], d1[i + 1], d2[i], d2[i + 1]]
        for b, row in enumerate(rows):
            assert not np.any(np.delete(row, np.arange(k, k + _Q_WINDOW))), (n, i, b)
            weights[i, b] = row[k:k + _Q_WINDOW]
    return starts.astype(np.int32), weights


def quintic_weights(x, x0: float, h: float, n: int):
    """(start, weights) as :func:`hermite_weights`, for the C2 quintic Hermite interpolant
    whose node slopes and curvatures are sixth-order finite differences: O(h^6) where the
    function is smooth (used for g_max, whose interpolation error enters ln rt amplified)."""
    starts, stencils = _quintic_stencils(n)
    i, t = _cell(x, x0, h, n)
    t2 = t * t
    t3 = t2 * t
    t4 = t3 * t
    t5 = t4 * t
    basis = jnp.stack([
        1 - 10 * t3 + 15 * t4 - 6 * t5, 10 * t3 - 15 * t4 + 6 * t5,
        t - 6 * t3 + 8 * t4 - 3 * t5, -4 * t3 + 7 * t4 - 3 * t5,
        0.5 * t2 - 1.5 * t3 + 1.5 * t4 - 0.5 * t5, 0.5 * t3 - t4 + 0.5 * t5,
    ])
    return jnp.asarray(starts)[i], basis @ jnp.asarray(stencils)[i]


def _interp_nd(f, axes, point, weights_fn=hermite_weights):
    """Tensor-product interpolation of f[i0, i1, ..., values] at `point`: C1 cubic Hermite
    (default) or C2 quintic Hermite (``weights_fn=quintic_weights``)."""
    starts, weights = zip(*(weights_fn(p, *ax) for p, ax in zip(point, axes, strict=True)),
                          strict=True)
    nd = len(axes)
    width = weights[0].shape[-1]
    block = jax.lax.dynamic_slice(f, (*starts, jnp.int32(0)), (width,) * nd + (f.shape[-1],))
    block = block.astype(float).reshape(width**nd, f.shape[-1])
    # one matrix-vector product with the outer product of the weights: 3.5x faster in value
    # and gradient than nd successive tensordots (measured: 500 -> 170 us per reverse-mode
    # gradient of a 6 x 6 x 6 x 391 block on this CPU)
    outer = weights[0]
    for w in weights[1:]:
        outer = (outer[..., None] * w).reshape(-1)
    return outer @ block


def hermite_stack(f: np.ndarray, axes, dtype=np.float32) -> np.ndarray:
    """The node values of f[x, w, v, values] and their finite-difference derivatives (times
    the node spacing, :func:`_fd_matrix`) in every combination of the three axes (computed in
    float64, stored as dtype): shape (nx, nw, nv, 8, n_values), index 4 dx + 2 dw + dv on
    axis 3.

    With these, the tensor-product C1 cubic Hermite interpolant of :func:`_interp_nd` reads
    only the 2 x 2 x 2 nodes of its cell (64 rows, :func:`_interp_stack`) instead of the
    6 x 6 x 6 nodes its slopes' stencils span (216 rows), at 8 times the memory.
    """
    d = [_fd_matrix(n) for (_, _, n) in axes]
    f = np.asarray(f, dtype=np.float64)
    parts = []
    for dx in (0, 1):
        a = np.tensordot(d[0], f, axes=(1, 0)) if dx else f
        for dw in (0, 1):
            b = np.moveaxis(np.tensordot(d[1], a, axes=(1, 1)), 0, 1) if dw else a
            for dv in (0, 1):
                c = np.moveaxis(np.tensordot(d[2], b, axes=(1, 2)), 0, 2) if dv else b
                parts.append(c.astype(dtype))
    return np.stack(parts, axis=3)


def _hermite_basis(x, x0: float, h: float, n: int):
    """Cell index i of x, and the (2, 2) cubic Hermite basis [node i, i + 1] x [value, h
    slope] at x and its derivative in x."""
    i, t = _cell(x, x0, h, n)
    t2 = t * t
    t3 = t2 * t
    basis = jnp.stack([jnp.stack([2 * t3 - 3 * t2 + 1, t3 - 2 * t2 + t]),
                       jnp.stack([3 * t2 - 2 * t3, t3 - t2])])
    slope = jnp.stack([jnp.stack([6 * t2 - 6 * t, 3 * t2 - 4 * t + 1]),
                       jnp.stack([6 * t - 6 * t2, 3 * t2 - 2 * t])]) / h
    return i, basis, slope


def _cell_weights(bx, bw, bv):
    """The 64 weights of a cell's rows (8 nodes x 8 derivatives, as hermite_stack): the outer
    product of the three axes' (2, 2) bases."""
    return (bx[:, None, None, :, None, None] * bw[None, :, None, None, :, None]
            * bv[None, None, :, None, None, :]).reshape(-1)


def _cell_block(stack, indices):
    """The 64 rows of the cell with first node (i, j, k) = indices: (8 nodes x 8 derivatives,
    n_values)."""
    n_d, n_values = stack.shape[-2:]
    zero = jnp.int32(0)
    block = jax.lax.dynamic_slice(stack, (*indices, zero, zero), (2, 2, 2, n_d, n_values))
    return block.reshape(8 * n_d, n_values)


def _cell_sums_one(stack, i, j, k, weights):
    """sum over the 64 rows of the cell at (i, j, k) with each row of weights (n_sums, 64) as
    weights: (n_sums, n_values), float64."""
    block = _cell_block(stack, (i, j, k))
    sums = []
    for w in weights:
        # an unrolled sum of the rows (one fused element-wise pass): on this CPU 11 us for one
        # model and 6 us per model in a batch; XLA's dot of float64 weights with the rows took
        # 11 / 42 us, and a product-and-reduce 45 / 10 us
        total = w[0] * block[0]
        for row in range(1, block.shape[0]):
            total = total + w[row] * block[row]
        sums.append(total)
    return jnp.stack(sums)


#: Models per chunk when a batch reads its cells (see _cell_sums_rule).
_CELL_CHUNK = 32


def _cell_sums_rule(axis_size, in_batched, stack, i, j, k, weights):
    # Batched, the cells of all models (149 kB each: 64 rows of 583 float32) were gathered
    # into one array before the sums: 30 MB for 200 models, most of XLA's temporary memory,
    # which glibc hands back to the system after each call, so that every call faulted its
    # pages in again. Chunks of models keep the gathered cells small and reused (batch of
    # 200 anisotropic models, full evaluation at 100 radii: 57 -> 38 - 41 us per model for
    # chunks of 8 - 50, the same as with glibc keeping its heap, MALLOC_TOP_PAD_).
    if in_batched[0] or jax.default_backend() != "cpu":  # one pass over the whole batch
        axes = tuple(0 if b else None for b in in_batched)
        return jax.vmap(_cell_sums_one, in_axes=axes)(stack, i, j, k, weights), True
    args = tuple(x if b else jnp.broadcast_to(x, (axis_size, *jnp.shape(x)))
                 for x, b in zip((i, j, k, weights), in_batched[1:], strict=True))
    return jax.lax.map(lambda a: _cell_sums_one(stack, *a), args,
                       batch_size=min(_CELL_CHUNK, axis_size)), True


_cell_sums = custom_vmap(_cell_sums_one)
_cell_sums.def_vmap(_cell_sums_rule)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _interp_stack(stack, axes, x, w, v):
    """:func:`_interp_nd` of the f behind ``stack = hermite_stack(f, axes)`` at the point
    (x, w, v): the same interpolant, from the 64 rows of the point's cell (float32 as stored,
    derivatives rounded once: equal to the float64 interpolant to ~3e-8 of the rows), summed
    in float64. Differentiable in the point (not in the table)."""
    cells = [_hermite_basis(p, *ax) for p, ax in zip((x, w, v), axes, strict=True)]
    weights = _cell_weights(*(basis for _, basis, _ in cells))
    return _cell_sums(stack, *(i for i, _, _ in cells), weights[None])[0]


@functools.partial(_interp_stack.defjvp, symbolic_zeros=True)
def _interp_stack_jvp(axes, primals, tangents):
    # the derivative along each axis is the same sum with that axis' basis differentiated:
    # three more element-wise passes over the cell read once, whose transposes are dot
    # products (autodiff of the sum transposed it into 64 reductions, 2x the cost of the
    # whole model)
    stack, *point = primals
    _, *d_point = tangents
    cells = [_hermite_basis(p, *ax) for p, ax in zip(point, axes, strict=True)]
    bases = [basis for _, basis, _ in cells]
    moving = [axis for axis, dp in enumerate(d_point) if not isinstance(dp, SymbolicZero)]
    weights = [_cell_weights(*bases)]
    for axis in moving:
        weights.append(_cell_weights(*[slope if a == axis else basis
                                       for a, (_, basis, slope) in enumerate(cells)]))
    sums = _cell_sums(stack, *(i for i, _, _ in cells), jnp.stack(weights))
    value = sums[0]
    tangent = jnp.zeros_like(value)
    for n, axis in enumerate(moving):
        tangent = tangent + sums[n + 1] * d_point[axis]
    return value, tangent


def _uniform_axis(name: str, nodes) -> UniformAxis:
    # six nodes: the five-point slope stencils of _fd_matrix
    return uniform_axis(name, nodes, min_nodes=6)


# ----------------------------------------------------------------------------- files


def array_hash(arrays: dict) -> str:
    """SHA-256 of the arrays (sorted by name; values as float64)."""
    digest = hashlib.sha256()
    for key in sorted(arrays):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(np.asarray(arrays[key], dtype=np.float64)).tobytes())
    return digest.hexdigest()


def save_npz(path: Path, arrays: dict, meta: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, meta=np.asarray(json.dumps(meta)), **arrays)


def _read(path: Path, keys: list[str], script: str):
    def error(what):
        return ValueError(f"anisotropic emulator table {path}: {what}. Rebuild it with "
                          f"`python {script}`.")

    if not path.is_file():
        raise error("file not found")
    try:
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {k: np.asarray(data[k]) for k in keys}
    except Exception as err:  # noqa: BLE001 -- any read failure is a corrupt table
        raise error(f"cannot be read ({err})") from None
    if meta.get("sha256") != array_hash(arrays):
        raise error("its arrays do not match the SHA-256 in its metadata (corrupt or edited)")
    return meta, arrays, error


# ----------------------------------------------------------------------------- the box


class _GMaxTable(NamedTuple):
    g_max: np.ndarray
    x_axis: tuple
    v_axis: tuple
    sha256: str


@functools.lru_cache(maxsize=1)
def _g_max_table() -> _GMaxTable:
    path = _DATA / G_MAX_TABLE_NAME
    script = "scripts/build_g_max_aniso_table.py"
    meta, arrays, error = _read(path, ["x_nodes", "v_nodes", "g_max"], script)
    if meta.get("table_version") != G_MAX_TABLE_VERSION:
        raise error(f"layout version {meta.get('table_version')}, this code reads "
                    f"{G_MAX_TABLE_VERSION}")
    if meta.get("s_max") != [S_MAX_C, S_MAX_P] or meta.get("v_a") != V_A:
        raise error("its s_max(W0) or u(v) parameters are not this code's")
    x = arrays["x_nodes"]
    if not (np.isclose(x[0] ** 2, W0_MIN) and np.isclose(x[-1] ** 2, W0_MAX)):
        raise error(f"its W0 range [{x[0]**2}, {x[-1]**2}] is not the box [{W0_MIN}, {W0_MAX}]")
    return _GMaxTable(
        g_max=arrays["g_max"], x_axis=_uniform_axis("x", x),
        v_axis=_uniform_axis("v", arrays["v_nodes"]), sha256=meta["sha256"],
    )


def s_max(W0) -> jax.Array:
    """Largest s = 1 / (1 + log10 ra) in the box at W0: (1 + (W0 / 3.95)^6)^(-1/6), i.e. 1
    (ra = r0) for W0 <~ 2.5 and ~3.95 / W0 above W0 ~ 6, a smooth curve below s_crit(W0) -
    0.02 (where g_max(W0, s) = G_FLOOR), which is itself ~4.2 / W0 at W0 >~ 4.5 and > 1 below
    W0 ~ 4 (the bisected s_crit nodes, in the g_max table's metadata). Analytic so that the
    table coordinate u = s / s_max(W0) has no kink or noise in W0 (jit-able)."""
    W0 = jnp.clip(jnp.asarray(W0, float), W0_MIN, W0_MAX)
    return (1.0 + (W0 / S_MAX_C) ** S_MAX_P) ** (-1.0 / S_MAX_P)


def x_from_w0(W0):
    """Table coordinate along W0: x = sqrt(W0) (nodes denser at small W0, where the models
    change fastest)."""
    return jnp.sqrt(W0)


def v_from_u(u):
    """Table coordinate along anisotropy: v = arcsin(u sin V_A) / V_A (smooth on [0, 1])."""
    return jnp.arcsin(u * math.sin(V_A)) / V_A


def w_from_q(q):
    """Table coordinate along g: the isotropic table's (:func:`emulator.w_from_q`; since table
    version 5), nodes 3 times denser in q at g = 0 and uniform in q at the g_max edge."""
    return _w_from_q_iso(q)


def q_from_w(w):
    """Inverse of :func:`w_from_q`."""
    return _q_from_w_iso(w)


def u_from_v(v):
    """Inverse of :func:`v_from_u`."""
    return jnp.sin(V_A * jnp.asarray(v, float)) / math.sin(V_A)


def ra_min(W0) -> jax.Array:
    """Smallest anisotropy radius [r0] in the box at W0 (~r0 at W0 <~ 2.5, 350 r0 at 14)."""
    return 10.0 ** (1.0 / s_max(W0) - 1.0)


# The table's v coordinate (version 3). Anisotropy enters the models through (r / ra)^2, and
# it changes them once ra falls to a W0-dependent scale R(W0) of the cluster (an empirical
# fit of where rt starts to change with ra: 3.4 r0 at W0 = 0.5, 100 r0 at 6.7, 4e3 r0 at 14).
# y = ln(1 + (R / ra)^2) / ln(1 + k^2), k = R / ra_min, is 0 at isotropy and 1 at ra_min and,
# unlike u = s / s_max, spreads the turn of the models with ra over many cells: in a design
# study (dense exact samples along v at fixed (W0, q), W0 = 0.5 - 14), the worst error of the
# cubic along v in ln rt was 1.3e-2 with 13 nodes in u (the version-2 table), 2.5e-3 with 19,
# and 6.4e-5 with 19 nodes in this v (2.2e-4 with 13).
# v = arcsin(y sin TAB_A) / TAB_A puts 2.2 times more nodes near ra_min.


def aniso_scale(W0) -> jax.Array:
    """The anisotropy scale R(W0) [r0] of the table's v coordinate (see :func:`v_from_ra`)."""
    W0 = jnp.asarray(W0, float)
    return 10.0 ** (R_C0 + R_C1 * W0 + R_C2 * jnp.tanh((W0 - R_W1) / R_DW))


def _ln1pk2(W0):
    """ln(1 + k^2), k = R(W0) / ra_min(W0): the value of ln(1 + (R / ra)^2) at ra_min."""
    return jnp.log1p((aniso_scale(W0) / ra_min(W0)) ** 2)


def v_from_ra(W0, ra):
    """The table's coordinate along anisotropy: v = arcsin(y sin TAB_A) / TAB_A with
    y = ln(1 + (R(W0) / ra)^2) / ln(1 + k^2) (0 at ra = inf, exactly and with every
    derivative in ra; 1 at ra = ra_min(W0)). Not clipped."""
    y = jnp.log1p(aniso_scale(W0) ** 2 * _inv_ra2(jnp.asarray(ra, float))) / _ln1pk2(W0)
    return jnp.arcsin(y * math.sin(TAB_A)) / TAB_A


def ra_from_v(W0, v):
    """Inverse of :func:`v_from_ra` in closed form: ra = R / sqrt(expm1(y ln(1 + k^2))),
    y = sin(TAB_A v) / sin(TAB_A); inf at v = 0 (used by the table builder)."""
    y = jnp.sin(TAB_A * jnp.asarray(v, float)) / math.sin(TAB_A)
    t = jnp.expm1(y * _ln1pk2(W0))
    return jnp.where(t > 0, aniso_scale(W0) / jnp.sqrt(jnp.where(t > 0, t, 1.0)), jnp.inf)


def _v_g_max(W0, ra):
    """The g_max table's v coordinate (old: u = s / s_max(W0) with V_A) at (W0, ra) in the box."""
    return v_from_u(jnp.clip(s_from_ra(ra) / s_max(W0), 0.0, 1.0))


def _g_max_xv(x, v):
    tab = _g_max_table()
    return _interp_nd(jnp.asarray(tab.g_max)[..., None], (tab.x_axis, tab.v_axis), (x, v),
                      weights_fn=quintic_weights)[0]


def _g_max_u(W0, u):
    return _g_max_xv(x_from_w0(W0), v_from_u(u))


def g_max_aniso(W0, ra, table: AnisoTable | None = None) -> jax.Array:
    """g_max(W0, ra) inside the box: the emulator's edge of the finite family (rt < 1e6 r0;
    ra = inf isotropic), a C2 quintic interpolant of the g_max table, near isotropy of its
    values at the emulator table's nodes (:func:`_g_edge`; ``table`` default: the shipped
    one, of which only the node values and grid are read)."""
    table = load_aniso_table() if table is None else table
    W0 = jnp.clip(jnp.asarray(W0, float), W0_MIN, W0_MAX)
    u = jnp.clip(s_from_ra(ra) / s_max(W0), 0.0, 1.0)
    x = x_from_w0(W0)
    v = jnp.clip(v_from_ra(W0, ra), 0.0, 1.0)
    return _g_tab_and_edge(table.g_max_nodes, table.axes, x, v, _g_max_u(W0, u))[1]


def g_hi_aniso(W0, ra, table: AnisoTable | None = None) -> jax.Array:
    """Upper edge of the box in g at (W0, ra): g_max(W0, ra) - 0.05."""
    return g_max_aniso(W0, ra, table) - G_MARGIN


# ----------------------------------------------------------------------------- packing


def pack_scalars(model, rhp):
    """The tabulated scalars of a solved (model-units) model."""
    return jnp.stack([
        model.ln_rt, jnp.log(model.rh_model), jnp.log(model.gm_model), jnp.log(-model.U_model),
        jnp.log(model.K_model), jnp.log(model.Kr_model), jnp.log(rhp),
    ])


def edge_log_factors(g, z):
    """ln of the edge factors of the four projected series at z = (R / ra)^2 W(R): shape (4,)
    + z.shape, for Sigma, Sigma v2p, Sigma v2R, Sigma v2T; all 0 at z = 0 (isotropic).

    Near rt, where W -> 0, E_h(W) ~ W^h / Gamma(h + 1), so the moments J^m_h(W, p^2)
    (``moments.py``) tend to W^(h+1+m) M(1 + m, h + 2 + m, -p^2 W) and their projections, with
    W(r) ~ W(R) - a z^2 along the line of sight, to W(R)^(h+3/2+m) M(1 + m, h + 5/2 + m,
    -p^2 W(R)): Sigma ~ W^(g+2) M(1, g+3, -z), the radial component Sigma v2R ~ W^(g+3) M(1,
    g+4, -z), the tangential ones (v2T, and v2p, the line of sight being tangential at the edge)
    ~ W^(g+3) M(2, g+4, -z). With r >> ra the models turn from rho ~ W^(g+1/2) / p^2 to W^(g+3/2)
    where W ~ 1 / p^2, within ~1e-4 rt of rt; the powers of W alone left that turn in the series
    (worst draw of version 6, W0 4.44, g 1.62, ra 1.77 r0, rt 298 r0: its own exact row at 96
    nodes erred 1.0e-3 in Sigma at 0.99 rt; 6.8e-6 with these factors, the projected
    dispersions at most 1.4e-5).
    """
    m1 = _kummer_m1(jnp.stack([g + 3.0, g + 4.0]).reshape((2,) + (1,) * jnp.ndim(z)), z)
    ln_m = jnp.log(jnp.stack([m1[0], m1[1], _kummer_m2(g + 4.0, z)]))  # one log per factor
    return jnp.stack([ln_m[0], ln_m[2], ln_m[1], ln_m[2]])


def pack(w, ln_gm, proj, g, scalars, r_over_rt, p2):
    """One table row: [ln(W/(1 - r/rt)), ln GM, ln(Sigma/W^(g+2)), ln(Sigma v2{p,R,T}/W^(g+3)),
    each projected series minus its :func:`edge_log_factors`, scalars] (projections at R = r;
    p2 = (r / ra)^2)."""
    ln_w = jnp.log(w)
    edge = edge_log_factors(g, p2 * w)
    return jnp.concatenate([
        ln_w - jnp.log1p(-r_over_rt), ln_gm, jnp.log(proj.Sigma) - (g + 2.0) * ln_w - edge[0],
        jnp.log(proj.Sigma * proj.v2p) - (g + 3.0) * ln_w - edge[1],
        jnp.log(proj.Sigma * proj.v2R) - (g + 3.0) * ln_w - edge[2],
        jnp.log(proj.Sigma * proj.v2T) - (g + 3.0) * ln_w - edge[3], scalars,
    ])


def unpack(row, n_tau):
    """Split a row into the six node series (6, n_tau) and the scalars."""
    return row[:N_SERIES * n_tau].reshape(N_SERIES, n_tau), row[N_SERIES * n_tau:]


# ----------------------------------------------------------------------------- the table


class AnisoTable(eqx.Module):
    """The loaded table f[x, w, v, values] (x = sqrt(W0), w of q: :func:`w_from_q`, v:
    :func:`v_from_ra`) of residuals against the isotropic companion
    (:func:`isotropic_companion`), as its :func:`hermite_stack`; the residual of ln rt on
    its finer grid, and the isotropic table itself."""

    # hermite_stack(f, axes), float32, (nx, nw, nv, 8, row length). Node values, not Chebyshev
    # coefficients as in the isotropic table: rounded to float32, coefficients erred by up to
    # 4e-6 near rt (an absolute error along tau), node values by 3e-8 (relative per node)
    stack: jax.Array
    cheb_matrix: jax.Array
    # (iso.n_tau, n_tau): T_j(2 tau_k - 1), the isotropic companion's W series at tau_nodes
    # (its coefficients times this), and its transpose (see matmul_constant)
    node_matrix: jax.Array
    node_matrix_t: jax.Array
    rt_fine: jax.Array  # residual of ln rt on the grid RT_REFINEMENT times finer
    tau_nodes: jax.Array
    g_max_nodes: jax.Array  # g_fine at the table's (x, v) nodes (for :func:`_g_max_ref`)
    g_rt_nodes: jax.Array  # g of the models at rt_fine's nodes (:func:`_w_at_model_g`)
    iso: EmulatorTable
    axes: tuple = eqx.field(static=True)  # (x0, h, n) for x = sqrt(W0), w (of q), v
    rt_axes: tuple = eqx.field(static=True)  # the same for rt_fine
    n_tau: int = eqx.field(static=True)
    meta: str = eqx.field(static=True)

    @property
    def metadata(self) -> dict:
        return json.loads(self.meta)


def isotropic_companion(iso: EmulatorTable, W0, g):
    """The isotropic model at the same (W0, g), from the isotropic table: (Chebyshev
    coefficients (N_SERIES, iso.n_tau) of the six series of :func:`pack` in tau, the scalars
    (N_SCALARS,) of :func:`pack_scalars`). For it v2R = v2T = v2p and Kr = K / 3.

    The anisotropic table stores each model minus this companion: the two agree exactly at
    ra = inf (v = 0), and nearly isotropic models (most of the box in ra) differ from it by a
    small, smooth residual, so that there the anisotropic table inherits the accuracy of the
    isotropic one (its grid 3 times finer in W0 and 2.6 times in g, its scalars 3 times finer
    again). Measured on the version-3 table's own nodes (300 draws): ln rt errors median
    6.4e-7 -> 5.0e-8, max 1.1e-4 -> 3.7e-5. A companion at the same q instead (the same
    distance from its own g_max) was worse where g_max(W0) has its minimum (W0 ~ 8 - 9).
    Anisotropy lowers g_max, so g <= g_max(W0, ra) - 0.05 lies in the isotropic box; g is
    clipped to it all the same (the table and the emulator use the same function)."""
    gm = iso.g_max(W0)
    g_iso = jnp.clip(g, 0.0, gm - G_MARGIN)
    w = _w_from_q_iso(jnp.clip(q_from_g(g_iso, gm), 0.0, 1.0))
    coef = iso.rows(W0, w).reshape(4, iso.n_tau)
    sc = iso.scalars(W0, w)
    series = jnp.stack([coef[0], coef[1], coef[2], coef[3], coef[3], coef[3]])
    scalars = jnp.stack([sc[0], sc[1], sc[2], sc[3], sc[4], sc[4] - math.log(3.0), sc[5]])
    return series, scalars


def companion_row(iso: EmulatorTable, W0, g, tau_nodes):
    """:func:`isotropic_companion` as a table row (series at tau_nodes, as :func:`pack`)."""
    series, scalars = isotropic_companion(iso, W0, g)
    values = _chebyshev(jnp.asarray(tau_nodes, float)[:, None], series).T  # (N_SERIES, n_tau)
    values = values.at[0].set(jnp.log(values[0]))  # the W series is a logarithm (pack)
    return jnp.concatenate([values.ravel(), scalars])


def make_metadata(arrays: dict, **extra) -> dict:
    import dastro

    return {
        "table_version": TABLE_VERSION,
        "dastro_version": dastro.__version__,
        "box": {"W0": [W0_MIN, W0_MAX], "g": f"[0, g_max(W0, ra) - {G_MARGIN}]",
                "ra": "[ra_min(W0), inf] (s = 1/(1 + log10 ra) in [0, s_max(W0)])"},
        "grid": "x = sqrt(W0); q = emulator.q_from_w(w) (w_map); v = arcsin(y sin A) / A, "
                "y = ln(1 + (R/ra)^2) / ln(1 + (R/ra_min)^2), "
                "log10 R = c0 + c1 W0 + c2 tanh((W0 - W1) / dW) (v_map)",
        "v_map": V_MAP,
        "shape": list(np.shape(arrays["f"])),
        "dtype": str(np.asarray(arrays["f"]).dtype),
        "sha256": array_hash(arrays),
        "g_max_sha256": _g_max_table().sha256,
        "g_edge": G_EDGE,
        "made_by": "scripts/build_cluster_aniso_table.py",
        "w_map": W_MAP,
        "rows": "model minus isotropic_companion (same W0, g)",
        "g_tab": G_TAB,
        "node_slopes": NODE_SLOPES,
        "rt_refinement": RT_REFINEMENT,
        "iso_table_sha256": load_table().metadata["sha256"],
        **extra,
    }


@functools.lru_cache(maxsize=4)
def load_aniso_table(path: str | Path | None = None) -> AnisoTable:
    """Read and check the anisotropic emulator table (cached: read once per process).

    Raises:
        ValueError: the file is missing, unreadable, of another layout version, its arrays
            do not match the hash in its metadata, or it was built with another g_max table.
    """
    path = Path(path) if path is not None else _DATA / TABLE_NAME
    meta, arrays, error = _read(path, ["x_nodes", "w_nodes", "v_nodes", "tau_nodes", "f",
                                       "rt_fine"], "scripts/build_cluster_aniso_table.py")
    if meta.get("table_version") != TABLE_VERSION:
        raise error(f"layout version {meta.get('table_version')} but this code reads "
                    f"version {TABLE_VERSION}")
    if meta.get("g_max_sha256") != _g_max_table().sha256:
        raise error(f"it was built with another g_max table (dastro/data/{G_MAX_TABLE_NAME})")
    n_tau = len(arrays["tau_nodes"])
    if arrays["f"].shape[-1] != N_SERIES * n_tau + N_SCALARS:
        raise error(f"rows have {arrays['f'].shape[-1]} values, expected "
                    f"{N_SERIES * n_tau + N_SCALARS}")
    iso = load_table()
    if meta.get("iso_table_sha256") != iso.metadata["sha256"]:
        raise error("it was built against another isotropic table (its rows are residuals "
                    f"against the isotropic companion; dastro/data/{ISO_TABLE_NAME})")
    if iso.n_tau < n_tau:
        raise error(f"its {n_tau} tau nodes exceed the isotropic table's {iso.n_tau}")
    for key, expected in (("w_map", W_MAP), ("v_map", V_MAP)):
        if meta.get(key) != expected:
            raise error(f"its {key[0]} coordinate is {meta.get(key)}, this code's {expected}")
    axes = tuple(_uniform_axis(k, arrays[k + "_nodes"]) for k in ("x", "w", "v"))
    k = meta.get("rt_refinement")
    fine_shape = tuple(k * (n - 1) + 1 for (_, _, n) in axes) if k else None
    if k != RT_REFINEMENT or arrays["rt_fine"].shape != fine_shape:
        raise error(f"its ln rt grid {arrays['rt_fine'].shape} (refinement {k}) is not the "
                    f"{RT_REFINEMENT} times finer grid this code reads")
    rt_axes = tuple((x0, h / k, n_fine) for (x0, h, _), n_fine in zip(axes, fine_shape,
                                                                        strict=True))
    x_end = axes[0][0] + axes[0][1] * (axes[0][2] - 1)
    if not (np.isclose(axes[0][0] ** 2, W0_MIN) and np.isclose(x_end**2, W0_MAX)):
        raise error("its W0 nodes do not span the box")
    xv = np.meshgrid(arrays["x_nodes"], arrays["v_nodes"], indexing="ij")
    # g_fine at the table's nodes: the g_max table has its own (x, old v) grid
    # jitted, not op by op (that took 5 s and 12 s)
    g_nodes = np.asarray(jax.jit(jax.vmap(_g_max_table_node))(
        jnp.asarray(xv[0].ravel()), jnp.asarray(xv[1].ravel())))
    g_rt_nodes = np.asarray(_model_g_grid(jnp.asarray(g_nodes.reshape(xv[0].shape)), axes,
                                          rt_axes))
    node_matrix = np.polynomial.chebyshev.chebvander(2.0 * arrays["tau_nodes"] - 1.0,
                                                     iso.n_tau - 1).T
    return AnisoTable(
        stack=jnp.asarray(hermite_stack(arrays["f"], axes)),
        cheb_matrix=jnp.asarray(chebyshev_coefficient_matrix(n_tau)),
        node_matrix=jnp.asarray(node_matrix), node_matrix_t=jnp.asarray(node_matrix.T.copy()),
        rt_fine=jnp.asarray(arrays["rt_fine"], float),
        tau_nodes=jnp.asarray(arrays["tau_nodes"], float),
        g_max_nodes=jnp.asarray(g_nodes.reshape(xv[0].shape)), iso=iso, axes=axes,
        g_rt_nodes=jnp.asarray(g_rt_nodes),
        rt_axes=rt_axes, n_tau=n_tau, meta=json.dumps(meta),
    )


@functools.partial(jax.jit, static_argnames=("axes", "rt_axes"))
def _model_g_grid(g_max_nodes, axes, rt_axes) -> jax.Array:
    """g of the models at the nodes of ln rt's finer grid, (nx, nw, nv) on rt_axes: g_from_q(q,
    _g_max_ref(g_tab, q, _g_edge(...))), as scripts/build_cluster_aniso_table.py solved them."""
    (x0, hx, nx), (w0, hw, nw), (v0, hv, nv) = rt_axes
    x = jnp.asarray(x0 + hx * np.arange(nx))
    v = jnp.asarray(v0 + hv * np.arange(nv))

    def edge(xx, vv):
        return _g_tab_and_edge(g_max_nodes, axes, xx, vv, _g_max_table_node(xx, vv))

    g_tab, g_edge = jax.vmap(jax.vmap(edge, (None, 0)), (0, None))(x, v)
    q = q_from_w(jnp.asarray(w0 + hw * np.arange(nw)))[None, :, None]
    return g_from_q(q, _g_max_ref(g_tab[:, None, :], q, g_edge[:, None, :]))


def _g_max_table_node(x, v):
    """g_max (the fine quintic, :func:`_g_max_xv`) at the emulator table's node (x, v)."""
    w0 = x**2
    return _g_max_xv(x, _v_g_max(w0, ra_from_v(w0, v)))


# ----------------------------------------------------------------------------- the model


class EmulatedAnisotropic(EmulatedLoweredIsothermal):
    """An anisotropic lowered-isothermal model from the emulator table (see ClusterModel).

    Same radial machinery as the isotropic emulated model; adds the plane-of-sky velocity
    series and evaluates the moments with 1 / ra^2 (0 when isotropic, so that derivatives in
    ra are finite at ra = inf).
    """

    ln_sv2r_coef: jax.Array
    ln_sv2t_coef: jax.Array
    inv_ra2: jax.Array
    # ln rt as interpolated with the rows (their scalar), which defines their tau: see _tau
    ln_rt_rows: jax.Array

    def _tau(self, t):
        """tau of t = ln r in the rows' own radial coordinate: each node's row is tabulated at
        tau = ln(r / r_in) / ln(rt / r_in) of its own rt, so the interpolated rows follow ln rt
        as interpolated with them (ln_rt_rows), not the finer grid's (ln_rt, which places the
        edge: W = (1 - r / rt) S(tau)). Where rt changes fast (near g_max) the rows' ln rt
        errs by up to ~4e-5, and at fixed tau their W then erred by the same, ~d ln W / d ln r
        tau d(ln rt), fed into rho times g + 3/2 (the version-9 table's worst draws, W0 10.1,
        g 2.29, ra 3.4e3 r0 and W0 8.46, g 2.07, ra 491 r0: W's error 3.9e-5 / 4.0e-5 with
        the finer ln rt in tau, 1.2e-6 / 2.4e-7 with the rows')."""
        return (t - LN_R_IN) / (self.ln_rt_rows - LN_R_IN)

    def gridded(self, n_grid: int = N_GRID):
        """Not available with anisotropy: the quintic grid of W and M(<r) (the isotropic
        model's :meth:`EmulatedLoweredIsothermal.gridded`, used by the isotropic fits) holds
        neither the plane-of-sky series nor the rows' own tau; evaluate this model directly."""
        raise TypeError("gridded() is for isotropic emulated models; an anisotropic model "
                        "evaluates its series directly (profiles, projected)")

    def _moments_model(self, x, w):
        p2 = x**2 * self.inv_ra2
        # W <= W0 <= 14: E_h by its power series instead of gammainc (moments._e)
        rho = density_integral(w, self.g, p2, n_terms=_N_MOMENT_TERMS) / self.rho0_integral
        rv2r, rv2t = second_moment_integrals(w, self.g, p2, n_terms=_N_MOMENT_TERMS)
        return rho, rv2r / self.rho0_integral, rv2t / self.rho0_integral

    def _projection_coefs(self) -> list:
        """The four projected series (Sigma, Sigma v2p, Sigma v2R, Sigma v2T; :func:`pack`).
        With the W series they are summed in one pass over the points (a vmap over single
        radii put the series, not the radii, on the minor axis: 190 -> ~20 us per model at
        100 radii)."""
        return [self.ln_sigma_coef, self.ln_sv2_coef, self.ln_sv2r_coef, self.ln_sv2t_coef]

    def _projected_from_series(self, R, R_in, w, projection):
        """Sigma, Sigma v2p, Sigma v2R, Sigma v2T (shape (4,) + R.shape): the projected series
        read at R_in times W's powers and the edge factors of :func:`edge_log_factors`, as in
        :func:`pack`. Sigma is even in R: below r_in it equals its value at r_in to
        O((R/r0)^2)."""
        inside = R < jnp.exp(self.ln_rt)
        ln_w = jnp.log(jnp.where(w > 0, w, 1.0))
        powers = (self.g + jnp.array([2.0, 3.0, 3.0, 3.0])).reshape((4,) + (1,) * ln_w.ndim)
        edge = edge_log_factors(self.g, R_in**2 * self.inv_ra2 * jnp.where(w > 0, w, 0.0))
        value = jnp.exp(projection + powers * ln_w + edge)
        return jnp.where(inside & (w > 0), value, 0.0)


#: Weight b(q) of the fine g_max in the reference g_max of the q coordinate (see _g_max_ref).
BLEND_POWER = 4


def _g_tab(g_max_nodes, axes, x, v):
    """g_tab of :func:`_g_max_ref` at the table coordinates (x, v): the C2 quintic Hermite
    interpolant (:func:`quintic_weights`) through g_fine's values g_max_nodes at the table's
    (x, v) nodes (axes: the table's (x, w, v) axes).

    C2, not the C1 cubic of versions up to 7: g_tab defines q between the rows' nodes, so a
    jump of its second derivative at every row node was a kink in the models' ln rt as a
    function of (x, w, v) at every fourth node of ln rt's finer grid, which the cubic there
    interpolated to O(h^2) only: ln rt's largest errors (1e-6) sat next to the rows' x and v
    nodes. Design study (lines of 25 fine nodes along x and v through the worst draws, exact
    solves at the fine cells' midpoints): max errors 1.4e-6 / 9.4e-7 along x and 2.4e-7 /
    5.7e-7 along v with the cubic g_tab, 1.3e-7 / 5.0e-8 and 7.4e-9 / 3.5e-9 with the quintic;
    along w (which g_tab does not depend on) 1.7e-8 either way."""
    (x_axis, _, v_axis) = axes
    return _interp_nd(g_max_nodes[..., None], (x_axis, v_axis), (x, v),
                      weights_fn=quintic_weights)[0]


def edge_blend(v, v_axis):
    """Weight of g_fine in the box edge (:func:`_g_edge`) at the table coordinate v: 0 up to
    the table's second v node, a C2 smoothstep t^3 (10 - 15 t + 6 t^2) up to its fourth, 1
    beyond (v_axis: the table's (v0, h, n) along v)."""
    v0, h, _ = v_axis
    t = jnp.clip((v - (v0 + h)) / (2.0 * h), 0.0, 1.0)
    return t**3 * (10.0 - 15.0 * t + 6.0 * t * t)


def _g_edge(g_tab, g_fine, v, v_axis):
    """The box edge g_max(W0, ra) at table coordinate v: g_tab + edge_blend(v) (g_fine - g_tab).

    Near isotropy (the table's first v cell holds every ra from ~1e3 - 1e4 r0 to infinity,
    u = s / s_max from 0 to ~0.5, and the first cell of ln rt's finer grid u up to ~0.5 alone)
    g_fine, interpolated in the g_max table's u, carries its ~1e-6 interpolation errors into
    v at the scale of ln rt's finer grid (its fourth differences along v there +-5e-6, against
    g_tab's 1e-7), which the models' ln rt inherited about 20 times amplified at q ~ 1 and the
    finer grid could not follow (version 9's worst rt draw, W0 8.64, g 2.12, ra 6.4e3 r0: ln rt
    off by 2.7e-7, Sigma by 1.1e-4 at 0.99 rt). There g_max is flat to ~1e-6 and g_tab, smooth
    on the table's scale, is the edge; both agree at every table node, so the rows are the
    same models (since version 10; the ln rt grid solved again where they differ). At that
    draw ln rt's error fell from 2.7e-7 to 2.1e-8 (local re-solve, design study)."""
    return g_tab + edge_blend(v, v_axis) * (g_fine - g_tab)


def _g_tab_and_edge(g_max_nodes, axes, x, v, g_fine):
    """(g_tab, the box edge :func:`_g_edge`) at table coordinates (x, v), given g_fine there
    (the emulator, g_max_aniso, the nodes' g grid and the build script all take both here)."""
    g_tab = _g_tab(g_max_nodes, axes, x, v)
    return g_tab, _g_edge(g_tab, g_fine, v, axes[2])


def _w_at_model_g(table, x, w, v, g):
    """The w at which ln rt's finer grid is read: one Newton step from the model's w to where
    the interpolant of the nodes' own g (table.g_rt_nodes, on the same grid) equals the
    model's g, weighted by 1 - edge_blend(v), i.e. where the edge is g_tab.

    ln rt, near q = 1 about 20 times as sensitive to the g_max that defines q as to g itself,
    is a smooth function of (x, g, v); its grid's nodes lie on a g surface of their own, and
    read at the model's q the interpolant also carries that surface's structure between the
    nodes (g_tab's, a quintic on the rows' coarser grid: along x at W0 = 9.5, q = 0.997, ln
    rt's error alternated in sign from one fine cell to the next, up to 5e-7, zero at the
    nodes). Read where the interpolated nodes' g is the model's g, the grid interpolates ln rt
    along a smooth surface of g and the step adds its change to first order. Where the edge
    is g_fine (edge_blend = 1), whose values on the finer grid's nodes are themselves rough
    (its own table's nodes are two fine cells apart in x), the step did not help (10^4 draws
    of ln rt: p99 1.8e-8 -> 3.2e-8 with the step everywhere; weighted: p99 1.8e-8, max
    2.8e-7 -> 1.8e-7)."""
    g_i, dg_dw = jax.jvp(
        lambda ww: _interp_nd(table.g_rt_nodes[..., None], table.rt_axes, (x, ww, v))[0],
        (w,), (jnp.ones_like(w),))
    return w + (1.0 - edge_blend(v, table.axes[2])) * (g - g_i) / dg_dw


def _g_max_ref(g_tab, q, g_fine):
    """The g_max that defines the q coordinate at (x, v, q): g_tab + q^BLEND_POWER (g_fine -
    g_tab), where g_fine is the accurate g_max (:func:`_g_max_xv`, the box edge) and g_tab
    (:func:`_g_tab`) the quintic through its values at the table's own nodes (g_fine lives on
    the g_max table's own grid, :func:`_v_g_max`). Both agree at every table node, so the
    tabulated models are the same for any q; between nodes g_fine puts q = 1 at 0.05 from the
    true edge (an error there enters ln rt about 20 times amplified), while g_tab, smoother
    on the table's scale, keeps the table's function smoother at moderate q (measured)."""
    return g_tab + q**BLEND_POWER * (g_fine - g_tab)


def _q_of_g(g_tab, g, g_fine, n_iter: int = 4):
    """q with g = g_from_q(q, _g_max_ref(g_tab, q, g_fine)), by fixed-point iteration from q
    at g_fine (a contraction: g_ref changes little with q)."""
    q = jnp.clip(q_from_g(g, g_fine), 0.0, 1.0)
    for _ in range(n_iter):
        q = jnp.clip(q_from_g(g, _g_max_ref(g_tab, q, g_fine)), 0.0, 1.0)
    return q


def _emulate(table: AnisoTable, W0, g, ra) -> EmulatedAnisotropic:
    W0 = jnp.asarray(W0, float)
    g = jnp.asarray(g, float)
    ra = jnp.asarray(ra, float)
    s = s_from_ra(ra)
    w_in = jnp.where(jnp.isnan(W0), W0_MIN, jnp.clip(W0, W0_MIN, W0_MAX))
    smax = s_max(w_in)
    u = s / smax
    ra_ok = (ra > 0) & (s >= 0) & (u <= 1.0)  # False for NaN
    u_in = jnp.where(ra_ok, jnp.clip(u, 0.0, 1.0), 0.0)
    x_in = x_from_w0(w_in)
    ra_in = jnp.where(ra_ok, ra, jnp.inf)
    v_in = jnp.clip(v_from_ra(w_in, ra_in), 0.0, 1.0)
    # g_fine on the g_max table's own grid (old v of u); the table in its v of ra (v_from_ra)
    g_tab, gm = _g_tab_and_edge(table.g_max_nodes, table.axes, x_in, v_in,
                                _g_max_xv(x_in, v_from_u(u_in)))
    g_hi = gm - G_MARGIN
    valid = (W0 >= W0_MIN) & (W0 <= W0_MAX) & ra_ok & (g >= 0.0) & (g <= g_hi)
    g_in = jnp.where(jnp.isnan(g), 0.0, jnp.clip(g, 0.0, g_hi))
    q_in = _q_of_g(g_tab, g_in, gm)
    point = (x_in, w_from_q(q_in), v_in)
    series, scalars = unpack(_interp_stack(table.stack, table.axes, *point), table.n_tau)
    # ln rt from its finer grid (the rows' own, coarser ln rt residual is not used)
    w_rt = _w_at_model_g(table, x_in, point[1], v_in, g_in)
    ln_rt = _interp_nd(table.rt_fine[..., None], table.rt_axes, (x_in, w_rt, v_in))[0]
    iso_coef, iso_scalars = isotropic_companion(table.iso, w_in, g_in)
    # the W series is ln(W / (1 - r/rt)) minus the companion's (pack): back to W / (1 - r/rt)
    # at the nodes, the companion's values times exp(residual), before the transform
    w_iso = matmul_constant(iso_coef[0], table.node_matrix, table.node_matrix_t)
    series = series.at[0].set(w_iso * jnp.exp(series[0]))
    coef = matmul_constant(series, table.cheb_matrix.T, table.cheb_matrix)
    padded = jnp.pad(coef, ((0, 0), (0, table.iso.n_tau - table.n_tau)))
    coef = padded.at[1:].add(iso_coef[1:])
    return _model_from_series(W0, g, ra, valid, coef, scalars + iso_scalars,
                             ln_rt + iso_scalars[0], w_in, g_in)


def _model_from_series(W0, g, ra, valid, coef, scalars, ln_rt, w_in, g_in):
    """The model of one row: Chebyshev coefficients coef (N_SERIES, n) of the series of
    :func:`pack` (the W series as W / (1 - r/rt)), its scalars (N_SCALARS,) and ln rt (the
    model's; scalars[0] defines the rows' tau, :meth:`EmulatedAnisotropic._tau`); w_in and
    g_in are W0 and g clipped into the box (NaN-free), for the normalisation integral."""
    _, ln_rh, ln_gm, ln_mu, ln_k, ln_kr, ln_rhp = (scalars[i] for i in range(N_SCALARS))
    one = jnp.ones_like(W0)
    return EmulatedAnisotropic(
        W0=W0, g=g, ra_model=ra, isotropic=False, valid=valid, ln_rt=ln_rt,
        gm_model=jnp.exp(ln_gm), U_model=-jnp.exp(ln_mu), K_model=jnp.exp(ln_k),
        Kr_model=jnp.exp(ln_kr), rh_model=jnp.exp(ln_rh),
        rho0_integral=_central_density_integral(w_in, g_in),
        length_unit=one, mass_unit=one, G=G_MODEL * one, rhp_model=jnp.exp(ln_rhp),
        w_coef=coef[0], ln_gm_coef=coef[1], ln_sigma_coef=coef[2], ln_sv2_coef=coef[3],
        ln_sv2r_coef=coef[4], ln_sv2t_coef=coef[5], inv_ra2=_inv_ra2(ra),
        ln_rt_rows=scalars[0],
    )


_emulate_jit = eqx.filter_jit(_emulate)


def emulate_aniso(W0, g=1.0, ra=None, *, table: AnisoTable | None = None):
    """An (optionally) anisotropic lowered-isothermal model from the emulator, in model units.

    Same interface as :func:`dastro.clusters.solve` (profiles, projected, scalars, scale),
    about a thousand times faster; accuracy in the table's metadata (``measure_accuracy``).

    Args:
        W0: central potential, 0.5 <= W0 <= 14.
        g: truncation parameter, 0 <= g <= g_max(W0, ra) - 0.05 (:func:`g_hi_aniso`).
        ra: anisotropy radius in units of r0, ra >= ra_min(W0) (:func:`ra_min`: r0 for
            W0 <~ 2.5, 350 r0 at W0 = 14); None or inf for isotropic.
        table: a loaded table (default: the shipped one, read on first use).

    Raises:
        ValueError: parameters outside the box (outside jit; under jit the model is flagged
            invalid with NaN outputs), NaN, non-scalars, or a missing or corrupt table.
    """
    table = load_aniso_table() if table is None else table
    if ra is None:
        ra = math.inf
    _check_scalar("W0", W0, lower=W0_MIN, upper=W0_MAX, lower_open=False,
                  what=" (emulator box)")
    _check_scalar("g", g, lower=0.0, lower_open=False, upper=3.5, upper_open=True)
    _check_scalar("ra", ra, lower=0.0, allow_inf=True,
                  what=" (anisotropy radius in r0; None or inf for isotropic)")
    model = _emulate_jit(table, W0, g, ra)
    if _is_concrete(model.valid) and not bool(model.valid):
        if _is_concrete(ra) and not float(s_from_ra(ra)) <= float(s_max(W0)):
            raise ValueError(
                f"ra = {float(ra):g} is outside the emulator box at W0 = {float(W0):g}: ra must "
                f"be >= ra_min(W0) = {float(ra_min(W0)):.6g} r0 (more anisotropic models are "
                f"finite only for g < ~{G_FLOOR}, or not at all); use dastro.clusters.solve")
        edge = float(g_hi_aniso(W0, ra, table))
        raise ValueError(f"g = {float(g):g} is outside the emulator box at W0 = {float(W0):g}, "
                         f"ra = {float(ra):g}: g must be <= g_max(W0, ra) - {G_MARGIN} = "
                         f"{edge:.6f}; use dastro.clusters.solve near g_max")
    return model


# ----------------------------------------------------------------------------- accuracy


def random_parameters(n: int, seed: int = 0, table: AnisoTable | None = None):
    """n random models in the box: W0 ~ U(0.5, 14), u = s / s_max(W0) ~ U(0, 1) (so ra from
    ra_min(W0) to nearly isotropic), g ~ U(0, g_max(W0, ra) - 0.05)."""
    table = load_aniso_table() if table is None else table
    rng = np.random.default_rng(seed)
    W0 = rng.uniform(W0_MIN, W0_MAX, n)
    s = rng.uniform(0.0, 1.0, n) * np.asarray(s_max(jnp.asarray(W0)))
    ra = np.array([ra_from_s_np(v) for v in s])
    g = rng.uniform(0.0, 1.0, n) * np.asarray(jax.vmap(lambda w, r: g_hi_aniso(w, r, table))(
        jnp.asarray(W0), jnp.asarray(ra)))
    return W0, g, ra


PROFILE_NAMES = ["phi", "rho", "mc", "v2", "v2r", "v2t"]
PROJECTED_NAMES = ["Sigma", "v2p", "v2R", "v2T"]
SCALAR_NAMES = ["rt", "rh", "M", "U", "K", "Kr", "rhp"]


def measure_accuracy(n: int, *, seed: int = 0, table: AnisoTable | None = None,
                     progress: bool = False) -> dict:
    """Errors of the emulator against the exact solver over n random models in the box.

    Compares the scalars (relative), the profiles phi, rho, mc, v2, v2r, v2t at 40 radii and
    Sigma, v2p, v2R, v2T at 20 projected radii: relative at r <= 0.99 rt, beyond in absolute
    terms in units of the central value (mc: relative everywhere).
    Returns {"n", "seed", "quantities": {name: {"median", "p99", "max", "worst"}}}, where
    worst is the (W0, g, ra) of the largest error.
    """
    from dastro.clusters.solver import _solve

    table = load_aniso_table() if table is None else table
    W0, g, ra = random_parameters(n, seed, table)
    frac = np.concatenate([np.geomspace(1e-3, 0.99, 36), [0.993, 0.996, 0.999, 0.9999]])
    frac_p = np.concatenate([[0.0], np.geomspace(1e-3, 0.99, 17), [0.995, 0.999]])

    @eqx.filter_jit
    def compare(w0, gg, rr):
        exact = _solve(w0, gg, rr, 1e-12, 1e-14)
        emu = _emulate(table, w0, gg, rr)
        rt = jnp.exp(exact.ln_rt)
        pe, pm = exact._profiles(jnp.asarray(frac) * rt), emu._profiles(jnp.asarray(frac) * rt)
        qe, qm = (exact._projected(jnp.asarray(frac_p) * rt),
                  emu._projected(jnp.asarray(frac_p) * rt))
        scal = jnp.stack([jnp.stack([getattr(m, k) for k in ["rt", "rh", "M", "U", "K", "Kr"]]
                                    + [m._rhp()]) for m in (exact, emu)])
        prof = [jnp.stack([getattr(p, k) for k in PROFILE_NAMES]) for p in (pe, pm)]
        proj = [jnp.stack([getattr(p, k) for k in PROJECTED_NAMES]) for p in (qe, qm)]
        return scal, prof, proj, exact.valid & emu.valid

    errors = {k: [] for k in SCALAR_NAMES + PROFILE_NAMES + PROJECTED_NAMES}
    it = range(n)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="accuracy check")
    for i in it:
        scal, prof, proj, ok = compare(*(jnp.asarray(v[i]) for v in (W0, g, ra)))
        if not bool(ok):
            raise RuntimeError(f"invalid model at (W0, g, ra) = ({W0[i]}, {g[i]}, {ra[i]})")
        scal = np.asarray(scal)
        for k, a, b in zip(SCALAR_NAMES, scal[0], scal[1], strict=True):
            errors[k].append(abs(b / a - 1.0))
        for names, (a_all, b_all), radii in ((PROFILE_NAMES, prof, frac),
                                             (PROJECTED_NAMES, proj, frac_p)):
            for k, a, b in zip(names, np.asarray(a_all), np.asarray(b_all), strict=True):
                errors[k].append(profile_error(a, b, radii, relative_everywhere=k == "mc")[0])
    out = error_statistics(errors, lambda k, j: [float(W0[j]), float(g[j]), float(ra[j])])
    return {"n": n, "seed": seed, "quantities": out,
            "note": "relative error for r <= 0.99 rt; beyond, absolute in units of the "
                    "central value; worst = (W0, g, ra) of the max"}


def g_from_q_u(q, W0, u, table: AnisoTable | None = None):
    """g at (q, u = s / s_max(W0)) and W0 (the inverse of the emulator's q(g))."""
    table = load_aniso_table() if table is None else table
    W0, u = jnp.asarray(W0, float), jnp.asarray(u, float)
    x = x_from_w0(W0)
    s = u * s_max(W0)
    ra = jnp.where(s > 0, 10.0 ** (1.0 / jnp.where(s > 0, s, 1.0) - 1.0), jnp.inf)
    v = jnp.clip(v_from_ra(W0, ra), 0.0, 1.0)
    q = jnp.asarray(q, float)
    g_tab, g_edge = _g_tab_and_edge(table.g_max_nodes, table.axes, x, v,
                                    _g_max_xv(x, v_from_u(u)))
    return g_from_q(q, _g_max_ref(g_tab, q, g_edge))
