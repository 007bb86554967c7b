"""Negative samplers: weights over a candidate pool, and draws from them.

``available()`` lists the names, ``build(name, **params)`` makes one, ``param_specs(name)``
describes its parameters and ``entry(name)`` its labels; these read the declarative registry
(:mod:`fnlab.samplers.registry`) and import no sampler and no torch. Every sampler has
``weights(sims [B, M], pos_sims [B], positive_mask [B, M], ctx=None) -> [B, M]`` and
``sample(sims, pos_sims, positive_mask, k=1, generator=None, ctx=None) -> LongTensor[B, k]``, where
``ctx`` is a :class:`fnlab.retrieval.hooks.SampleContext` (the pool's features, ids and evidence).
The sampler classes load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .registry import (
    SAMPLERS,
    ParamSpec,
    available,
    build,
    build_for_run,
    default_loss,
    entry,
    param_specs,
    playground_note,
    variants,
)

#: the sampler ``fnlab train`` uses unless told otherwise (FNE, calibrated mode)
DEFAULT_SAMPLER = "fne"

_LAZY = {
    "Sampler": "fnlab.samplers.base", "check_inputs": "fnlab.samplers.base",
    "SampleContext": "fnlab.retrieval.hooks", "EpochContext": "fnlab.retrieval.hooks",
    "FNESampler": "fnlab.samplers.fne", "HardestSampler": "fnlab.samplers.hardest",
    "OracleSampler": "fnlab.samplers.oracle", "PositiveAwareSampler": "fnlab.samplers.positive_aware",
    "RandomSampler": "fnlab.samplers.random", "RangeSampler": "fnlab.samplers.range",
    "SemiHardSampler": "fnlab.samplers.semihard", "SimANSSampler": "fnlab.samplers.simans",
    "simans_weights": "fnlab.samplers.simans",
}

__all__ = [
    "DEFAULT_SAMPLER", "SAMPLERS", "ParamSpec", "available", "build", "build_for_run", "default_loss", "entry",
    "param_specs", "playground_note", "variants", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fnlab.samplers' has no attribute {name!r}")
