# %% [markdown]
# # Synthesising, differentiating and fitting a solar spectrum
#
# A worked example in jupytext "percent" format (open it as a notebook with jupytext, VS Code
# or PyCharm, or run it as a script). The plan:
#
# 1. synthesise the Sun (the MARCS 2008 solar model, Gaia-ESO lines) in a 1 A window around
#    the Mg I b line at 5172.68 A;
# 2. differentiate it: the equivalent width with respect to A(Mg), the microturbulence and the
#    temperature of every layer in one reverse-mode pass, the spectrum with respect to A(Mg) in
#    forward mode, and a finite-difference check;
# 3. fit a mock observed spectrum (A(Mg) raised by 0.15 dex, vmic = 1.3 km/s, S/N 200) by
#    gradient descent with optax, and get error bars from the curvature of chi^2.
#
# Units: wavelengths in A, **in air** (like the Gaia-ESO and VALD lists; `air=False` for
# vacuum); fluxes are surface F_lambda in erg s^-1 cm^-2 A^-1; the *normalised* flux is the
# spectrum divided by the continuum-only spectrum on the same grid. Abundances are
# A(X) = log10(N_X / N_H) + 12 [dex]; the microturbulence vmic is in km/s; temperatures in K.
#
# The test suite runs it at a small size (``DASTRO_NOTEBOOK_SMALL=1``: a coarser grid, fewer
# weak lines, 8-point Gauss flux integration, fewer optimiser steps).

# %%
import os
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import dastro  # noqa: F401  (float64)
from dastro.atmospheres.io import read_atmosphere
from dastro.rt.lines import read_turbospectrum
from dastro.rt.synth import synthesis_plan, synthesize

small = os.environ.get("DASTRO_NOTEBOOK_SMALL") == "1"
# The small run keeps every step but compiles smaller programs: 0.05 A pixels, lines weaker
# than 1 % of the continuum opacity left out, Gauss quadrature instead of the exact E_n flux.
step, line_cutoff, flux_method, n_steps = ((0.05, 1e-2, "gauss", 100) if small
                                           else (0.02, 3e-4, "expint", 300))
try:
    ROOT = Path(__file__).resolve().parents[1]
except NameError:  # inside Jupyter, which starts in notebooks/
    ROOT = Path.cwd().parent
DATA = ROOT / "tests" / "data"
MG = 11  # index of Mg (Z = 12) in the abundance vector A(X), X = H..Zn

# %% [markdown]
# ## The model, the lines and the plan
# The MARCS solar model (56 layers) and the Gaia-ESO line list for 5170-5174 A are the test
# fixtures. `synthesis_plan` decides, once, which lines enter and over which pixels (each
# line's window ends where its opacity drops below `line_cutoff` times the continuum's).
# That is a discrete choice: made from the solar model and passed as `plan=` to every
# synthesis below, so finite differences, gradients and the fit all see the same lines
# (and the synthesis compiles once per kind of derivative, not once per call).

# %%
atm = read_atmosphere(DATA / "atmospheres" / "msun.mod")  # MARCS 2008 Sun
lines = read_turbospectrum(DATA / "linelists" / "ges_5170_5174.ts")  # air wavelengths
wl = np.arange(5172.2, 5173.2 + step / 2, step)  # air [A]
plan = synthesis_plan(atm, lines, wl, air=True, line_cutoff=line_cutoff, hydrogen=False,
                      check_range=False)
ab_sun, vmic_sun, T_sun = atm.abundances[:30], jnp.asarray(1.0), atm.T
print(f"{wl.size} pixels of {step} A; {plan.n_lines} lines in the plan "
      f"({plan.n_weak} too weak); solar A(Mg) = {float(ab_sun[MG]):.2f}, "
      f"vmic = {float(vmic_sun):.1f} km/s")

# %% [markdown]
# ## The spectrum as a function of its parameters
# `spectrum(ab, vmic, T)` is the spectrum for the abundances of H..Zn, the microturbulence
# and the temperature of every layer (at the model's gas pressure: the equation of state is
# solved again). The equivalent width in the window is the area of 1 - F/F_c, in mA.

# %%


def spectrum(ab, vmic, T):
    model = eqx.tree_at(lambda m: m.T, atm, T)
    return synthesize(model, lines, abundances=ab, vmic=vmic, plan=plan,
                      flux_method=flux_method)


def equivalent_width(ab, vmic, T):
    """Equivalent width in the window [mA], and the spectrum (auxiliary output)."""
    spec = spectrum(ab, vmic, T)
    return jnp.sum(1.0 - spec.normalized) * step * 1e3, spec


# %% [markdown]
# ## Reverse mode: one scalar, 87 derivatives
# One reverse-mode pass gives the derivative of the equivalent width with respect to all 30
# abundances, the microturbulence and the 56 layer temperatures. `jax.jit` compiles the pass
# once; the finite differences below reuse it (its value is the equivalent width).

# %%
ew_and_grad = jax.jit(jax.value_and_grad(equivalent_width, argnums=(0, 1, 2), has_aux=True))
(ew, sun), (d_ew_d_ab, d_ew_d_vmic, d_ew_d_T) = ew_and_grad(ab_sun, vmic_sun, T_sun)
d_ew_d_mg = float(d_ew_d_ab[MG])
layer = int(jnp.argmax(jnp.abs(d_ew_d_T)))
print(f"continuum F_lambda at {wl[0]} A: {float(sun.continuum[0]):.4g} erg s^-1 cm^-2 A^-1; "
      f"deepest normalised flux {float(sun.normalized.min()):.3f}")
print(f"EW in the window: {float(ew):.1f} mA")
print(f"d EW / d A(Mg) = {d_ew_d_mg:.2f} mA per dex; d EW / d vmic = "
      f"{float(d_ew_d_vmic):.2f} mA per km/s")
print(f"most sensitive layer: {layer} of {atm.n_depth} (log tau_Ross = "
      f"{float(np.log10(atm.tau_ross[layer])):.2f}), d EW / d T = "
      f"{float(d_ew_d_T[layer]):.3f} mA per K")

# %% [markdown]
# ### Check against a finite difference
# A central difference with a step of 0.01 dex in A(Mg) (truncation error ~ h^2 f''' / 6).

# %%
h = 0.01
ew_plus = ew_and_grad(ab_sun.at[MG].add(h), vmic_sun, T_sun)[0][0]
ew_minus = ew_and_grad(ab_sun.at[MG].add(-h), vmic_sun, T_sun)[0][0]
d_ew_d_mg_fd = float(ew_plus - ew_minus) / (2 * h)
fd_rel_diff = abs(d_ew_d_mg_fd - d_ew_d_mg) / abs(d_ew_d_mg)
print(f"d EW / d A(Mg): autodiff {d_ew_d_mg:.6f}, finite difference {d_ew_d_mg_fd:.6f} "
      f"mA per dex (relative difference {fd_rel_diff:.1e})")

# %% [markdown]
# ## Forward mode: the whole spectrum, two parameters
# With few inputs and many outputs forward mode is the cheaper direction: one pass per input
# gives the derivative of every pixel. `model_and_jacobian(theta)`, theta = (A(Mg), vmic),
# returns the normalised spectrum and its (n_pixels, 2) Jacobian; it serves the fit below.
# Its first column is d F / d A(Mg); summed over the window it is d EW / d A(Mg) again.

# %%


def model_at(theta):
    return spectrum(ab_sun.at[MG].set(theta[0]), theta[1], T_sun).normalized


@jax.jit
def model_and_jacobian(theta):
    jac, model = jax.jacfwd(lambda t: (model_at(t), model_at(t)), has_aux=True)(theta)
    return model, jac


theta_sun = jnp.array([ab_sun[MG], vmic_sun])
_, jac_sun = model_and_jacobian(theta_sun)
jac_mg = jac_sun[:, 0]  # d (F / F_c) / d A(Mg), per pixel
d_ew_d_mg_fwd = float(-jnp.sum(jac_mg) * step * 1e3)
print(f"largest |d F/F_c / d A(Mg)| = {float(jnp.max(jnp.abs(jac_mg))):.3f} per dex at "
      f"{wl[int(jnp.argmax(jnp.abs(jac_mg)))]:.2f} A; d EW / d A(Mg) from forward mode "
      f"{d_ew_d_mg_fwd:.6f} mA per dex")

# %% [markdown]
# ## A mock observation
# The "observed" star is the Sun with A(Mg) raised by 0.15 dex and vmic = 1.3 km/s, with
# Gaussian noise of 1/200 of the continuum per pixel (S/N 200; a fixed PRNG key). It is made
# with the same synthesis and plan as the fit, so the fit tests the derivatives and the
# optimiser, not the physics.

# %%
truth = {"A_Mg": float(ab_sun[MG]) + 0.15, "vmic": 1.3}
noise = 1.0 / 200.0
clean, _ = model_and_jacobian(jnp.array([truth["A_Mg"], truth["vmic"]]))
observed = clean + noise * jax.random.normal(jax.random.key(6), clean.shape)

# %% [markdown]
# ## The fit
# chi^2 / 2 = sum((observed - model)^2) / (2 noise^2); its gradient is -J^T r / noise with
# r = (observed - model) / noise the normalised residuals and J the forward-mode Jacobian.
# Adam starts from the solar values, with a step size decaying from 0.03 to 0 and a short
# memory of the squared gradient (b2 = 0.9: the gradient falls by orders of magnitude on the
# way in, and the default 0.999 would keep the steps small long after).

# %%
optimizer = optax.adam(optax.cosine_decay_schedule(0.03, n_steps), b2=0.9)


@jax.jit
def update(theta, opt_state, grad):
    updates, opt_state = optimizer.update(grad, opt_state)
    return optax.apply_updates(theta, updates), opt_state


theta = theta_sun
opt_state = optimizer.init(theta)
for i in range(n_steps + 1):
    model, jac = model_and_jacobian(theta)
    r = (observed - model) / noise
    grad = -(jac.T @ r) / noise
    if i % (n_steps // 4) == 0:
        print(f"step {i:3d}: A(Mg) = {float(theta[0]):.4f}, vmic = {float(theta[1]):.4f}, "
              f"chi^2 = {float(r @ r):.1f} ({wl.size} pixels)")
    if i < n_steps:
        theta, opt_state = update(theta, opt_state, grad)
chi2 = float(r @ r)

# %% [markdown]
# ## Error bars
# Near the minimum the Hessian of chi^2 / 2 is J^T J / noise^2 (Gauss-Newton: the term with
# the second derivatives of the model is weighted by the residuals and averages to zero). Its
# inverse is the covariance of (A(Mg), vmic). The forward-mode Jacobian of the last step
# gives it at no extra cost.

# %%
hessian = jac.T @ jac / noise**2
cov = jnp.linalg.inv(hessian)
fit = {"A_Mg": float(theta[0]), "vmic": float(theta[1])}
sigma = {"A_Mg": float(jnp.sqrt(cov[0, 0])), "vmic": float(jnp.sqrt(cov[1, 1]))}
correlation = float(cov[0, 1] / jnp.sqrt(cov[0, 0] * cov[1, 1]))
# convergence: the Gauss-Newton step still to go, in units of the error bars
newton_step = cov @ (jac.T @ r) / noise
remaining = {name: float(newton_step[k]) / sigma[name] for k, name in enumerate(fit)}
for name, unit in [("A_Mg", "dex"), ("vmic", "km/s")]:
    print(f"{name:>5}: {fit[name]:.4f} +- {sigma[name]:.4f} {unit} (truth {truth[name]:.4f}; "
          f"{(fit[name] - truth[name]) / sigma[name]:+.2f} sigma)")
print(f"correlation {correlation:+.2f}; chi^2 = {chi2:.1f} for {wl.size - 2} degrees of freedom; "
      f"distance to the minimum {remaining['A_Mg']:+.3f} / {remaining['vmic']:+.3f} sigma")
assert all(np.isfinite(v) for v in [*fit.values(), *sigma.values(), d_ew_d_mg, d_ew_d_mg_fd])

# %% [markdown]
# ## Figures
# The spectra, the sensitivity of each pixel to A(Mg), and where in the atmosphere the
# equivalent width is made (its derivative with respect to each layer's temperature). Skipped
# in the small run; as a script it writes `solar_spectrum.png`.

# %%
if not small:
    import sys

    import matplotlib

    if "ipykernel" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2, a3) = plt.subplots(3, 1, figsize=(7, 8))
    a1.plot(wl, sun.normalized, "k", label="Sun")
    a1.plot(wl, observed, "C1.", ms=3, label="mock observation")
    a1.plot(wl, model, "C0", label="fit")
    a1.set_ylabel("normalised flux")
    a1.legend()
    a2.plot(wl, jac_mg, "C0")
    a2.set_ylabel("d flux / d A(Mg) [per dex]")
    a2.set_xlabel("wavelength [A, air]")
    a3.plot(np.log10(atm.tau_ross), d_ew_d_T, "C3")
    a3.set_xlabel("log tau_Ross")
    a3.set_ylabel("d EW / d T [mA per K]")
    fig.tight_layout()
    if "ipykernel" not in sys.modules:
        fig.savefig("solar_spectrum.png", dpi=100)
