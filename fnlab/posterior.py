"""False-negative posteriors: P(false negative | similarity).

FNE (Li et al., ACM MM 2023, Sec. 3.2) models the similarity of matching pairs as
N(mu+, var+) and of non-matching pairs as N(mu-, var-), and applies Bayes' rule with
a prior P(pos):

    P_fn(s) = P(pos) N(s; mu+, var+) / (P(pos) N(s; mu+, var+) + (1 - P(pos)) N(s; mu-, var-))

The official code fixes P(pos) = 1/10000, i.e. ``N+ / (N+ + 9999 N-)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray | float


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
        """log P(pos | s) - log P(neg | s), computed stably in float64 where the input allows."""
        s = _as_tensor(sims)
        work = s.double() if s.dtype != torch.float64 and s.device.type == "cpu" else s
        lp = normal_log_pdf(work, self.pos_mean, self.pos_std) + math.log(self.prior_pos)
        ln = normal_log_pdf(work, self.neg_mean, self.neg_std) + math.log1p(-self.prior_pos)
        return lp - ln

    def prob_false_negative(self, sims: ArrayLike) -> torch.Tensor:
        """P(false negative | s) for each similarity; same shape and device as ``sims``.

        Returns float32 for float32 (or float16) input, float64 for float64 input.
        """
        s = _as_tensor(sims)
        out = torch.sigmoid(self.log_odds(s))
        return out.to(s.dtype if s.is_floating_point() and s.dtype != torch.float16 else torch.float32)

    def params(self) -> dict[str, float]:
        return {"pos_mean": self.pos_mean, "pos_std": self.pos_std, "neg_mean": self.neg_mean,
                "neg_std": self.neg_std, "prior_pos": self.prior_pos}
