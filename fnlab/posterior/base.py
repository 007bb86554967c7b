"""What every false-negative posterior offers: the :class:`Posterior` protocol and its :class:`Status`.

A posterior answers one question about a (query, candidate) pair that is not labelled: how likely is
it a match all the same (a false negative)? Every estimator of :mod:`fnlab.posterior` (and FNE's
running statistics) satisfies :class:`Posterior`, so callers (the scan, ``fnlab eval``, the FNE
sampler, the app) use these members and nothing else:

==========================  ===================================================================
member                      meaning
==========================  ===================================================================
``estimator``               its registry name (``"pu"``, ``"paper"``, ...)
``signals``                 the :class:`fnlab.posterior.signals.PairSignals` fields it reads
                            (``"similarity"`` always); a caller that offers fewer gets them
                            marginalised out (or, for ``relative``, an error)
``prior_pos``               the prior P(match) of an unlabelled pair it applies
``pos_mean``                the mean labelled-positive similarity (FNE's cut-down reads it)
``ready``                   whether it can be applied now (FNE's running statistics wait for
                            enough confident pairs; a fitted posterior always can)
``window``                  the candidates a query shows in a scan it was calibrated for (``None``:
                            it does not depend on the ranking); contexts that apply it are built
                            with this ``window``
``status``                  :class:`Status`: whether its numbers are calibrated probabilities
                            or a ranking only, and why
``notes``                   what the fit decided and why, one line each
``prob_false_negative``     ``(signals | sims, pos_sims=None) -> Tensor``: P(false negative)
``params``                  a JSON-able dict that :func:`fnlab.posterior.from_params` rebuilds
==========================  ===================================================================

Estimator classes (the registry's entries) also satisfy :class:`Estimator`: ``fit_context(ctx, *,
prior, seed, **params)`` fits one on a :class:`fnlab.posterior.signals.PairContext`, and
``from_params(params)`` rebuilds one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

__all__ = ["CALIBRATED", "RANK_ONLY", "Estimator", "Posterior", "PosteriorBase", "Status", "read_numbers"]

#: the two labels a status shows
CALIBRATED = "calibrated"
RANK_ONLY = "uncalibrated: rank only"


@dataclass(frozen=True)
class Status:
    """Whether a posterior's numbers can be read as probabilities.

    ``calibrated``: P is meant as a probability (the fit found nothing that says otherwise).
    Otherwise P still orders pairs (higher: more likely a false negative) but a value such as 0.99
    is not a promise; ``reason`` says why, in one line.

    Example:
        >>> str(Status(False, "2 labelled pairs"))
        'uncalibrated: rank only (2 labelled pairs)'
    """

    calibrated: bool = True
    reason: str = ""

    @property
    def label(self) -> str:
        """``"calibrated"`` or ``"uncalibrated: rank only"``."""
        return CALIBRATED if self.calibrated else RANK_ONLY

    def __str__(self) -> str:
        return self.label if self.calibrated or not self.reason else f"{self.label} ({self.reason})"

    def to_dict(self) -> dict[str, Any]:
        return {"calibrated": self.calibrated, "label": self.label, "reason": self.reason}

    @classmethod
    def from_dict(cls, value: Any, default: Status | None = None) -> Status:
        """A status from :meth:`to_dict` output; ``default`` (calibrated) when ``value`` is missing
        (files written before statuses existed).

        Raises:
            ValueError: a value that is neither a dict nor ``None``.
        """
        if value is None:
            return default or cls()
        if not isinstance(value, dict) or not isinstance(value.get("calibrated"), bool):
            raise ValueError(f"posterior params: field 'status' must be {{'calibrated': bool, 'reason': str}}, "
                             f"got {value!r}")
        return cls(bool(value["calibrated"]), str(value.get("reason", "")))


@runtime_checkable
class Posterior(Protocol):
    """A fitted false-negative posterior (module docstring)."""

    estimator: str
    signals: tuple[str, ...]
    prior_pos: float
    pos_mean: float
    ready: bool
    window: int | None
    status: Status
    notes: tuple[str, ...]

    def prob_false_negative(self, signals: Any, pos_sims: Any = None) -> torch.Tensor: ...

    def params(self) -> dict[str, Any]: ...


@runtime_checkable
class Estimator(Protocol):
    """A registered estimator class: fits and rebuilds :class:`Posterior` objects."""

    @classmethod
    def fit_context(cls, ctx: Any, *, prior: float | str = "auto", seed: int = 0, **params: Any) -> Posterior: ...

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Posterior: ...


def read_numbers(params: dict[str, Any], keys: tuple[str, ...]) -> dict[str, float]:
    """``{key: float(params[key])}`` for each of ``keys``.

    Raises:
        ValueError: a missing or non-numeric field (named).
    """
    values = {}
    for key in keys:
        if key not in params:
            raise ValueError(f"posterior params: missing field {key!r} (expected a number)")
        try:
            values[key] = float(params[key])
        except (TypeError, ValueError):
            raise ValueError(f"posterior params: field {key!r} must be a number, got {params[key]!r}") from None
    return values


class PosteriorBase:
    """Defaults for a hand-written :class:`Posterior` (subclass it and define ``prob_false_negative``).

    Reads the similarity alone, always ready, calibrated unless said otherwise, ``params()`` names
    the class. Override what differs (``signals``, ``pos_mean``, ``prior_pos``, ``status``).
    """

    estimator: str = "custom"
    signals: tuple[str, ...] = ("similarity",)
    prior_pos: float = float("nan")
    pos_mean: float = float("nan")
    ready: bool = True
    window: int | None = None
    status: Status = Status()
    notes: tuple[str, ...] = ()

    def prob_false_negative(self, signals: Any, pos_sims: Any = None) -> torch.Tensor:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {"estimator": self.estimator, "class": type(self).__name__}
