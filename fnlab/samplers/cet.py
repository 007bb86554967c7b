"""CET: the coupled estimation technique for pooling bias (Cai, Guo, Fan, Ai, Zhang and Cheng, "Hard Negatives or
False Negatives: Correcting Pooling Bias in Training Neural Ranking Models", CIKM 2022). No official code is public:
reconstructed from the paper's setting (``docs/METHODS.md`` says what was chosen). The loss is
:class:`fnlab.losses.cet.CETLoss`."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from fnlab.retrieval.hooks import EpochContext, SampleContext

from .base import Sampler
from .registry import register


def rank_table(pool_ranked: Any, n_a: int) -> sp.csr_matrix:
    """``[n_b, n_a]`` int32: each query row's pooling-retriever rank (1-based) of its recorded candidates (0: not
    recorded, ranked beyond the record) from ``b_meta["pool_ranked"]`` (:mod:`fnlab.data.pooling`)."""
    lists = [np.asarray(r, dtype=np.int64) for r in pool_ranked]
    rows = np.repeat(np.arange(len(lists)), [len(r) for r in lists])
    cols = np.concatenate(lists) if lists else np.zeros(0, dtype=np.int64)
    ranks = np.concatenate([np.arange(1, len(r) + 1) for r in lists]) if lists else np.zeros(0)
    return sp.csr_matrix((ranks.astype(np.int32), (rows, cols)), shape=(len(lists), n_a))


@register("cet")
class CETSampler(Sampler):
    """A relevance model and a selection model learned jointly from labels that exist only in the judged pool.

    The observation model (the paper's, after dual learning to rank): a pair is labelled when it is relevant *and*
    was selected for judging, ``P(y = 1) = P(r = 1) P(o = 1)``, with

    * the **relevance model** ``P(r = 1 | s) = sigmoid(alpha (s - beta))`` on the pair's similarity under the model
      being trained (its calibration, two parameters; the encoder is the ranker);
    * the **selection model** ``P(o = 1 | rank) = sigmoid(w (log(depth + 1/2) - log rank))`` on the pair's rank under
      the pooling retriever (the provenance the pooled dataset records, ``b_meta["pool_ranked"]``; a candidate beyond
      the record ranks ``record + 1``), two parameters ``w`` and ``log(depth)`` learned from the labels alone.

    Every step, over the whole pool (batch and queue), the sampler hands the loss

    * ``obs_nll``: the negative log-likelihood of the observed labels under ``P(r) P(o)`` (its gradient reaches only
      these parameters: the similarity is detached), which the trainer's optimiser minimises with the model's;
    * ``neg_weight``: each unlabelled pair's weight ``P(r = 0 | y = 0) = (1 - P(r)) / (1 - P(r) P(o))`` (detached): an
      unlabelled candidate the model finds relevant but the pool unlikely to have judged is no longer a confident
      negative; one the pool judged stays a full negative.

    Args:
        alpha, beta: the relevance model's start (10, 0.5).
        depth: the selection model's start for the judged depth (20).
        slope: the selection model's start for ``w`` (2).
        obs_weight: weight of ``obs_nll`` in the loss (1).
    """

    PROVIDES = ("neg_weight", "obs_nll")

    def __init__(self, alpha: float = 10.0, beta: float = 0.5, depth: float = 20.0, slope: float = 2.0,
                 obs_weight: float = 1.0) -> None:
        if alpha <= 0 or depth < 1 or slope <= 0 or obs_weight < 0:
            raise ValueError(f"cet: need alpha > 0, depth >= 1, slope > 0, obs_weight >= 0, got {alpha}, {depth}, "
                             f"{slope}, {obs_weight}")
        self.alpha, self.beta, self.depth, self.slope, self.obs_weight = alpha, beta, depth, slope, obs_weight
        self.log_alpha = torch.nn.Parameter(torch.tensor(float(np.log(alpha))))
        self.beta_ = torch.nn.Parameter(torch.tensor(float(beta)))
        self.log_slope = torch.nn.Parameter(torch.tensor(float(np.log(slope))))
        self.log_depth = torch.nn.Parameter(torch.tensor(float(np.log(depth + 0.5))))
        self.ranks: sp.csr_matrix | None = None
        self.record = 0
        self._sum = {"p_rel_unlabelled": 0.0, "weight": 0.0, "n": 0}

    # ------------------------------------------------------------------ the two models
    def parameters(self) -> list[torch.nn.Parameter]:
        return [self.log_alpha, self.beta_, self.log_slope, self.log_depth]

    def relevance_logit(self, s: torch.Tensor) -> torch.Tensor:
        """``alpha (s - beta)`` (any shape)."""
        return self.log_alpha.exp().to(s) * (s - self.beta_.to(s))

    def selection_logit(self, rank: torch.Tensor) -> torch.Tensor:
        """``w (log(depth) - log rank)`` for 1-based ranks (any shape, float)."""
        return self.log_slope.exp().to(rank) * (self.log_depth.to(rank) - rank.log())

    def observation_nll(self, s: torch.Tensor, rank: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Elementwise ``-log P(y | s, rank)`` under ``P(y = 1) = sigmoid(relevance) sigmoid(selection)``."""
        log_pr, log_po = F.logsigmoid(self.relevance_logit(s)), F.logsigmoid(self.selection_logit(rank))
        log_py = log_pr + log_po
        log_not = torch.log1p(-log_py.exp().clamp(max=1 - 1e-6))
        return -torch.where(y, log_py, log_not)

    def posteriors(self, s: torch.Tensor, rank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P(r = 1), P(o = 1))`` of pairs with similarities ``s`` and pooling ranks ``rank``."""
        return torch.sigmoid(self.relevance_logit(s)), torch.sigmoid(self.selection_logit(rank))

    def negative_weight(self, s: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
        """``P(r = 0 | y = 0) = (1 - P(r)) / (1 - P(r) P(o))``, detached."""
        with torch.no_grad():
            pr, po = self.posteriors(s, rank)
            return (1 - pr) / (1 - pr * po).clamp_min(1e-6)

    # ------------------------------------------------------------------ the pool's provenance
    def start_epoch(self, epoch: EpochContext) -> None:
        self._sum = {"p_rel_unlabelled": 0.0, "weight": 0.0, "n": 0}
        ds = getattr(epoch, "dataset", None)
        if self.ranks is None and ds is not None:
            if "pool_ranked" not in ds.b_meta.columns:
                raise ValueError(f"cet needs a pooled dataset (pooling provenance in b_meta 'pool_ranked'): load "
                                 f"{ds.name!r} with -o pooling_depth=20")
            self.ranks = rank_table(ds.b_meta["pool_ranked"], ds.n_a)
            self.record = max((len(r) for r in ds.b_meta["pool_ranked"]), default=0)

    def pool_ranks(self, ctx: SampleContext, shape: tuple[int, int], device: torch.device) -> torch.Tensor:
        """``[B, M]`` float: each pair's pooling rank (``record + 1`` beyond the record, and for synthetic slots)."""
        beyond = float(self.record + 1)
        if self.ranks is None or ctx.anchor_ids is None or ctx.candidate_ids is None:
            return torch.full(shape, beyond, device=device)
        anchors, cands = ctx.anchor_ids.cpu().numpy(), ctx.candidate_ids.cpu().numpy()
        real = cands >= 0
        c = np.where(real, cands, 0)
        r = (self.ranks[anchors][:, c] if ctx.direction == "t2i" else self.ranks[c][:, anchors].T).toarray()
        r = np.where((r > 0) & real[None, :], r, beyond)
        return torch.from_numpy(r.astype(np.float32)).to(device)

    def side_info(self, sims, pos_sims, positive_mask, ctx):
        rank = self.pool_ranks(ctx, tuple(sims.shape), sims.device)
        s = sims.detach()
        weight = self.negative_weight(s, rank).masked_fill(positive_mask, 1.0)
        nll = self.observation_nll(s, rank, positive_mask).mean(dim=1, keepdim=True) * self.obs_weight
        with torch.no_grad():
            unl = ~positive_mask
            pr = torch.sigmoid(self.relevance_logit(s))
            self._sum["p_rel_unlabelled"] += float((pr * unl).sum())
            self._sum["weight"] += float((weight * unl).sum())
            self._sum["n"] += int(unl.sum())
        return {"neg_weight": weight, "obs_nll": nll.expand_as(sims) / sims.shape[1]}

    def num_picks(self, k: int) -> int | None:
        return None  # the corrected loss runs over the whole pool

    def epoch_metrics(self) -> dict[str, float]:
        """``cet_p_relevant`` / ``cet_neg_weight``: mean ``P(r)`` and loss weight of the unlabelled pool pairs;
        ``cet_depth`` / ``cet_slope`` / ``cet_alpha`` / ``cet_beta``: the two models' parameters now."""
        n = self._sum["n"]
        out = {"cet_depth": float(self.log_depth.detach().exp()) - 0.5, "cet_slope": float(self.log_slope.detach().exp()),
               "cet_alpha": float(self.log_alpha.detach().exp()), "cet_beta": float(self.beta_.detach())}
        if n:
            out.update(cet_p_relevant=self._sum["p_rel_unlabelled"] / n, cet_neg_weight=self._sum["weight"] / n)
        return out

    def _weights(self, sims, pos_sims, positive_mask, ctx):
        rank = self.pool_ranks(ctx, tuple(sims.shape), sims.device)
        return self.negative_weight(sims, rank)  # the loss's weight of each unlabelled candidate
