"""The loss base class: negatives from a sampler's picks or the whole pool; reduction apart.

Pattern after pytorch-metric-learning's ``BaseMetricLossFunction`` and reducers: a loss
takes optional picked indices and falls back to every non-positive candidate; it computes a
per-anchor loss and the reduction (``"mean"``, ``"sum"``, ``"none"``) is applied last.

Call convention (one direction; call twice for image-to-text and text-to-image)::

    loss(sims [B, M], pos_sims [B], positive_mask [B, M] | None, neg_idx [B, k] | None) -> Tensor

``sims`` and ``pos_sims`` carry gradients. With ``neg_idx`` the negatives are
``sims.gather(1, neg_idx)``; a picked index that is a labelled positive is ignored (it
contributes nothing). Without ``neg_idx`` every candidate not in ``positive_mask`` is a
negative (``positive_mask=None``: every candidate is).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from fnlab.core.registry import ParamSpec

REDUCTIONS = ("mean", "sum", "none")


def reduce(per_anchor: torch.Tensor, reduction: str) -> torch.Tensor:
    """Apply ``"mean"``, ``"sum"`` or ``"none"`` to a ``[B]`` per-anchor loss."""
    if reduction == "mean":
        return per_anchor.mean() if per_anchor.numel() else per_anchor.sum()
    if reduction == "sum":
        return per_anchor.sum()
    return per_anchor


class Loss:
    """Base class. Subclasses implement :meth:`per_anchor` on gathered negatives."""

    name: ClassVar[str] = "base"
    PARAMS: ClassVar[tuple[ParamSpec, ...]] = ()
    #: whether the loss needs picked indices (``neg_idx``).
    needs_indices: ClassVar[bool] = False

    def __init__(self, reduction: str = "mean") -> None:
        if reduction not in REDUCTIONS:
            raise ValueError(f"{self.name}: 'reduction' must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
        self.reduction = reduction

    def per_anchor(self, neg: torch.Tensor, valid: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """``[B]`` loss from ``neg [B, K]`` similarities, ``valid [B, K]`` bool and ``pos [B]``."""
        raise NotImplementedError

    def negatives(self, sims: torch.Tensor, pos_sims: torch.Tensor, positive_mask: torch.Tensor | None,
                  neg_idx: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Validate and gather: ``(neg [B, K], valid [B, K] bool, pos [B])``.

        Raises:
            ValueError: wrong shapes, dtypes or out-of-range indices (naming the argument).
        """
        where = f"loss {self.name!r}"
        if not isinstance(sims, torch.Tensor) or sims.ndim != 2 or not sims.is_floating_point():
            raise ValueError(f"{where}: 'sims' must be a 2-D floating tensor [B, M]")
        b, m = sims.shape
        if pos_sims.ndim == 2 and pos_sims.shape[1] == 1:
            pos_sims = pos_sims[:, 0]
        if pos_sims.shape != (b,):
            raise ValueError(f"{where}: 'pos_sims' must have shape [{b}], got {tuple(pos_sims.shape)}")
        if positive_mask is None:
            positive_mask = torch.zeros(b, m, dtype=torch.bool, device=sims.device)
        elif positive_mask.dtype != torch.bool or positive_mask.shape != (b, m):
            raise ValueError(f"{where}: 'positive_mask' must be bool [{b}, {m}], got "
                             f"{positive_mask.dtype} {tuple(positive_mask.shape)}")
        if neg_idx is None:
            if self.needs_indices:
                raise ValueError(f"{where}: needs 'neg_idx' [B, k], the negatives a sampler picked")
            return sims, ~positive_mask, pos_sims
        if neg_idx.ndim != 2 or neg_idx.shape[0] != b or neg_idx.dtype != torch.long:
            raise ValueError(f"{where}: 'neg_idx' must be a LongTensor [{b}, k], got "
                             f"{neg_idx.dtype} {tuple(neg_idx.shape)}")
        if neg_idx.numel() and (int(neg_idx.min()) < 0 or int(neg_idx.max()) >= m):
            raise ValueError(f"{where}: 'neg_idx' holds indices outside [0, {m})")
        return sims.gather(1, neg_idx), ~positive_mask.gather(1, neg_idx), pos_sims

    def __call__(self, sims: torch.Tensor, pos_sims: torch.Tensor, positive_mask: torch.Tensor | None = None,
                 neg_idx: torch.Tensor | None = None) -> torch.Tensor:
        """The reduced loss (a scalar, or ``[B]`` with ``reduction="none"``)."""
        neg, valid, pos = self.negatives(sims, pos_sims, positive_mask, neg_idx)
        return reduce(self.per_anchor(neg, valid, pos), self.reduction)

    def __repr__(self) -> str:
        args = ", ".join(f"{p.name}={getattr(self, p.name, None)!r}" for p in self.PARAMS)
        return f"{type(self).__name__}({args}{', ' if args else ''}reduction={self.reduction!r})"


def masked_logsumexp(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Row-wise ``log sum_{valid} e^x`` (``-inf`` for a row with nothing valid). ``[B, K] -> [B]``."""
    return torch.logsumexp(x.masked_fill(~valid, float("-inf")), dim=1)


def debiased_loss(log_pos: torch.Tensor, log_neg_sum: torch.Tensor, n: torch.Tensor, temperature: float,
                  tau_plus: float) -> torch.Tensor:
    """``-log(e^{s+/t} / (e^{s+/t} + Ng))`` with DCL's ``Ng``, computed with a per-row shift.

    ``Ng = max((S - tau+ N e^{s+/t}) / (1 - tau+), N e^{-1/t})`` where ``S = exp(log_neg_sum)``.
    Shapes: all ``[B]``; ``log_pos = s+/t``.
    """
    c = torch.maximum(log_pos, torch.nan_to_num(log_neg_sum, neginf=-1e30)).detach()
    p = torch.exp(log_pos - c)
    s = torch.exp(log_neg_sum - c)
    ng = (s - tau_plus * n * p) / (1 - tau_plus)
    ng = torch.maximum(ng, n * torch.exp(-1.0 / temperature - c))
    return torch.log(p + ng) - (log_pos - c)
