"""``precomp``: the precomputed-feature layout of the VSE++ / SCAN / VSRN / FNE line of work.

Point ``root`` at a copy of e.g. ``data/f30k_precomp`` or ``data/coco_precomp``::

    ROOT/
        {split}_ims.npy    image features, [N_img, d] or [N_img, regions, d] (regions are mean-pooled);
                           a file with one row per caption (N_img * 5 rows) is also accepted
        {split}_caps.txt   UTF-8, one caption per line, ``captions_per_image`` (5) per image, in order:
                           lines 5i..5i+4 describe image i
        vocab.json         optional: a JSON list of words, or SCAN's {"word2idx": {...}} (specials dropped)
        {split}_caps.npy   optional: caption features, [N_caps, d_text] float, one row per line of
                           {split}_caps.txt (e.g. MiniLM sentence embeddings); used instead of token ids
        {split}_relevance.npz  optional ground truth: a scipy sparse matrix [N_caps, N_img] (``save_npz``),
                           true where caption j describes image i (labelled pairs are added if missing)
        all_relevance.npz  optional: the same over every split concatenated (train, val, test), used by
                           ``split="all"`` so that cross-split pairs are known too

``split`` is ``train``, ``val`` (``dev_*`` files are used when ``val_*`` are absent, as in SCAN),
``test`` (``testall_*`` when ``test_*`` is absent), or ``all`` (every split present, concatenated).
Without ``vocab.json`` the vocabulary is built from ``train_caps.txt`` (or the split's own captions).
Without ``{split}_relevance.npz`` there is no ground-truth relevance (``relevance is None``): FN counts
need a dataset with ground truth. With ``split="all"`` and no ``all_relevance.npz``, relevance is the
block-diagonal of the splits' files (pairs across splits unknown, so counted as not relevant).

Options: ``captions_per_image`` (5), ``max_len`` (token ids per caption, 40), ``chunk`` (rows
mean-pooled at a time, 1024, so region features are memory-mapped rather than loaded whole),
``caption_features`` (``"auto"``: use ``{split}_caps.npy`` where every loaded split has one; ``true``:
require them; ``false``: token ids from the text).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from fnlab.data.base import DatasetError, MatchingDataset
from fnlab.data.text import PAD, UNK, build_vocab, encode
from fnlab.data.validate import load_npy, require_file

_ALIASES = {"train": ("train",), "val": ("val", "dev"), "test": ("test", "testall")}
DEFAULTS = dict(captions_per_image=5, max_len=40, chunk=1024, caption_features="auto")


def _find(root: Path, split: str, suffix: str) -> Path | None:
    for alias in _ALIASES[split]:
        p = root / f"{alias}{suffix}"
        if p.exists():
            return p
    return None


def read_captions(path: Path) -> list[str]:
    """Caption lines of ``path`` (trailing empty lines ignored).

    Raises:
        DatasetError: empty file, not UTF-8, or an empty caption line.
    """
    require_file(path, "captions", "UTF-8 text, one caption per line")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}: field 'captions': not UTF-8 text ({err})") from err
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DatasetError(f"{path}: field 'captions': no captions (expected one caption per line)")
    for i, line in enumerate(lines):
        if not line.strip():
            raise DatasetError(f"{path}: field 'captions': line {i + 1} is empty (expected a caption)")
    return [line.strip() for line in lines]


def read_features(path: Path, *, chunk: int = 1024) -> np.ndarray:
    """Image features ``[N, d]`` float32 from ``[N, d]`` or ``[N, regions, d]`` (mean over regions).

    Memory-maps the file and pools ``chunk`` rows at a time; never unpickles.

    Raises:
        DatasetError: pickled/object or non-numeric array, wrong number of dimensions, NaN/inf, no rows.
    """
    require_file(path, "image_features", "a .npy array [N, d] or [N, regions, d]")
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except ValueError as err:
        raise DatasetError(
            f"{path}: field 'image_features': a pickled/object or unreadable array, which fnlab never loads "
            f"(expected a numeric array [N, d] or [N, regions, d]; {err})"
        ) from err
    except (OSError, EOFError) as err:
        raise DatasetError(f"{path}: field 'image_features': not a readable .npy array ({err})") from err
    if arr.dtype.kind not in "iuf":
        raise DatasetError(f"{path}: field 'image_features': dtype {arr.dtype}, expected floating-point numbers")
    if arr.ndim not in (2, 3) or arr.shape[0] == 0 or arr.shape[-1] == 0:
        raise DatasetError(
            f"{path}: field 'image_features': shape {arr.shape}, expected [N, d] or [N, regions, d] with N, d > 0"
        )
    out = np.empty((arr.shape[0], arr.shape[-1]), dtype=np.float32)
    for start in range(0, arr.shape[0], chunk):
        block = np.asarray(arr[start : start + chunk], dtype=np.float32)
        if not np.isfinite(block).all():
            bad = start + int(np.flatnonzero(~np.isfinite(block.reshape(len(block), -1)).all(axis=1))[0])
            raise DatasetError(f"{path}: field 'image_features': row {bad} holds NaN or infinite values")
        out[start : start + len(block)] = block.mean(axis=1) if block.ndim == 3 else block
    return out


def _read_vocab(root: Path) -> list[str] | None:
    path = root / "vocab.json"
    if not path.exists():
        return None
    require_file(path, "vocab", "a JSON list of words or {'word2idx': {...}}")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: field 'vocab': not valid JSON ({err})") from err
    if isinstance(obj, dict) and isinstance(obj.get("word2idx"), dict):
        words = sorted(obj["word2idx"], key=lambda w: obj["word2idx"][w])
    elif isinstance(obj, list):
        words = obj
    else:
        raise DatasetError(f"{path}: field 'vocab': expected a JSON list of words or an object with 'word2idx'")
    if not all(isinstance(w, str) for w in words):
        raise DatasetError(f"{path}: field 'vocab': every entry must be a string")
    specials = {PAD, UNK, "<start>", "<end>"}
    return [PAD, UNK, *[w for w in words if w not in specials]]


def read_relevance(path: Path, shape: tuple[int, int]) -> sp.csr_matrix:
    """Ground truth ``[N_caps, N_img]`` bool CSR from a scipy ``save_npz`` file (never unpickled).

    Raises:
        DatasetError: unreadable file, not a sparse matrix, or a shape other than ``shape``.
    """
    require_file(path, "relevance", f"a scipy sparse matrix [{shape[0]}, {shape[1]}] saved with save_npz")
    try:
        rel = sp.load_npz(path)  # reads with allow_pickle=False
    except (ValueError, OSError, KeyError, EOFError) as err:
        raise DatasetError(
            f"{path}: field 'relevance': not a scipy sparse .npz matrix ({err}); expected save_npz output"
        ) from err
    if rel.shape != shape:
        raise DatasetError(f"{path}: field 'relevance': shape {rel.shape}, expected {shape} (captions, images)")
    return sp.csr_matrix(rel, dtype=bool)


def _caption_features(root: Path, split: str, n_caps: int) -> np.ndarray | None:
    path = _find(root, split, "_caps.npy")
    if path is None:
        return None
    return load_npy(path, "caption_features", ndim=(2,), kind="float", rows=n_caps)


def _load_split(root: Path, split: str, o: dict) -> tuple[np.ndarray, list[str]]:
    ims_path, caps_path = _find(root, split, "_ims.npy"), _find(root, split, "_caps.txt")
    if ims_path is None or caps_path is None:
        want = " or ".join(f"{a}_ims.npy + {a}_caps.txt" for a in _ALIASES[split])
        raise FileNotFoundError(f"{root}: split {split!r} needs {want}")
    feats = read_features(ims_path, chunk=o["chunk"])
    caps = read_captions(caps_path)
    k = o["captions_per_image"]
    if len(feats) == len(caps) and k > 1:
        # one feature row per caption (COCO precomp style): keep every k-th row
        feats = feats[::k]
    if len(caps) != k * len(feats):
        raise DatasetError(
            f"{caps_path}: field 'captions': {len(caps)} captions for {len(feats)} images in {ims_path.name}; "
            f"expected {k} per image ({k * len(feats)})"
        )
    return feats, caps


def load_precomp(root: str | Path, split: str = "train", **options) -> MatchingDataset:
    """Load one split of a VSE/SCAN precomp folder (layout in the module docstring).

    Returns:
        ``a_inputs [N_img, d]`` float32 features, ``b_inputs [5 N_img, L]`` int64 token ids (or
        ``[5 N_img, d_text]`` float32 caption features from ``{split}_caps.npy``), ``b_to_a = i // 5``,
        ``b_meta["text"]``, relevance from ``{split}_relevance.npz`` where present (else ``None``).

    Raises:
        FileNotFoundError: missing folder or files; DatasetError: malformed files (named, with the field).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"precomp root {root.absolute()}: no such folder")
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"precomp: unknown option(s) {sorted(unknown)}; valid: {sorted(DEFAULTS)}")
    o = {**DEFAULTS, **options}
    if int(o["captions_per_image"]) < 1:
        raise ValueError("precomp: option 'captions_per_image' must be >= 1")
    if o["caption_features"] not in ("auto", True, False):
        raise ValueError(f"precomp: option 'caption_features' must be 'auto', true or false, got {o['caption_features']!r}")
    splits = [s for s in _ALIASES if _find(root, s, "_ims.npy")] if split == "all" else [split]
    if not splits:
        raise FileNotFoundError(f"{root}: no {{split}}_ims.npy files found")
    parts = [(s, *_load_split(root, s, o)) for s in splits]
    d = {p[1].shape[1] for p in parts}
    if len(d) > 1:
        raise DatasetError(f"{root}: field 'image_features': splits have different feature sizes {sorted(d)}")
    vocab = _read_vocab(root)
    if vocab is None:
        train_caps = _find(root, "train", "_caps.txt")
        source = read_captions(train_caps) if train_caps is not None else [c for p in parts for c in p[2]]
        vocab = build_vocab(source)
    feats = np.concatenate([p[1] for p in parts])
    caps = [c for p in parts for c in p[2]]
    k = int(o["captions_per_image"])
    split_of_a = np.concatenate([np.full(len(p[1]), p[0], dtype=object) for p in parts])
    a_meta = pd.DataFrame({"split": split_of_a, "file_index": np.concatenate([np.arange(len(p[1])) for p in parts])})
    b_to_a = np.arange(len(caps)) // k
    relevance = _relevance(root, split, parts, k)
    if relevance is not None:  # labelled pairs are relevant by definition
        relevance = relevance + sp.csr_matrix((np.ones(len(caps), bool), (np.arange(len(caps)), b_to_a)),
                                              shape=relevance.shape)
    text_feats = None
    if o["caption_features"] is not False:
        found = [_caption_features(root, p[0], len(p[2])) for p in parts]
        if all(f is not None for f in found):
            dims = {f.shape[1] for f in found}
            if len(dims) > 1:
                raise DatasetError(f"{root}: field 'caption_features': splits have different sizes {sorted(dims)}")
            text_feats = np.concatenate(found).astype(np.float32, copy=False)
        elif o["caption_features"] is True:
            missing = [p[0] for p, f in zip(parts, found, strict=True) if f is None]
            raise FileNotFoundError(f"{root}: caption_features=true needs {{split}}_caps.npy for split(s) {missing}")
    b_inputs, b_kind = (text_feats, "features") if text_feats is not None else (
        encode(caps, vocab, max_len=int(o["max_len"])), "tokens")
    return MatchingDataset(
        name="precomp", split=split, b_to_a=b_to_a, a_inputs=feats,
        b_inputs=b_inputs, a_kind="features", b_kind=b_kind,
        relevance=relevance, a_meta=a_meta, b_meta=pd.DataFrame({"text": caps}), vocab=vocab, a_modality="image",
    )


def _relevance(root: Path, split: str, parts: list, k: int) -> sp.csr_matrix | None:
    """Ground truth over the loaded splits (``None`` when a split has none); see the module docstring."""
    n_img, n_cap = sum(len(p[1]) for p in parts), sum(len(p[2]) for p in parts)
    if split == "all" and (root / "all_relevance.npz").exists():
        return read_relevance(root / "all_relevance.npz", (n_cap, n_img))
    blocks = []
    for s, f, c in parts:
        path = _find(root, s, "_relevance.npz")
        if path is None:
            return None
        blocks.append(read_relevance(path, (len(c), len(f))))
    return sp.csr_matrix(sp.block_diag(blocks, format="csr"), dtype=bool)
