"""The saved-dataset folder: any :class:`MatchingDataset` written to disk and read back.

Layout of ``FOLDER/``::

    dataset.json      {"format": "fnlab-dataset", "version": 1, "name", "a_kind", "b_kind",
                       "vocab": [...] | null, "splits": ["train", "val", "test"],
                       "counts": {split: {"items_a", "items_b"}}, "source": {"name", "root", "options"} | null,
                       "a_modality", "b_modality", "inputs_are_embeddings"}  (the last three optional)
    arrays.npz        compressed, never pickled: b_to_a [n_b] int64, a_split [n_a] int64 (index into
                      "splits"), a_ids [n_a], b_ids [n_b], a_inputs / b_inputs (when present),
                      relevance_indptr [n_b + 1], relevance_indices [nnz] (when ground truth is known)
    a_meta.parquet    one row per A item (may have no columns)
    b_meta.parquet    one row per B item (``text`` for captions)

The whole dataset is stored once with each A item's split; ``load(FOLDER, split=...)`` cuts
the split out with :meth:`MatchingDataset.subset`. Saving writes a temporary sibling folder and
renames it into place, so an interrupted save leaves no half-written dataset.

Example:
    >>> save_dataset(fnlab.data.load("shapes", split="all"), "out/shapes")   # doctest: +SKIP
    >>> fnlab.data.load("out/shapes", split="val")                            # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from fnlab.core import files, ownership
from fnlab.data.base import DatasetError, MatchingDataset
from fnlab.data.validate import check_array, read_json, require_file

FORMAT = "fnlab-dataset"
VERSION = 1


def save_dataset(ds: MatchingDataset, folder: str | Path, *, overwrite: bool = True) -> Path:
    """Write ``ds`` (all its items; splits from ``a_meta["split"]`` if present, else ``ds.split``).

    Returns:
        the folder path.

    Raises:
        FileExistsError: the folder exists and ``overwrite`` is False.
    """
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder} already exists")
    ownership.check(folder, ownership.DATASET, action="replace")  # only a dataset fnlab saved is replaced
    folder.parent.mkdir(parents=True, exist_ok=True)
    if "split" in ds.a_meta.columns:
        split_of_a = ds.a_meta["split"].astype(str).to_numpy()
    else:
        split_of_a = np.full(ds.n_a, ds.split)
    names = [s for s in ("train", "val", "test") if (split_of_a == s).any()]
    names += sorted(set(split_of_a) - set(names))
    codes = np.array([names.index(s) for s in split_of_a], dtype=np.int64)
    arrays = {"b_to_a": ds.b_to_a, "a_split": codes, "a_ids": ds.a_ids, "b_ids": ds.b_ids}
    if ds.a_inputs is not None:
        arrays["a_inputs"] = ds.a_inputs
    if ds.b_inputs is not None:
        arrays["b_inputs"] = ds.b_inputs
    if ds.relevance is not None:
        rel = sp.csr_matrix(ds.relevance, dtype=bool)
        rel.sort_indices()
        arrays["relevance_indptr"] = rel.indptr.astype(np.int64)
        arrays["relevance_indices"] = rel.indices.astype(np.int32)
    counts = {
        s: {"items_a": int((codes == k).sum()), "items_b": int((codes[ds.b_to_a] == k).sum())}
        for k, s in enumerate(names)
    }
    meta = {
        "format": FORMAT, "version": VERSION, "name": ds.name, "a_kind": ds.a_kind, "b_kind": ds.b_kind,
        "n_a": ds.n_a, "n_b": ds.n_b, "vocab": ds.vocab, "splits": names, "counts": counts, "source": ds.spec,
        "a_modality": ds.a_modality, "b_modality": ds.b_modality, "inputs_are_embeddings": ds.inputs_are_embeddings,
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    os.chmod(tmp, 0o755)
    try:
        _write_npz(tmp / "arrays.npz", arrays)
        a_meta = ds.a_meta.drop(columns=["split"], errors="ignore")
        a_meta.to_parquet(tmp / "a_meta.parquet", index=False)
        ds.b_meta.to_parquet(tmp / "b_meta.parquet", index=False)
        (tmp / "dataset.json").write_text(files.dumps(meta, indent=1) + "\n", encoding="utf-8")  # NaN -> null
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            try:
                ownership.remove(old, ownership.DATASET)
            except (OSError, ValueError):
                pass  # a file appeared in it meanwhile: left in place, hidden beside the new dataset
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like ``np.savez_compressed`` but byte-for-byte reproducible (fixed zip timestamps), never pickled."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, arr in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asarray(arr), allow_pickle=False)


def _npz(path: Path) -> dict[str, np.ndarray]:
    require_file(path, "arrays", "a .npz archive of numeric arrays")
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {}
            for k in z.files:
                try:
                    out[k] = z[k]
                except ValueError as err:
                    raise DatasetError(
                        f"{path}: field {k!r}: holds a pickled/object array, which fnlab never loads "
                        "(expected a plain numeric array)"
                    ) from err
            return out
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise DatasetError(f"{path}: field 'arrays': not a readable .npz archive ({err})") from err


def _table(path: Path, rows: int, field: str) -> pd.DataFrame:
    require_file(path, field, f"a Parquet table with {rows} rows")
    try:
        df = pd.read_parquet(path)
    except Exception as err:
        raise DatasetError(f"{path}: field {field!r}: not a readable Parquet table ({err})") from err
    if len(df) != rows and not (len(df) == 0 and len(df.columns) == 0):
        raise DatasetError(f"{path}: field {field!r}: has {len(df)} rows, expected {rows}")
    return df if len(df) else pd.DataFrame(index=range(rows))


def load_folder(folder: str | Path, split: str = "train") -> MatchingDataset:
    """Read a folder written by :func:`save_dataset` and return one split (``all`` for everything).

    Raises:
        DatasetError: a malformed file (named, with the field and what was expected).
    """
    folder = Path(folder)
    meta_path = folder / "dataset.json"
    meta = read_json(meta_path, "dataset")
    if meta.get("format") != FORMAT:
        raise DatasetError(f"{meta_path}: field 'format' is {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("version") != VERSION:
        raise DatasetError(f"{meta_path}: field 'version' is {meta.get('version')!r}, expected {VERSION}")
    for key in ("name", "a_kind", "b_kind", "splits"):
        if key not in meta:
            raise DatasetError(f"{meta_path}: missing field {key!r}")
    if meta["a_kind"] not in ("pixels", "features") or meta["b_kind"] not in ("tokens", "features"):
        raise DatasetError(f"{meta_path}: fields 'a_kind'/'b_kind' must be pixels|features / tokens|features")
    npz = folder / "arrays.npz"
    arr = _npz(npz)
    for key in ("b_to_a", "a_split"):
        if key not in arr:
            raise DatasetError(f"{npz}: missing field {key!r}")
    b_to_a = check_array(arr["b_to_a"], str(npz), "b_to_a", ndim=(1,), kind="int")
    a_split = check_array(arr["a_split"], str(npz), "a_split", ndim=(1,), kind="int")
    n_a, n_b = len(a_split), len(b_to_a)
    names = list(meta["splits"])
    if a_split.min() < 0 or a_split.max() >= len(names):
        raise DatasetError(f"{npz}: field 'a_split' has codes outside [0, {len(names)}) (dataset.json 'splits')")
    a_inputs = b_inputs = None
    if "a_inputs" in arr:
        a_inputs = arr["a_inputs"]
        a_nd = (4,) if meta["a_kind"] == "pixels" else (2,)
        if a_inputs.dtype != np.uint8:
            a_inputs = check_array(a_inputs, str(npz), "a_inputs", ndim=a_nd, rows=n_a)
        elif a_inputs.ndim not in a_nd or a_inputs.shape[0] != n_a:
            raise DatasetError(f"{npz}: field 'a_inputs' has shape {a_inputs.shape}, expected {n_a} rows, {a_nd[0]}-D")
    if "b_inputs" in arr:
        kind = "int" if meta["b_kind"] == "tokens" else "float"
        b_inputs = check_array(arr["b_inputs"], str(npz), "b_inputs", ndim=(2,), kind=kind, rows=n_b)
    relevance = None
    if "relevance_indptr" in arr:
        indptr = check_array(arr["relevance_indptr"], str(npz), "relevance_indptr", ndim=(1,), kind="int",
                             rows=n_b + 1)
        indices = arr.get("relevance_indices", np.zeros(0, np.int64))
        if indices.dtype.kind not in "iu" or indices.ndim != 1:
            raise DatasetError(f"{npz}: field 'relevance_indices' must be a 1-D integer array")
        if indptr[0] != 0 or indptr[-1] != len(indices) or (np.diff(indptr) < 0).any():
            raise DatasetError(f"{npz}: field 'relevance_indptr' is not a valid CSR row pointer for "
                               f"{len(indices)} indices")
        if len(indices) and (indices.min() < 0 or indices.max() >= n_a):
            raise DatasetError(f"{npz}: field 'relevance_indices' has indices outside [0, {n_a})")
        relevance = sp.csr_matrix((np.ones(len(indices), bool), indices, indptr), shape=(n_b, n_a))
    a_meta = _table(folder / "a_meta.parquet", n_a, "a_meta")
    b_meta = _table(folder / "b_meta.parquet", n_b, "b_meta")
    a_meta.insert(0, "split", np.array(names, dtype=object)[a_split])
    vocab = meta.get("vocab")
    if vocab is not None and not (isinstance(vocab, list) and all(isinstance(w, str) for w in vocab)):
        raise DatasetError(f"{meta_path}: field 'vocab' must be a list of strings")
    try:
        full = MatchingDataset(
            name=str(meta["name"]), split="all", b_to_a=b_to_a, a_inputs=a_inputs, b_inputs=b_inputs,
            a_kind=meta["a_kind"], b_kind=meta["b_kind"], relevance=relevance, a_meta=a_meta, b_meta=b_meta,
            vocab=vocab, a_ids=arr.get("a_ids"), b_ids=arr.get("b_ids"), a_modality=meta.get("a_modality"),
            b_modality=meta.get("b_modality"), inputs_are_embeddings=bool(meta.get("inputs_are_embeddings", False)),
        )
    except DatasetError as err:
        raise DatasetError(f"{folder}: {err}") from err
    from fnlab.data import split_indices

    return full.subset(split_indices(a_meta["split"].to_numpy(), split, str(folder)), split)
