"""dastro: a JAX-native, differentiable astrophysics toolkit.

Importing dastro switches JAX to float64 (``jax_enable_x64``): the physics in this package
(Poisson solves to 1e-10, opacities spanning tens of decades) needs double precision. This is
the package's only global setting. Networks may still be trained in float32 by passing
float32 arrays explicitly.
"""

import jax

jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"

__all__ = ["__version__"]
