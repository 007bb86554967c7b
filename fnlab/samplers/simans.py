"""SimANS: ambiguous-negative sampling (Zhou et al., "SimANS: Simple Ambiguous Negatives Sampling for Dense Text
Retrieval", EMNLP 2022; official ``microsoft/SimXNS``, ``SimANS/utils/util_wiki.py`` ``TraditionDataset.__getitem__``
(NQ/TQ) and ``SimANS/utils/MARCO_until_new.py`` ``Rocketqa_v2Dataset.__getitem__`` (MS MARCO passages))."""

from __future__ import annotations

import torch

from fnlab.retrieval.hooks import EpochContext, PoolExtension, SampleContext

from .base import Sampler, topk_mask
from .registry import register

#: the default ``score_scale``: the inverse of fnlab's training temperature (InfoNCE's t = 0.07)
DEFAULT_SCORE_SCALE = 1 / 0.07
KERNELS = ("gaussian", "laplace")


def simans_weights(sims: torch.Tensor, pos_sims: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """``exp(-a (s - s+ - b)^2)`` elementwise on the similarities as given; ``sims [B, M]``, ``pos_sims [B]``.

    The unscaled form (``score_scale = 1``), kept for the oracle's ``base="simans"``; :func:`simans_log_weights`
    is the sampler's."""
    return torch.exp(-a * (sims - pos_sims[:, None] - b) ** 2)


def simans_log_weights(sims: torch.Tensor, pos_sims: torch.Tensor, *, a: float = 0.5, b: float = 0.0,
                       score_scale: float = DEFAULT_SCORE_SCALE, kernel: str = "gaussian",
                       laplace_rate: float = 3.0) -> torch.Tensor:
    """Log SimANS weights on scores ``z = score_scale * s``; ``sims [B, M]`` (or ``[B, K]``), ``pos_sims [B]``.

    * ``"gaussian"`` (NQ/TQ, ``util_wiki.py``): ``-a (z - z+ - b)^2``;
    * ``"laplace"`` (MS MARCO passages, ``MARCO_until_new.py``, ``tau = 3``): ``-laplace_rate |z - z+ - b|``.

    ``b`` is in score units with fnlab's sign: the weight peaks at ``z = z+ + b``; the official code writes
    ``z - z+ + b``, so its ``b`` is fnlab's ``-b`` (``train_NQ_AR2.sh``'s ``b = 1.0`` is fnlab's ``b = -1``).
    """
    d = score_scale * (sims - pos_sims[:, None]) - b
    return -laplace_rate * d.abs() if kernel == "laplace" else -a * d * d


def _normalised(logw: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``exp(logw - row max)`` on ``keep``, 0 elsewhere: the row's largest weight is 1, so no row underflows to
    all zeros at a sharp scale (the draw is invariant to a row's scale)."""
    logw = logw.masked_fill(~keep, float("-inf"))
    top = logw.amax(dim=1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    return torch.exp(logw - top)


@register("simans")
class SimANSSampler(Sampler):
    """SimANS weights over each anchor's top-``top_k`` window, at the reference's sharpness.

    **Scale.** The official code applies ``a`` to raw dot-product scores, the logits of an untempered softmax.
    fnlab's similarities are cosines; a loss with temperature ``t`` sees ``s / t``. So the weight is computed on
    ``z = score_scale * s`` with ``score_scale = 1/t`` (default ``1/0.07``, fnlab's InfoNCE temperature), and
    ``a = 0.5`` means what it means in the paper. On raw cosines (``score_scale = 1``) every weight within
    ``|s - s+| <= 0.5`` is at least ``exp(-0.125) = 0.88``: a near-uniform draw over the window.

    **Kernel.** ``"gaussian"``: ``exp(-a (z - z+ - b)^2)`` (NQ/TQ); ``"laplace"``: ``exp(-laplace_rate |z - z+ - b|)``
    (the MS MARCO passage path, rate 3). ``b``'s sign: :func:`simans_log_weights`. Weights are scaled so each
    row's largest is 1.

    **Window.** ``refresh_every=None``: the ``top_k`` most similar non-positives of the pool the trainer hands
    over (the batch and the queue). ``refresh_every=N``: as the official pipeline, each training anchor's window is
    its top ``top_k`` in the training corpus under the current model (the candidate side's
    :class:`~fnlab.retrieval.hooks.CorpusIndex`, the online query encoder), re-mined every ``N`` steps; each step
    every anchor draws its negatives from its window with the window's scores of that refresh (as the official
    code reads the scores stored with its mined list), and the drawn candidates join the pool, encoded by the
    online encoder with gradients; the anchor's picks are its own draws.

    **Positive not retrieved.** When the labelled positive ranks below the window (the official ``pos_score == 0``:
    the retriever did not return it), ``unretrieved="lowest"`` takes the window's lowest-ranked candidates
    (the official MS MARCO code takes the last ``k`` of the ranked list; ``util_wiki.py`` shuffles the list first
    in training); ``"weights"`` keeps the kernel's weights.

    Args:
        a: Gaussian sharpness (0.5).
        b: offset in score units, fnlab's sign (0).
        top_k: the window (100; the official 200).
        score_scale: ``z = score_scale * s`` (``1/0.07``).
        kernel: ``"gaussian"`` or ``"laplace"``.
        laplace_rate: the Laplacian kernel's rate (3).
        refresh_every: steps between re-minings of a corpus window (``None``: the pool's own top-k).
        unretrieved: ``"lowest"`` or ``"weights"`` (above).
    """

    def __init__(self, a: float = 0.5, b: float = 0.0, top_k: int = 100, score_scale: float = DEFAULT_SCORE_SCALE,
                 kernel: str = "gaussian", laplace_rate: float = 3.0, refresh_every: int | None = None,
                 unretrieved: str = "lowest") -> None:
        if a < 0 or laplace_rate < 0:
            raise ValueError(f"simans: 'a' and 'laplace_rate' must be >= 0, got {a}, {laplace_rate}")
        if int(top_k) < 1:
            raise ValueError(f"simans: 'top_k' must be >= 1, got {top_k}")
        if score_scale <= 0:
            raise ValueError(f"simans: 'score_scale' must be > 0, got {score_scale}")
        if kernel not in KERNELS:
            raise ValueError(f"simans: 'kernel' must be one of {KERNELS}, got {kernel!r}")
        if refresh_every is not None and int(refresh_every) < 1:
            raise ValueError(f"simans: 'refresh_every' must be >= 1 or None, got {refresh_every}")
        if unretrieved not in ("lowest", "weights"):
            raise ValueError(f"simans: 'unretrieved' must be 'lowest' or 'weights', got {unretrieved!r}")
        self.a, self.b, self.top_k = float(a), float(b), int(top_k)
        self.score_scale, self.kernel, self.laplace_rate = float(score_scale), kernel, float(laplace_rate)
        self.refresh_every = None if refresh_every is None else int(refresh_every)
        self.unretrieved = unretrieved
        self._k = 1  # negatives drawn per anchor (the trainer's num_negatives)
        self.windows: dict[str, dict[str, torch.Tensor]] = {}  # direction -> ids, scores [n, top_k]; pos, missed [n]
        self._built_at: dict[str, int] = {}
        self._owners: torch.Tensor | None = None
        self.refreshes = 0

    # ------------------------------------------------------------------ the kernel
    def log_weights(self, sims: torch.Tensor, pos_sims: torch.Tensor) -> torch.Tensor:
        """:func:`simans_log_weights` with this sampler's parameters."""
        return simans_log_weights(sims, pos_sims, a=self.a, b=self.b, score_scale=self.score_scale,
                                  kernel=self.kernel, laplace_rate=self.laplace_rate)

    def _pool_weights(self, sims: torch.Tensor, pos_sims: torch.Tensor, positive_mask: torch.Tensor) -> torch.Tensor:
        window = topk_mask(sims, positive_mask, self.top_k)
        w = _normalised(self.log_weights(sims, pos_sims), window)
        if self.unretrieved == "lowest":
            n_window = window.sum(dim=1)
            above = ((sims > pos_sims[:, None]) & ~positive_mask).sum(dim=1)
            missed = (above >= self.top_k) & (n_window > 0)  # the positive ranks below the window
            if bool(missed.any()):
                low = topk_mask(-sims[missed], ~window[missed], min(self._k, self.top_k))
                w[missed] = low.to(w.dtype)
        return w

    def _weights(self, sims, pos_sims, positive_mask, ctx):
        if self.refresh_every is not None and self._owners is not None and ctx.extended_from is not None:
            w = torch.zeros_like(sims)  # each anchor's picks: its own draws from its corpus window
            rows = self._owners.to(sims.device)
            w[rows, ctx.extended_from + torch.arange(len(rows), device=sims.device)] = 1.0
            return w
        return self._pool_weights(sims, pos_sims, positive_mask)

    def sample(self, sims, pos_sims, positive_mask, k=1, generator=None, ctx=None, **fields):
        self._k = max(1, int(k))
        return super().sample(sims, pos_sims, positive_mask, k=k, generator=generator, ctx=ctx, **fields)

    def num_picks(self, k: int) -> int | None:
        self._k = max(1, int(k))
        return k

    # ------------------------------------------------------------------ the corpus window (refresh_every)
    def refresh(self, epoch: EpochContext, direction: str) -> None:
        """Mine every training anchor's window of ``direction`` now: ids and scores ``[n, top_k]``, each anchor's
        positive score and whether the positive ranks below the window."""
        anchor_side, cand_side = ("a", "b") if direction == "i2t" else ("b", "a")
        q = epoch.encode("train", anchor_side, which="online")
        index = epoch.index(cand_side)
        if index.built_at != epoch.step:
            index.refresh(epoch.step)
        labels = epoch.positives(direction)
        scores, ids = index.search(q, self.top_k, exclude=labels)
        coo = labels.tocoo()
        rows, cols = torch.from_numpy(coo.row).long(), torch.from_numpy(coo.col).long()
        cand = index.embeddings.to(q.device)
        pos = torch.full((q.shape[0],), float("-inf"), device=q.device)
        pos = pos.scatter_reduce(0, rows.to(q.device), (q[rows] * cand[cols]).sum(1), reduce="amax")
        scores, ids = scores.to(q.device), ids.to(q.device)
        last = scores.masked_fill(ids < 0, float("inf")).amin(dim=1)
        missed = (ids[:, -1] >= 0) & (pos < last)
        self.windows[direction] = {"ids": ids, "scores": scores, "pos": pos, "missed": missed}
        self._built_at[direction] = epoch.step
        self.refreshes += 1

    def draw_window(self, anchor_ids: torch.Tensor, direction: str, generator: torch.Generator | None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids [N], owners [N])``: ``k`` distinct draws per anchor from its window by the kernel's weights (the
        lowest-ranked ``k`` where the positive was missed)."""
        win = self.windows[direction]
        ids = win["ids"][anchor_ids]
        valid = ids >= 0
        k = min(self._k, self.top_k)
        w = _normalised(self.log_weights(win["scores"][anchor_ids], win["pos"][anchor_ids]), valid)
        missed = win["missed"][anchor_ids] & (self.unretrieved == "lowest")
        if bool(missed.any()):
            rank = valid.cumsum(dim=1)
            last = valid.sum(dim=1, keepdim=True)
            w[missed] = (valid & (rank > last - k))[missed].to(w.dtype)
        ok = valid.any(dim=1)
        enough = (w > 0).sum(dim=1) >= k
        picks = torch.zeros(len(ids), k, dtype=torch.long, device=ids.device)
        if bool(ok.any()):
            picks[ok] = torch.multinomial(w[ok], k, replacement=not bool(enough[ok].all()), generator=generator)
        drawn = ids.gather(1, picks)
        owners = torch.arange(len(ids), device=ids.device)[:, None].expand_as(drawn)
        keep = ok[:, None].expand_as(drawn)
        return drawn[keep], owners[keep]

    def extend_pool(self, ctx: SampleContext, epoch: EpochContext) -> PoolExtension | None:
        self._owners = None
        if self.refresh_every is None:
            return None
        d = ctx.direction
        if d not in self.windows or epoch.step - self._built_at[d] >= self.refresh_every:
            self.refresh(epoch, d)
        gen = epoch.generator if epoch.generator is not None and epoch.generator.device == ctx.anchor_ids.device \
            else None
        ids, owners = self.draw_window(ctx.anchor_ids.to(self.windows[d]["ids"].device), d, gen)
        if not ids.numel():
            return None
        self._owners = owners
        return PoolExtension(ids, owners=owners)

    def epoch_metrics(self) -> dict[str, float]:
        """``simans_refreshes``: corpus windows mined so far (``refresh_every`` set)."""
        return {"simans_refreshes": float(self.refreshes)} if self.refresh_every is not None else {}
