"""The loss base class: negatives from a sampler's picks or the whole pool; reduction apart.

Pattern after pytorch-metric-learning's ``BaseMetricLossFunction`` and reducers: a loss
takes optional picked indices and falls back to every non-positive candidate; it computes a
per-anchor loss and the reduction (``"mean"``, ``"sum"``, ``"none"``) is applied last.

Call convention (one direction; call twice for image-to-text and text-to-image)::

    loss(sims [B, M], pos_sims [B], positive_mask [B, M] | None, neg_idx [B, k] | None, **side) -> Tensor

``sims`` and ``pos_sims`` carry gradients. With ``neg_idx`` the negatives are
``sims.gather(1, neg_idx)``; a picked index that is a labelled positive is ignored (it
contributes nothing). Without ``neg_idx`` (the whole-pool path) every candidate not in
``positive_mask`` is a negative (``positive_mask=None``: every candidate is).

``side`` is what a sampler passes on (``Sampler.side_info``), each ``[B, M]`` over the pool and gathered
at the picks here: ``neg_mask`` (bool: the candidates that count as this anchor's negatives; every loss
honours it) and the keys a loss declares in :attr:`Loss.ACCEPTS` (``fn_mask``, ``neg_weight``, ``rank``),
which reach :meth:`Loss.per_anchor` as keyword arguments. :attr:`Loss.REQUIRES` are keys the loss cannot do
without. A loss with ``needs_embeddings`` sees no negatives at all: the trainer calls
:meth:`Loss.embed` with the batch's embeddings instead.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from fnlab.core.registry import ParamSpec

REDUCTIONS = ("mean", "sum", "none")
#: side-information keys every loss takes (``Loss.negatives`` applies them)
BASE_SIDE = ("neg_mask",)


def reduce(per_anchor: torch.Tensor, reduction: str) -> torch.Tensor:
    """Apply ``"mean"``, ``"sum"`` or ``"none"`` to a ``[B]`` per-anchor loss."""
    if reduction == "mean":
        return per_anchor.mean() if per_anchor.numel() else per_anchor.sum()
    if reduction == "sum":
        return per_anchor.sum()
    return per_anchor


class Loss:
    """Base class. Subclasses implement :meth:`per_anchor` on gathered negatives (module docstring)."""

    name: ClassVar[str] = "base"
    PARAMS: ClassVar[tuple[ParamSpec, ...]] = ()
    #: whether the loss needs picked indices (``neg_idx``).
    needs_indices: ClassVar[bool] = False
    #: whether the loss works on embeddings (:meth:`embed`) instead of a pool's similarities.
    needs_embeddings: ClassVar[bool] = False
    #: side-information keys :meth:`per_anchor` takes as keyword arguments (module docstring).
    ACCEPTS: ClassVar[tuple[str, ...]] = ()
    #: side-information keys the loss cannot do without (a subset of :attr:`ACCEPTS`).
    REQUIRES: ClassVar[tuple[str, ...]] = ()

    def __init__(self, reduction: str = "mean") -> None:
        if reduction not in REDUCTIONS:
            raise ValueError(f"{self.name}: 'reduction' must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
        self.reduction = reduction

    def per_anchor(self, neg: torch.Tensor, valid: torch.Tensor, pos: torch.Tensor, **side: torch.Tensor
                   ) -> torch.Tensor:
        """``[B]`` loss from ``neg [B, K]`` similarities, ``valid [B, K]`` bool and ``pos [B]`` (plus the
        accepted side information, each ``[B, K]``)."""
        raise NotImplementedError

    def check_shape(self, dim: int, batch: int) -> None:
        """Refuse, before training starts, an embedding width ``dim`` and batch size ``batch`` the loss cannot
        work with (``ValueError`` naming the parameters to change); most losses take any."""

    def embed(self, fa: torch.Tensor, fb: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """The loss of a batch of labelled pairs from their embeddings ``fa [B, d]``, ``fb [B, d]`` (unit rows)
        and the pairs' item ids ``ids [B]`` (pairs sharing an id match): losses with ``needs_embeddings``."""
        raise NotImplementedError(f"loss {self.name!r} has no embedding-level form")

    def negatives(self, sims: torch.Tensor, pos_sims: torch.Tensor, positive_mask: torch.Tensor | None,
                  neg_idx: torch.Tensor | None, side: dict[str, torch.Tensor] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Validate and gather: ``(neg [B, K], valid [B, K] bool, pos [B], side {key: [B, K]})``.

        Raises:
            ValueError: wrong shapes, dtypes or out-of-range indices (naming the argument), side information
                the loss does not take, or missing required side information.
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
        side = self._check_side(side or {}, b, m, where)
        if neg_idx is None:
            if self.needs_indices:
                raise ValueError(f"{where}: needs 'neg_idx' [B, k], the negatives a sampler picked")
            neg, valid = sims, ~positive_mask
        else:
            if neg_idx.ndim != 2 or neg_idx.shape[0] != b or neg_idx.dtype != torch.long:
                raise ValueError(f"{where}: 'neg_idx' must be a LongTensor [{b}, k], got "
                                 f"{neg_idx.dtype} {tuple(neg_idx.shape)}")
            if neg_idx.numel() and (int(neg_idx.min()) < 0 or int(neg_idx.max()) >= m):
                raise ValueError(f"{where}: 'neg_idx' holds indices outside [0, {m})")
            neg, valid = sims.gather(1, neg_idx), ~positive_mask.gather(1, neg_idx)
            side = {k: v.gather(1, neg_idx) for k, v in side.items()}
        if "neg_mask" in side:
            valid = valid & side.pop("neg_mask")
        return neg, valid, pos_sims, side

    def _check_side(self, side: dict[str, torch.Tensor], b: int, m: int, where: str) -> dict[str, torch.Tensor]:
        takes = set(self.ACCEPTS) | set(BASE_SIDE)
        unknown = sorted(set(side) - takes)
        if unknown:
            raise ValueError(f"{where}: takes no side information {unknown}; it takes {sorted(takes)}")
        missing = sorted(set(self.REQUIRES) - set(side))
        if missing:
            raise ValueError(f"{where}: needs side information {missing} from its sampler")
        for key, value in side.items():
            if not isinstance(value, torch.Tensor) or value.shape != (b, m):
                got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(f"{where}: side information {key!r} must be a tensor [{b}, {m}], got {got}")
        return dict(side)

    def __call__(self, sims: torch.Tensor, pos_sims: torch.Tensor, positive_mask: torch.Tensor | None = None,
                 neg_idx: torch.Tensor | None = None, **side: torch.Tensor) -> torch.Tensor:
        """The reduced loss (a scalar, or ``[B]`` with ``reduction="none"``)."""
        neg, valid, pos, extra = self.negatives(sims, pos_sims, positive_mask, neg_idx, side)
        return reduce(self.per_anchor(neg, valid, pos, **extra), self.reduction)

    def __repr__(self) -> str:
        args = ", ".join(f"{p.name}={getattr(self, p.name, None)!r}" for p in self.PARAMS)
        return f"{type(self).__name__}({args}{', ' if args else ''}reduction={self.reduction!r})"


def accepted_side(loss: Any, side: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The part of a sampler's side information ``loss`` takes (``neg_mask`` and its :attr:`Loss.ACCEPTS`)."""
    takes = set(getattr(loss, "ACCEPTS", ())) | set(BASE_SIDE)
    return {k: v for k, v in side.items() if k in takes}


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
