"""``pairs``: your own matching data as a pairs table plus embeddings or features.

Layout of ``ROOT/``::

    pairs.csv | pairs.parquet     one row per labelled pair, one row per query:
        b        (or ``query``)      int, row of b.npy: the query / caption (side B); each at most once
        a        (or ``candidate``)  int, row of a.npy: its labelled match (side A)
        text     optional, the query's text (shown in the app)
        a_text, image_path  optional, the candidate's text / image file (relative to ROOT or absolute);
                 one value per candidate
        split    optional, train | val | test, the same for every pair of a candidate
    candidates.csv | candidates.parquet   optional, what every candidate is, labelled or not (a corpus is
                 often far larger than its labelled queries):
        a        (or ``candidate``), optional: the row of a.npy each table row describes; without it, one
                 table row per a.npy row, in order
        a_text, image_path, split   as above, for the candidates the table lists; a candidate also given
                 one in the pairs table must be given the same value
    a.npy        [n_a, d_a] float: candidate embeddings or features (every row is an A item)
    b.npy        [n_b_rows, d_b] float: query embeddings or features
    relevance.csv | relevance.parquet   optional ground truth, columns ``b`` and ``a`` (same meaning):
                 every truly matching pair; labelled pairs are added if missing

Pooling bias can be simulated (``pooling_depth``, :mod:`fnlab.data.pooling`): labels are then the relevant
candidates in each query's top ``pooling_depth`` under a weak retriever over the two sides' embeddings (needs
``relevance`` and embeddings of one width on both sides).

Side-B items are the table's rows, in order (``b_ids`` keeps the ``b`` value); side-A items are
all rows of ``a.npy``. Both sides are ``features`` (``a_inputs``/``b_inputs`` float32). Without a
``split`` column (in either table), candidates are split at random (``val_fraction`` and ``test_fraction``, 0.1 each,
``seed`` 0). Everything is checked on load; a problem raises :class:`DatasetError` naming the file,
the column or field, and what was expected. ``.npy`` files are never unpickled.

The loaded dataset says its inputs are embeddings that already rank the pairs
(``inputs_are_embeddings``): training keeps them as frozen features under heads that start from them
(:mod:`fnlab.models.heads`). Its wording follows the columns: ``text`` and ``a_text`` make both sides
text (documents and queries), ``image_path`` makes side A images, embeddings alone are neutral
candidates and queries (:attr:`fnlab.data.base.MatchingDataset.nouns`).

Example:
    >>> ds = fnlab.data.load("pairs", root="my_data", split="all")       # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from fnlab.data.base import DatasetError, MatchingDataset
from fnlab.data.pooling import POOLING_DEFAULTS, apply_pooling, pooling_options
from fnlab.data.validate import int_column, load_npy, read_table

DEFAULTS = dict(val_fraction=0.1, test_fraction=0.1, seed=0, **POOLING_DEFAULTS)
_SPLITS = ("train", "val", "test")


def _table_path(root: Path, stem: str, required: bool) -> Path | None:
    found = [root / f"{stem}{ext}" for ext in (".parquet", ".csv") if (root / f"{stem}{ext}").exists()]
    if len(found) > 1:
        raise DatasetError(f"{root}: both {stem}.parquet and {stem}.csv exist; keep one")
    if not found:
        if required:
            raise FileNotFoundError(f"{root}: missing {stem}.csv or {stem}.parquet (the labelled pairs table)")
        return None
    return found[0]


def _column(df: pd.DataFrame, names: tuple[str, ...], where: str) -> str:
    for n in names:
        if n in df.columns:
            return n
    raise DatasetError(f"{where}: missing column {' or '.join(map(repr, names))} (has {list(df.columns)})")


def _per_candidate(df: pd.DataFrame, col: str, a: np.ndarray, n_a: int, where: str, fill) -> np.ndarray:
    """One value of column ``col`` per candidate (``fill`` where a candidate has no pair)."""
    values = df[col].to_numpy(dtype=object)
    out = np.full(n_a, fill, dtype=object)
    seen: dict[int, object] = {}
    for ai, v in zip(a, values, strict=True):
        v = fill if (v is None or (isinstance(v, float) and np.isnan(v))) else v
        if ai in seen and seen[ai] != v:
            raise DatasetError(f"{where}: column {col!r} gives candidate {ai} two values ({seen[ai]!r}, {v!r})")
        seen[ai] = v
        out[ai] = v
    return out


_CANDIDATE_COLUMNS = ("a_text", "image_path", "split")
_FILL = {"a_text": "", "image_path": "", "split": "train"}


def _check_splits(values, where: str) -> None:
    """Every value given is train, val or test (a blank one too is an error: it would put a candidate in
    train unseen)."""
    bad = sorted({str(v) for v in values} - set(_SPLITS))
    if bad:
        raise DatasetError(f"{where}: column 'split' has value {bad[0]!r}; expected train, val or test")


def _candidates_table(root: Path, n_a: int) -> tuple[pd.DataFrame, np.ndarray, str] | None:
    """The optional candidates table: ``(table, a.npy row of each table row, where)``, or ``None``."""
    path = _table_path(root, "candidates", required=False)
    if path is None:
        return None
    table = read_table(path, "candidates")
    where = str(path)
    id_col = next((c for c in ("a", "candidate") if c in table.columns), None)
    if id_col is None:
        if len(table) != n_a:
            raise DatasetError(f"{where}: {len(table)} rows but a.npy has {n_a}; expected one row per a.npy row, in "
                               "order (or a column 'a' naming the a.npy row of each)")
        rows = np.arange(n_a)
    else:
        rows = int_column(table, id_col, where, high=n_a)
        uniq, counts = np.unique(rows, return_counts=True)
        if (counts > 1).any():
            raise DatasetError(f"{where}: column {id_col!r} lists candidate {uniq[counts > 1][0]} more than once; "
                               "expected each a.npy row at most once")
    if not any(c in table.columns for c in _CANDIDATE_COLUMNS):
        raise DatasetError(f"{where}: no column {', '.join(map(repr, _CANDIDATE_COLUMNS))}; expected at least one "
                           "of them (what each candidate is)")
    return table, rows, where


def _present(v) -> bool:
    return not (v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA)


def _candidate_values(df: pd.DataFrame, col: str, a: np.ndarray, n_a: int, where: str,
                      listed: tuple[pd.DataFrame, np.ndarray, str] | None) -> np.ndarray | None:
    """One value of ``col`` per candidate, from the candidates table and the pairs table (which must agree
    where both give one), or ``None`` when neither has the column."""
    if col == "split" and col in df.columns:
        _check_splits(df[col].astype(str), where)
    from_pairs = _per_candidate(df, col, a, n_a, where, None) if col in df.columns else None
    if listed is None or col not in listed[0].columns:
        return None if from_pairs is None else np.where([_present(v) for v in from_pairs], from_pairs, _FILL[col])
    table, rows, cwhere = listed
    if col == "split":
        _check_splits(table[col].astype(str), cwhere)
    out = np.full(n_a, None, dtype=object)
    out[rows] = [v if _present(v) else None for v in table[col].to_numpy(dtype=object)]
    if from_pairs is not None:
        both = np.flatnonzero([_present(x) and _present(y) for x, y in zip(out, from_pairs, strict=True)])
        differ = [i for i in both if str(out[i]) != str(from_pairs[i])]
        if differ:
            i = differ[0]
            raise DatasetError(f"{cwhere}: column {col!r} gives candidate {i} {out[i]!r}, but {where} gives it "
                               f"{from_pairs[i]!r}; expected one value per candidate (give it in one table)")
        fill_in = np.array([not _present(x) and _present(y) for x, y in zip(out, from_pairs, strict=True)])
        out[fill_in] = from_pairs[fill_in]
    return np.array([v if _present(v) else _FILL[col] for v in out], dtype=object)


def load_pairs(root: str | Path, split: str = "train", **options) -> MatchingDataset:
    """Load a pairs folder (layout in the module docstring) and return one split.

    Raises:
        FileNotFoundError: missing folder or required file; DatasetError: malformed input (named file,
        column/field and expectation); ValueError: unknown option.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"pairs root {root.absolute()}: no such folder")
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"pairs: unknown option(s) {sorted(unknown)}; valid: {sorted(DEFAULTS)}")
    options, pooling = pooling_options(options, "pairs")
    o = {**DEFAULTS, **options}

    a_emb = load_npy(root / "a.npy", "a", ndim=(2,))
    b_emb = load_npy(root / "b.npy", "b", ndim=(2,))
    n_a, n_b_rows = len(a_emb), len(b_emb)
    pairs_path = _table_path(root, "pairs", required=True)
    df = read_table(pairs_path, "pairs")
    where = str(pairs_path)
    b_col, a_col = _column(df, ("b", "query"), where), _column(df, ("a", "candidate"), where)
    b = int_column(df, b_col, where, high=n_b_rows)
    a = int_column(df, a_col, where, high=n_a)
    uniq, counts = np.unique(b, return_counts=True)
    if (counts > 1).any():
        raise DatasetError(
            f"{where}: column {b_col!r} lists query {uniq[counts > 1][0]} more than once; expected one labelled "
            "candidate per query (put further matches in relevance.csv)"
        )

    listed = _candidates_table(root, n_a)
    a_meta = pd.DataFrame(index=range(n_a))
    for col in _CANDIDATE_COLUMNS:
        vals = _candidate_values(df, col, a, n_a, where, listed)
        if vals is None:
            continue
        if col == "image_path":
            vals = np.array([str(root / v) if v and not Path(str(v)).is_absolute() else str(v) for v in vals],
                            dtype=object)
        a_meta[col] = vals
    if "a_text" in a_meta.columns:
        a_meta["label"] = a_meta["a_text"]
    if "split" in a_meta.columns:
        split_of_a = a_meta.pop("split").to_numpy(dtype=object)
    else:
        rng = np.random.default_rng(int(o["seed"]))
        u = rng.random(n_a)
        vf, tf = float(o["val_fraction"]), float(o["test_fraction"])
        if not (0 <= vf and 0 <= tf and vf + tf < 1):
            raise ValueError("pairs: val_fraction and test_fraction must be >= 0 with a sum below 1")
        split_of_a = np.where(u < tf, "test", np.where(u < tf + vf, "val", "train")).astype(object)
    a_meta.insert(0, "split", split_of_a)

    b_meta = pd.DataFrame(index=range(len(df)))
    for col in ("text",):
        if col in df.columns:
            b_meta[col] = df[col].fillna("").astype(str).to_numpy()

    relevance = None
    rel_path = _table_path(root, "relevance", required=False)
    if rel_path is not None:
        rel_df = read_table(rel_path, "relevance")
        rw = str(rel_path)
        rb = int_column(rel_df, _column(rel_df, ("b", "query"), rw), rw, high=n_b_rows)
        ra = int_column(rel_df, _column(rel_df, ("a", "candidate"), rw), rw, high=n_a)
        row_of_b = np.full(n_b_rows, -1, dtype=np.int64)
        row_of_b[b] = np.arange(len(b))
        missing = row_of_b[rb] < 0
        if missing.any():
            raise DatasetError(
                f"{rw}: column 'b' has query {rb[missing][0]} with no labelled pair in {pairs_path.name}; "
                "expected queries listed in the pairs table"
            )
        rows = np.concatenate([row_of_b[rb], np.arange(len(b))])
        cols = np.concatenate([ra, a])
        relevance = sp.csr_matrix((np.ones(len(rows), bool), (rows, cols)), shape=(len(b), n_a))
        relevance.sum_duplicates()
        relevance.data[:] = True

    full = MatchingDataset(
        name="pairs", split="all", b_to_a=a, a_inputs=a_emb, b_inputs=b_emb[b], a_kind="features",
        b_kind="features", relevance=relevance, a_meta=a_meta, b_meta=b_meta, b_ids=b, inputs_are_embeddings=True,
    )
    from fnlab.data import split_indices

    return apply_pooling(full.subset(split_indices(split_of_a, split, str(root)), split), **pooling)
