"""The dual encoder: one encoder per side, L2-normalised outputs, cosine similarity.

``build_dual_encoder(dataset, dim=...)`` picks the encoders from the dataset's
``a_kind`` (``pixels`` -> :class:`PixelCNN`, ``features`` -> :class:`FeatureMLP`) and
``b_kind`` (``tokens`` -> :class:`TokenEncoder`, ``features`` -> :class:`FeatureMLP`).
A dataset whose inputs are a user's own embeddings (``inputs_are_embeddings``, a ``pairs`` folder)
gets heads that start from those embeddings instead (:mod:`fnlab.models.heads`: ``linear`` or
``residual``, identity or Procrustes start), so training begins where the embeddings already are.
The model's :attr:`DualEncoder.spec` is a plain dict from which
:func:`dual_encoder_from_spec` rebuilds the same architecture (to reload ``model.pt``); its
``head`` says which heads were used (``mlp`` where the key is absent: runs saved before heads).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from fnlab.models.encoders import FeatureMLP, PixelCNN, TokenEncoder
from fnlab.models.heads import HEADS, IDENTITY_START_HEADS, build_head, start_maps
from fnlab.retrieval.similarity import normalize


class DualEncoder(nn.Module):
    """Two encoders mapping side A (images) and side B (captions) into one unit sphere.

    Args:
        encoder_a: module ``[N, ...] -> [N, dim]`` for side A.
        encoder_b: module ``[N, ...] -> [N, dim]`` for side B.
        spec: the dict :func:`dual_encoder_from_spec` rebuilds this model from (optional).

    Example:
        >>> from fnlab.models.encoders import FeatureMLP
        >>> m = DualEncoder(FeatureMLP(8, 4), FeatureMLP(6, 4))
        >>> m.encode_a(torch.randn(3, 8)).norm(dim=1).detach().round(decimals=4).tolist()  # unit rows
        [1.0, 1.0, 1.0]
    """

    def __init__(self, encoder_a: nn.Module, encoder_b: nn.Module, spec: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.encoder_a = encoder_a
        self.encoder_b = encoder_b
        self.spec = dict(spec or {})

    def encode_a(self, inputs: torch.Tensor) -> torch.Tensor:
        """Side-A inputs ``[N, ...]`` -> unit vectors ``[N, dim]``."""
        return normalize(self.encoder_a(inputs), eps=1e-8)

    def encode_b(self, inputs: torch.Tensor) -> torch.Tensor:
        """Side-B inputs ``[N, ...]`` -> unit vectors ``[N, dim]``."""
        return normalize(self.encoder_b(inputs), eps=1e-8)

    def forward(self, inputs_a: torch.Tensor, inputs_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_a(inputs_a), self.encode_b(inputs_b)

    @property
    def starts_from_inputs(self) -> bool:
        """Whether the untrained model is the inputs themselves (identity-start heads): training then
        evaluates that state as epoch 0 and may keep it."""
        return self.spec.get("head", "mlp") in IDENTITY_START_HEADS


def _spec_for(dataset: Any, dim: int, text_encoder: str, width: int, hidden: int,
              norm: str = "group") -> dict[str, Any]:
    where = f"dataset {getattr(dataset, 'name', '?')!r} split {getattr(dataset, 'split', '?')!r}"
    spec: dict[str, Any] = {"dim": int(dim), "a_kind": dataset.a_kind, "b_kind": dataset.b_kind,
                            "width": int(width), "hidden": int(hidden), "text_encoder": text_encoder}
    a = dataset.a_inputs
    if a is None:
        raise ValueError(f"{where}: field 'a_inputs' is missing; a dual encoder needs side-A inputs")
    if dataset.a_kind == "pixels":
        spec["norm"] = norm
        if a.ndim == 3:
            spec.update(in_channels=1, image_size=[int(a.shape[1]), int(a.shape[2])])
        elif a.ndim == 4:
            spec.update(in_channels=int(a.shape[1]), image_size=[int(a.shape[2]), int(a.shape[3])])
        else:
            raise ValueError(f"{where}: field 'a_inputs' must be pixels [N, C, H, W], got shape {a.shape}")
    elif dataset.a_kind == "features":
        spec.update(a_dim=int(a.shape[-1]))
    else:
        raise ValueError(f"{where}: field 'a_kind' must be 'pixels' or 'features', got {dataset.a_kind!r}")
    b = dataset.b_inputs
    if b is None:
        raise ValueError(f"{where}: field 'b_inputs' is missing; a dual encoder needs side-B inputs")
    if dataset.b_kind == "tokens":
        vocab = len(dataset.vocab) if dataset.vocab is not None else 0
        spec.update(vocab_size=max(vocab, int(b.max()) + 1 if b.size else 2, 2))
    elif dataset.b_kind == "features":
        spec.update(b_dim=int(b.shape[-1]))
    else:
        raise ValueError(f"{where}: field 'b_kind' must be 'tokens' or 'features', got {dataset.b_kind!r}")
    if "features" in (dataset.a_kind, dataset.b_kind):
        spec["head"] = "mlp"  # what the features go through (random-init MLP)
    return spec


def dual_encoder_from_spec(spec: dict[str, Any], *, start_a: np.ndarray | None = None,
                           start_b: np.ndarray | None = None) -> DualEncoder:
    """Rebuild the architecture described by ``DualEncoder.spec`` (weights are not included).

    ``start_a``/``start_b``: the start maps of identity-start heads (:func:`fnlab.models.heads.start_maps`);
    without them a Procrustes start is a zero placeholder that ``load_state_dict`` fills.
    """
    try:
        dim = int(spec["dim"])
        head = spec.get("head", "mlp")  # specs saved before heads existed: the MLP
        if head not in HEADS:
            raise ValueError(f"model spec field 'head' must be one of {', '.join(HEADS)}, got {head!r}")
        if head in IDENTITY_START_HEADS:
            hidden = int(spec.get("hidden", 256))
            a_dim, b_dim = int(spec["a_dim"]), int(spec["b_dim"])
            enc_a: nn.Module = build_head(head, a_dim, dim, hidden=hidden, init=_placeholder(start_a, a_dim, dim))
            enc_b: nn.Module = build_head(head, b_dim, dim, hidden=hidden, init=_placeholder(start_b, b_dim, dim))
            return DualEncoder(enc_a, enc_b, spec=spec)
        if spec["a_kind"] == "pixels":
            enc_a = PixelCNN(int(spec["in_channels"]), tuple(spec["image_size"]), dim=dim,
                             width=int(spec.get("width", 16)),
                             norm=spec.get("norm", "none"))  # specs saved before ``norm``: none
        else:
            enc_a = FeatureMLP(int(spec["a_dim"]), dim=dim, hidden=int(spec.get("hidden", 256)))
        if spec["b_kind"] == "tokens":
            enc_b = TokenEncoder(int(spec["vocab_size"]), dim=dim, kind=spec.get("text_encoder", "cnn"))
        else:
            enc_b = FeatureMLP(int(spec["b_dim"]), dim=dim, hidden=int(spec.get("hidden", 256)))
    except KeyError as err:
        raise ValueError(f"model spec is missing field {err.args[0]!r}") from err
    return DualEncoder(enc_a, enc_b, spec=spec)


def _placeholder(start: np.ndarray | None, in_dim: int, out_dim: int) -> np.ndarray | None:
    """The start map, or (rebuilding a saved model) zeros of its shape where it is not the identity."""
    if start is not None or in_dim == out_dim:
        return start
    return np.zeros((in_dim, out_dim), dtype=np.float32)


def _identity_start(dataset: Any, head: str, hidden: int) -> tuple[dict[str, Any], np.ndarray | None,
                                                                    np.ndarray | None]:
    """Spec and start maps of identity-start heads over a features/features dataset."""
    where = f"dataset {getattr(dataset, 'name', '?')!r} split {getattr(dataset, 'split', '?')!r}"
    if dataset.a_kind != "features" or dataset.b_kind != "features":
        raise ValueError(f"{where}: head {head!r} needs features on both sides, got a_kind={dataset.a_kind!r}, "
                         f"b_kind={dataset.b_kind!r}")
    a, b = dataset.a_inputs, dataset.b_inputs
    if a is None or b is None:
        raise ValueError(f"{where}: field 'a_inputs' or 'b_inputs' is missing; a dual encoder needs both sides")
    a_dim, b_dim = int(a.shape[-1]), int(b.shape[-1])
    a_paired = b_paired = None
    if a_dim != b_dim:
        a_rows = np.asarray(a[dataset.b_to_a], dtype=np.float32)
        a_paired = a_rows.mean(1) if a_rows.ndim == 3 else a_rows
        b_rows = np.asarray(b, dtype=np.float32)
        b_paired = b_rows.mean(1) if b_rows.ndim == 3 else b_rows
    start_a, start_b, start = start_maps(a_dim, b_dim, a_paired, b_paired)
    spec = {"dim": min(a_dim, b_dim), "a_kind": "features", "b_kind": "features", "a_dim": a_dim, "b_dim": b_dim,
            "hidden": int(hidden), "head": head, "head_start": start}
    return spec, start_a, start_b


def build_dual_encoder(dataset: Any, dim: int = 64, *, text_encoder: str = "cnn", width: int = 16,
                       hidden: int = 256, norm: str = "group", head: str = "auto") -> DualEncoder:
    """A :class:`DualEncoder` suited to ``dataset`` (a :class:`fnlab.data.base.MatchingDataset`).

    Args:
        dataset: supplies ``a_kind``/``b_kind``, input shapes and the vocabulary size; for identity-start
            heads across dimensions also the labelled pairs the Procrustes start is fitted on.
        dim: size of the joint embedding (identity-start heads keep the embeddings' own size: the
            smaller side's).
        text_encoder: ``"cnn"``, ``"gru"`` or ``"bag"`` for token inputs.
        width: first conv width of the pixel CNN.
        hidden: hidden width of the feature MLPs (and of the residual head's branch).
        norm: pixel CNN normalisation, ``"group"`` (default) or ``"none"``.
        head: over features: ``"mlp"`` (random init), ``"linear"`` or ``"residual"``
            (:mod:`fnlab.models.heads`, starting from the embeddings), or ``"auto"``:
            :func:`default_head` for a dataset of a user's own embeddings
            (``dataset.inputs_are_embeddings``), ``"mlp"`` otherwise.

    Raises:
        ValueError: inputs missing or of an unknown kind (message names the field), unknown head.
    """
    if dim < 1:
        raise ValueError(f"dim must be positive, got {dim}")
    if head == "auto":
        head = default_head(dataset) if getattr(dataset, "inputs_are_embeddings", False) else "mlp"
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}: expected auto or one of {', '.join(HEADS)}")
    if head in IDENTITY_START_HEADS:
        spec, start_a, start_b = _identity_start(dataset, head, hidden)
        return dual_encoder_from_spec(spec, start_a=start_a, start_b=start_b)
    return dual_encoder_from_spec(_spec_for(dataset, dim, text_encoder, width, hidden, norm))


def default_head(dataset: Any) -> str:
    """The head a user's own embeddings get by default (measured in ``bench/own_data.py``)."""
    return "linear"


def batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def to_tensor(inputs: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """Dataset inputs as a tensor on ``device`` (uint8 pixels and int64 tokens keep their dtype)."""
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device)
    arr = np.ascontiguousarray(inputs)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    return torch.from_numpy(arr).to(device)


@torch.no_grad()
def encode_side(model: DualEncoder, inputs: np.ndarray | torch.Tensor, side: str, *,
                batch_size: int = 512, device: torch.device | str | None = None) -> np.ndarray:
    """Encode all inputs of one side in eval mode: ``[N, ...] -> float32 [N, dim]`` unit rows.

    Args:
        side: ``"a"`` or ``"b"``.
    """
    if side not in ("a", "b"):
        raise ValueError(f"side must be 'a' or 'b', got {side!r}")
    if device is None:
        device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    fn = model.encode_a if side == "a" else model.encode_b
    out = []
    try:
        for sl in batches(len(inputs), batch_size):
            out.append(fn(to_tensor(inputs[sl], device)).float().cpu())
    finally:
        model.train(was_training)
    if not out:
        return np.zeros((0, int(model.spec.get("dim", 0))), dtype=np.float32)
    return torch.cat(out).numpy().astype(np.float32, copy=False)
