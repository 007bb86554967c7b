"""FNE's posterior: two Gaussians and Bayes' rule with a fixed prior (estimator ``"paper"``).

FNE (Li et al., ACM MM 2023, Sec. 3.2) models the similarity of matching pairs as
N(mu+, var+) and of non-matching pairs as N(mu-, var-), and applies Bayes' rule with
a prior P(pos):

    P_fn(s) = P(pos) N(s; mu+, var+) / (P(pos) N(s; mu+, var+) + (1 - P(pos)) N(s; mu-, var-))

The official code fixes P(pos) = 1/10000, i.e. ``N+ / (N+ + 9999 N-)``.
:class:`RunningGaussianStats` keeps the paper's running statistics over confident pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from fnlab.posterior.base import Status, read_numbers

ArrayLike = torch.Tensor | np.ndarray | float

#: FNE's fixed prior P(pos) = 1/10000
PAPER_PRIOR = 1e-4


def _as_tensor(x: ArrayLike) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def normal_log_pdf(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """log N(x; mean, std^2), elementwise."""
    var = std * std
    return -((x - mean) ** 2) / (2 * var) - 0.5 * math.log(2 * math.pi * var)


@dataclass
class GaussianPosterior:
    """Two-Gaussian posterior of FNE.

    Args:
        pos_mean, pos_std: mean and standard deviation of labelled-positive similarities.
        neg_mean, neg_std: mean and standard deviation of negative similarities.
        prior_pos: P(pos), the prior that a candidate is a match (paper: 1e-4).

    Example:
        >>> post = GaussianPosterior(0.6, 0.1, 0.1, 0.1, prior_pos=1e-4)
        >>> float(post.prob_false_negative(torch.tensor([0.6]))) > 0.9
        True
    """

    pos_mean: float
    pos_std: float
    neg_mean: float
    neg_std: float
    prior_pos: float = 1e-4

    #: the pair signals it reads (:class:`fnlab.posterior.base.Posterior`)
    signals: ClassVar[tuple[str, ...]] = ("similarity",)
    ready: ClassVar[bool] = True
    window: ClassVar[int | None] = None
    notes: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        if not (self.pos_std > 0 and self.neg_std > 0):
            raise ValueError(f"standard deviations must be positive, got pos_std={self.pos_std}, neg_std={self.neg_std}")
        if not (0.0 < self.prior_pos < 1.0):
            raise ValueError(f"prior_pos must lie in (0, 1), got {self.prior_pos}")

    @classmethod
    def fit(cls, pos_sims: ArrayLike, neg_sims: ArrayLike, *, prior_pos: float = 1e-4,
            min_std: float = 1e-3) -> GaussianPosterior:
        """Fit both Gaussians by moments on samples of positive and negative similarities.

        Raises:
            ValueError: either sample has fewer than 2 finite values.
        """
        pos = _as_tensor(pos_sims).double().flatten()
        neg = _as_tensor(neg_sims).double().flatten()
        pos, neg = pos[torch.isfinite(pos)], neg[torch.isfinite(neg)]
        if pos.numel() < 2 or neg.numel() < 2:
            raise ValueError(f"need at least 2 positive and 2 negative similarities, got {pos.numel()} and {neg.numel()}")
        return cls(
            pos_mean=float(pos.mean()), pos_std=max(float(pos.std()), min_std),
            neg_mean=float(neg.mean()), neg_std=max(float(neg.std()), min_std),
            prior_pos=prior_pos,
        )

    def log_odds(self, sims: ArrayLike) -> torch.Tensor:
        """log P(pos | s) - log P(neg | s), in log space (stable in float32; float64 input stays float64)."""
        s = _as_tensor(sims)
        work = s if s.dtype in (torch.float32, torch.float64) else s.float()
        # The difference of two Gaussian log-densities is a quadratic in s. Written around the
        # midpoint of the two means it is evaluated in a few fused passes (this is the hot path of
        # the FNE sampler) without the cancellation of the raw polynomial.
        mid = 0.5 * (self.pos_mean + self.neg_mean)
        dp, dn = self.pos_mean - mid, self.neg_mean - mid
        ip, in_ = 0.5 / self.pos_std**2, 0.5 / self.neg_std**2
        quad = in_ - ip
        lin = 2.0 * (ip * dp - in_ * dn)
        const = (in_ * dn * dn - ip * dp * dp + math.log(self.neg_std / self.pos_std)
                 + math.log(self.prior_pos) - math.log1p(-self.prior_pos))
        t = work - mid
        return (t * quad).add_(lin).mul_(t).add_(const)

    def prob_false_negative(self, sims: ArrayLike | Any, pos_sims: ArrayLike | None = None) -> torch.Tensor:
        """P(false negative | s) for each similarity; same shape and device as ``sims``.

        ``sims`` may be a :class:`fnlab.posterior.signals.PairSignals` (only its similarity is
        used); ``pos_sims`` is ignored (this posterior sees ``s`` alone).

        Returns float32 for float32 (or float16) input, float64 for float64 input.
        """
        s = _as_tensor(getattr(sims, "similarity", sims))
        out = self.log_odds(s).sigmoid_()
        return out.to(s.dtype if s.is_floating_point() and s.dtype != torch.float16 else torch.float32)

    def params(self) -> dict[str, Any]:
        """The fitted values; :func:`from_params` rebuilds the posterior from them."""
        return {"estimator": self.estimator, "pos_mean": self.pos_mean, "pos_std": self.pos_std, "neg_mean": self.neg_mean,
                "neg_std": self.neg_std, "prior_pos": self.prior_pos}

    @property
    def estimator(self) -> str:
        return "paper"

    @property
    def status(self) -> Status:
        """Never calibrated: both Gaussians are fitted by moments on labelled positives and the hardest
        negatives, not on the pool the posterior is applied to, and the prior is fixed, not estimated."""
        return Status(False, f"FNE's Gaussians on labelled pairs and hardest negatives, prior fixed at "
                             f"{self.prior_pos:.3g}, not estimated from the data")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> GaussianPosterior:
        """Rebuild from :meth:`params`.

        Raises:
            ValueError: a missing or non-numeric field.
        """
        return cls(**read_numbers(params, ("pos_mean", "pos_std", "neg_mean", "neg_std", "prior_pos")))

    @classmethod
    def fit_context(cls, ctx: Any, *, prior: float | str = "auto", seed: int = 0) -> GaussianPosterior:
        """The paper's fit on a :class:`fnlab.posterior.signals.PairContext`: positives are the
        labelled pairs, negatives each query's hardest unlabelled candidate (the paper's hardest
        negatives), prior 1e-4 unless given."""
        _, _, pos = ctx.positive_similarities()
        scores, _ = ctx.topk_unlabelled(1)
        neg = scores[:, 0][np.isfinite(scores[:, 0])]
        return cls.fit(pos, neg, prior_pos=PAPER_PRIOR if prior == "auto" else float(prior))


# ----------------------------------------------------------------------------- running stats
class RunningGaussianStats:
    """FNE's running Gaussian statistics with the confident-pair rule (official ``average_sims_scores``).

    Per batch, a pair ``(i, i)`` of the in-batch score matrix is *confident* when image ``i``'s
    top-1 caption is ``i`` and caption ``i``'s top-1 image is ``i``. Its labelled similarity
    feeds the positive statistics; its hardest in-batch negative in both directions (row ``i``
    and column ``i``, off the positives) feeds the negative statistics. The statistics are
    running over the epoch (call :meth:`reset` at each epoch start) and the posterior is used
    only once more than ``min_count`` (200) positives were collected (:attr:`ready`).

    Variance, as the official ``VarianceSims`` (``variance="paper"``): after the batch's values
    are added to the running mean, each value adds ``(x - running_mean)^2`` and
    ``var = sum / (count - 1)``. ``variance="exact"`` uses the exact sample variance instead.
    One deliberate difference: the official code masks the diagonal with 0 before taking the
    hardest negative (so a batch whose negatives are all below 0 records 0); fnlab masks with
    ``-inf`` and records the true hardest negative.

    The object is itself a posterior (``prob_false_negative``, ``pos_mean``, ``params``) built
    from the current statistics, so it can be handed to ``build("fne", posterior=stats)``.

    Args:
        min_count: positives needed before :attr:`ready` (official ``nums_right_sims`` = 200).
        prior_pos: P(pos) of the posterior (paper: 1e-4).
        variance: ``"paper"`` or ``"exact"``.
        min_std: floor on the fitted standard deviations.

    Example:
        >>> stats = RunningGaussianStats()
        >>> scores = torch.eye(4) * 0.8 + 0.1
        >>> stats.update(scores)
        4
        >>> stats.count, stats.ready
        (4, False)
    """

    estimator = "paper"
    signals = ("similarity",)
    notes = ()
    window = None
    status = Status(False, "FNE's running statistics over confident in-batch pairs, prior fixed, not estimated")

    def __init__(self, min_count: int = 200, prior_pos: float = 1e-4, variance: str = "paper",
                 min_std: float = 1e-3) -> None:
        if variance not in ("paper", "exact"):
            raise ValueError(f"RunningGaussianStats: 'variance' must be 'paper' or 'exact', got {variance!r}")
        if not 0 < prior_pos < 1:
            raise ValueError(f"RunningGaussianStats: 'prior_pos' must lie in (0, 1), got {prior_pos}")
        self.min_count, self.prior_pos, self.variance, self.min_std = int(min_count), float(prior_pos), variance, min_std
        self.reset()

    def reset(self) -> None:
        """Forget everything (the official code resets at each epoch)."""
        # per side: [count, sum, paper_var_sum, sum_of_squares]
        self._acc = {"pos": [0, 0.0, 0.0, 0.0], "neg": [0, 0.0, 0.0, 0.0]}

    # --------------------------------------------------------------------- updates
    @staticmethod
    def confident_pairs(scores: torch.Tensor, ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The paper's confident-pair rule on one batch.

        Args:
            scores: ``[B, B]``, ``scores[i, j]`` = image ``i`` . caption ``j``; ``(i, i)`` labelled.
            ids: optional ``[B]`` item ids: entries sharing an id are positives of each other
                (a top-1 hit on any of them counts as correct and none is a negative). ``None``:
                only the diagonal is positive, as in the official code.

        Returns:
            ``(pos [P], neg [2P])``: confident pairs' labelled similarities, then their hardest
            negatives image-to-text followed by text-to-image (``-inf`` ones dropped).
        """
        if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
            raise ValueError(f"RunningGaussianStats.update: 'sims_batch' must be square [B, B], got {tuple(scores.shape)}")
        scores = scores.detach()
        b = scores.shape[0]
        ar = torch.arange(b, device=scores.device)
        if ids is None:
            same = torch.eye(b, dtype=torch.bool, device=scores.device)
        else:
            ids = ids.to(scores.device).reshape(-1)
            if ids.shape != (b,):
                raise ValueError(f"RunningGaussianStats.update: 'ids' must have shape [{b}], got {tuple(ids.shape)}")
            same = ids[:, None] == ids[None, :]
        ok = same[ar, scores.argmax(1)] & same[scores.argmax(0), ar]
        masked = scores.masked_fill(same, float("-inf"))
        neg = torch.cat([masked.max(1).values[ok], masked.max(0).values[ok]])
        return scores.diagonal()[ok], neg[torch.isfinite(neg)]

    def _add(self, side: str, x: torch.Tensor) -> None:
        x = x.detach().double().flatten().cpu()
        x = x[torch.isfinite(x)]
        if x.numel() == 0:
            return
        acc = self._acc[side]
        acc[0] += int(x.numel())
        acc[1] += float(x.sum())
        mean = acc[1] / acc[0]
        acc[2] += float(((x - mean) ** 2).sum())
        acc[3] += float((x * x).sum())

    def update(self, sims_or_pos: torch.Tensor, neg_sims: torch.Tensor | None = None, *,
               ids: torch.Tensor | None = None) -> int:
        """Add one batch; returns the number of positives added.

        Two forms:

        * ``update(sims_batch [B, B], ids=None)``: applies :meth:`confident_pairs`;
        * ``update(pos_sims [P], neg_sims [N])``: adds already-selected similarities.
        """
        if neg_sims is None:
            pos, neg = self.confident_pairs(sims_or_pos, ids)
        else:
            pos, neg = sims_or_pos, neg_sims
        self._add("pos", pos)
        self._add("neg", neg)
        return int(torch.isfinite(pos.detach()).sum()) if pos.numel() else 0

    # ------------------------------------------------------------------ statistics
    @property
    def count(self) -> int:
        """Positives collected since the last reset."""
        return self._acc["pos"][0]

    @property
    def ready(self) -> bool:
        """True once more than ``min_count`` positives (and 2 negatives) were collected."""
        return self.count > self.min_count and self._acc["neg"][0] >= 2

    def _moments(self, side: str) -> tuple[float, float]:
        n, s, paper_ss, ss = self._acc[side]
        if n == 0:
            return 0.0, 1.0
        mean = s / n
        if n < 2:
            return mean, 1.0
        var = paper_ss / (n - 1) if self.variance == "paper" else max(ss - n * mean * mean, 0.0) / (n - 1)
        return mean, max(math.sqrt(max(var, 0.0)), self.min_std)

    @property
    def pos_mean(self) -> float:
        return self._moments("pos")[0]

    def posterior(self, prior_pos: float | None = None) -> GaussianPosterior:
        """The :class:`GaussianPosterior` of the current statistics."""
        (pm, ps), (nm, ns) = self._moments("pos"), self._moments("neg")
        return GaussianPosterior(pm, ps, nm, ns, prior_pos=self.prior_pos if prior_pos is None else prior_pos)

    def prob_false_negative(self, sims: ArrayLike | Any, pos_sims: ArrayLike | None = None) -> torch.Tensor:
        return self.posterior().prob_false_negative(sims)

    def params(self) -> dict[str, Any]:
        return {**self.posterior().params(), "count": self.count}


