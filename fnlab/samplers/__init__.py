"""Negative samplers: weights over a candidate pool, and draws from them.

``available()`` lists the names, ``build(name, **params)`` makes one, ``param_specs(name)``
describes its numeric parameters. Every sampler has
``weights(sims [B, M], pos_sims [B], positive_mask [B, M]) -> [B, M]`` and
``sample(sims, pos_sims, positive_mask, k=1, generator=None) -> LongTensor[B, k]``.
"""

from . import fne, hardest, oracle, positive_aware, random, semihard, simans  # noqa: F401  (registration)
from . import range as _range  # noqa: F401
from .base import Sampler, check_inputs
from .fne import FNESampler
from .hardest import HardestSampler
from .oracle import OracleSampler
from .positive_aware import PositiveAwareSampler
from .random import RandomSampler
from .range import RangeSampler
from .registry import ParamSpec, available, build, param_specs
from .semihard import SemiHardSampler
from .simans import SimANSSampler, simans_weights

#: the sampler ``fnlab train`` uses unless told otherwise (FNE, calibrated mode)
DEFAULT_SAMPLER = "fne"

__all__ = [
    "DEFAULT_SAMPLER", "FNESampler", "HardestSampler", "OracleSampler", "ParamSpec", "PositiveAwareSampler", "RandomSampler",
    "RangeSampler", "Sampler", "SemiHardSampler", "SimANSSampler", "available", "build", "check_inputs",
    "param_specs", "simans_weights",
]
