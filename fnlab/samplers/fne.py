"""FNE: False Negative Elimination sampling (Li et al., "Your Negative May not Be True
Negative: Boosting Image-Text Matching with False Negative Elimination", ACM MM 2023)."""

from __future__ import annotations

from typing import Any

import torch

from .base import Sampler
from .registry import ParamSpec, register


def _posterior_ready(posterior: Any) -> bool:
    """A posterior is usable when present and, if it says so, ready (running stats)."""
    return posterior is not None and bool(getattr(posterior, "ready", True))


@register("fne")
class FNESampler(Sampler):
    """FNE's negative sampling, in the paper's form or a calibrated form.

    With ``P = posterior.prob_false_negative(s)`` and ``mu+ = posterior.pos_mean``:

    * base weight ``w = exp(-tau (s - s+)^2)`` (SimANS with ``a = tau``, ``b = 0``);
    * ``mode="paper"`` (the official ``choice_negative``): where ``1 - P < 1 - fn_cutoff``
      (i.e. ``P > fn_cutoff``) the weight *becomes* ``exp(-tau P)``. A near-certain false
      negative keeps ``exp(-0.5) = 0.61`` of the weight: the paper softens, it does not
      eliminate;
    * ``mode="calibrated"`` (default): ``w = exp(-tau (s - s+)^2) * (1 - P)``, so likely false
      negatives really vanish when the posterior is calibrated (fit it with an honest prior,
      see :func:`fnlab.posterior.fit_posterior`);
    * cut-down: ``w = 0`` where ``s <= mu+ - margin`` (the running positive mean, not the
      anchor's own positive);
    * zero on labelled positives, hardest-non-positive fallback for empty rows (base class).

    ``posterior=None``, or a posterior whose ``ready`` attribute is false (e.g.
    :class:`fnlab.posterior.RunningGaussianStats` before 200 confident positives), gives the
    warm-up behaviour: base weights only, no cut-down.

    Args:
        posterior: any object with ``prob_false_negative(sims) -> Tensor`` and ``pos_mean``.
        mode: ``"calibrated"`` or ``"paper"``.
        tau: sharpness of the base weight (0.5).
        margin: cut-down margin below the positive mean (0.2).
        fn_cutoff: paper mode replaces weights where ``P > fn_cutoff`` (1e-3).

    Example:
        >>> from fnlab.posterior import GaussianPosterior
        >>> s = FNESampler(GaussianPosterior(0.6, 0.1, 0.1, 0.1), mode="paper")
        >>> sims = torch.tensor([[0.7, 0.5, 0.1]]); mask = torch.tensor([[True, False, False]])
        >>> s.sample(sims, sims[:, 0], mask).shape
        torch.Size([1, 1])
    """

    PARAMS = (
        ParamSpec("tau", 0.5, 0.0, 20.0, "sharpness of exp(-tau (s - s+)^2)"),
        ParamSpec("margin", 0.2, 0.0, 1.0, "cut-down: zero weight where s <= mu+ - margin"),
        ParamSpec("fn_cutoff", 1e-3, 1e-6, 0.5, "paper mode: P_fn above this replaces the weight"),
    )

    def __init__(self, posterior: Any = None, mode: str = "calibrated", tau: float = 0.5,
                 margin: float = 0.2, fn_cutoff: float = 1e-3) -> None:
        if mode not in ("paper", "calibrated"):
            raise ValueError(f"fne: 'mode' must be 'paper' or 'calibrated', got {mode!r}")
        if tau < 0:
            raise ValueError(f"fne: 'tau' must be >= 0, got {tau}")
        if not 0 < fn_cutoff < 1:
            raise ValueError(f"fne: 'fn_cutoff' must lie in (0, 1), got {fn_cutoff}")
        if posterior is not None and not (hasattr(posterior, "prob_false_negative") and hasattr(posterior, "pos_mean")):
            raise ValueError("fne: 'posterior' must have prob_false_negative(sims) and pos_mean, "
                             f"got {type(posterior).__name__}")
        self.posterior = posterior
        self.mode, self.tau, self.margin, self.fn_cutoff = mode, float(tau), float(margin), float(fn_cutoff)

    def prob_false_negative(self, sims: torch.Tensor, pos_sims: torch.Tensor | None = None) -> torch.Tensor | None:
        """``[B, M]`` posterior on the device and dtype of ``sims``, or None during warm-up.

        ``pos_sims [B]`` is passed on to posteriors relative to each anchor's positive
        (:class:`fnlab.posterior.RelativePosterior`)."""
        if not _posterior_ready(self.posterior):
            return None
        if getattr(self.posterior, "uses_positive_similarity", False):
            p = self.posterior.prob_false_negative(sims, None if pos_sims is None else pos_sims[:, None])
        else:
            p = self.posterior.prob_false_negative(sims)
        if not isinstance(p, torch.Tensor):
            p = torch.as_tensor(p)
        return p.to(device=sims.device, dtype=sims.dtype)

    def _weights(self, sims, pos_sims, positive_mask, **context):
        w = torch.exp(-self.tau * (sims - pos_sims[:, None]) ** 2)
        p = self.prob_false_negative(sims, pos_sims)
        if p is None:
            return w
        if self.mode == "paper":
            replace = (1 - p) < (1 - self.fn_cutoff)
            w = torch.where(replace, torch.exp(-self.tau * p), w)
        else:
            w = w * (1 - p).clamp_min(0)
        cut = sims <= float(self.posterior.pos_mean) - self.margin
        return w.masked_fill(cut, 0.0)
