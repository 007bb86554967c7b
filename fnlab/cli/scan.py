"""``fnlab scan``: suspected false negatives in your own embeddings, written to a file.

Example::

    fnlab scan --queries caps.npy --candidates imgs.npy --positives pairs.csv --out suspects.parquet
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

DESCRIPTION = """\
For every query, rank all candidates by cosine similarity, leave out its labelled positives and keep
the top-k; each kept pair gets the posterior probability that it is a false negative (a true match
that is not labelled), from Gaussians fitted on this data (FNE, ACM MM 2023) with the prior estimated
from the data unless --prior is given. Exact faiss inner-product search, queries in chunks: memory
stays bounded by the embeddings plus one chunk.

Inputs: --queries Q.npy [Nq, d] and --candidates C.npy [Nc, d] (float16/32/64, no pickles) and
--positives P.csv|P.parquet with integer columns 'query' and 'candidate' (rows of Q and C; several
per query allowed); or --dataset-dir DIR, a 'pairs' dataset folder (its labelled pairs, and its
features where --queries/--candidates are not given; adds an is_relevant column where it has ground
truth). Output columns: query, candidate, rank, similarity, positive_similarity, p_false_negative.
The summary is printed and written beside the output as <out>.summary.json (suspects.parquet ->
suspects.parquet.summary.json). The table, the summary and --triplets are written as one unit: a
failed or killed scan leaves the previous outputs as they were (details: README, "What a run and a
scan guarantee after a crash"); no output may be an input or another output."""


#: bytes one scan row takes in memory (the table's columns and the search's score and index): --top-k is refused
#: where Nq x k rows would not fit the machine's memory
ROW_BYTES = 48


def add_parser(sub: argparse._SubParsersAction) -> None:
    from fnlab.cli.options import integer, number, registry_names

    p = sub.add_parser("scan", help="flag suspected false negatives in your own embeddings",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queries", metavar="Q.npy", help="query embeddings [Nq, d] (captions, queries)")
    p.add_argument("--candidates", metavar="C.npy", help="candidate embeddings [Nc, d] (images, documents)")
    p.add_argument("--positives", metavar="P.csv", help="labelled pairs: integer columns query, candidate")
    p.add_argument("--dataset-dir", metavar="DIR", help="a 'pairs' dataset folder instead of --positives")
    p.add_argument("--split", default="all", help="split of --dataset-dir to scan (default: all)")
    p.add_argument("--out", required=True, metavar="FILE", help="output table (suspects.parquet)")
    p.add_argument("--format", choices=("parquet", "csv", "jsonl"), default=None,
                   help="output format (default: from the extension of --out, else parquet)")
    p.add_argument("--top-k", type=integer(1), default=50, help="candidates kept per query (default 50)")
    p.add_argument("--prior", default="auto", help="P(pos) of an unlabelled pair: 'auto' (estimated) or a number")
    p.add_argument("--estimator", default="pu",
                   help=f"posterior estimator: {registry_names('fnlab.posterior')} (default pu: every signal of a "
                   "pair, prior estimated; paper: FNE's Gaussians with prior 1e-4)")
    p.add_argument("--posterior", default=None, metavar="FILE",
                   help="apply this fitted posterior (a run's posterior.json) instead of fitting one, so a pair "
                   "gets the same P(FN) as in fnlab eval and the app")
    p.add_argument("--texts", action="append", default=[], metavar="SIDE=FILE",
                   help="texts of the queries or candidates, repeatable: queries=Q.txt, candidates=C.txt (one text a "
                        "line, or a .csv/.parquet/.jsonl with a 'text' column, in row order). The posterior then also "
                        "reads near-duplicate texts and a second view of them from --text-encoder")
    p.add_argument("--text-encoder", default="minilm", metavar="NAME",
                   help="encoder of the text view: minilm (the bundled all-MiniLM-L6-v2, default) or a local "
                        "sentence-transformers model folder (nothing is downloaded)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto: CUDA when present)")
    p.add_argument("--index", choices=("flat", "hnsw", "ivf"), default="flat",
                   help="flat = exact (default); hnsw / ivf = approximate, for millions of candidates")
    p.add_argument("--index-param", action="append", default=[], metavar="KEY=VALUE",
                   help="approximate index parameter, repeatable: ivf nlist (cells, default 4*sqrt(Nc)) and "
                        "nprobe (cells searched, default 32); hnsw M (links, default 32), efConstruction (default "
                        "80), efSearch (default 128). E.g. --index ivf --index-param nprobe=64")
    p.add_argument("--recall-check", type=integer(0), default=0, metavar="N",
                   help="measure recall@top-k of the index against exact search on N sampled queries "
                        "(written to the summary; use it with --index hnsw|ivf)")
    ray = p.add_argument_group("Ray engine (--engine ray; needs pip install 'fnlab[ray]')")
    ray.add_argument("--engine", choices=("local", "ray"), default="local",
                     help="local = this process (default); ray = a Ray Data job: --queries/--candidates may be "
                          "folders of .parquet (id + embedding columns) or .npy shards, --positives holds their "
                          "ids, --out is a folder of Parquet parts + _summary.json, committed at the end")
    ray.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                     help="join this Ray cluster (default: $RAY_ADDRESS, else a local Ray on all cores)")
    ray.add_argument("--candidate-shards", type=integer(1), default=1,
                     help="split the candidates into this many shards, searched by separate actor pools and "
                          "merged exactly (default 1)")
    ray.add_argument("--workers", type=integer(1), default=None,
                     help="actors per candidate shard (default: CPUs / shards)")
    ray.add_argument("--worker-cpus", type=integer(1), default=1, help="CPUs (faiss threads) per actor (default 1)")
    ray.add_argument("--batch-size", type=integer(1), default=None, help="queries per Ray batch (default 4096)")
    ray.add_argument("--id-column", default="id", help="id column of Parquet shards (default id)")
    ray.add_argument("--embedding-column", default="embedding",
                     help="embedding column of Parquet shards, a list of floats (default embedding)")
    p.add_argument("--chunk-size", type=integer(1), default=None, help="queries per search chunk")
    p.add_argument("--negative-sample", type=integer(2), default=100_000,
                   help="random non-positive pairs used to fit the negative distribution and the prior")
    p.add_argument("--seed", type=integer(0), default=0, help="seed of the random sample (default 0)")
    p.add_argument("--no-normalize", action="store_true", help="use raw inner products (inputs already unit length)")
    p.add_argument("--triplets", metavar="FILE", default=None,
                   help="also write (anchor, positive, negative) triplets with suspects removed "
                        "(sentence-transformers triplet layout: indices and scores, and anchor_text, positive_text, "
                        "negative_text where --texts or --dataset-dir give the texts)")
    p.add_argument("--suspect-threshold", type=number(0, 1), default=0.5,
                   help="negatives with p_false_negative above this are left out of --triplets (default 0.5)")
    p.add_argument("--num-negatives", type=integer(1), default=3, help="negatives per labelled pair in --triplets")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary on stdout")
    p.set_defaults(func=run)


def _format_of(path: Path, fmt: str | None) -> str:
    if fmt:
        return fmt
    ext = path.suffix.lower().lstrip(".")
    return {"csv": "csv", "jsonl": "jsonl", "json": "jsonl"}.get(ext, "parquet")


def _summary_lines(s: dict) -> list[str]:
    post = s.get("posterior", {})
    lines = [
        f"queries scanned        {s['queries_scanned']:,} (candidates {s['candidates']:,}, d={s['dim']}, top-k {s['top_k']})",
        f"rows written           {s['rows']:,}",
        f"queries w/o positive   {s['queries_without_positive']:,}"
        + (" (scanned; same global posterior, positive_similarity NaN)" if s["queries_without_positive"] else ""),
        f"suspects p > 0.5       {s['suspects_above_0.5']:,} (in {s['queries_with_suspect_above_0.5']:,} queries)",
        f"suspects p > 0.9       {s['suspects_above_0.9']:,}",
        "posterior              " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                               for k, v in post.items()
                                               if not isinstance(v, dict | list) or k == "features"),
        f"prior                  {s['prior_method']}",
        f"calibration            {s.get('status', 'calibrated')}"
        + (f" ({s['status_reason']})" if s.get("status_reason") else "")
        + (f"; text view on {', '.join(s['text_view'])}" if s.get("text_view") else ""),
        f"seconds                {s['seconds']['total']:.2f} (search {s['seconds']['search']:.2f}, "
        f"fit {s['seconds']['fit']:.2f})",
    ]
    if s.get("recall_check"):
        r = s["recall_check"]
        lines.append(f"recall@{r['k']} of index    {r['recall_at_k']:.4f} on {r['queries']:,} sampled queries "
                     f"({s['index']} {s.get('index_params', {})} vs exact)")
    if s.get("precision_above_0.5") is not None or s.get("relevant_in_top_k") is not None:
        lines.append(f"ground truth           relevant in top-k {s.get('relevant_in_top_k')}, "
                     f"precision@0.5 {s.get('precision_above_0.5')}, recall@0.5 {s.get('fn_recall_above_0.5_in_top_k')}")
    return lines


def run(args: argparse.Namespace) -> int:
    from fnlab.analysis import scan as scanmod
    from fnlab.cli.options import parse_kvs  # the CLI's one KEY=VALUE parser

    out = Path(args.out)
    fmt = _format_of(out, args.format)
    if not out.name or out.name in (".", ".."):
        raise ValueError(f"--out {args.out!r}: expected a file path such as suspects.parquet")
    summary_path = out.with_name(out.name + ".summary.json")  # a.csv and a.parquet never share a summary
    prior = args.prior if args.prior == "auto" else _float(args.prior, "--prior")
    given = None
    if args.posterior:
        from fnlab.core.files import read_json
        from fnlab.posterior import from_params

        given = from_params(read_json(args.posterior))
    texts = _texts(args.texts)
    kw = dict(top_k=args.top_k, prior=prior, estimator=args.estimator, posterior=given, device=args.device,
              chunk_size=args.chunk_size, normalize=not args.no_normalize, index=args.index,
              progress=not args.quiet, negative_sample=args.negative_sample, seed=args.seed,
              index_params=parse_kvs(args.index_param, "--index-param"), recall_check=args.recall_check)
    if args.engine == "ray":
        if texts:
            raise ValueError("--texts: available with --engine local only")
        return _run_ray(args, kw)
    kw.update(query_texts=texts.get("queries"), candidate_texts=texts.get("candidates"),
              text_encoder=args.text_encoder)

    _check_paths(args, out, summary_path)  # before any work: no output may overwrite an input or another output
    trip_texts: dict = {}  # the texts --triplets carries beside the indices, where the scan has them
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", scanmod.ScanWarning)
        if args.dataset_dir:
            if args.positives:
                raise ValueError("give either --positives or --dataset-dir, not both")
            import fnlab.data

            ds = fnlab.data.load("pairs", root=args.dataset_dir, split=args.split)
            emb_b = _embeddings(args.queries, "queries", ds.b_inputs if ds.b_kind == "features" else None,
                                f"{args.dataset_dir} (B features)")
            emb_a = _embeddings(args.candidates, "candidates", ds.a_inputs if ds.a_kind == "features" else None,
                                f"{args.dataset_dir} (A features)")
            names = {"queries": args.queries or f"{args.dataset_dir} B features",
                     "candidates": args.candidates or f"{args.dataset_dir} A features",
                     "positives": f"{args.dataset_dir} pairs", **_text_names(args.texts)}
            kw["top_k"] = _check_top_k(args.top_k, len(emb_b), len(emb_a))
            result = _bounded(lambda: scanmod.scan_dataset(emb_a, emb_b, ds, names=names, **kw), kw["top_k"])
            from fnlab.analysis.explore import with_content  # ids, texts and image paths beside the indices

            result.table = with_content(result.table, ds)
            if args.triplets:  # the folder's texts, only where --triplets will carry them
                from fnlab.data.display import side_content

                trip_texts = {"query_texts": side_content(ds, "b").get("text"),
                              "candidate_texts": side_content(ds, "a").get("text")}
        else:
            missing = [f for f, v in (("--queries", args.queries), ("--candidates", args.candidates),
                                      ("--positives", args.positives)) if not v]
            if missing:
                raise ValueError(f"missing {', '.join(missing)} (or give --dataset-dir)")
            q = scanmod.load_embeddings(args.queries, "queries")
            c = scanmod.load_embeddings(args.candidates, "candidates")
            pos = scanmod.load_positives(args.positives)
            names = {"queries": args.queries, "candidates": args.candidates, "positives": args.positives,
                     **_text_names(args.texts)}
            kw["top_k"] = _check_top_k(args.top_k, len(q), len(c))
            result = _bounded(lambda: scanmod.scan(q, c, pos, names=names, **kw), kw["top_k"])
            # texts that fit their rows travel into --triplets (the scan has warned about any that do not)
            trip_texts = {key: t for key, t, n in (("query_texts", texts.get("queries"), len(q)),
                                                   ("candidate_texts", texts.get("candidates"), len(c)))
                          if t is not None and len(t) == n}
    for w in caught:
        if issubclass(w.category, scanmod.ScanWarning):
            print(f"fnlab scan: warning: {w.message}", file=sys.stderr)

    _write_outputs(scanmod, result, args, out, fmt, summary_path, trip_texts)
    if not args.quiet:
        for line in _summary_lines(result.summary):
            print(line)
        print(f"wrote {out} ({fmt}) and {summary_path}" + (f" and {args.triplets}" if args.triplets else ""))
    return 0


def _run_ray(args: argparse.Namespace, kw: dict) -> int:
    """``--engine ray``: shard folders in, a committed folder of Parquet parts + _summary.json out."""
    from fnlab.analysis import scan as scanmod

    bad = [flag for flag, given in (("--dataset-dir", args.dataset_dir), ("--triplets", args.triplets),
                                    ("--format", args.format not in (None, "parquet"))) if given]
    if bad:
        raise ValueError(f"{', '.join(bad)}: not available with --engine ray (it writes Parquet parts from "
                         "--queries, --candidates, --positives)")
    missing = [f for f, v in (("--queries", args.queries), ("--candidates", args.candidates),
                              ("--positives", args.positives)) if not v]
    if missing:
        raise ValueError(f"missing {', '.join(missing)} (--engine ray reads shard folders or files)")
    kw = dict(kw, chunk_size=None, batch_size=args.batch_size or args.chunk_size)
    from fnlab.analysis.scan.ray import check_output

    out = args.out.rstrip("/") or args.out
    # the local engine's checks, for a folder: never an input, never a folder fnlab did not write (before any work)
    check_output(out, {"--queries": args.queries, "--candidates": args.candidates, "--positives": args.positives},
                 label="--out")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", scanmod.ScanWarning)
        try:  # the engine checks --out against the inputs and what is there before any work
            result = scanmod.scan(args.queries, args.candidates, args.positives, engine="ray", out=out,
                                  ray_address=args.ray_address, candidate_shards=args.candidate_shards,
                                  workers=args.workers, worker_cpus=args.worker_cpus, id_column=args.id_column,
                                  embedding_column=args.embedding_column, **kw)
        except (scanmod.ScanInputError, MemoryError) as err:
            raise type(err)(_flag_names(str(err))) from None
    for w in caught:
        if issubclass(w.category, scanmod.ScanWarning):
            print(f"fnlab scan: warning: {w.message}", file=sys.stderr)
    if not args.quiet:
        for line in _summary_lines(result.summary):
            print(line)
        print(f"wrote {args.out}/ ({result.summary['output']['parts']} Parquet parts and _summary.json; pandas.read_parquet reads the folder)")
    return 0


_FLAGS = {"top_k": "--top-k", "batch_size": "--batch-size", "candidate_shards": "--candidate-shards",
          "workers": "--workers", "worker_cpus": "--worker-cpus", "negative_sample": "--negative-sample",
          "recall_check": "--recall-check", "out": "--out"}


def _flag_names(message: str) -> str:
    """An engine message that starts with a parameter name (``top_k ...``), with the flag's name instead."""
    head, _, rest = message.partition(" ")
    return f"{_FLAGS[head]} {rest}" if head in _FLAGS else message


def _memory_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return None


def _check_top_k(top_k: int, n_queries: int, n_candidates: int) -> int:
    """``--top-k`` capped at the number of candidates; refused, naming it, where the rows cannot fit in memory."""
    k = min(int(top_k), int(n_candidates))
    need, mem = int(n_queries) * k * ROW_BYTES, _memory_bytes()
    if mem is not None and need > mem:
        raise ValueError(f"--top-k {top_k}: {n_queries:,} queries x {k:,} candidates each need about "
                         f"{need / 2**30:,.1f} GiB, more than this machine's memory ({mem / 2**30:,.1f} GiB); "
                         "lower --top-k, or scan with --engine ray, which writes the rows in parts")
    return k


def _bounded(job, top_k: int):
    """Run the scan; a MemoryError names --top-k (the size of the table it builds)."""
    try:
        return job()
    except MemoryError as err:
        raise MemoryError(f"{err}; the table holds --top-k {top_k} rows per query: lower --top-k, or --chunk-size "
                          "for the search") from None


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _check_paths(args: argparse.Namespace, out: Path, summary_path: Path) -> None:
    """Refuse outputs that are folders, that coincide, or that would overwrite an input."""
    outputs = {"--out": out, f"the summary file {summary_path}": summary_path}
    if args.triplets:
        outputs["--triplets"] = Path(args.triplets)
    for flag, path in outputs.items():
        if path.is_dir():
            raise ValueError(f"{flag} {path}: is a folder; expected a file path such as suspects.parquet")
    names = list(outputs)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            if _same_file(outputs[first], outputs[second]):
                raise ValueError(f"{second} {outputs[second]}: is the same file as {first}; one output would "
                                 "overwrite the other: choose different paths")
    inputs = {f"--{key}": Path(getattr(args, key)) for key in ("queries", "candidates", "positives")
              if getattr(args, key)}
    if args.dataset_dir and Path(args.dataset_dir).is_dir():
        inputs.update({f"--dataset-dir file {p.name}": p for p in Path(args.dataset_dir).iterdir() if p.is_file()})
    for flag, path in outputs.items():
        for in_flag, in_path in inputs.items():
            if _same_file(path, in_path):
                raise ValueError(f"{flag} {path}: is the same file as the input {in_flag}; the scan would "
                                 "overwrite its input: choose another output path")
    # an existing file is replaced only when fnlab wrote it (fnlab.core.ownership)
    from fnlab.core import ownership

    kinds = {"--out": ownership.SCAN_TABLE, "--triplets": ownership.SCAN_TRIPLETS}
    for flag, path in outputs.items():
        ownership.check(path, kinds.get(flag, ownership.SCAN_SUMMARY),
                        label=flag if flag in kinds else "the summary file", action="replace")


def _write_outputs(scanmod, result, args: argparse.Namespace, out: Path, fmt: str, summary_path: Path,
                   texts: dict | None = None) -> None:
    """Table, triplets and summary written as one unit (:func:`fnlab.core.files.commit_files`): a failure or a
    kill leaves the previous outputs as they were, or (killed during the final renames) a set the next scan
    to the same --out, or ``fnlab.core.files.recover(out)``, completes; never a mix of two scans."""
    from fnlab.cli import describe_error
    from fnlab.core import files

    writers = {out: files.table_writer(result.table, fmt)}
    if args.triplets:
        trip = scanmod.triplets(result, threshold=args.suspect_threshold, num_negatives=args.num_negatives,
                                **(texts or {}))
        tpath = Path(args.triplets)
        writers[tpath] = files.table_writer(trip, _format_of(tpath, None))
        result.summary["triplets"] = {"path": str(tpath), "rows": int(len(trip)),
                                      "suspect_threshold": args.suspect_threshold,
                                      "num_negatives": args.num_negatives}
    result.summary["output"] = {"path": str(out), "format": fmt, "summary": str(summary_path)}
    text = files.dumps(result.summary, indent=2) + "\n"
    writers[summary_path] = lambda t: t.write_text(text, encoding="utf-8")
    try:
        for path in writers:
            path.parent.mkdir(parents=True, exist_ok=True)
        files.commit_files(writers)
    except OSError as err:
        raise ValueError(f"cannot write the output ({describe_error(err)}); nothing was written and earlier "
                         "outputs are unchanged") from None


def _text_files(items: list[str]) -> dict[str, str]:
    """``--texts SIDE=FILE`` values as ``{"queries": FILE, "candidates": FILE}``.

    Raises:
        ValueError: a value that is not ``queries=FILE`` or ``candidates=FILE``, or a side given twice.
    """
    out: dict[str, str] = {}
    for item in items:
        side, sep, path = item.partition("=")
        side = {"query": "queries", "candidate": "candidates"}.get(side.strip(), side.strip())
        if not sep or side not in ("queries", "candidates") or not path:
            raise ValueError(f"--texts {item!r}: expected queries=FILE or candidates=FILE")
        if side in out:
            raise ValueError(f"--texts: {side} given twice")
        out[side] = path
    return out


def _texts(items: list[str]) -> dict[str, list[str]]:
    """The texts of each side named by ``--texts`` (read now: a bad file stops the scan before any work)."""
    from fnlab.analysis import scan as scanmod

    return {side: scanmod.load_texts(path, f"--texts {side}") for side, path in _text_files(items).items()}


def _text_names(items: list[str]) -> dict[str, str]:
    keys = {"queries": "query_texts", "candidates": "candidate_texts"}
    return {keys[side]: f"{path} (--texts {side})" for side, path in _text_files(items).items()}


def _float(text: str, flag: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{flag}: expected 'auto' or a number in (0, 1), got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise ValueError(f"{flag}: expected 'auto' or a number in (0, 1), got {text!r}")
    return value


def _embeddings(path: str | None, field: str, fallback, where: str):
    from fnlab.analysis import scan as scanmod

    if path:
        return scanmod.load_embeddings(path, field)
    if fallback is None:
        raise ValueError(f"{where}: the dataset holds no features for the {field}; give --{field} FILE.npy")
    return fallback
