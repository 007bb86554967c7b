"""``fnlab scan --engine ray``: the false-negative scan as a Ray Data job.

The same scan as :func:`fnlab.analysis.scan.scan` (same rows, same posterior), laid out for data that
does not fit one process:

1. **Inputs.** Queries are a Ray Dataset: ``ray.data.read_parquet`` over a folder of Parquet
   shards (id + embedding columns), or, for ``.npy`` shards and in-memory arrays, a Dataset of
   row ranges that the first search stage reads (memory-mapped; Ray's ``read_numpy`` keeps no
   row positions, and the ids of ``.npy`` rows are their positions). See :mod:`fnlab.analysis.scale.shards`.
2. **Posterior, once, on the driver.** :func:`fnlab.analysis.scan.fit.fit_scan_posterior` on the scan's
   :class:`fnlab.posterior.PairContext`, the very fit (and seeded sample of unlabelled pairs)
   of the local scan. The default ``pu`` posterior reads signals beyond the similarity (the
   candidate's labelled queries, its hubness among all queries), so the driver reads every
   embedding; the context (with the hubness computed once) and the fitted posterior go to the
   object store once, and the last stage applies them per batch through
   :func:`fnlab.analysis.scan.table.suspects_table`. Memory: the driver, and the object store of each node,
   hold the queries and the candidates once (float32).
3. **Search.** The candidates are split into ``candidate_shards`` contiguous shards; each shard's
   index (exact ``IndexFlatIP``, or an approximate one built once on the driver and serialised)
   is put in the object store once (``ray.put``). Each shard is a ``map_batches`` stage served by
   an actor pool (a callable class that loads its shard in ``__init__``), so no worker holds more
   than one shard's index. A batch flows through the stages; each searches its shard (labelled
   positives left out) and merges its top-k into the running top-k exactly
   (:func:`fnlab.retrieval.similarity.merge_topk`: the k best of the union of per-shard top-k lists).
4. **Output.** The last stage turns each batch into rows with ``p_false_negative`` and writes
   one Parquet part, named by a hash of the batch's query ids (a retried batch rewrites the same
   part), into a staging folder. When every batch is done the driver checks that each query was
   written exactly once, writes ``_summary.json`` there and renames the folder into place: a job
   that fails leaves nothing under the final name.
5. **Faults.** Actors are restarted and their tasks retried (``max_restarts``,
   ``max_task_retries``): a worker killed mid-job costs a retry, not the job.

Cluster: ``ray_address`` (or ``RAY_ADDRESS``) joins a running cluster (its reachability is checked
first, within ``connect_timeout`` seconds); otherwise a local Ray starts with the machine's cores.
On a cluster the shard folders and the output folder must be on storage every node sees.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from fnlab.analysis.scale import RAY_INSTALL_HINT
from fnlab.analysis.scale.shards import ShardSet, embedding_matrix, open_shards
from fnlab.analysis.scan.fit import rowwise_dot, scan_posterior, status_fields
from fnlab.analysis.scan.inputs import (
    ScanInputError,
    announce_notes,
    check_embeddings,
    check_scan_options,
    duplicate_rows,
    input_name,
    load_positives,
    positives_matrix,
    prepare_embeddings,
)
from fnlab.analysis.scan.table import ScanResult, suspects_table, window_thresholds, write_json
from fnlab.core.ownership import RAY_SUMMARIES
from fnlab.posterior import PairContext
from fnlab.retrieval.similarity import build_index, index_description, merge_topk, recall_at_k, topk

__all__ = ["ray_scan", "check_ray_address", "DEFAULT_BATCH_SIZE"]

DEFAULT_BATCH_SIZE = 4096
#: the output folder's summary (named once, in :mod:`fnlab.core.ownership`, which recognises the folder by it)
SUMMARY_NAME = RAY_SUMMARIES[0]


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ScanInputError(RAY_INSTALL_HINT) from None
    except Exception as err:  # noqa: BLE001 - a broken install raises anything while importing
        text = " ".join(str(err).split())[:300] or "no message"
        raise ScanInputError(f"Ray is installed but could not be imported ({type(err).__name__}: {text}); reinstall "
                             f"it, or scan without --engine ray. {RAY_INSTALL_HINT}") from None
    return ray


def check_output(out: str | os.PathLike, inputs: Mapping[str, Any], *, label: str = "out") -> Path:
    """The output folder, refused before any work unless the commit may replace it (:mod:`fnlab.core.ownership`):
    it must not be an input, lie inside an input folder or hold an input, and where it exists it must be an
    output folder a Ray scan wrote (``_summary.json``, or ``summary.json`` before 2026-12-07, and ``part-*.parquet``
    only) or empty.

    Raises:
        ScanInputError: naming ``out`` and why.
    """
    from fnlab.core import ownership

    path = Path(out)
    if not path.name or path.name in (".", ".."):
        raise ScanInputError(f"{label} {out}: expected an output folder path such as suspects/")
    try:
        ownership.check_apart(path, inputs, label=label)
        return ownership.check(path, ownership.RAY_SCAN_OUTPUT, label=label, action="replace")
    except ownership.OwnershipError as err:
        raise ScanInputError(str(err)) from None


# ------------------------------------------------------------------------------------ cluster
def check_ray_address(address: str, timeout: float = 10.0) -> None:
    """Fail fast (within ``timeout`` s) when ``address`` (``host:port`` or ``ray://host:port``) is unreachable.

    ``"auto"`` and ``"local"`` are left to Ray. Raises :class:`ScanInputError` naming the address.
    """
    if address in ("auto", "local"):
        return
    text = address.split("://", 1)[1] if "://" in address else address
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ScanInputError(f"--ray-address {address!r}: expected host:port (e.g. 10.0.0.1:6379), ray://host:port, "
                             "or 'auto'")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise ScanInputError(f"--ray-address {address}: cannot reach a Ray cluster there ({err}); expected the "
                             "address of a running head node (printed by 'ray start --head'), or leave --ray-address "
                             "and RAY_ADDRESS unset to start a local Ray") from None


def _connect(ray, address: str | None, num_cpus: int | None, timeout: float) -> bool:
    """Join ``address`` / ``RAY_ADDRESS``, or start a local Ray. Returns True when this call started Ray."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        check_ray_address(address, timeout)
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, logging_level="ERROR",
                 log_to_driver=False)
    return True


# ------------------------------------------------------------------------------------ workers
def _prepare_rows(raw: np.ndarray, ids: np.ndarray, files: Any, normalize: bool) -> np.ndarray:
    """float32 copy checked (finite, non-zero rows; errors name the shard file and the id) and
    L2-normalised by the local scan's own :func:`fnlab.analysis.scan.inputs.prepare_embeddings`, so both
    engines compute the same rows."""
    arr = np.asarray(raw)
    with np.errstate(over="ignore"):
        bad = ~np.isfinite(arr.astype(np.float32, copy=False)).all(axis=1)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise ScanInputError(f"{files[r]} (queries): {int(bad.sum())} row(s) hold NaN or infinite values, or values "
                             f"beyond the float32 range (first id {int(ids[r])}); expected finite floats")
    zero = ~arr.any(axis=1)
    if normalize and zero.any():
        r = int(np.flatnonzero(zero)[0])
        raise ScanInputError(f"{files[r]} (queries): {int(zero.sum())} row(s) are all zeros (first id "
                             f"{int(ids[r])}); cannot normalise them")
    return prepare_embeddings(arr, "queries", {"queries": str(files[0])}, normalize)


class _ShardSearcher:
    """One candidate shard, held by an actor; a batch of queries in, its merged running top-k out.

    The first stage also reads the queries (row ranges of ``.npy`` shards / an in-memory array,
    or a Parquet batch); the last stage applies the posterior and writes the batch's Parquet part.
    """

    def __init__(self, *, shard: list, index_blob: list | None, lo: int, first: bool, last: bool, k: int,
                 threads: int, positives: list, normalize: bool, query_source: dict, out_dir: str,
                 posterior: list, candidate_ids: list, context: list, kill_marker: str | None = None):
        import faiss
        import ray

        faiss.omp_set_num_threads(max(1, int(threads)))
        self.keys = ray.get(shard[0])  # [n_s, d] float32, zero-copy view of the object store
        if index_blob is None:
            self.index = faiss.IndexFlatIP(self.keys.shape[1])
            self.index.add(self.keys)
        else:
            self.index = faiss.deserialize_index(ray.get(index_blob[0]))
        self.lo, self.hi = lo, lo + self.keys.shape[0]
        self.first, self.last, self.k, self.normalize = first, last, k, normalize
        self.pos = ray.get(positives[0])
        self.source = dict(query_source)
        for key in ("array", "id_lookup"):
            if first and self.source.get(key) is not None:
                self.source[key] = ray.get(self.source[key][0])
        self.out_dir = out_dir
        self.posterior = ray.get(posterior[0]) if last else None
        self.candidate_ids = ray.get(candidate_ids[0]) if last else None
        self.context = ray.get(context[0]) if last else None
        self.kill_marker = kill_marker
        self.calls = 0

    # -- reading (first stage)
    def _read(self, batch) -> tuple[np.ndarray, np.ndarray]:
        src = self.source
        if src["kind"] == "parquet":  # a pyarrow.Table batch
            ids = batch.column(src["id_column"]).to_numpy().astype(np.int64)
            paths = np.asarray(batch.column("path").to_pylist(), dtype=object)
            emb_col = batch.column(src["embedding_column"])
            try:
                raw = embedding_matrix(emb_col, src["dim"], f"{paths[0]} (queries, column {src['embedding_column']!r})")
            except ScanInputError:
                for path in dict.fromkeys(paths.tolist()):  # name the shard that holds the bad rows
                    sel = np.flatnonzero(paths == path)
                    embedding_matrix(emb_col.take(sel), src["dim"],
                                     f"{path} (queries, column {src['embedding_column']!r})")
                raise
            sorted_ids, order = src["id_lookup"]
            positions = order[np.searchsorted(sorted_ids, ids)]
            return ids, positions, _prepare_rows(raw, ids, paths, self.normalize)
        parts, ids, files = [], [], []
        for f, start, stop in zip(batch["shard"], batch["start"], batch["stop"], strict=True):
            f, start, stop = int(f), int(start), int(stop)
            if src["kind"] == "npy":
                rows = np.load(src["files"][f], mmap_mode="r", allow_pickle=False)[start:stop]
            else:
                rows = src["array"][start:stop]
            parts.append(np.asarray(rows))
            ids.append(np.arange(start, stop, dtype=np.int64) + int(src["offsets"][f]))
            files.extend([src["files"][f]] * (stop - start))
        id_arr = np.concatenate(ids)  # .npy rows and arrays: the id is the position
        return id_arr, id_arr, _prepare_rows(np.concatenate(parts), id_arr, files, self.normalize)

    # -- labelled positives of a batch inside this shard
    def _positives_in_shard(self, qids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pq, indptr, cand = self.pos["query_id"], self.pos["indptr"], self.pos["candidate"]
        if pq.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        r = np.minimum(np.searchsorted(pq, qids), pq.size - 1)
        found = pq[r] == qids
        starts = np.where(found, indptr[r], 0)
        lens = np.where(found, indptr[r + 1] - indptr[r], 0)
        rows = np.repeat(np.arange(qids.size, dtype=np.int64), lens)
        take = np.arange(int(lens.sum()), dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(starts, lens)
        cols = cand[take]
        inside = (cols >= self.lo) & (cols < self.hi)
        return rows[inside], cols[inside] - self.lo

    def __call__(self, batch):
        self.calls += 1
        if self.kill_marker and self.calls == 2 and not os.path.exists(self.kill_marker):
            Path(self.kill_marker).touch()  # fault injection for the tests: this worker dies mid-job, once
            os.kill(os.getpid(), signal.SIGKILL)
        if self.first:
            qids, qpos, emb = self._read(batch)
            b = qids.size
            run_s = np.full((b, self.k), -np.inf, np.float32)
            run_i = np.full((b, self.k), -1, np.int64)
            best = np.full(b, np.nan, np.float32)
        else:
            qids, emb = np.asarray(batch["id"], np.int64), np.asarray(batch["emb"], np.float32)
            qpos = np.asarray(batch["pos"], np.int64)
            run_s, run_i = np.asarray(batch["run_s"], np.float32), np.asarray(batch["run_i"], np.int64)
            best = np.array(batch["best"], np.float32)
            b = qids.size
        rows, cols = self._positives_in_shard(qids)
        excl = sp.csr_matrix((np.ones(rows.size, bool), (rows, cols)), shape=(b, self.hi - self.lo))
        s, i = topk(emb, None, self.k, exclude=excl, backend="faiss", chunk_size=max(b, 1), index=self.index)
        i = np.where(i >= 0, i + self.lo, -1)
        run_s, run_i = (s, i) if self.first else merge_topk(run_s, run_i, s, i, self.k)
        if rows.size:
            sims = np.einsum("ij,ij->i", emb[rows], self.keys[cols])
            np.fmax.at(best, rows, sims)
        if not self.last:
            return {"id": qids, "pos": qpos, "emb": emb, "run_s": run_s, "run_i": run_i, "best": best}
        return self._write(qids, qpos, run_s, run_i, best)

    # -- output (last stage)
    def _write(self, qids, qpos, run_s, run_i, best) -> dict[str, np.ndarray]:
        k = run_s.shape[1]
        flat = run_i.ravel()
        keep = flat >= 0
        query_col = np.repeat(qids, k)[keep]
        # the posterior sees every signal of each pair through the scan's context (positions) ...
        window = self.context.window
        table = suspects_table(self.posterior, np.repeat(qpos, k)[keep], flat[keep],
                                       np.tile(np.arange(1, k + 1, dtype=np.int32), qids.size)[keep],
                                       run_s.ravel()[keep], np.repeat(best, k)[keep], ctx=self.context,
                                       thresholds=np.repeat(window_thresholds(run_s, window), k)[keep])
        table["query"] = query_col  # ... and the rows are written with the shards' ids
        table["candidate"] = self.candidate_ids[flat[keep]]
        digest = hashlib.sha1(np.ascontiguousarray(qids).tobytes()).hexdigest()[:20]
        name = f"part-{digest}.parquet"
        tmp = Path(self.out_dir) / f".{name}.{uuid.uuid4().hex}.tmp"
        table.to_parquet(tmp, index=False)
        os.replace(tmp, Path(self.out_dir) / name)
        p = table["p_false_negative"].to_numpy()
        return {"part": np.array([name]), "queries": np.array([qids.size]), "rows": np.array([len(table)]),
                "id_min": np.array([qids.min()]), "id_max": np.array([qids.max()]),
                "suspects_above_0.5": np.array([int((p > 0.5).sum())]),
                "suspects_above_0.9": np.array([int((p > 0.9).sum())]),
                "queries_with_suspect_above_0.5": np.array([int(np.unique(query_col[p > 0.5]).size)])}


# ------------------------------------------------------------------------------------ driver
def _positives_positions(positives: Any, qs: ShardSet, cs: ShardSet, names: Mapping[str, str],
                         notes: list[str]) -> sp.csr_matrix:
    """Labelled pairs (ids) -> CSR ``[Nq, Nc]`` over global positions, checked like the local scan."""
    where = input_name(names, "positives")
    if isinstance(positives, str | os.PathLike):
        names = {**names, "positives": str(positives)}
        where = f"{positives} (positives)"
        positives = load_positives(positives)
    if isinstance(positives, pd.DataFrame):
        missing = [col for col in ("query", "candidate") if col not in positives.columns]
        if missing:
            raise ScanInputError(f"{where}: missing column(s) {missing}; expected integer columns 'query' and "
                                 f"'candidate' holding ids of the query and candidate shards")
        for col in ("query", "candidate"):
            if not pd.api.types.is_integer_dtype(positives[col]):
                raise ScanInputError(f"{where}: column {col!r} must hold integer ids, got dtype {positives[col].dtype}")
        frame = pd.DataFrame({
            "query": qs.positions_of(positives["query"].to_numpy(), f"{where}, column 'query'"),
            "candidate": cs.positions_of(positives["candidate"].to_numpy(), f"{where}, column 'candidate'"),
        })
        return positives_matrix(frame, qs.n, cs.n, names, notes)
    if qs.kind == "parquet" or cs.kind == "parquet":
        raise ScanInputError(f"{where}: with Parquet shards give the labelled pairs as a table of ids "
                             "(columns 'query', 'candidate')")
    return positives_matrix(positives, qs.n, cs.n, names, notes)


def _unwrap(err: BaseException) -> BaseException:
    """The user-facing error inside a Ray task error (a ScanInputError raised by a worker)."""
    seen = err
    for _ in range(10):
        if isinstance(seen, ScanInputError) and type(seen) is ScanInputError:
            return seen
        nxt = getattr(seen, "cause", None) or seen.__cause__
        if nxt is None:
            break
        seen = nxt
    if isinstance(seen, ScanInputError):
        return ScanInputError(str(seen).splitlines()[-1])
    return err


def ray_scan(queries: Any, candidates: Any, positives: Any, *, top_k: int = 50, prior: Any = "auto",
             estimator: str = "pu", posterior: Any = None, normalize: bool = True, index: str = "flat",
             index_params: Mapping[str, Any] | list[str] | None = None, recall_check: int = 0,
             progress: bool = False, negative_sample: int = 100_000, seed: int = 0,
             names: Mapping[str, str] | None = None, chunk_size: int | None = None, device: str = "auto",
             out: str | os.PathLike | None = None, ray_address: str | None = None, candidate_shards: int = 1,
             workers: int | None = None, worker_cpus: int = 1, batch_size: int | None = None,
             id_column: str = "id", embedding_column: str = "embedding",
             num_cpus: int | None = None, connect_timeout: float = 10.0,
             _kill_marker: str | None = None) -> ScanResult:
    """The scan of :func:`fnlab.analysis.scan.scan` as a Ray Data job (module docstring).

    Args:
        queries: folder of Parquet / ``.npy`` shards, one such file, or an array ``[Nq, d]``.
        candidates: the same kinds, ``[Nc, d]``; read once by the driver and sharded.
        positives: labelled pairs: a ``.csv`` / ``.parquet`` path or DataFrame with integer columns
            ``query``, ``candidate`` holding **ids** (positions for ``.npy`` shards and arrays); an
            array ``[P, 2]`` or sparse ``[Nq, Nc]`` of positions when neither side is Parquet.
        top_k, prior, estimator, normalize, index, index_params, recall_check, negative_sample,
            seed, names: as :func:`fnlab.analysis.scan.scan`.
        progress: Ray Data's progress bars.
        chunk_size: default of ``batch_size``. device: ``"auto"`` or ``"cpu"`` (faiss on CPU).
        out: output folder (``part-*.parquet`` + ``_summary.json``), committed at the end; ``None``
            collects the table in memory (small inputs; tests).
        ray_address: cluster to join (else ``RAY_ADDRESS``, else a local Ray with ``num_cpus``,
            default all cores). connect_timeout: seconds allowed to reach it.
        candidate_shards: contiguous candidate shards, one ``map_batches`` stage (actor pool) each.
        workers: actors per shard (default: cluster CPUs / (shards * worker_cpus), at least 1).
        worker_cpus: CPUs (and faiss threads) reserved by each actor.
        batch_size: queries per batch (default 4096).
        id_column, embedding_column: Parquet column names.

    Returns:
        :class:`fnlab.analysis.scan.ScanResult`; ``table`` is ``None`` when ``out`` is given (read the parts).

    Raises:
        ScanInputError: bad input (named with its file), bad options, Ray not installed,
            unreachable cluster.
    """
    t0 = time.perf_counter()
    names = dict(names or {})
    prior, params, batch_size = _check_options(top_k, prior, index, index_params, device, candidate_shards,
                                               worker_cpus, recall_check, negative_sample, workers, batch_size,
                                               chunk_size)
    out_path = None
    if out is not None:  # before any work: never an input, never a folder fnlab did not write
        out_path = check_output(out, {"queries": queries, "candidates": candidates, "positives": positives})
    ray = _import_ray()
    if ray_address or (not ray.is_initialized() and os.environ.get("RAY_ADDRESS")):
        check_ray_address(ray_address or os.environ["RAY_ADDRESS"], connect_timeout)  # before any work

    # --- inputs (headers, schemas, ids) and the labelled pairs
    notes: list[str] = []
    qs, cs, pos = _open_inputs(queries, candidates, positives, names, id_column, embedding_column, notes)
    nq, nc = qs.n, cs.n
    top_k = _check_top_k(top_k, nc, min(batch_size, nq))

    # --- the posterior, fitted once on the driver (the same context, sample and fit as the local scan)
    fitted = _fit_on_driver(qs, cs, pos, names, normalize, estimator, posterior, prior, seed, index, params, top_k,
                            negative_sample, notes)

    # --- candidate shards, their indexes, and the recall check (driver)
    bounds = np.linspace(0, nc, int(min(candidate_shards, nc)) + 1).astype(np.int64)
    shards = [np.ascontiguousarray(fitted.c[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    t_index = time.perf_counter()
    indexes = [build_index(s, index, params=params, seed=seed) if index != "flat" else None for s in shards]
    t_index = time.perf_counter() - t_index
    recall = _recall(fitted.q, fitted.c, pos, bounds, shards, indexes, top_k, recall_check, seed)
    fitted.c = None  # the candidates now live in their shards only

    started = False
    staging: Path | None = None
    try:
        started = _connect(ray, ray_address, num_cpus, connect_timeout)
        cluster_cpus, n_workers, actor_cpus = _plan(ray, qs, len(shards), workers, worker_cpus)
        data_context = ray.data.DataContext.get_current()
        data_context.enable_progress_bars = bool(progress)
        if not progress:
            logging.getLogger("ray.data").setLevel(logging.WARNING)

        # object store: each large read-only array once
        refs = {"positives": _positives_ref(ray, pos, qs), "shards": [ray.put(s) for s in shards],
                "indexes": [None if ix is None else ray.put(_serialize(ix)) for ix in indexes]}
        index_info = index_description(indexes[0]) if indexes[0] is not None else {"kind": "flat"}
        n_shards = len(shards)
        del shards, indexes
        refs.update(posterior=ray.put(fitted.post), candidate_ids=ray.put(cs.ids), context=ray.put(fitted.ctx))
        staging = _staging(out_path)
        ds = _pipeline(ray, qs, refs, bounds, n_shards, top_k, batch_size, normalize, staging, id_column,
                       embedding_column, n_workers, actor_cpus, worker_cpus, _kill_marker)
        t_search = time.perf_counter()
        stats = _take_all(ds)
        t_search = time.perf_counter() - t_search

        keep = _check_parts(stats, nq, staging)  # every query exactly once, no stray parts; then commit
        summary = _summary(stats, qs, cs, top_k, pos, fitted.no_pos, fitted.policy, fitted.estimator, prior,
                           fitted.prior_method, fitted.post, fitted.sample_sims, fitted.pos_sims, normalize, index,
                           index_info, recall, seed, notes,
                           {"fit": fitted.seconds, "index": t_index, "search": t_search,
                            "total": time.perf_counter() - t0},
                           {"address": ray_address or os.environ.get("RAY_ADDRESS") or "local",
                            "cluster_cpus": cluster_cpus, "candidate_shards": n_shards,
                            "workers_per_shard": n_workers, "worker_cpus": int(worker_cpus),
                            "batch_size": batch_size, "query_shards": len(qs.files), "query_format": qs.kind})
        positive_pairs = pd.DataFrame({"query": qs.ids[fitted.coo.row], "candidate": cs.ids[fitted.coo.col]})
        if out_path is None:
            table = pd.concat([pd.read_parquet(staging / name) for name in sorted(keep)], ignore_index=True)
            table = table.sort_values(["query", "rank"], kind="stable").reset_index(drop=True)
            shutil.rmtree(staging, ignore_errors=True)
            staging = None
            return ScanResult(table=table, summary=summary, posterior=fitted.post, positive_pairs=None,
                              warnings=notes)
        summary["output"] = {"path": str(out_path), "format": "parquet", "parts": len(keep),
                             "layout": "part-*.parquet (one per batch; pandas.read_parquet(folder) reads them as one table) "
                                       "+ _summary.json"}
        write_json(summary, staging / SUMMARY_NAME)
        _commit(staging, out_path)
        staging = None
        return ScanResult(table=None, summary=summary, posterior=fitted.post, positive_pairs=positive_pairs,
                          warnings=notes)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if started:
            ray.shutdown()


# ------------------------------------------------------------------------------------ driver steps
def _check_options(top_k, prior, index, index_params, device, candidate_shards, worker_cpus, recall_check,
                   negative_sample, workers, batch_size, chunk_size) -> tuple[Any, dict[str, Any], int]:
    """The options, checked before any work. Returns ``(prior, index parameters, batch size)``."""
    if not isinstance(top_k, int | np.integer) or top_k < 1:
        raise ScanInputError(f"top_k must be a positive integer, got {top_k!r}")
    prior, params = check_scan_options(prior, index, index_params)
    if device not in ("auto", "cpu"):
        raise ScanInputError(f"device {device!r}: the Ray engine searches with faiss on CPU; use 'auto' or 'cpu'")
    for name, value, low in (("candidate_shards", candidate_shards, 1), ("worker_cpus", worker_cpus, 1),
                             ("recall_check", recall_check, 0),
                             ("negative_sample", negative_sample, 2)):
        if not isinstance(value, int | np.integer) or value < low:
            raise ScanInputError(f"{name} must be an integer >= {low}, got {value!r}")
    for name, value in (("workers", workers), ("batch_size", batch_size)):
        if value is not None and (not isinstance(value, int | np.integer) or value < 1):
            raise ScanInputError(f"{name} must be a positive integer, got {value!r}")
    return prior, params, int(batch_size or chunk_size or DEFAULT_BATCH_SIZE)


def _open_inputs(queries: Any, candidates: Any, positives: Any, names: Mapping[str, str], id_column: str,
                 embedding_column: str, notes: list[str]) -> tuple[ShardSet, ShardSet, sp.csr_matrix]:
    """Both shard sets (headers, schemas, ids), checked for the same dimension, and the labelled pairs."""
    qs = open_shards(queries, "queries", id_column=id_column, embedding_column=embedding_column)
    cs = open_shards(candidates, "candidates", id_column=id_column, embedding_column=embedding_column)
    if qs.dim != cs.dim:
        raise ScanInputError(f"dimension mismatch: {input_name(names, 'queries') if qs.kind == 'memory' else qs.files[0]}"
                             f" (queries) has d={qs.dim} but "
                             f"{input_name(names, 'candidates') if cs.kind == 'memory' else cs.files[0]} "
                             f"(candidates) has d={cs.dim}; expected the same embedding size")
    return qs, cs, _positives_positions(positives, qs, cs, names, notes)


@dataclass
class _Fitted:
    """What the driver's fit leaves: the prepared embeddings, the scan's context, the posterior and the
    numbers the summary reports."""

    q: np.ndarray
    c: np.ndarray | None
    ctx: PairContext
    post: Any
    prior_method: str
    estimator: str
    no_pos: int
    policy: str
    coo: sp.coo_matrix
    pos_sims: np.ndarray
    sample_sims: np.ndarray
    seconds: float


def _fit_on_driver(qs: ShardSet, cs: ShardSet, pos: sp.csr_matrix, names: Mapping[str, str], normalize: bool,
                   estimator: str, posterior: Any, prior: Any, seed: int, index: str, params: dict[str, Any],
                   top_k: int, negative_sample: int, notes: list[str]) -> _Fitted:
    """fnlab.posterior.fit on the scan's PairContext, once, on the driver (the same context, sample and fit as
    the local scan for this seed). Its signals beyond the similarity (a candidate's labelled queries, its
    hubness among all queries) need every embedding, so the driver reads them all; the context then goes to
    the object store once."""
    q_raw = check_embeddings(qs.read_all(), "queries", names)
    c_raw = check_embeddings(cs.read_all(), "candidates", names)
    for key, arr in (("queries", q_raw), ("candidates", c_raw)):
        dup = duplicate_rows(arr)
        if dup:
            notes.append(f"{input_name(names, key)}: {dup} row(s) duplicate an earlier row exactly")
    q = prepare_embeddings(q_raw, "queries", names, normalize)
    c = prepare_embeddings(c_raw, "candidates", names, normalize)
    del q_raw, c_raw
    # warned at fnlab.analysis.scan.scan (this function, then ray_scan, then scan), as before the split
    no_pos, policy = announce_notes(pos, estimator, notes, stacklevel=4)
    ctx = PairContext(q, c, pos, index=index, index_params=params, seed=seed, window=int(top_k))

    t_fit = time.perf_counter()
    coo = pos.tocoo()
    if pos.nnz < 2:
        raise ScanInputError(f"{input_name(names, 'positives')}: {pos.nnz} labelled pair(s); at least 2 are "
                             "needed to fit the positive distribution")
    pos_sims = rowwise_dot(q, c, coo.row, coo.col)
    sq, sc = ctx.draw_unlabelled(int(negative_sample), np.random.default_rng(seed))
    sample_sims = ctx.similarity(sq, sc)
    post, prior_method, estimator = scan_posterior(ctx, posterior, estimator, prior, seed, notes)
    if "candidate_hubness" in ctx.signal_names:
        ctx.candidate_hubness()  # computed once here, not by every worker
    return _Fitted(q, c, ctx, post, prior_method, estimator, no_pos, policy, coo, pos_sims, sample_sims,
                   time.perf_counter() - t_fit)


def _recall(q: np.ndarray, c: np.ndarray, pos: sp.csr_matrix, bounds: np.ndarray, shards: list, indexes: list,
            top_k: int, recall_check: int, seed: int) -> dict[str, Any] | None:
    """recall@top_k of the sharded search (merged as the workers merge) against exact search on
    ``recall_check`` sampled queries; ``None`` when 0."""
    if not recall_check:
        return None
    nq = q.shape[0]
    rq = np.sort(np.random.default_rng([seed, 1]).choice(nq, min(int(recall_check), nq), replace=False))
    q_r = q[rq]
    excl = pos[rq]
    exact = topk(q_r, c, top_k, exclude=excl, backend="faiss")[1]
    approx_s = approx_i = None
    for lo, hi, shard, ix in zip(bounds[:-1], bounds[1:], shards, indexes, strict=True):
        s, i = topk(q_r, shard if ix is None else None, top_k, exclude=excl[:, lo:hi], backend="faiss", index=ix)
        i = np.where(i >= 0, i + lo, -1)
        approx_s, approx_i = (s, i) if approx_s is None else merge_topk(approx_s, approx_i, s, i, top_k)
    return {"queries": int(rq.size), "k": int(top_k), "recall_at_k": recall_at_k(approx_i, exact),
            "against": "exact inner-product search (faiss IndexFlatIP), labelled positives left out"}


def _plan(ray, qs: ShardSet, n_shards: int, workers: int | None, worker_cpus: int) -> tuple[int, int, float]:
    """``(cluster CPUs, actors per shard, CPUs reserved by each actor)``."""
    cluster_cpus = int(ray.cluster_resources().get("CPU", 1))
    n_workers = int(workers or max(1, cluster_cpus // (n_shards * worker_cpus)))
    # every stage's pool must fit at once (a batch flows through all of them), and Ray Data's
    # Parquet reading tasks need a CPU of their own: share the rest among the actors if needed
    # (a reservation for the scheduler; faiss still runs worker_cpus threads)
    free = max(cluster_cpus - (1 if qs.kind == "parquet" else 0), 0.5)
    return cluster_cpus, n_workers, min(float(worker_cpus), free / (n_shards * n_workers))


def _positives_ref(ray, pos: sp.csr_matrix, qs: ShardSet):
    """The labelled pairs by query id (sorted ids, CSR offsets, candidate positions), put in the object store."""
    n_pos = np.diff(pos.indptr)
    pos_rows = np.flatnonzero(n_pos > 0)
    pos_ids = qs.ids[pos_rows]
    order = np.argsort(pos_ids, kind="stable")
    lens = n_pos[pos_rows][order]
    starts = pos.indptr[pos_rows][order]
    take = (np.arange(int(lens.sum()), dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens)
            + np.repeat(starts, lens))
    return ray.put({"query_id": pos_ids[order].astype(np.int64),
                    "indptr": np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
                    "candidate": pos.indices[take].astype(np.int64)})


def _staging(out_path: Path | None) -> Path:
    """The folder the parts are written to: beside ``out_path`` (renamed into place at the end), or a
    temporary folder when the table is collected in memory."""
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        staging = out_path.parent / f".{out_path.name}.staging-{uuid.uuid4().hex[:12]}"
        staging.mkdir()
        return staging
    return Path(tempfile.mkdtemp(prefix="fnlab-ray-scan-"))


def _pipeline(ray, qs: ShardSet, refs: dict[str, Any], bounds: np.ndarray, n_shards: int, top_k: int,
              batch_size: int, normalize: bool, staging: Path, id_column: str, embedding_column: str,
              n_workers: int, actor_cpus: float, worker_cpus: int, kill_marker: str | None):
    """The Ray Dataset of the queries followed by one ``map_batches`` stage (an actor pool) per candidate shard."""
    source: dict[str, Any] = {"kind": qs.kind, "files": qs.files, "offsets": qs.offsets, "dim": qs.dim,
                              "id_column": id_column, "embedding_column": embedding_column, "array": None}
    if qs.kind == "parquet":
        ds = ray.data.read_parquet(qs.files, columns=[id_column, embedding_column], include_paths=True)
        first_format, first_batch = "pyarrow", batch_size
        id_order = np.argsort(qs.ids, kind="stable")
        source["id_lookup"] = [ray.put((qs.ids[id_order], id_order))]
    else:
        if qs.kind == "memory":
            source["array"] = [ray.put(np.ascontiguousarray(qs.array))]
        ranges = [{"shard": f, "start": s, "stop": min(s + batch_size, int(qs.offsets[f + 1] - qs.offsets[f]))}
                  for f in range(len(qs.files))
                  for s in range(0, int(qs.offsets[f + 1] - qs.offsets[f]), batch_size)]
        ds = ray.data.from_items(ranges, override_num_blocks=len(ranges))
        first_format, first_batch = "numpy", 1

    warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated", category=DeprecationWarning)
    for s in range(n_shards):
        index_ref = refs["indexes"][s]
        kwargs = dict(shard=[refs["shards"][s]], index_blob=None if index_ref is None else [index_ref],
                      lo=int(bounds[s]), first=s == 0, last=s == n_shards - 1, k=int(top_k), threads=worker_cpus,
                      positives=[refs["positives"]], normalize=bool(normalize), query_source=source,
                      out_dir=str(staging), posterior=[refs["posterior"]], candidate_ids=[refs["candidate_ids"]],
                      context=[refs["context"]],
                      kill_marker=kill_marker)
        ds = ds.map_batches(_ShardSearcher, fn_constructor_kwargs=kwargs,
                            batch_size=first_batch if s == 0 else batch_size,
                            batch_format=first_format if s == 0 else "numpy",
                            compute=ray.data.ActorPoolStrategy(size=n_workers), num_cpus=actor_cpus,
                            max_restarts=4, max_task_retries=4)
    return ds


def _take_all(ds) -> pd.DataFrame:
    """Run the job: one row per written part; a worker's ScanInputError is raised as itself."""
    try:
        return pd.DataFrame(ds.take_all())
    except Exception as err:  # Ray wraps worker errors; surface the user's ScanInputError
        inner = _unwrap(err)
        if inner is not err:
            raise inner from None
        raise


def _check_parts(stats: pd.DataFrame, nq: int, staging: Path) -> set[str]:
    """The parts of the job, checked: every query written exactly once; files in ``staging`` that are not
    among them (a retried batch's leftovers) are removed."""
    if stats.empty or int(stats["queries"].sum()) != nq or stats["part"].duplicated().any():
        got = 0 if stats.empty else int(stats["queries"].sum())
        raise RuntimeError(f"the Ray job returned {got} queries for {nq} (parts {len(stats)}); nothing written")
    keep = set(stats["part"])
    for p in staging.iterdir():
        if p.name not in keep:
            p.unlink()
    return keep


#: bytes one row of a batch takes in a worker (running top-k scores and ids, the table's columns)
ROW_BYTES = 48


def _check_top_k(top_k: int, n_candidates: int, batch: int) -> int:
    """``top_k`` capped at the number of candidates; refused where one batch's rows cannot fit in memory."""
    k = min(int(top_k), int(n_candidates))
    try:
        mem = int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return k
    need = int(batch) * k * ROW_BYTES
    if need > mem // 2:
        raise ScanInputError(f"top_k {top_k}: a batch of {batch:,} queries x {k:,} candidates needs about "
                             f"{need / 2**30:,.1f} GiB in a worker, more than half this machine's memory "
                             f"({mem / 2**30:,.1f} GiB); lower top_k or batch_size (--top-k, --batch-size)")
    return k


def _serialize(index) -> np.ndarray:
    import faiss

    return faiss.serialize_index(index)


def _commit(staging: Path, out: Path) -> None:
    """Rename the finished staging folder to ``out``, replacing an older output folder of a Ray scan (checked
    again here: only a folder a Ray scan wrote, or an empty one, is ever replaced; :mod:`fnlab.core.ownership`)."""
    from fnlab.core import ownership

    old = None
    if os.path.lexists(out):
        try:
            ownership.check(out, ownership.RAY_SCAN_OUTPUT, label="out", action="replace")
        except ownership.OwnershipError as err:
            raise ScanInputError(f"{err}; nothing was written") from None
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:12]}"
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        try:
            ownership.remove(old, ownership.RAY_SCAN_OUTPUT)
        except (OSError, ValueError):
            pass  # a file appeared in it meanwhile: left in place


def _summary(stats, qs, cs, top_k, pos, no_pos, policy, estimator, prior, prior_method, post, sample_sims,
             pos_sims, normalize, index, index_info, recall, seed, notes, seconds, ray_info) -> dict[str, Any]:
    params = {key: (float(v) if isinstance(v, int | float | np.floating) and not isinstance(v, bool) else v)
              for key, v in post.params().items()}
    return {
        "queries_scanned": int(qs.n),
        "candidates": int(cs.n),
        "dim": int(qs.dim),
        "top_k": int(top_k),
        "rows": int(stats["rows"].sum()),
        "labelled_pairs": int(pos.nnz),
        "queries_without_positive": no_pos,
        "queries_without_positive_policy": policy,
        "suspects_above_0.5": int(stats["suspects_above_0.5"].sum()),
        "suspects_above_0.9": int(stats["suspects_above_0.9"].sum()),
        "queries_with_suspect_above_0.5": int(stats["queries_with_suspect_above_0.5"].sum()),
        "estimator": estimator,
        "prior": prior if prior == "auto" else float(prior),
        "prior_estimated": float(post.prior_pos),
        **status_fields(post),
        "prior_method": prior_method,
        "posterior": params,
        "negative_sample_size": int(sample_sims.size),
        "positive_sample_size": int(pos_sims.size),
        "positive_similarity_mean": float(pos_sims.mean()),
        "sample_similarity_mean": float(sample_sims.mean()) if sample_sims.size else None,
        "normalized": bool(normalize),
        "index": index,
        "index_params": index_info,
        "recall_check": recall,
        "engine": "ray",
        "ray": ray_info,
        "backend": "faiss",
        "device": "cpu",
        "seed": int(seed),
        "seconds": {key: round(v, 4) for key, v in seconds.items()} | {"table": 0.0},
        "warnings": notes,
    }
