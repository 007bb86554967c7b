"""Losses that consume a sampler's picked negatives (``neg_idx [B, k]``) or the whole pool.

``available()``, ``build(name, **params)``, ``param_specs(name)``; every loss is called as
``loss(sims [B, M], pos_sims [B], positive_mask [B, M] | None, neg_idx [B, k] | None)`` and
has a ``reduction`` of ``"mean"``, ``"sum"`` or ``"none"``.
"""

from . import dcl, fnc, hcl, infonce, triplet  # noqa: F401  (registration)
from .base import Loss, reduce
from .dcl import DCLLoss
from .fnc import FNCLoss
from .hcl import HCLLoss
from .infonce import InfoNCELoss
from .registry import available, build, param_specs
from .triplet import TripletLoss

__all__ = ["DCLLoss", "FNCLoss", "HCLLoss", "InfoNCELoss", "Loss", "TripletLoss", "available", "build",
           "param_specs", "reduce"]
