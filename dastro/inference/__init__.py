"""Bayesian fits of lowered-isothermal cluster models (numpyro / blackjax).

- :mod:`~dastro.inference.data`: catalogue and profile containers;
- :mod:`~dastro.inference.io`: readers and writers (CSV, ECSV, FITS; units; masks);
- :mod:`~dastro.inference.models`: numpyro models (star level, binned profiles, combined);
- :mod:`~dastro.inference.profiles`: the binned-profile likelihood;
- :mod:`~dastro.inference.fit`: NUTS runs and their diagnostics (ArviZ);
- :mod:`~dastro.inference.cli_fit`: the ``fit-cluster`` and ``fit-profiles`` commands.
"""

from dastro.inference.data import PROFILE_KINDS, Profile, StarData
from dastro.inference.fit import FitResult, run_nuts
from dastro.inference.io import (
    MIN_STARS,
    describe,
    read_catalogue,
    read_profiles,
    write_catalogue,
)
from dastro.inference.models import (
    FitConfig,
    Priors,
    initial_values,
    profile_model,
    star_model,
    target_accept,
)
from dastro.inference.profiles import profile_log_likelihood, profiles_factor

__all__ = [
    "MIN_STARS", "PROFILE_KINDS", "FitConfig", "FitResult", "Priors", "Profile", "StarData",
    "describe", "initial_values", "profile_log_likelihood", "profile_model", "profiles_factor",
    "read_catalogue", "read_profiles", "run_nuts", "star_model", "target_accept",
    "write_catalogue",
]
