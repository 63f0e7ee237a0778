"""Model atmospheres: file formats (``io``), later the reference solver and emulators."""

from dastro.atmospheres.io import (
    ModelAtmosphere,
    iter_atmospheres,
    read_atlas,
    read_atmosphere,
    read_marcs,
    write_atlas,
    write_marcs,
)

__all__ = [
    "ModelAtmosphere",
    "iter_atmospheres",
    "read_atlas",
    "read_atmosphere",
    "read_marcs",
    "write_atlas",
    "write_marcs",
]
