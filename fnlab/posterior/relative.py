"""Per-anchor posterior on the margin to the anchor's own positive (estimator ``"relative"``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fnlab.core.registry import ParamSpec
from fnlab.posterior.base import Status, read_numbers
from fnlab.posterior.gaussian import ArrayLike, _as_tensor
from fnlab.posterior.mixture import MixturePosterior
from fnlab.posterior.signals import PairSignals


class RelativePosterior:
    """Per-anchor posterior: P(false negative | s - s+), with ``s+`` the anchor's labelled positive.

    The FNE posterior (Li et al., ACM MM 2023, Sec. 3.2) sees one similarity scale for every anchor,
    but anchors differ: a generic caption ("a shape") is close to everything, a specific one only to
    its match, so a true match of the first can score below a near miss of the second. Measuring a
    candidate against the anchor's own positive removes that offset: ``d = s - s+``. For a true match,
    ``d`` is modelled as the difference of two independent positive similarities (so ``N(0, 2 var+)``,
    sampled from random pairs of labelled positives); the negative component and the prior are fitted
    by EM on unlabelled pairs with that component fixed (:class:`fnlab.posterior.mixture.MixturePosterior` with its positive component anchored, on ``d``).

    Args:
        delta: a posterior over ``d`` (``prob_false_negative(d)``).
        pos_mean, pos_std: moments of the labelled positive similarities (``pos_mean`` is what FNE's
            cut-down ``s <= mu+ - margin`` uses).

    Call :meth:`prob_false_negative` with ``pos_sims`` (broadcastable to ``sims``). The result never
    decreases as ``s - s+`` grows (see :meth:`_monotone_floor`).
    """

    PARAMS = (ParamSpec("n_random", 50_000, 1000, 1_000_000, "uniform unlabelled pairs in the fit sample",
                        integer=True),)

    signals = ("similarity", "positive_similarity")
    ready = True
    window = None
    notes = ()

    def __init__(self, delta: Any, *, pos_mean: float, pos_std: float) -> None:
        self.delta, self.pos_mean, self.pos_std = delta, float(pos_mean), float(pos_std)

    @property
    def prior_pos(self) -> float:
        return float(self.delta.prior_pos)

    @classmethod
    def fit(cls, pos_sims: ArrayLike, unlabelled_sims: ArrayLike, unlabelled_pos_sims: ArrayLike, *,
            prior: float | str = "auto", seed: int = 0) -> RelativePosterior:
        """Fit on labelled positives ``[P]`` and unlabelled pairs ``[U]`` with their anchors' positives ``[U]``.

        Raises:
            ValueError: mismatched lengths or too few values (as :func:`fit_posterior`).
        """
        pos = _as_tensor(pos_sims).double().flatten()
        unl = _as_tensor(unlabelled_sims).double().flatten()
        unl_pos = _as_tensor(unlabelled_pos_sims).double().flatten()
        if unl.shape != unl_pos.shape:
            raise ValueError(f"'unlabelled_sims' has {unl.numel()} values but 'unlabelled_pos_sims' has {unl_pos.numel()}")
        if pos.numel() < 2:
            raise ValueError(f"need at least 2 labelled positive similarities, got {pos.numel()}")
        g = torch.Generator().manual_seed(int(seed))
        pos_delta = pos[torch.randperm(pos.numel(), generator=g)] - pos
        delta = unl - unl_pos
        fixed = None if prior == "auto" else float(prior)
        inner = MixturePosterior.fit_em(pos_delta, delta, neg_sims=delta, prior=fixed, anchored_positive=True)
        return cls(inner, pos_mean=float(pos.mean()), pos_std=float(pos.std()))

    @classmethod
    def fit_context(cls, ctx: Any, *, prior: float | str = "auto", seed: int = 0,
                    n_random: int = 50_000) -> RelativePosterior:
        """Fit on a :class:`fnlab.posterior.signals.PairContext` (labelled pairs and ``n_random``
        uniformly drawn unlabelled pairs whose query has a labelled positive)."""
        _, _, pos = ctx.positive_similarities()
        uq, uc = ctx.draw_unlabelled(n_random, np.random.default_rng(seed))
        sig = ctx.signals(uq, uc)
        unl, unl_pos = sig.numpy("similarity"), sig.numpy("positive_similarity")
        ok = np.isfinite(unl_pos)
        if ok.sum() < 2:
            raise ValueError("estimator 'relative' needs unlabelled pairs whose queries have a labelled positive")
        return cls.fit(pos, unl[ok], unl_pos[ok], prior=prior, seed=seed)

    def prob_false_negative(self, sims: ArrayLike | Any, pos_sims: ArrayLike | None = None) -> torch.Tensor:
        """P(false negative) for each similarity; ``pos_sims`` broadcasts against ``sims``.

        ``sims`` may be a :class:`fnlab.posterior.signals.PairSignals` (its similarity and
        positive similarity are used).

        Raises:
            ValueError: ``pos_sims`` is missing (this posterior is relative to each anchor's positive).
        """
        if isinstance(sims, PairSignals):
            sims, pos_sims = sims.similarity, sims.positive_similarity
        if pos_sims is None:
            raise ValueError("the 'relative' posterior needs each anchor's positive similarity: "
                             "call prob_false_negative(sims, pos_sims)")
        s = _as_tensor(sims)
        d = s - _as_tensor(pos_sims).to(device=s.device, dtype=s.dtype)
        floor = self._monotone_floor()
        if floor is not None:
            d = d.clamp(min=floor)
        return self.delta.prob_false_negative(d)

    def _monotone_floor(self) -> float | None:
        """Where the positive component is the wider one, the two-Gaussian log-odds is a convex
        parabola in ``d`` and rises again in the far-negative tail, which would call candidates far
        *less* similar than the anchor's positive likely matches. Below the parabola's vertex the
        posterior is held at its minimum, so P(FN) never decreases as ``s - s+`` grows."""
        mp, sp_ = float(self.delta.pos_mean), float(self.delta.pos_std)
        mn, sn = float(self.delta.neg_mean), float(self.delta.neg_std)
        curvature = 1.0 / sn**2 - 1.0 / sp_**2
        if curvature <= 0:
            return None
        return (mn / sn**2 - mp / sp_**2) / curvature

    def params(self) -> dict[str, Any]:
        return {"estimator": "relative", "pos_mean": self.pos_mean, "pos_std": self.pos_std,
                "prior_pos": self.prior_pos, "delta": self.delta.params()}

    @property
    def estimator(self) -> str:
        return "relative"

    @property
    def status(self) -> Status:
        """The status of its mixture on ``s - s+``."""
        return self.delta.status

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> RelativePosterior:
        """Rebuild from :meth:`params`.

        Raises:
            ValueError: a missing or non-numeric field, or no ``delta`` object.
        """
        values = read_numbers(params, ("pos_mean", "pos_std"))
        inner = params.get("delta")
        if not isinstance(inner, dict):
            raise ValueError("posterior params: estimator 'relative' needs a 'delta' object (the posterior of s - s+)")
        return cls(MixturePosterior.from_params(inner), **values)


