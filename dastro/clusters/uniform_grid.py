"""Cubic Hermite interpolation with given node slopes (bicubic on uniform grids), lean jax code.

The emulators' tables are splines on uniform grids whose node slopes are computed once, at
load time (by interpax: clamped, not-a-knot or monotone splines). Evaluating them here instead of
through interpax's general interpolators gives the same polynomials (to rounding; tested)
with a cell index by arithmetic and one small slice of the stacked table: a fit's NUTS program
inlines the likelihood gradient several times, and interpax's general code path (search,
extrapolation masks, derivative switches) and the table it closes over cost seconds of XLA
compile time per copy.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import custom_vmap
from jax.custom_derivatives import SymbolicZero

__all__ = ["UniformAxis", "bicubic_hermite", "bicubic_stack", "cubic_hermite",
           "cubic_hermite_uniform", "matmul_constant", "uniform_axis"]


class UniformAxis(NamedTuple):
    """Nodes x0 + step * arange(n) (plain floats: static under jit)."""

    x0: float
    step: float
    n: int


def uniform_axis(name: str, nodes, min_nodes: int = 2) -> UniformAxis:
    """The UniformAxis of ``nodes``; ValueError naming ``name`` if they are not uniform or
    fewer than ``min_nodes``."""
    nodes = np.asarray(nodes, float)
    if nodes.ndim != 1 or len(nodes) < max(min_nodes, 2):
        raise ValueError(f"{name} nodes must be a 1D array of at least {max(min_nodes, 2)} "
                         "values")
    step = (nodes[-1] - nodes[0]) / (len(nodes) - 1)
    if not step > 0 or not np.allclose(np.diff(nodes), step, rtol=1e-9, atol=0.0):
        raise ValueError(f"{name} nodes must be increasing and uniformly spaced")
    return UniformAxis(float(nodes[0]), float(step), len(nodes))


def _clip(x, lo, hi):
    """x clipped to [lo, hi], with slope 1 at the ends themselves (jnp.clip halves it there,
    and the grid's end nodes are valid inputs)."""
    return jnp.where(x > hi, hi, jnp.where(x < lo, lo, x))


def _cell(x, axis: UniformAxis):
    """Cell index i (0 .. n - 2) and local coordinate t in [0, 1] (x clipped to the grid)."""
    y = (_clip(x, axis.x0, axis.x0 + axis.step * (axis.n - 1)) - axis.x0) / axis.step
    i = jnp.clip(jnp.floor(y), 0, axis.n - 2).astype(jnp.int32)
    return i, y - i


def _basis(t):
    """(4, ...) cubic Hermite basis: value at 0, value at 1, slope at 0, slope at 1."""
    t2 = t * t
    t3 = t2 * t
    return jnp.stack([2.0 * t3 - 3.0 * t2 + 1.0, 3.0 * t2 - 2.0 * t3, t3 - 2.0 * t2 + t,
                      t3 - t2])


def cubic_hermite(x, nodes, values, slopes):
    """Cubic Hermite interpolant through values[i] with slopes[i] (per unit x) at x, any shape.

    ``nodes``: increasing numpy array (need not be uniform; the cell is found by comparing
    with every node, cheap for the small tables this serves). x outside the nodes is clipped
    to their ends (callers check their bounds). C1 in x.
    """
    nodes = np.asarray(nodes, float)
    x = _clip(jnp.asarray(x, float), nodes[0], nodes[-1])
    i = jnp.clip(jnp.searchsorted(jnp.asarray(nodes), x, side="right", method="compare_all")
                 - 1, 0, len(nodes) - 2)
    width = jnp.asarray(np.diff(nodes))[i]
    b = _basis((x - jnp.asarray(nodes)[i]) / width)
    values, slopes = jnp.asarray(values), jnp.asarray(slopes)
    return (b[0] * values[i] + b[1] * values[i + 1]
            + width * (b[2] * slopes[i] + b[3] * slopes[i + 1]))


def cubic_hermite_uniform(x, axis: UniformAxis, values, slopes):
    """:func:`cubic_hermite` on the uniform nodes of ``axis`` (cell by arithmetic)."""
    i, t = _cell(jnp.asarray(x, float), axis)
    b = _basis(t)
    values, slopes = jnp.asarray(values), jnp.asarray(slopes)
    return (b[0] * values[i] + b[1] * values[i + 1]
            + axis.step * (b[2] * slopes[i] + b[3] * slopes[i + 1]))


def bicubic_stack(f, fx, fy, fxy, x_axis: UniformAxis, y_axis: UniformAxis) -> np.ndarray:
    """(nx, ny, 4, ...) stack of f and its slopes per cell width, for :func:`bicubic_hermite`."""
    hx, hy = x_axis.step, y_axis.step
    return np.stack([np.asarray(f), hx * np.asarray(fx), hy * np.asarray(fy),
                     hx * hy * np.asarray(fxy)], axis=2)


def _block(stack, i, j):
    """The (2, 2, 4, ...) corner data of cell (i, j)."""
    zeros = (jnp.int32(0),) * (stack.ndim - 2)
    return jax.lax.dynamic_slice(stack, (i, j, *zeros), (2, 2, *stack.shape[2:]))


def _weighted(stack, i, j, weights):
    return jnp.tensordot(weights, _block(stack, i, j).astype(weights.dtype), axes=3)


def _loop_over_batch(fn, axis_size, in_batched, stack, *args):
    """vmap rule on the CPU: a loop over the batch (lax.map) when the table is shared.

    vmap would turn the cell's dynamic_slice into one gather for the whole batch, which XLA's
    CPU backend copies element by element (and then reads back for the contraction): for the
    isotropic emulator's 50 kB patches that cost 25 us per model, the loop 4 us.
    """
    # a batch of tables, or an accelerator (where a loop would serialise the batch and the
    # gather is cheap): the plain vmap
    if in_batched[0] or jax.default_backend() != "cpu":
        return jax.vmap(fn, in_axes=tuple(0 if b else None for b in in_batched))(
            stack, *args), True
    args = [a if b else jnp.broadcast_to(a, (axis_size, *jnp.shape(a)))
            for a, b in zip(args, in_batched[1:], strict=True)]
    return jax.lax.map(lambda xs: fn(stack, *xs), tuple(args)), True


_block_looped = custom_vmap(_block)
_block_looped.def_vmap(functools.partial(_loop_over_batch, _block))
_weighted_looped = custom_vmap(_weighted)
_weighted_looped.def_vmap(functools.partial(_loop_over_batch, _weighted))


@jax.custom_jvp
def _patch(stack, i, j, weights):
    """sum over the cell's corners and fields of weights * stack (the table is data: its
    own tangent is ignored)."""
    return _weighted_looped(stack, i, j, weights)


@functools.partial(_patch.defjvp, symbolic_zeros=True)
def _patch_jvp(primals, tangents):
    # linear in the weights; custom_vmap functions cannot be transposed, so the tangent is
    # written with the cell's data (vmapped: one loop that copies the patches) and a product
    stack, i, j, weights = primals
    d_weights = tangents[3]
    value = _weighted_looped(stack, i, j, weights)
    if isinstance(d_weights, SymbolicZero):
        return value, jnp.zeros_like(value)
    block = _block_looped(stack, i, j).astype(weights.dtype)
    return value, jnp.tensordot(d_weights, block, axes=3)


def bicubic_hermite(x, y, x_axis: UniformAxis, y_axis: UniformAxis, stack):
    """Bicubic Hermite patch of ``stack`` (from :func:`bicubic_stack`) at scalar (x, y).

    Returns the interpolated trailing values, shape stack.shape[3:]; (x, y) are clipped to
    the grid. C1 across cells in both arguments. Under vmap over (x, y) with a shared stack,
    the cells are read by a loop over the batch (see :func:`_loop_over_batch`).
    """
    i, tx = _cell(jnp.asarray(x, float), x_axis)
    j, ty = _cell(jnp.asarray(y, float), y_axis)
    bx, by = _basis(tx), _basis(ty)
    # weights[a, b, k]: corner (a, b), field k in (f, fx, fy, fxy)
    weights = jnp.stack([
        jnp.outer(bx[:2], by[:2]), jnp.outer(bx[2:], by[:2]), jnp.outer(bx[:2], by[2:]),
        jnp.outer(bx[2:], by[2:]),
    ], axis=-1)
    return _patch(stack, i, j, weights)


@jax.custom_jvp
def matmul_constant(x, matrix, matrix_t):
    """x @ matrix for a constant matrix (not differentiated), matrix_t = matrix.T.

    The derivative in x is written with the pre-transposed copy, so that reverse mode (its
    transpose) multiplies by matrix_t in row-major order: XLA's CPU dot library otherwise
    repacks the transposed constant at every call, which cost more (190 us per gradient for
    a 96 x 384 matrix) than the rest of the model's construction.
    """
    return x @ matrix


@matmul_constant.defjvp
def _matmul_constant_jvp(primals, tangents):
    x, matrix, matrix_t = primals
    dx = tangents[0]
    # contracting matrix_t's second axis here: the transpose then contracts its first
    return x @ matrix, jnp.einsum("...k,jk->...j", dx, matrix_t)
