"""A guide-model veto that composes with any sampler, as GISTEmbed (Solatorio, arXiv 2402.16829, 2024;
sentence-transformers ``losses/GISTEmbedLoss.py``, with its absolute/relative margin strategies, PR #3299) and
sentence-transformers' ``util.mine_hard_negatives(cross_encoder=..., max_score=...)``: candidates an independent
model scores above the anchor's positive (or above a margin of it, or above an absolute ceiling) are never negatives.

The independent model is a *guide view*, one score per (caption, image) pair of the training split
(:func:`guide_matrix`): MiniLM (all-MiniLM-L6-v2) cosines of the texts, as the posterior's second view. An image has
no text of its own: it is represented by its labelled captions, the anchor caption itself left out (its score is the
best of its other captions), so a caption identical to another image's caption vetoes that image.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch

from fnlab.retrieval.hooks import EpochContext, PoolExtension, SampleContext

from .base import Sampler
from .registry import SAMPLERS, register

GUIDES = ("auto", "minilm", "inputs")
#: built-in datasets whose caption inputs *are* MiniLM embeddings (shipped in ``sample_data/precomp``: never re-encoded)
MINILM_CAPTION_INPUTS = ("shapes-precomp", "digits-precomp")


def _unit(x: Any) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x, dtype=np.float32))
    return t / t.norm(dim=1, keepdim=True).clamp_min(1e-12)


def guide_views(ds: Any, guide: str = "auto") -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """``(G_b [n_b, d], G_a [n_a, d] | None, source)``: the guide's unit embeddings of each side of ``ds``
    (``None`` for a side without text, represented by its captions).

    * ``"minilm"``: MiniLM of the texts; the built-in ``shapes-precomp``/``digits-precomp`` captions *are* their
      MiniLM inputs (read, not re-encoded); other datasets' ``text`` (and ``a_text``) columns are encoded.
    * ``"inputs"``: the dataset's own frozen input embeddings, where both sides share one space (a ``pairs`` folder
      of sentence embeddings, as the real-text bench's MiniLM ``.npy`` files).
    * ``"auto"``: ``minilm`` for the built-in sets, else ``inputs`` where both sides share a width and are
      embeddings, else ``minilm`` from the texts.

    Raises:
        ValueError: the dataset offers no such view (no texts, no shared input space).
    """
    if guide not in GUIDES:
        raise ValueError(f"guided: 'guide' must be one of {GUIDES}, got {guide!r}")
    builtin = ds.name in MINILM_CAPTION_INPUTS and ds.b_kind == "features" and ds.b_inputs.shape[1] == 384
    shared = (ds.a_kind == ds.b_kind == "features" and ds.inputs_are_embeddings
              and ds.a_inputs.shape[1] == ds.b_inputs.shape[1])
    if guide == "auto":
        guide = "minilm" if builtin or not shared else "inputs"
    if guide == "inputs":
        if not shared:
            raise ValueError(f"guided: dataset {ds.name!r} has no shared input space for guide='inputs' (both sides "
                             "must be embeddings of one width)")
        return _unit(ds.b_inputs), _unit(ds.a_inputs), "inputs"
    if builtin:
        return _unit(ds.b_inputs), None, "minilm (shipped caption embeddings)"
    texts = ds.b_meta["text"].astype(str).tolist() if "text" in ds.b_meta.columns else None
    if not texts or not any(texts):
        raise ValueError(f"guided: dataset {ds.name!r} has no query texts (b_meta 'text') for a MiniLM guide; use "
                         "guide='inputs' where both sides are embeddings of one space")
    from fnlab.data.minilm import embed_texts

    g_b = _unit(embed_texts(texts))
    g_a = None
    if "a_text" in ds.a_meta.columns and ds.a_meta["a_text"].astype(str).str.len().gt(0).all():
        g_a = _unit(embed_texts(ds.a_meta["a_text"].astype(str).tolist()))
    return g_b, g_a, "minilm"


def guide_matrix(g_b: torch.Tensor, g_a: torch.Tensor | None, b_to_a: np.ndarray, n_a: int) -> torch.Tensor:
    """``[n_b, n_a]`` float32 guide scores of every (caption, image) pair
    (:func:`fnlab.data.pooling.caption_view_scores`: an image without text is scored by its other captions)."""
    from fnlab.data.pooling import caption_view_scores

    g_a = None if g_a is None else g_a.numpy()
    return torch.from_numpy(caption_view_scores(g_b.numpy(), g_a, b_to_a, n_a))


def guide_veto(scores: torch.Tensor, positive_mask: torch.Tensor, *, margin: float | None = 0.0,
               relative_margin: float | None = None, max_score: float | None = None,
               real: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, M]`` bool: the candidates the guide vetoes, from its scores ``scores [B, M]`` of the pool.

    With ``g+`` the guide's score of the anchor's labelled positive (its best positive slot): vetoed when
    ``g > g+ - margin`` (absolute; ``margin = 0``: scored above the positive, GISTEmbed's rule), ``g > g+ - |g+| r``
    (relative, the sign-safe form of sentence-transformers #3819), or ``g > max_score`` (``mine_hard_negatives``'s
    absolute ceiling). Labelled positives, synthetic slots (``real`` false) and rows without a positive slot
    (for the positive-relative rules) are never vetoed."""
    g_pos = scores.masked_fill(~positive_mask, float("-inf")).amax(dim=1, keepdim=True)
    has_pos = torch.isfinite(g_pos)
    veto = torch.zeros_like(positive_mask)
    if margin is not None:
        veto |= has_pos & (scores > g_pos - margin)
    if relative_margin is not None:
        veto |= has_pos & (scores > g_pos - g_pos.abs() * relative_margin)
    if max_score is not None:
        veto |= scores > max_score
    veto &= ~positive_mask
    if real is not None:
        veto &= real[None, :]
    return veto


@register("guided")
class GuidedSampler(Sampler):
    """Any sampler with a guide model's veto (module docstring): vetoed candidates are handed to the base sampler as
    if they were labelled positives, so its own rule, draw and fallback run on the rest; for a base that gives the
    loss the whole pool, they are left out of the loss's negatives (``neg_mask``).

    The guide's scores come from the training split (``EpochContext.dataset``), looked up by the pool's item ids in
    both directions; outside training (no dataset) nothing is vetoed. ``guide_vetoed`` (vetoed candidates per anchor
    and step) joins the base's epoch metrics.

    Args:
        base: the wrapped sampler's name (``hardest``: GISTEmbed's hardest non-vetoed) or a :class:`Sampler`.
        guide: the guide view (:func:`guide_views`).
        margin: absolute margin below the guide's positive score (0: veto what it scores above the positive;
            ``None``: off).
        relative_margin: relative margin (``None``: off).
        max_score: absolute ceiling on the guide's score (``None``: off).
        **base_params: the base's parameters, prefixed with its name (``simans_a=...``, ``range_range_min=...``).
    """

    PROVIDES = ("fn_mask",)  # what a base may provide (the instance's is its base's)

    def __init__(self, base: Any = "hardest", guide: str = "auto", margin: float | None = 0.0,
                 relative_margin: float | None = None, max_score: float | None = None, **base_params: Any) -> None:
        if guide not in GUIDES:
            raise ValueError(f"guided: 'guide' must be one of {GUIDES}, got {guide!r}")
        if margin is None and relative_margin is None and max_score is None:
            raise ValueError("guided: set at least one of margin, relative_margin, max_score")
        if isinstance(base, Sampler):
            if base_params:
                raise ValueError("guided: base parameters go to a base given by name")
            self.base = base
        else:
            if base == "guided" or base not in SAMPLERS:
                raise ValueError(f"guided: 'base' must be a sampler name other than 'guided', got {base!r}")
            prefix = f"{base}_"
            mine = {k[len(prefix):]: v for k, v in base_params.items() if k.startswith(prefix)}
            other = sorted(set(base_params) - {prefix + k for k in mine})
            if other:
                raise ValueError(f"guided: parameter(s) {other} are not parameters of base {base!r} (prefix "
                                 f"{prefix!r})")
            self.base = SAMPLERS.build(base, **mine)
        self.base_name = self.base.name
        self.guide, self.margin, self.relative_margin, self.max_score = guide, margin, relative_margin, max_score
        for flag in ("needs_relevance", "needs_warmup", "uses_queue", "directions", "PROVIDES"):
            setattr(self, flag, getattr(self.base, flag))
        self.scores: torch.Tensor | None = None  # [n_b, n_a] the guide's scores of the training split
        self.source = ""
        self._vetoed = self._rows = 0

    # ------------------------------------------------------------------ the veto
    def fit(self, dataset: Any) -> GuidedSampler:
        """Compute the guide's scores of ``dataset`` (the training split)."""
        g_b, g_a, self.source = guide_views(dataset, self.guide)
        self.scores = guide_matrix(g_b, g_a, dataset.b_to_a, dataset.n_a)
        return self

    def veto(self, positive_mask: torch.Tensor, ctx: SampleContext) -> torch.Tensor:
        """``[B, M]`` bool: the vetoed slots of this call's pool (none without the guide's scores or the pool's ids)."""
        if self.scores is None or ctx.anchor_ids is None or ctx.candidate_ids is None or ctx.direction is None:
            return torch.zeros_like(positive_mask)
        return ctx.memo("guide_veto", lambda: self._veto(positive_mask, ctx))

    def _veto(self, positive_mask: torch.Tensor, ctx: SampleContext) -> torch.Tensor:
        anchors, cands = ctx.anchor_ids.cpu(), ctx.candidate_ids.cpu()
        real = cands >= 0
        c = cands.clamp_min(0)
        g = self.scores[anchors][:, c] if ctx.direction == "t2i" else self.scores[c][:, anchors].T
        out = guide_veto(g.to(positive_mask.device), positive_mask, margin=self.margin,
                         relative_margin=self.relative_margin, max_score=self.max_score, real=real.to(positive_mask.device))
        self._vetoed += int(out.sum())
        self._rows += out.shape[0]
        return out

    # ------------------------------------------------------------------ the base, with the veto
    def _weights(self, sims, pos_sims, positive_mask, ctx):
        return self.base.weights(sims, pos_sims, positive_mask | self.veto(positive_mask, ctx), ctx=ctx)

    def sample(self, sims, pos_sims, positive_mask, k=1, generator=None, ctx=None, **fields):
        ctx = self._context(ctx, fields, sims)
        with torch.no_grad():
            blocked = positive_mask | self.veto(positive_mask, ctx)
        return self.base.sample(sims, pos_sims, blocked, k=k, generator=generator, ctx=ctx)

    def side_info(self, sims, pos_sims, positive_mask, ctx):
        veto = self.veto(positive_mask, ctx)
        side = dict(self.base.side_info(sims, pos_sims, positive_mask | veto, ctx))
        if self.base.num_picks(1) is None:  # the loss sees the whole pool: keep the vetoed out of its negatives
            side["neg_mask"] = side.get("neg_mask", torch.ones_like(veto)) & ~veto
        return side

    # ------------------------------------------------------------------ hooks, delegated
    def start_epoch(self, epoch: EpochContext) -> None:
        self._vetoed = self._rows = 0
        if self.scores is None and getattr(epoch, "dataset", None) is not None:
            self.fit(epoch.dataset)
        self.base.start_epoch(epoch)

    def observe(self, batch_scores: torch.Tensor, ids: torch.Tensor) -> None:
        self.base.observe(batch_scores, ids)

    def extend_pool(self, ctx: SampleContext, epoch: EpochContext) -> PoolExtension | None:
        return self.base.extend_pool(ctx, epoch)

    def num_picks(self, k: int) -> int | None:
        return self.base.num_picks(k)

    def parameters(self) -> list[torch.nn.Parameter]:
        return self.base.parameters()

    def epoch_metrics(self) -> dict[str, float]:
        out = dict(self.base.epoch_metrics())
        out["guide_vetoed"] = self._vetoed / self._rows if self._rows else 0.0
        return out


def _signature() -> inspect.Signature:
    """``GuidedSampler.__init__``'s signature as the registry declares it: its own parameters and every base's,
    prefixed (so that ``SAMPLERS.build("guided", base="simans", simans_a=2.0)`` and the CLI's checks accept them)."""
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.default)
               for p in SAMPLERS.entry("guided").params]
    return inspect.Signature(params)


GuidedSampler.__init__.__signature__ = _signature()
