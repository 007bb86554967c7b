"""Training loop: a dual encoder, any negative sampler, an optional momentum queue.

One step, per direction (FNE, Li et al., ACM MM 2023, Sec. 3 and the official ``model.py``):

1. The online encoders embed the batch: images ``fa [B, d]``, captions ``fb [B, d]`` (unit rows).
   A batch is ``B`` captions with their labelled images (an image may occur several times).
2. The candidate pool of image-to-text (``i2t``: image anchors, caption candidates) is the
   batch captions plus the caption queue; text-to-image (``t2i``: caption anchors, image
   candidates) uses the batch images plus the image queue. With the queue on, pool features
   come from the *momentum* encoders (as in FNE/MoCo; gradients flow through the anchor only);
   with ``queue_size=0`` the pool is the online batch itself (VSE++).
3. ``sims [B, M]`` = anchor . pool, ``pos_sims [B]`` = anchor . its own positive in the pool,
   ``positive_mask [B, M]`` = pool entries with the anchor's item (image) id.
4. The sampler picks ``num_negatives`` negatives per anchor; the loss (default: triplet with
   margin 0.2 on the picked negatives, summed over anchors and both directions, divided by B as
   in the official code) is computed on them.
5. The momentum encoders are updated (``m = 0.995``), and their batch features enter the queue
   (8224 entries) with their item indices.

With the queue on, the first ``warmup_epochs`` (default 1) train plain VSE++ (sum of in-batch
hinges, no queue), and the queue starts filling after them, as in the paper. The loop knows no
sampler by name: each sampler gets the typed hooks of :mod:`fnlab.retrieval.hooks` through the objective
(``start_epoch`` with an ``EpochContext``: the posterior fit on the current validation embeddings, labels
only, encoders and corpus indexes; ``observe``, each step's in-batch scores; ``extend_pool``,
``side_info``, ``epoch_metrics``: :class:`fnlab.samplers.base.Sampler`); FNE keeps its running statistics
or its fitted posterior there and reports whether it was active, the mining samplers their lists.

The best epoch on the validation split is kept (its weights are restored at the end); the metrics
record ``best_epoch`` and ``below_warmup`` (the kept model scores below the warm-up's), and
``eval.json`` says which figure it was ``selected_on``. By default (``select_by="labelled"``) that
is the labelled rSum, the only figure a user's own data offer. ``"relevant"`` (or ``"auto"`` where
the validation split has ground truth) selects on the relevant rSum instead, as
``bench/reproduce.py`` does for every sampler: a labelled-only metric counts an unlabelled match
ranked above the labelled one as an error, so it penalises exactly the models that stop repelling
false negatives, and model selection inherits the false-negative bias (measured in
``bench/results/headline_probes.md``: the oracle sampler's labelled validation rSum falls after the
warm-up while its relevant rSum rises). A model that starts from its inputs (a user's own embeddings
under identity-start heads, :mod:`fnlab.models.heads`) is evaluated before training too, as epoch 0
of the metrics, and selection may keep it: such a run never ends below its starting point.

Per epoch the loop records ``epoch, loss, val_rsum, sampled_fn_rate, seconds`` (plus
``sampled_fn_rate_i2t``, ``sampled_fn_rate_t2i``, ``val_relevant_rsum`` where ground truth exists).
``sampled_fn_rate`` is the share of picked negatives that are truly relevant per the dataset's
ground truth: in ``t2i`` the anchor is a caption ``b`` and a negative an image ``a``; in ``i2t``
the anchor is an image ``a`` and a negative a caption ``b``; both look up ``relevance[b, a]``.

At the end the run holds (``docs/CONTRACTS.md``, "What training writes"): ``config.json``,
metrics, ``emb_{a,b}_{val,test}.npy``, ``model.pt``, ``posterior.json`` (fitted on the val split)
and ``eval.json`` (the test split, :func:`fnlab.analysis.evaluate.evaluate_embeddings`).

No UI code here: progress goes to :class:`Callback` objects.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch

from fnlab.core.device import resolve_device
from fnlab.models import DualEncoder, build_dual_encoder, encode_side, to_tensor
from fnlab.samplers import DEFAULT_SAMPLER
from fnlab.training.objective import SampledObjective

__all__ = ["TrainConfig", "Callback", "train", "fit_run_posterior", "TRAIN_LOSSES", "train_losses"]


def train_losses() -> tuple[str, ...]:
    """The losses training can use, in the registry's declaration order (names of :mod:`fnlab.losses`;
    ``triplet`` is the same hinge as the warm-up's, averaged over the picked negatives)."""
    from fnlab.losses.registry import LOSSES

    return tuple(e.name for e in LOSSES.entries())


#: :func:`train_losses` when this module was imported (the registry's losses; kept for callers of the name)
TRAIN_LOSSES = train_losses()


#: what the kept epoch is selected on (module docstring)
SELECT_BY = ("auto", "relevant", "labelled")


def _selection_score(select_by: str, rec: dict, rel_rec: dict | None) -> float:
    """The validation figure the kept epoch maximises: relevant rSum (``"relevant"``, or ``"auto"``
    with ground truth) or labelled rSum (``"labelled"``, or ``"auto"`` without ground truth)."""
    if select_by == "relevant" and rel_rec is None:
        raise ValueError("train config: select_by='relevant' needs a validation split with ground truth "
                         "(relevance); use 'auto' or 'labelled'")
    if select_by != "labelled" and rel_rec is not None:
        return float(rel_rec["rsum"])
    return float(rec["rsum"])


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved as the run's ``config.json``).

    Attributes:
        dataset, dataset_root, dataset_options: what :func:`fnlab.data.load` gets.
        sampler, sampler_params: :func:`fnlab.samplers.build` arguments.
        loss: applied to the picked negatives (or the whole pool, for samplers that pick none): ``triplet``
            (hinge ``[margin - s+ + s-]_+``), ``infonce`` (``-log e^{s+/t} / (e^{s+/t} + sum_picked e^{s-/t})``),
            ``dcl``, ``hcl``, ``fnc`` or any other of :func:`fnlab.losses.available`; ``None``: the sampler's own
            loss (:func:`fnlab.samplers.default_loss`, ``triplet`` for most). ``loss_params``: their parameters
            (``margin`` 0.2, also used by the warm-up; ``temperature`` 0.07; ``tau_plus``; ``beta``; ...).
        epochs, batch_size, lr, weight_decay, grad_clip: optimisation (Adam).
        dim, text_encoder, width: model (see :func:`fnlab.models.build_dual_encoder`).
        queue_size, momentum: memory queue (0 turns queue and momentum encoder off).
        warmup_epochs: VSE++ epochs before the sampler; ``None``: 1 when the queue is on or the sampler
            asks for one (``needs_warmup``).
        warmup_loss: ``"max"`` (VSE++ max-violation, the paper's first epoch) or ``"sum"`` (default:
            VSE++ sum of in-batch hinges). The paper fine-tunes pretrained ViT/BERT, where
            max-violation is stable; from scratch on fnlab's FN-heavy data it collapsed every run
            (all similarities equal, rSum at chance), so fnlab warms up with the sum.
        num_negatives: negatives picked per anchor and direction.
        posterior: the false-negative posterior estimator (:func:`fnlab.posterior.available`, default
            ``"pu"``) fitted for ``posterior.json`` and handed to samplers that use one.
        fn_top_k: candidates per caption for the FN-detection metrics.
        seed: seeds torch, numpy shuffling and the sampler's generator.
        device: ``auto``, ``cpu`` or ``cuda``.
        num_threads: CPU threads for torch during training (``None``: torch's default; see the
            README's benchmarks for what one thread gives on small machines).
        eval_splits: splits whose embeddings are saved (the last one goes into ``eval.json``).
        view_encoder: the sentence encoder of the posterior's second view of the data's texts (captions, a
            ``pairs`` folder's ``text`` and ``a_text``): ``"minilm"`` (bundled) or a local sentence-transformers
            folder; every split's texts are encoded once, for the per-epoch refits, FNE's pool and the run's
            posterior. ``None`` (default): the view only where it needs no encoder (the ``*-precomp`` caption
            features, captions of the shipped MiniLM table), so that such a run never waits for an encoder.
    """

    dataset: str = "shapes"
    dataset_root: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    sampler: str = DEFAULT_SAMPLER
    sampler_params: dict[str, Any] = field(default_factory=dict)
    loss: str | None = None
    loss_params: dict[str, Any] = field(default_factory=dict)
    epochs: int = 5
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0
    grad_clip: float = 2.0
    dim: int = 64
    text_encoder: str = "cnn"
    width: int = 16
    queue_size: int = 8224
    momentum: float = 0.995
    warmup_epochs: int | None = None
    warmup_loss: str = "sum"
    num_negatives: int = 1
    posterior: str = "pu"
    fn_top_k: int = 10
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None
    eval_splits: tuple[str, ...] = ("val", "test")
    select_by: str = "labelled"
    view_encoder: str | None = None

    def __post_init__(self) -> None:
        if self.loss is None and isinstance(self.sampler, str):
            from fnlab.samplers.registry import SAMPLERS, default_loss

            self.loss = default_loss(self.sampler) if self.sampler in SAMPLERS else "triplet"
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field for an impossible setting."""
        def need(cond: bool, name: str, what: str) -> None:
            if not cond:
                raise ValueError(f"train config: field {name!r} {what}, got {getattr(self, name)!r}")

        need(self.epochs >= 1, "epochs", "must be >= 1")
        need(self.batch_size >= 2, "batch_size", "must be >= 2")
        need(self.lr > 0, "lr", "must be > 0")
        need(self.dim >= 1, "dim", "must be >= 1")
        need(self.queue_size >= 0, "queue_size", "must be >= 0 (0 turns the queue off)")
        need(0.0 <= self.momentum < 1.0, "momentum", "must lie in [0, 1)")
        need(self.loss in train_losses(), "loss", f"must be one of {', '.join(train_losses())}")
        need(self.num_negatives >= 1, "num_negatives", "must be >= 1")
        need(self.warmup_epochs is None or self.warmup_epochs >= 0, "warmup_epochs", "must be >= 0 or None")
        need(self.warmup_loss in ("max", "sum"), "warmup_loss", "must be 'max' or 'sum'")
        need(self.text_encoder in ("cnn", "gru", "bag"), "text_encoder", "must be 'cnn', 'gru' or 'bag'")
        need(self.device in ("auto", "cpu", "cuda") or str(self.device).startswith("cuda:"), "device",
             "must be auto, cpu, cuda or cuda:N")
        need(self.fn_top_k >= 1, "fn_top_k", "must be >= 1")
        need(self.select_by in SELECT_BY, "select_by", f"must be one of {', '.join(SELECT_BY)}")
        need(self.view_encoder is None or (isinstance(self.view_encoder, str) and self.view_encoder.strip() != ""),
             "view_encoder", "must be None, 'minilm' or a local sentence-transformers folder")
        from fnlab import posterior, samplers

        need(self.posterior in posterior.ESTIMATORS.available(), "posterior",
             f"must be one of {', '.join(posterior.available())}")
        need(self.sampler in samplers.available(), "sampler", f"must be one of {', '.join(samplers.available())}")
        self.eval_splits = tuple(self.eval_splits)
        from fnlab.losses.registry import LOSSES
        from fnlab.samplers.registry import SAMPLERS
        from fnlab.training.objective import check_pairing

        loss_cls = LOSSES.get(self.loss)
        if not getattr(loss_cls, "needs_embeddings", False):
            try:
                check_pairing(SAMPLERS.get(self.sampler), loss_cls)
            except ValueError as err:
                raise ValueError(f"train config: field 'loss' {err}") from None

    @property
    def effective_warmup(self) -> int:
        if self.warmup_epochs is not None:
            return self.warmup_epochs
        from fnlab.samplers.registry import SAMPLERS

        cls = SAMPLERS.get(self.sampler)
        wants = bool(getattr(cls, "needs_warmup", False))
        queue = self.queue_size if getattr(cls, "uses_queue", True) else 0
        return 1 if (queue > 0 or wants) else 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["eval_splits"] = list(self.eval_splits)
        return d

    def to_run_config(self, dataset_spec: dict[str, Any] | None = None) -> dict[str, Any]:
        """The run's ``config.json``: ``dataset`` is the spec ``{"name", "root", "options"}`` that
        ``fnlab.data.load(spec["name"], root=spec["root"], **spec["options"])`` rebuilds (CONTRACTS.md)."""
        d = self.to_dict()
        root, options = d.pop("dataset_root"), d.pop("dataset_options")
        d["dataset"] = dict(dataset_spec or {"name": self.dataset, "root": root, "options": options})
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict` and :meth:`to_run_config` (extra run keys such as
        ``model_spec`` are ignored; unknown keys otherwise raise)."""
        d = dict(d)
        for extra in ("model_spec", "fit_top_k", "min_confident", "fne_prior"):  # keys of older runs
            d.pop(extra, None)
        if isinstance(d.get("dataset"), dict):
            spec = d.pop("dataset")
            d["dataset"] = spec.get("name")
            d["dataset_root"] = spec.get("root")
            d["dataset_options"] = dict(spec.get("options") or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"train config: unknown field(s) {', '.join(unknown)}")
        return cls(**d)


class Callback:
    """Hooks the training loop calls; override what you need (all no-ops here)."""

    def on_train_start(self, config: TrainConfig, info: dict[str, Any]) -> None:
        """``info``: ``epochs``, ``steps_per_epoch``, ``device``, ``n_train_a``, ``n_train_b``."""

    def on_step(self, epoch: int, step: int, steps: int, loss: float) -> None:
        """After every optimisation step (``epoch`` 1-based, ``step`` 1-based within the epoch)."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        """After every epoch with that epoch's metrics row."""

    def on_train_end(self, run: Any) -> None:
        """After the run was written (``run`` is a :class:`fnlab.storage.runs.Run`, or ``None``)."""


# ----------------------------------------------------------------------------- pieces
def build_pick_loss(name: str, params: dict[str, Any]):
    """The :mod:`fnlab.losses` loss for ``name`` with reduction ``sum``, given the parameters it takes.

    ``loss(sims [B, M], pos_sims [B], positive_mask [B, M], neg_idx [B, k])`` sums over anchors.
    ``params`` may hold keys for the warm-up (``margin``) that the loss does not take; those are left out.
    """
    from fnlab import losses

    accepted = {p.name for p in losses.param_specs(name)}
    extra = {"mode": "mean"} if name == "triplet" else {}  # the hinge averaged over the k picked negatives
    return losses.build(name, reduction="sum", **extra, **{k: v for k, v in params.items() if k in accepted})


# ----------------------------------------------------------------------------- loop
def _load_split(config: TrainConfig, split: str):
    from fnlab import data

    return data.load(config.dataset, split=split, root=config.dataset_root, **config.dataset_options)


def _dataset_spec(config: TrainConfig, ds: Any) -> dict[str, Any]:
    from fnlab.data import spec_of

    try:
        return spec_of(ds)
    except ValueError:
        return {"name": config.dataset, "root": config.dataset_root, "options": dict(config.dataset_options)}


def _build_sampler(config: TrainConfig):
    from fnlab import samplers

    return samplers.build(config.sampler, **dict(config.sampler_params))


def fit_run_posterior(emb_a: np.ndarray, emb_b: np.ndarray, dataset: Any, *, estimator: str = "pu",
                      prior: float | str = "auto", seed: int = 0, quick: bool = False, direction: str = "t2i",
                      query_keys: np.ndarray | None = None, text_view: np.ndarray | None = None,
                      a_view: np.ndarray | None = None) -> Any:
    """Fit the run's posterior on one split's embeddings (labels only, never ground truth):
    :func:`fnlab.posterior.fit`, captions querying images (``direction="t2i"``, the run's
    ``posterior.json``) or images querying captions. Shapes: ``emb_a [n_a, d]``, ``emb_b [n_b, d]``.
    ``quick``: a smaller unlabelled sample (the per-epoch refits of FNE). ``query_keys``: the queries
    as the pool's encoder holds them (:class:`fnlab.posterior.PairContext`). ``text_view``: ``[n_b, d']`` a
    second view of the captions (:func:`fnlab.data.minilm.dataset_text_view`) the posterior also reads;
    ``a_view``: ``[n_a, d']`` one of side A's texts in the same space (:func:`fnlab.data.minilm.dataset_views`)."""
    from fnlab import posterior

    posterior.check_estimator(estimator)
    params = {}
    if quick and any(p.name == "n_random" for p in posterior.param_specs(estimator)):
        params["n_random"] = 10_000
    # content keys from the encoder inputs, as the training pool's (fnlab.training.objective): identical inputs
    query_side, candidate_side = ("b", "a") if direction == "t2i" else ("a", "b")
    content = ({"query_content": dataset.content_keys(query_side),
                "candidate_content": dataset.content_keys(candidate_side)}
               if hasattr(dataset, "content_keys") else {})
    ctx = posterior.PairContext.from_dataset(emb_a, emb_b, dataset, direction=direction, query_keys=query_keys,
                                             query_view=text_view, a_view=a_view, **content)
    return posterior.fit(estimator, ctx, prior=prior, seed=seed, **params)


def train(config: TrainConfig, *, callbacks: Sequence[Callback] = (), store: Any = None,
          name: str | None = None) -> Any:
    """Train a dual encoder with ``config`` and write a run.

    Args:
        config: the :class:`TrainConfig`.
        callbacks: :class:`Callback` objects notified of progress.
        store: a :class:`fnlab.storage.runs.RunStore` to write into (``None``: nothing is written and
            a dict of results is returned instead of a ``Run``; handy for tests and benches).
        name: run name inside ``store`` (``None``: the store picks one).

    Returns:
        The finished :class:`fnlab.storage.runs.Run`, or without a store a dict with ``metrics`` (list of
        per-epoch rows), ``eval`` (test metrics), ``posterior`` (params), ``model`` and
        ``embeddings``.

    Raises:
        ValueError: bad config, unknown sampler/dataset, CUDA requested but absent.
    """
    config.validate()
    device = resolve_device(config.device)
    _reuse_freed_memory()
    old_threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(int(config.num_threads))
    try:
        return _train(config, device, callbacks, store, name)
    finally:
        torch.set_num_threads(old_threads)


_MALLOC_TUNED = False


def _reuse_freed_memory() -> None:
    """Let glibc keep freed blocks under 32 MiB for reuse instead of returning them to the system.

    A sampler step allocates and frees dozens of ``[B, M]`` temporaries (8 MiB each in float64 at
    ``B = 128``, ``M = 128 + 8224``). Above glibc's default threshold each one was mapped fresh and
    unmapped again, and faulting its pages in cost as much as the arithmetic: a 10-epoch
    ``shapes-precomp`` run spent 23 s of system time (13 M page faults) for 60 s of user time
    (bench/train_speed.py). The same arithmetic runs either way, so the numbers do not change.
    Process-wide, set once; a no-op outside glibc.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        libc.mallopt(m_mmap_threshold, 32 * 2**20)  # the largest glibc accepts
        libc.mallopt(m_trim_threshold, 256 * 2**20)
    except (OSError, AttributeError):
        pass


@dataclass
class _Setup:
    """What a run trains with: its data, model, objective and optimiser."""

    train_ds: Any
    val_ds: Any
    eval_sets: dict[str, Any]
    model: DualEncoder
    objective: SampledObjective
    opt: torch.optim.Optimizer
    b_to_a: torch.Tensor
    a_all: torch.Tensor
    b_all: torch.Tensor
    steps: int
    #: split -> ``(a_view, b_view)`` (:func:`fnlab.data.minilm.dataset_views`), each computed once
    views: dict[str, tuple[np.ndarray | None, np.ndarray | None]] = field(default_factory=dict)

    def views_of(self, split: str, view_encoder: str | None) -> tuple[np.ndarray | None, np.ndarray | None]:
        from fnlab.data.minilm import dataset_views

        if split not in self.views:
            ds = {"train": self.train_ds, "val": self.val_ds, **self.eval_sets}[split]
            self.views[split] = dataset_views(ds, view_encoder)
        return self.views[split]


def _setup(config: TrainConfig, device: torch.device, gen: torch.Generator) -> _Setup:
    train_ds = _load_split(config, "train")
    if train_ds.a_inputs is None or train_ds.b_inputs is None:
        raise ValueError(f"dataset {config.dataset!r} split 'train' has no encoder inputs (a_inputs/b_inputs)")
    val_ds = _load_split(config, "val")
    eval_sets = {s: (val_ds if s == "val" else _load_split(config, s)) for s in config.eval_splits}

    model: DualEncoder = build_dual_encoder(train_ds, dim=config.dim, text_encoder=config.text_encoder,
                                            width=config.width).to(device)
    # the warm-up: VSE++ over the batch with the registry's one triplet loss
    from fnlab.data.identity import text_identity_labels
    from fnlab.losses import TripletLoss

    b_to_a = torch.from_numpy(train_ds.b_to_a).to(device)
    a_all = to_tensor(train_ds.a_inputs, device)
    b_all = to_tensor(train_ds.b_inputs, device)
    splits = {"train": train_ds, "val": val_ds, **eval_sets}

    def encoder(split: str, side: str, enc: Any) -> np.ndarray:
        inputs = (a_all if side == "a" else b_all) if split == "train" else getattr(splits[split], f"{side}_inputs")
        return encode_side(enc, inputs, side, device=device)

    from fnlab.data.minilm import EncoderError, dataset_views

    try:
        train_views = dataset_views(train_ds, config.view_encoder)  # the pool's second view of the training items
    except EncoderError as err:  # before any epoch, naming the setting
        raise EncoderError(f"view_encoder (--view-encoder): {err}") from None
    pick_loss = build_pick_loss(config.loss, config.loss_params)
    if hasattr(pick_loss, "check_shape"):  # a width or batch the loss cannot use fails here, before any epoch
        pick_loss.check_shape(int(model.spec.get("dim", config.dim)), config.batch_size)
    objective = SampledObjective(
        _build_sampler(config), pick_loss,
        TripletLoss(margin=float(config.loss_params.get("margin", 0.2)), mode=config.warmup_loss, reduction="sum"),
        model, b_to_a, queue_size=config.queue_size, dim=int(model.spec.get("dim", config.dim)), momentum=config.momentum,
        num_negatives=config.num_negatives, relevance=train_ds.relevance, generator=gen, inputs=(a_all, b_all),
        encoder=encoder, dataset=train_ds, identity=text_identity_labels(train_ds),
        caption_view=_tensor(train_views[1]), a_view=_tensor(train_views[0]))
    # the sampler's own trainable parameters (none for most) are optimised with the model's
    opt = torch.optim.Adam([*model.parameters(), *objective.parameters()], lr=config.lr,
                           weight_decay=config.weight_decay)
    steps = max(1, train_ds.n_b // config.batch_size)  # drop the last partial batch
    return _Setup(train_ds, val_ds, eval_sets, model, objective, opt, b_to_a, a_all, b_all, steps,
                  views={"train": train_views})


def _tensor(view: np.ndarray | None) -> torch.Tensor | None:
    return None if view is None else torch.from_numpy(np.ascontiguousarray(view, dtype=np.float32))


def _posterior_fit(config: TrainConfig, run: _Setup, device: torch.device, epoch: int):
    """The epoch's ``fit_posterior(prior, direction, key_model)`` callable (``EpochContext.fit_posterior``)."""
    model, val_ds = run.model, run.val_ds
    a_view, val_view = run.views_of("val", config.view_encoder)  # the refits read the texts' second view

    def fit_posterior(prior: float | str = "auto", direction: str = "t2i", key_model: Any = None) -> Any:
        # queries from the online encoder, candidates from the encoder that fills the pool (the momentum
        # twin when there is a queue): the space the sampler scores the pool in
        keys = model if key_model is None else key_model
        q_side, c_side = ("b", "a") if direction == "t2i" else ("a", "b")
        q = encode_side(model, getattr(val_ds, f"{q_side}_inputs"), q_side, device=device)
        c = encode_side(keys, getattr(val_ds, f"{c_side}_inputs"), c_side, device=device)
        # the pool stores each candidate beside its labelled query, both from the pool's encoder
        qk = None if key_model is None else encode_side(keys, getattr(val_ds, f"{q_side}_inputs"), q_side,
                                                          device=device)
        ea_, eb_ = (c, q) if direction == "t2i" else (q, c)
        return fit_run_posterior(ea_, eb_, val_ds, estimator=config.posterior, prior=prior,
                                 seed=config.seed + epoch, quick=True, direction=direction, query_keys=qk,
                                 text_view=val_view, a_view=a_view)

    return fit_posterior


def _train_epoch(config: TrainConfig, run: _Setup, epoch: int, in_warmup: bool, order: torch.Tensor,
                 callbacks: Sequence[Callback]) -> float:
    """One epoch's optimisation steps; returns the mean step loss."""
    model, objective, opt = run.model, run.objective, run.opt
    params = [p for group in opt.param_groups for p in group["params"]]
    model.train()
    loss_sum = 0.0
    for step in range(run.steps):
        bidx = order[step * config.batch_size:(step + 1) * config.batch_size]
        aidx = run.b_to_a[bidx]
        a_in, b_in = run.a_all[aidx], run.b_all[bidx]
        loss = objective.loss(model.encode_a(a_in), model.encode_b(b_in), a_in, b_in, aidx, bidx,
                              warmup=in_warmup)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        opt.step()
        objective.after_step(model, warmup=in_warmup)
        loss_sum += float(loss.detach())
        for cb in callbacks:
            cb.on_step(epoch, step + 1, run.steps, float(loss.detach()))
    return loss_sum / run.steps


class _Selection:
    """The best validation epoch so far (its weights are restored at the end) and the warm-up's score."""

    def __init__(self, select_by: str, warmup: int) -> None:
        self.select_by, self.warmup = select_by, warmup
        self.best: tuple[float, int, dict[str, torch.Tensor]] | None = None  # (score, epoch, weights)
        self.warmup_score: float | None = None

    def update(self, row: dict[str, float], model: torch.nn.Module, rec: dict, rel_rec: dict | None,
               epoch: int, in_warmup: bool) -> None:
        score = _selection_score(self.select_by, rec, rel_rec)
        if self.best is None or score > self.best[0]:
            self.best = (score, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
        if in_warmup:
            self.warmup_score = score
        row["best_epoch"] = float(self.best[1])
        # the kept (best) model scores below the warm-up's: the sampler epochs undid the warm-up
        row["below_warmup"] = float(self.warmup_score is not None and not in_warmup
                                    and self.best[0] <= self.warmup_score and self.best[1] <= self.warmup)


def _initial_epoch(run: _Setup, device: torch.device, selection: _Selection) -> dict[str, float]:
    """Epoch 0 of a model that starts from its inputs (identity-start heads): its validation row, which also
    becomes the kept model that later epochs must beat, so a run never ends below its starting point."""
    from fnlab.analysis.evaluate import retrieval_recall

    val_ds = run.val_ds
    ea = encode_side(run.model, val_ds.a_inputs, "a", device=device)
    eb = encode_side(run.model, val_ds.b_inputs, "b", device=device)
    rec, rel_rec = retrieval_recall(ea, eb, val_ds.b_to_a, relevance=val_ds.relevance)
    row = {"epoch": 0, "loss": math.nan, "val_rsum": rec["rsum"], "sampled_fn_rate": math.nan, "seconds": 0.0}
    if rel_rec is not None:
        row["val_relevant_rsum"] = rel_rec["rsum"]
    row["warmup"] = 0.0
    selection.update(row, run.model, rec, rel_rec, 0, False)
    return row


def _validate_epoch(run: _Setup, device: torch.device, epoch: int, mean_loss: float, seconds: float,
                    in_warmup: bool, selection: _Selection) -> dict[str, float]:
    """The epoch's metrics row (validation recall, the objective's and sampler's metrics, the kept epoch)."""
    from fnlab.analysis.evaluate import retrieval_recall

    val_ds = run.val_ds
    ea = encode_side(run.model, val_ds.a_inputs, "a", device=device)
    eb = encode_side(run.model, val_ds.b_inputs, "b", device=device)
    rec, rel_rec = retrieval_recall(ea, eb, val_ds.b_to_a, relevance=val_ds.relevance)
    row: dict[str, float] = {"epoch": epoch, "loss": mean_loss, "val_rsum": rec["rsum"]}
    row.update(run.objective.epoch_metrics())
    row["seconds"] = seconds
    if rel_rec is not None:
        row["val_relevant_rsum"] = rel_rec["rsum"]
    row["warmup"] = float(in_warmup)
    selection.update(row, run.model, rec, rel_rec, epoch, in_warmup)
    return row


def _last_epoch_metrics(config: TrainConfig, run: _Setup, device: torch.device,
                        history: list[dict[str, float]]) -> dict[str, Any]:
    """Retrieval metrics of the *last* epoch's model on the evaluated split, before the kept epoch is restored:
    model selection must not hide a collapse (a sampler whose last epoch fell apart keeps an earlier one)."""
    from fnlab.analysis.evaluate import r_precision, retrieval_recall

    split = config.eval_splits[-1] if config.eval_splits else "val"
    ds = run.eval_sets.get(split, run.val_ds)
    ea = encode_side(run.model, ds.a_inputs, "a", device=device)
    eb = encode_side(run.model, ds.b_inputs, "b", device=device)
    rec, rel_rec = retrieval_recall(ea, eb, ds.b_to_a, relevance=ds.relevance)
    return {"epoch": int(history[-1]["epoch"]) if history else 0, "split": split, "recall": rec,
            "relevant_recall": rel_rec,
            "r_precision": None if ds.relevance is None else r_precision(ea, eb, ds.relevance)}


def _evaluate_run(config: TrainConfig, run: _Setup, device: torch.device, history: list[dict[str, float]]
                  ) -> tuple[dict[str, Any], dict[str, tuple[np.ndarray, np.ndarray]], Any]:
    """``(eval result, embeddings by split, posterior)`` of the kept model."""
    from fnlab.analysis.evaluate import evaluate_embeddings

    model, val_ds, eval_sets = run.model, run.val_ds, run.eval_sets
    embeddings = {}
    for split, ds in eval_sets.items():
        embeddings[split] = (encode_side(model, ds.a_inputs, "a", device=device),
                             encode_side(model, ds.b_inputs, "b", device=device))
    posterior = None
    ea_v, eb_v = embeddings.get("val") or (encode_side(model, val_ds.a_inputs, "a", device=device),
                                           encode_side(model, val_ds.b_inputs, "b", device=device))
    val_a_view, val_view = run.views_of("val", config.view_encoder)
    if val_ds.n_a > 1:
        posterior = fit_run_posterior(ea_v, eb_v, val_ds, estimator=config.posterior, seed=config.seed,
                                      text_view=val_view, a_view=val_a_view)
    last_rate = history[-1]["sampled_fn_rate"]
    last_rate = None if (last_rate is None or math.isnan(last_rate)) else last_rate
    eval_split = config.eval_splits[-1] if config.eval_splits else "val"
    eval_ds = eval_sets.get(eval_split, val_ds)
    ea_e, eb_e = embeddings.get(eval_split, (ea_v, eb_v))
    a_view, view = ((run.views_of(eval_split if eval_split in eval_sets else "val", config.view_encoder))
                    if posterior is not None and any(n.startswith("view_") for n in posterior.signals)
                    else (None, None))
    result = evaluate_embeddings(ea_e, eb_e, eval_ds, posterior=posterior, sampled_fn_rate=last_rate,
                                 fn_top_k=config.fn_top_k, text_view=view, a_view=a_view)
    result["split"] = eval_split
    result["selected_on"] = ("val_relevant_rsum" if val_ds.relevance is not None and config.select_by != "labelled"
                             else "val_rsum")
    result["best_epoch"] = int(history[-1]["best_epoch"])
    return result, embeddings, posterior


def _train(config: TrainConfig, device: torch.device, callbacks: Sequence[Callback], store: Any,
           name: str | None) -> Any:
    torch.manual_seed(config.seed)
    np_rng = np.random.default_rng(config.seed)
    gen = torch.Generator(device=device)
    gen.manual_seed(config.seed)
    setup = _setup(config, device, gen)
    model, objective, train_ds = setup.model, setup.objective, setup.train_ds
    warmup = config.effective_warmup

    writer = None
    if store is not None:
        cfg = config.to_run_config(_dataset_spec(config, train_ds))
        cfg["model_spec"] = model.spec
        writer = store.create(cfg, name=name)
    info = {"epochs": config.epochs, "steps_per_epoch": setup.steps, "device": str(device),
            "n_train_a": train_ds.n_a, "n_train_b": train_ds.n_b}
    for cb in callbacks:
        cb.on_train_start(config, info)

    history: list[dict[str, float]] = []
    selection = _Selection(config.select_by, warmup)
    try:
        if model.starts_from_inputs:  # epoch 0: the untrained model is the user's embeddings; selection may keep it
            row0 = _initial_epoch(setup, device, selection)
            history.append(row0)
            if writer is not None:
                writer.log_metrics(row0)
        for epoch in range(1, config.epochs + 1):
            t0 = time.perf_counter()
            in_warmup = epoch <= warmup
            objective.start_epoch(epoch, warmup=in_warmup, queue_starts=epoch == warmup + 1 and warmup > 0,
                                  model=model, fit_posterior=_posterior_fit(config, setup, device, epoch),
                                  steps_per_epoch=setup.steps)
            order = torch.from_numpy(np_rng.permutation(train_ds.n_b)).to(device)
            mean_loss = _train_epoch(config, setup, epoch, in_warmup, order, callbacks)
            row = _validate_epoch(setup, device, epoch, mean_loss, time.perf_counter() - t0, in_warmup, selection)
            history.append(row)
            if writer is not None:
                writer.log_metrics(row)
            for cb in callbacks:
                cb.on_epoch_end(epoch, row)

        # ---------------------------------------------------------------- outputs
        last = _last_epoch_metrics(config, setup, device, history)
        model.load_state_dict(selection.best[2])  # keep the best validation epoch, not the last
        result, embeddings, posterior = _evaluate_run(config, setup, device, history)
        result["last_epoch"] = last
        fit_split = "val"
        if writer is None:
            return {"metrics": history, "eval": result, "model": model,
                    "posterior": None if posterior is None else posterior.params(),
                    "posterior_split": fit_split, "embeddings": embeddings}
        for split, (ea, eb) in embeddings.items():
            writer.save_array(f"emb_a_{split}", ea)
            writer.save_array(f"emb_b_{split}", eb)
        writer.save_state_dict("model", {k: v.detach().cpu() for k, v in model.state_dict().items()})
        if posterior is not None:
            writer.save_json("posterior", {**posterior.params(), "fit_split": fit_split})
        writer.save_json("eval", result)
        run = writer.finalize()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    for cb in callbacks:
        cb.on_train_end(run)
    return run
