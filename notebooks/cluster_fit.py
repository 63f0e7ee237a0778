# %% [markdown]
# # Fitting a globular cluster with dastro
#
# A worked example in jupytext "percent" format (open it as a notebook with jupytext, VS Code
# or PyCharm, or run it as a script). We draw a mock cluster from the exact lowered-isothermal
# model, observe it the way a proper-motion survey would (sky units, errors, line-of-sight
# velocities for some stars), fit it with NUTS and compare the posterior with the truth.
# The test suite runs it at a small size (``DASTRO_NOTEBOOK_SMALL=1``).

# %%
import math
import os

import numpy as np

import dastro  # noqa: F401  (float64)
from dastro.inference import FitConfig, Priors, initial_values, run_nuts, star_model
from dastro.inference.cli_fit import default_mock
from dastro.inference.models import cluster_sites

small = os.environ.get("DASTRO_NOTEBOOK_SMALL") == "1"
n_stars, chains, steps = (60, 1, 60) if small else (500, 4, 500)
# Early warm-up (identity mass matrix) runs at the step size of the narrowest direction; the
# small run caps trajectories at 2^6 - 1 leapfrog steps to stay within the test budget.
tree_depth = 6 if small else (7, 10)  # (warm-up, sampling): see run_nuts

# %% [markdown]
# ## The data
# `default_mock` draws stars from W0 = 6, g = 1.2, M = 1e5 Msun, rh = 3 pc at 5 kpc, offsets
# the centre and adds proper-motion errors of 0.03 mas/yr and line-of-sight velocities (error
# 1 km/s) for 40 % of the stars. Your own catalogue would come from
# `dastro.inference.read_catalogue("stars.ecsv")`.

# %%
data, truth = default_mock(n_stars, seed=3)
print(f"{data.n} stars; {int(data.has_vz.sum())} with line-of-sight velocities")

# %% [markdown]
# ## The fit
# The distance gets a Gaussian prior (5 +- 0.1 kpc, as from a parallax or an isochrone fit);
# everything else uses the defaults documented in `dastro.inference.models`. Each star's
# line-of-sight position and true velocities are latent parameters.

# %%
config = FitConfig(priors=Priors(distance=(5.0, 0.1)))
result = run_nuts(star_model, data, config,
                  var_names=["W0", "g", "log10_M", "log10_rh", "distance"],
                  init_values=initial_values(data, config),
                  dense_mass=[cluster_sites(data, config)],
                  num_warmup=steps, num_samples=steps, num_chains=chains,
                  max_tree_depth=tree_depth, progress=False)
print(result.report(truth))

# %% [markdown]
# ## How far from the truth?
# Distances from the truth in posterior standard deviations:

# %%
z_scores = {}
for name in ["W0", "g", "log10_M", "log10_rh", "distance"]:
    row = result.summary.loc[name]
    z_scores[name] = (row["mean"] - truth[name]) / row["sd"]
    print(f"{name:>9}: {z_scores[name]:+.2f} sigma")
assert all(math.isfinite(z) for z in z_scores.values())

# %% [markdown]
# The posterior (all chains) is an ArviZ InferenceData: `result.save("fit.nc")` writes it,
# and `dastro.inference.plots` draws the corner plot and the fitted profiles.

# %%
posterior_M = np.asarray(result.idata.posterior["M"]).ravel()
print(f"M = {posterior_M.mean():.3g} +- {posterior_M.std():.2g} Msun (truth {truth['M']:.3g})")
