"""Bayesian fits of lowered-isothermal cluster models (numpyro / blackjax)."""

from dastro.inference.data import PROFILE_KINDS, Profile, StarData

__all__ = ["PROFILE_KINDS", "Profile", "StarData"]
