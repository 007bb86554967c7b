"""A folder of embedding shards (Parquet or ``.npy``) as one checked, id-addressed set.

Layouts (one folder holds one kind; files are taken in sorted name order):

- **Parquet**: every ``*.parquet`` file has an integer id column (default ``id``) and an
  embedding column (default ``embedding``): a list (or fixed-size list) of floats, ``d`` values
  a row. Ids are whatever the files say; they must be unique across all shards.
- **npy**: every ``*.npy`` file is a float array ``[n_i, d]`` (``np.save``; never unpickled).
  Ids are global row positions: the rows of the first file are ``0 .. n_0 - 1``, the next file
  continues from ``n_0``, and so on (the same ids as the concatenated array).
- a single ``.npy`` / ``.parquet`` file, or an in-memory ``[N, d]`` array (ids ``0 .. N - 1``).

Opening a set reads only headers, schemas and id columns; checks name the file: a shard whose
dimension differs from the first one, ids repeated across (or within) shards, unreadable files.
:meth:`ShardSet.gather` reads the rows of given positions (memory-mapped for ``.npy``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fnlab.analysis.scan.inputs import ScanInputError

__all__ = ["ShardSet", "open_shards"]


@dataclass
class ShardSet:
    """Embeddings spread over files, addressed by global position ``0 .. n - 1`` and by id.

    Attributes:
        kind: ``"parquet"``, ``"npy"`` or ``"memory"``.
        files: shard paths in order (``["<memory>"]`` for an array).
        offsets: ``[F + 1]`` int64, rows of file ``f`` are positions ``offsets[f] .. offsets[f+1] - 1``.
        dim: embedding size ``d``.
        ids: ``[n]`` int64 id of every position.
        side: ``"queries"`` or ``"candidates"`` (for messages).
    """

    kind: str
    files: list[str]
    offsets: np.ndarray
    dim: int
    ids: np.ndarray
    side: str
    id_column: str = "id"
    embedding_column: str = "embedding"
    array: np.ndarray | None = field(default=None, repr=False)

    @property
    def n(self) -> int:
        return int(self.offsets[-1])

    def file_of(self, position: int) -> str:
        """Path of the shard holding global position ``position``."""
        return self.files[int(np.searchsorted(self.offsets, position, side="right")) - 1]

    def positions_of(self, ids: np.ndarray, where: str) -> np.ndarray:
        """Global positions of ``ids``; ``where`` names the table/column for the error.

        Raises:
            ScanInputError: an id that no shard holds.
        """
        ids = np.asarray(ids, dtype=np.int64)
        order = np.argsort(self.ids, kind="stable")
        sorted_ids = self.ids[order]
        at = np.minimum(np.searchsorted(sorted_ids, ids), max(sorted_ids.size - 1, 0))
        ok = sorted_ids[at] == ids if sorted_ids.size else np.zeros(ids.shape, bool)
        if not ok.all():
            bad = ids[~ok]
            raise ScanInputError(f"{where}: {bad.size} id(s) are not among the {self.side}' ids "
                                 f"(first: {bad[:5].tolist()}); expected ids of rows of the {self.side} shards")
        return order[at].astype(np.int64)

    def gather(self, positions: np.ndarray) -> np.ndarray:
        """Raw rows ``[m, d]`` at ``positions`` (any order, repeats allowed), reading only the files needed."""
        positions = np.asarray(positions, dtype=np.int64)
        if self.kind == "memory":
            return np.asarray(self.array[positions])
        out: np.ndarray | None = None
        file_idx = np.searchsorted(self.offsets, positions, side="right") - 1
        for f in np.unique(file_idx):
            sel = np.flatnonzero(file_idx == f)
            local = positions[sel] - self.offsets[f]
            rows = self.read_file(int(f), local)
            if out is None:
                out = np.empty((positions.size, self.dim), dtype=rows.dtype)
            out[sel] = rows
        return out if out is not None else np.zeros((0, self.dim), np.float32)

    def read_all(self) -> np.ndarray:
        """All rows ``[n, d]`` in position order."""
        if self.kind == "memory":
            return np.asarray(self.array)
        return np.concatenate([self.read_file(f) for f in range(len(self.files))], axis=0)

    def read_file(self, f: int, rows: np.ndarray | None = None) -> np.ndarray:
        """Rows of shard ``f`` (all, or the local row numbers ``rows``) as a float array ``[m, d]``."""
        path = self.files[f]
        if self.kind == "npy":
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            return np.asarray(arr if rows is None else arr[rows])
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=[self.embedding_column])
        if rows is not None:
            table = table.take(rows)
        return embedding_matrix(table.column(0), self.dim, f"{path} ({self.side}, column {self.embedding_column!r})")


def embedding_matrix(column: Any, dim: int, where: str) -> np.ndarray:
    """A pyarrow list / fixed-size-list column -> float array ``[m, dim]``; rows of another length are named."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if column.null_count:
        raise ScanInputError(f"{where}: {column.null_count} row(s) have no embedding (null); expected {dim} floats a row")
    if pa.types.is_fixed_size_list(column.type):
        width = column.type.list_size
        lengths = np.full(len(column), width)
    elif pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        lengths = np.diff(np.asarray(column.offsets))
    else:
        raise ScanInputError(f"{where}: type {column.type}; expected a list of floats ({dim} a row)")
    bad = np.flatnonzero(lengths != dim)
    if bad.size:
        raise ScanInputError(f"{where}: {bad.size} row(s) have {int(lengths[bad[0]])} values (first row {int(bad[0])}) "
                             f"but the embeddings have d={dim}; expected every shard to have the same dimension")
    values = column.flatten()
    if not (pa.types.is_floating(values.type)):
        raise ScanInputError(f"{where}: values of type {values.type}; expected floats")
    return values.to_numpy(zero_copy_only=False).reshape(len(column), dim)


def _npy_header(path: Path, side: str) -> tuple[tuple[int, ...], np.dtype]:
    where = f"{path} ({side})"
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:  # version 3.0 (utf-8 header): numpy's own reader of any version
                shape, _, dtype = np.lib.format._read_array_header(fh, version)
            else:
                shape, _, dtype = read_header(fh)  # header only: no data read, never unpickles
    except (ValueError, OSError) as err:
        raise ScanInputError(f"{where}: not a readable .npy array ({err}); expected a float array [N, d]") from None
    if dtype.hasobject or not np.issubdtype(dtype, np.floating):
        raise ScanInputError(f"{where}: dtype {dtype}; expected a float16/32/64 array [N, d] (never pickles)")
    if len(shape) != 2:
        raise ScanInputError(f"{where}: shape {shape}; expected a 2-D array [N, d]")
    return shape, dtype


def _parquet_meta(path: Path, side: str, id_column: str, embedding_column: str) -> tuple[int, int, np.ndarray]:
    """(rows, dim, ids) of a Parquet shard, reading its schema, one row and the id column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = f"{path} ({side})"
    try:
        pf = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for broken files
        raise ScanInputError(f"{where}: not a readable Parquet file ({type(err).__name__}: {err})") from None
    schema = pf.schema_arrow
    missing = [c for c in (id_column, embedding_column) if c not in schema.names]
    if missing:
        raise ScanInputError(f"{where}: missing column(s) {missing}; expected an integer {id_column!r} column and a "
                             f"list-of-floats {embedding_column!r} column (found {schema.names})")
    id_type = schema.field(id_column).type
    if not pa.types.is_integer(id_type):
        raise ScanInputError(f"{where}: column {id_column!r} has type {id_type}; expected integer ids")
    emb_type = schema.field(embedding_column).type
    rows = pf.metadata.num_rows
    if pa.types.is_fixed_size_list(emb_type):
        dim = emb_type.list_size
    elif pa.types.is_list(emb_type) or pa.types.is_large_list(emb_type):
        first = next(pf.iter_batches(batch_size=1, columns=[embedding_column]), None)
        dim = len(first.column(0)[0]) if first is not None and first.num_rows else 0
    else:
        raise ScanInputError(f"{where}: column {embedding_column!r} has type {emb_type}; expected a list of floats")
    ids = pf.read(columns=[id_column]).column(0)
    if ids.null_count:
        raise ScanInputError(f"{where}: column {id_column!r} has {ids.null_count} null id(s); expected integer ids")
    return rows, dim, ids.to_numpy().astype(np.int64)


def open_shards(source: Any, side: str, *, id_column: str = "id", embedding_column: str = "embedding") -> ShardSet:
    """Open queries or candidates given as a shard folder, one file, or an in-memory array.

    Args:
        source: folder of ``*.parquet`` or ``*.npy`` shards, a ``.parquet`` / ``.npy`` file, or an
            array (numpy, torch) ``[N, d]``.
        side: ``"queries"`` or ``"candidates"`` (error messages).
        id_column, embedding_column: Parquet column names.

    Raises:
        ScanInputError: no shards, mixed kinds, unreadable shards, a shard whose dimension differs
            (named with its file), ids repeated across or within shards, no rows.
    """
    if not isinstance(source, str | os.PathLike):
        arr = source.detach().cpu().numpy() if hasattr(source, "detach") else np.asarray(source)
        if arr.ndim != 2:
            raise ScanInputError(f"{side}: expected a 2-D array [N, d], got shape {arr.shape}")
        return ShardSet("memory", ["<memory>"], np.array([0, arr.shape[0]], np.int64), int(arr.shape[1]),
                        np.arange(arr.shape[0], dtype=np.int64), side, id_column, embedding_column, array=arr)
    root = Path(source)
    if not root.exists():
        raise ScanInputError(f"{root} ({side}): not found; expected a folder of .parquet or .npy shards, or one file")
    if root.is_dir():
        parquet = sorted(p for p in root.iterdir() if p.suffix.lower() in (".parquet", ".pq") and p.is_file())
        npy = sorted(p for p in root.iterdir() if p.suffix.lower() == ".npy" and p.is_file())
        if parquet and npy:
            raise ScanInputError(f"{root} ({side}): holds both .parquet and .npy files; expected shards of one kind")
        files = parquet or npy
        if not files:
            raise ScanInputError(f"{root} ({side}): no .parquet or .npy shards in this folder")
    else:
        files = [root]
    kind = "npy" if files[0].suffix.lower() == ".npy" else "parquet"
    rows, dims, ids = [], [], []
    for path in files:
        if kind == "npy":
            shape, _ = _npy_header(path, side)
            rows.append(shape[0])
            dims.append(shape[1])
        else:
            n, d, file_ids = _parquet_meta(path, side, id_column, embedding_column)
            rows.append(n)
            dims.append(d)
            ids.append(file_ids)
        if dims[-1] != dims[0]:
            raise ScanInputError(f"{path} ({side}): embeddings have d={dims[-1]} but the first shard {files[0]} has "
                                 f"d={dims[0]}; expected every shard to have the same dimension")
    offsets = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
    if offsets[-1] == 0 or dims[0] == 0:
        raise ScanInputError(f"{root} ({side}): no rows in {len(files)} shard(s); expected at least one embedding")
    all_ids = np.concatenate(ids) if kind == "parquet" else np.arange(offsets[-1], dtype=np.int64)
    if kind == "parquet":
        _check_unique_ids(all_ids, offsets, files, side, id_column)
    return ShardSet(kind, [str(p) for p in files], offsets, int(dims[0]), all_ids, side, id_column, embedding_column)


def _check_unique_ids(ids: np.ndarray, offsets: np.ndarray, files: list[Path], side: str, column: str) -> None:
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    dup = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
    if not dup.size:
        return
    first, second = order[dup[0]], order[dup[0] + 1]
    file_a = files[int(np.searchsorted(offsets, first, side="right")) - 1]
    file_b = files[int(np.searchsorted(offsets, second, side="right")) - 1]
    where = f"shards {file_a} and {file_b}" if file_a != file_b else f"shard {file_a} (twice)"
    raise ScanInputError(f"{side}: {dup.size} id(s) in column {column!r} appear more than once, e.g. id "
                         f"{int(sorted_ids[dup[0]])} in {where}; expected ids unique across all shards")
