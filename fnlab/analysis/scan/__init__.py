"""Scan a user's own embeddings for suspected false negatives, at scale.

For every query, the scan ranks all candidates by cosine similarity, leaves out the query's
labelled positives and keeps the ``top_k`` best of the rest: these are the negatives a
hard-negative miner would pick, and the place where false negatives hide (FNE, Li et al.,
ACM MM 2023, Sec. 1 and 3.2). Each kept pair gets the posterior probability that it is in
fact a match, ``p_false_negative``, from :mod:`fnlab.posterior`: by default the positive-unlabelled
estimator ``"pu"``, fitted on *this* data (labelled pairs plus a stratified sample of unlabelled
pairs, prior estimated) over every signal a pair offers: its similarity, its margin to the query's
labelled positive, its similarity to that positive, the query's similarity to the candidate's own
labelled queries, and mutual rank (:class:`fnlab.posterior.PairContext`). ``posterior=`` applies
an already fitted posterior instead (e.g. a run's ``posterior.json``), so the same pair gets the
same number in the scan, ``fnlab eval`` and the app. The summary reports the posterior's AUROC and
AP against ground truth next to ranking by raw similarity where ground truth exists
(:func:`scan_dataset`), and always the estimated prior.

A query without any labelled positive is scanned like any other; signals it cannot offer (its
margin, the similarity to its positive) are marginalised out, and its ``positive_similarity`` is
NaN. The summary says how many such queries there were.

Memory stays bounded: queries are searched in chunks (``fnlab.retrieval.similarity.topk``), the
``[Nq, Nc]`` matrix is never formed; peak memory is the float32 copies of the embeddings plus
one chunk plus the output table (``Nq * top_k`` rows).

The package, one module a job: :mod:`~fnlab.analysis.scan.inputs` (loading and checking the inputs,
:class:`ScanInputError`, :class:`ScanWarning`), :mod:`~fnlab.analysis.scan.fit` (the posterior fitted on the
scanned data), :mod:`~fnlab.analysis.scan.table` (the output table, :class:`ScanResult`, exports), and the two
engines, :mod:`~fnlab.analysis.scan.local` (this process) and :mod:`~fnlab.analysis.scan.ray` (a Ray Data job).
The engines import the shared parts, never each other nor this ``__init__``; :func:`scan` picks one (the Ray
engine is imported only when asked for).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

# the shared parts, importable from here as before the split (``name as name``: re-exported outside __all__)
from fnlab.analysis.scan.fit import fit_scan_posterior
from fnlab.analysis.scan.fit import scan_posterior as scan_posterior
from fnlab.analysis.scan.fit import status_fields as status_fields
from fnlab.analysis.scan.inputs import (
    NO_POSITIVE_POLICY,
    ScanInputError,
    ScanWarning,
    load_embeddings,
    load_positives,
    load_texts,
    text_inputs,
)
from fnlab.analysis.scan.inputs import announce_notes as announce_notes
from fnlab.analysis.scan.inputs import check_scan_options as check_scan_options
from fnlab.analysis.scan.local import local_scan
from fnlab.analysis.scan.table import TABLE_CHUNK_ROWS as TABLE_CHUNK_ROWS
from fnlab.analysis.scan.table import (
    ScanResult,
    detection_vs_similarity,
    suspects_table,
    triplets,
    write_json,
    write_table,
)
from fnlab.analysis.scan.table import window_thresholds as window_thresholds
from fnlab.posterior import DEFAULT_ESTIMATOR, pair_member

__all__ = [
    "ScanResult",
    "ScanInputError",
    "ScanWarning",
    "scan",
    "scan_dataset",
    "dataset_texts",
    "load_embeddings",
    "load_positives",
    "write_table",
    "write_json",
    "triplets",
    "suspects_table",
    "fit_scan_posterior",
    "load_texts",
    "text_inputs",
    "NO_POSITIVE_POLICY",
    "ENGINES",
]

ENGINES = ("local", "ray")


def scan(queries: np.ndarray | torch.Tensor, candidates: np.ndarray | torch.Tensor, positives: Any, *,
         top_k: int = 50, prior: Literal["auto"] | float = "auto", estimator: str = DEFAULT_ESTIMATOR, posterior: Any = None,
         device: str = "auto", chunk_size: int | None = None, normalize: bool = True,
         index: Literal["flat", "hnsw", "ivf"] = "flat", progress: bool = False,
         negative_sample: int = 100_000, seed: int = 0, names: Mapping[str, str] | None = None,
         index_params: Mapping[str, Any] | list[str] | None = None, recall_check: int = 0,
         engine: str = "local", query_texts: Any = None, candidate_texts: Any = None,
         text_encoder: str = "minilm", query_view: Any = None, candidate_view: Any = None,
         **engine_options: Any) -> ScanResult:
    """Flag suspected false negatives: each query's top-k non-positive candidates with P(FN).

    Args:
        queries: ``[Nq, d]`` float16/32/64 (captions, queries; B side).
        candidates: ``[Nc, d]`` float (images, documents; A side).
        positives: labelled pairs: DataFrame with integer columns ``query``, ``candidate``
            (several per query allowed), an integer array ``[P, 2]``, or a sparse ``[Nq, Nc]``.
        top_k: candidates kept per query (after removing its labelled positives).
        prior: P(pos) of an unlabelled pair, or ``"auto"`` to estimate it (module docstring).
        estimator: posterior estimator (:func:`fnlab.posterior.available`; default ``"pu"``), checked
            before any work.
        posterior: an already fitted posterior to apply instead of fitting one (``estimator`` and
            ``prior`` are then ignored), e.g. ``fnlab.posterior.from_params(run's posterior.json)``.
        device: ``"auto"`` (CUDA + torch matmul when present, else faiss on CPU), ``"cpu"``, ``"cuda"``.
        chunk_size: queries per search chunk (default 4096 for faiss; bounded by memory for torch).
        normalize: L2-normalise both sides first (cosine similarity).
        index: ``"flat"`` exact inner product, or approximate ``"hnsw"`` / ``"ivf"`` (faiss, CPU).
        progress: show a tqdm progress bar on stderr.
        negative_sample: size of the random sample of non-positive pairs (negative fit, prior).
        seed: seeds the random sample (and IVF training): equal seeds give equal results.
        names: file names for error messages, keys ``queries``, ``candidates``, ``positives``.
        index_params: parameters of the approximate index (``{"nprobe": 64}`` or ``["nprobe=64"]``;
            :data:`fnlab.retrieval.similarity.INDEX_PARAMS`: ``nlist``/``nprobe`` for ivf, ``M``/``efConstruction``/
            ``efSearch`` for hnsw).
        recall_check: measure recall@top_k of the index against exact search on this many sampled
            queries (seeded by ``seed``); the summary's ``recall_check`` holds it (0: not measured).
        engine: ``"local"`` (this process) or ``"ray"`` (:func:`fnlab.analysis.scan.ray.ray_scan`: queries
            and candidates may also be folders of Parquet/.npy shards; ``engine_options`` such as
            ``out``, ``ray_address``, ``candidate_shards``, ``workers``, ``batch_size`` go there).
        query_texts, candidate_texts: one text per query / candidate row, where a side has text: the
            posterior then also reads near-duplicate texts and a second view of them (``text_encoder``:
            ``"minilm"``, the bundled all-MiniLM-L6-v2, or a local sentence-transformers folder). Texts that
            do not match the rows, or an encoder that cannot load: a note, and the scan runs without them.
        query_view, candidate_view: the second view as embeddings already computed (``[Nq, d']``,
            ``[Nc, d']``), instead of encoding texts (e.g. :func:`fnlab.data.minilm.dataset_text_view`).

    Returns:
        :class:`ScanResult` with ``table`` (sorted by query, then rank) and ``summary``.

    Raises:
        ScanInputError: mismatched dimensions, NaN/inf or all-zero rows, out-of-range or
            non-integer pair indices, empty input, fewer than 2 labelled pairs, bad options.

    Warns:
        ScanWarning: duplicate pairs or embedding rows, queries without labelled positives.

    Example:
        >>> rng = np.random.default_rng(0); c = rng.standard_normal((50, 8)); q = c[:10] + 0.1
        >>> res = scan(q, c, pd.DataFrame({"query": range(10), "candidate": range(10)}), top_k=3)
        >>> list(res.table.columns)[:4]
        ['query', 'candidate', 'rank', 'similarity']
    """
    if engine not in ENGINES:
        raise ScanInputError(f"unknown engine {engine!r}: expected one of {list(ENGINES)}")
    if engine == "ray":
        from fnlab.analysis.scan.ray import ray_scan

        if any(v is not None for v in (query_texts, candidate_texts, query_view, candidate_view)):
            raise ScanInputError("texts (--texts) and text views: available with engine='local' only")
        return ray_scan(queries, candidates, positives, top_k=top_k, prior=prior, estimator=estimator,
                        posterior=posterior, normalize=normalize, index=index, index_params=index_params,
                        recall_check=recall_check, progress=progress, negative_sample=negative_sample, seed=seed,
                        names=names, chunk_size=chunk_size, device=device, **engine_options)
    if engine_options:
        raise ScanInputError(f"options {sorted(engine_options)} are for engine='ray' only")
    return local_scan(queries, candidates, positives, top_k=top_k, prior=prior, estimator=estimator,
                      posterior=posterior, device=device, chunk_size=chunk_size, normalize=normalize, index=index,
                      progress=progress, negative_sample=negative_sample, seed=seed, names=names,
                      index_params=index_params, recall_check=recall_check, query_texts=query_texts,
                      candidate_texts=candidate_texts, text_encoder=text_encoder, query_view=query_view,
                      candidate_view=candidate_view)


def scan_dataset(emb_a: np.ndarray | torch.Tensor, emb_b: np.ndarray | torch.Tensor, dataset, *,
                 text_view: bool = True, **kw) -> ScanResult:
    """:func:`scan` on a :class:`fnlab.data.base.MatchingDataset`: queries are B items (captions),
    candidates A items (images), positives the labelled pairs ``b_to_a``.

    Where the dataset has ground truth (``relevance``), the table gets a bool column
    ``is_relevant`` and the summary the share of suspects that are truly relevant
    (``precision_above_0.5``) and the share of false negatives inside the scanned top-k
    that score above 0.5 (``fn_recall_above_0.5_in_top_k``).

    Args:
        emb_a: ``[n_a, d]``; emb_b: ``[n_b, d]``; ``**kw``: options of :func:`scan`.
        text_view: where the dataset's items have text, give the posterior what the texts say
            (:func:`dataset_texts`); with a given posterior, only if it reads a second view.

    Raises:
        ScanInputError: embedding rows do not match the dataset's item counts.
    """
    for key, emb, n in (("emb_a", emb_a, dataset.n_a), ("emb_b", emb_b, dataset.n_b)):
        if np.asarray(emb.shape)[0] != n:
            raise ScanInputError(f"{key}: {emb.shape[0]} rows but dataset {dataset.name!r} split "
                                 f"{dataset.split!r} has {n} items on that side; expected one row per item")
    positives = pd.DataFrame({"query": np.arange(dataset.n_b, dtype=np.int64), "candidate": dataset.b_to_a})
    kw.setdefault("names", {"queries": "emb_b", "candidates": "emb_a", "positives": f"dataset {dataset.name!r}"})
    given = kw.get("posterior")
    if text_view and (given is None or any(n.startswith("view_") for n in given.signals)):
        kw.update(dataset_texts(dataset, kw))
    res = scan(emb_b, emb_a, positives, **kw)
    if dataset.relevance is not None:
        rel = sp.csr_matrix(dataset.relevance, dtype=bool)
        rel.sort_indices()
        t = res.table
        t["is_relevant"] = pair_member(rel, t["query"].to_numpy(), t["candidate"].to_numpy())
        sus = t["p_false_negative"].to_numpy() > 0.5
        fn_in = t["is_relevant"].to_numpy()
        res.summary["relevant_in_top_k"] = int(fn_in.sum())
        res.summary["false_negatives_total"] = int(rel.nnz - dataset.n_b)
        res.summary["precision_above_0.5"] = float(fn_in[sus].mean()) if sus.any() else None
        res.summary["fn_recall_above_0.5_in_top_k"] = float(sus[fn_in].mean()) if fn_in.any() else None
        res.summary["detection_in_top_k"] = detection_vs_similarity(
            fn_in, t["p_false_negative"].to_numpy(), t["similarity"].to_numpy())
    return res


def dataset_texts(dataset, kw: Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`scan` arguments a dataset's own texts give, for each side the caller gave none of (neither
    ``*_texts`` nor ``*_view`` in ``kw``).

    Captions and queries (side B) and candidate texts (side A: a ``pairs`` folder's ``a_text``) become
    ``query_texts`` / ``candidate_texts``: near-duplicate content by normalised text, and a second view from
    ``kw["text_encoder"]`` (a text-text folder thus gets every view signal, both sides in one space). The
    ``*-precomp`` sets' side-B features *are* MiniLM caption embeddings: with the default encoder they are the
    query view as they are (:func:`fnlab.data.minilm.dataset_text_view`; nothing is encoded). An encoder that
    cannot be loaded costs the view, with a :class:`ScanWarning`, never the scan.
    """
    from fnlab.data.display import side_content
    from fnlab.data.minilm import DEFAULT_ENCODER, MINILM_CAPTION_DATASETS, dataset_text_view

    out: dict[str, Any] = {}
    encoder = kw.get("text_encoder", DEFAULT_ENCODER)
    if kw.get("query_texts") is None and kw.get("query_view") is None:
        if encoder == DEFAULT_ENCODER and getattr(dataset, "name", "") in MINILM_CAPTION_DATASETS:
            view = dataset_text_view(dataset, encode=False)  # the features themselves where they are MiniLM's
            if view is not None:
                out["query_view"] = view
        if "query_view" not in out and (texts := side_content(dataset, "b").get("text")) is not None:
            out["query_texts"] = texts
    if kw.get("candidate_texts") is None and kw.get("candidate_view") is None:
        if (texts := side_content(dataset, "a").get("text")) is not None:
            out["candidate_texts"] = texts
    return out
