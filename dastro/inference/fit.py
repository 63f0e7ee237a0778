"""Run NUTS (numpyro by default, or blackjax on the same log density) and summarise.

Results are ArviZ InferenceData (``result.idata``; ``result.save(path)`` writes NetCDF), with
R-hat, bulk and tail ESS and divergence counts in ``result.summary`` / ``result.report()``.
"""

from __future__ import annotations

import time
import warnings
from typing import NamedTuple

import jax
import numpy as np
from numpyro.infer import MCMC, NUTS, init_to_value

with warnings.catch_warnings():  # arviz announces its coming refactor on import
    warnings.simplefilter("ignore")
    import arviz as az

__all__ = ["FitResult", "run_nuts"]


class FitResult(NamedTuple):
    """A finished fit.

    Attributes:
        idata: ArviZ InferenceData (posterior, sample_stats with ``diverging``).
        summary: pandas DataFrame of ``az.summary`` for ``var_names``.
        var_names: the cluster-level parameters summarised.
        divergences: total number of divergent transitions (all chains).
        n_draws: draws per chain after warm-up; n_chains likewise.
        seconds: wall time of warm-up and sampling (compilation included).
        mean_steps: mean number of leapfrog steps per draw (NaN if not recorded).
    """

    idata: object
    summary: object
    var_names: list
    divergences: int
    n_draws: int
    n_chains: int
    seconds: float
    mean_steps: float = float("nan")

    @property
    def divergence_fraction(self) -> float:
        return self.divergences / max(self.n_draws * self.n_chains, 1)

    def save(self, path) -> None:
        """Write the InferenceData to NetCDF."""
        self.idata.to_netcdf(str(path))

    def report(self, truth: dict | None = None) -> str:
        """A table: mean, sd, 94 % interval, R-hat, ESS (and the truth when given)."""
        s = self.summary
        head = f"{'parameter':>12} {'mean':>11} {'sd':>10} {'hdi_3%':>11} {'hdi_97%':>11}"
        head += f" {'r_hat':>6} {'ess_bulk':>8} {'ess_tail':>8}"
        if truth:
            head += f" {'truth':>11}"
        lines = [head]
        for name in s.index:
            row = s.loc[name]
            line = (f"{name:>12} {row['mean']:11.4g} {row['sd']:10.3g} {row['hdi_3%']:11.4g} "
                    f"{row['hdi_97%']:11.4g} {row['r_hat']:6.3f} {row['ess_bulk']:8.0f} "
                    f"{row['ess_tail']:8.0f}")
            if truth:
                t = truth.get(name)
                line += f" {t:11.4g}" if t is not None else f" {'':>11}"
            lines.append(line)
        lines.append(f"divergent transitions: {self.divergences} of "
                     f"{self.n_draws * self.n_chains} ({100 * self.divergence_fraction:.2f} %)"
                     f"; {self.n_chains} chains x {self.n_draws} draws in {self.seconds:.1f} s"
                     f" ({self.mean_steps:.0f} leapfrog steps per draw)")
        return "\n".join(lines)


#: NUTS target acceptance probability unless a model asks for another (numpyro's default).
DEFAULT_TARGET_ACCEPT = 0.8


def run_nuts(model, *args, var_names, init_values=None, num_warmup=1000, num_samples=1000,
             num_chains=4, seed=0, sampler="numpyro", target_accept=DEFAULT_TARGET_ACCEPT,
             max_tree_depth=(7, 10),
             dense_mass=False, chain_method="auto", progress=True, **kwargs) -> FitResult:
    """Sample a numpyro model with NUTS.

    Args:
        model: numpyro model function, called as model(*args, **kwargs).
        var_names: sites summarised (cluster-level parameters; per-star latents are kept in
            the InferenceData but not summarised).
        init_values: dict of starting values (constrained space) for some sites.
        num_warmup, num_samples, num_chains: per chain.
        sampler: "numpyro" (default) or "blackjax" (window adaptation + NUTS on numpyro's
            potential function; diagonal mass matrix, no progress bar).
        max_tree_depth: the NUTS tree-depth cap (at most 2**depth - 1 leapfrog steps per draw),
            an int, or (during warm-up, after warm-up). The default (7, 10) caps the warm-up:
            before the first mass-matrix update (a unit matrix) trajectories otherwise run to
            1023 steps; in the demo fit the cap cut the warm-up from 100,000 to 20,000
            gradient evaluations with the same adapted step size and steps per draw after it.
        dense_mass: numpyro's option: False (diagonal), True, or a list of tuples of site
            names with a dense block each (e.g. the cluster parameters of a hierarchical model).
        chain_method: numpyro's "parallel" (one chain per CPU device, see
            :func:`dastro.devices.use_cpu_cores`), "vectorized" (one compiled program for
            all chains, in lock step) or "sequential"; "auto" (default) takes "parallel"
            when there are at least as many devices as chains, else "vectorized".
    """
    if num_chains < 1 or num_samples < 1 or num_warmup < 0:
        raise ValueError("num_chains and num_samples must be >= 1 and num_warmup >= 0")
    depths = (max_tree_depth,) * 2 if np.ndim(max_tree_depth) == 0 else tuple(max_tree_depth)
    if len(depths) != 2 or not all(isinstance(d, (int, np.integer)) and 1 <= d <= 15
                                   for d in depths):
        raise ValueError(f"max_tree_depth must be an int in 1..15 or a pair of them, got "
                         f"{max_tree_depth!r}")
    if chain_method == "auto":
        parallel = 1 < num_chains <= jax.local_device_count()
        chain_method = "parallel" if parallel else "vectorized"
    t0 = time.perf_counter()
    init = init_to_value(values=init_values or {})
    if sampler == "numpyro":
        kernel = NUTS(model, init_strategy=init, target_accept_prob=target_accept,
                      max_tree_depth=depths, dense_mass=dense_mass)
        mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples,
                    num_chains=num_chains, chain_method=chain_method,
                    progress_bar=progress)
        mcmc.run(jax.random.PRNGKey(seed), *args,
                 extra_fields=("num_steps", "energy", "diverging"), **kwargs)
        # no log_likelihood group: ArviZ would re-run the whole model for every draw (its
        # only observed site is the catalogue's factor), which took longer than a short fit
        idata = az.from_numpyro(mcmc, log_likelihood=False)
    elif sampler == "blackjax":
        idata = _run_blackjax(model, args, kwargs, init, num_warmup, num_samples, num_chains,
                              seed, target_accept, depths)
    else:
        raise ValueError(f"sampler must be 'numpyro' or 'blackjax', got {sampler!r}")
    seconds = time.perf_counter() - t0
    summary = az.summary(idata, var_names=var_names, round_to="none")
    divergences = int(np.asarray(idata.sample_stats["diverging"]).sum())
    stats = idata.sample_stats
    steps = stats["num_steps"] if "num_steps" in stats else stats.get("n_steps")
    return FitResult(idata=idata, summary=summary, var_names=list(var_names),
                     divergences=divergences, n_draws=num_samples, n_chains=num_chains,
                     seconds=seconds,
                     mean_steps=float(np.mean(steps)) if steps is not None else float("nan"))


def blackjax_chain(logdensity, key, position0, num_warmup, num_samples, target_accept=0.8,
                   depths=(7, 10)):
    """One blackjax NUTS chain: window adaptation (tree depth depths[0]), then num_samples
    draws (depth depths[1]). Traceable, so a caller may jit it with the data as arguments.

    Returns (positions, divergent): the unconstrained draws (leading axis num_samples) and a
    boolean per draw.
    """
    import blackjax

    k_warm, k_run = jax.random.split(key)
    warmup = blackjax.window_adaptation(blackjax.nuts, logdensity,
                                        target_acceptance_rate=target_accept,
                                        max_num_doublings=depths[0])
    (state, params), _ = warmup.run(k_warm, position0, num_steps=num_warmup)
    kernel = blackjax.nuts(logdensity, **dict(params, max_num_doublings=depths[1]))

    def one_step(state, k):
        state, info = kernel.step(k, state)
        return state, (state.position, info.is_divergent)

    _, (positions, divergent) = jax.lax.scan(one_step, state,
                                             jax.random.split(k_run, num_samples))
    return positions, divergent


def _run_blackjax(model, args, kwargs, init, num_warmup, num_samples, num_chains, seed,
                  target_accept, depths):
    from numpyro.infer.util import initialize_model

    keys = jax.random.split(jax.random.PRNGKey(seed), num_chains + 1)
    info = initialize_model(keys[0], model, model_args=args, model_kwargs=kwargs,
                            init_strategy=init, dynamic_args=False)
    potential = info.potential_fn

    def logdensity(position):
        return -potential(position)

    draws, n_div = [], []
    for c in range(num_chains):
        positions, divergent = blackjax_chain(logdensity, keys[c + 1], info.param_info.z,
                                              num_warmup, num_samples, target_accept, depths)
        draws.append(jax.vmap(info.postprocess_fn)(positions))
        n_div.append(divergent)
    posterior = {k: np.stack([np.asarray(d[k]) for d in draws]) for k in draws[0]}
    diverging = np.stack([np.asarray(d) for d in n_div])
    return az.from_dict(posterior=posterior, sample_stats={"diverging": diverging})
