"""Losses that consume a sampler's picked negatives (``neg_idx [B, k]``) or the whole pool.

``available()``, ``build(name, **params)``, ``param_specs(name)`` and ``entry(name)`` read the declarative
registry (:mod:`fnlab.losses.registry`) without importing torch; every loss is called as
``loss(sims [B, M], pos_sims [B], positive_mask [B, M] | None, neg_idx [B, k] | None, **side)`` and
has a ``reduction`` of ``"mean"``, ``"sum"`` or ``"none"`` (:mod:`fnlab.losses.base`). The loss classes
load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .registry import LOSSES, available, build, entry, param_specs

_LAZY = {
    "Loss": "fnlab.losses.base", "reduce": "fnlab.losses.base", "DCLLoss": "fnlab.losses.dcl",
    "FNCLoss": "fnlab.losses.fnc", "HCLLoss": "fnlab.losses.hcl", "InfoNCELoss": "fnlab.losses.infonce",
    "TripletLoss": "fnlab.losses.triplet",
}

__all__ = ["LOSSES", "available", "build", "entry", "param_specs", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fnlab.losses' has no attribute {name!r}")
