"""Benchmark: fnlab scan vs a bare faiss IndexFlatIP search vs sentence-transformers semantic_search.

Random unit embeddings (default 100,000 queries x 100,000 candidates, d = 256; smaller with
``--queries/--candidates/--dim``), query i labelled with candidate i. In one run it times

  (a) ``fnlab.analysis.scan.scan`` end to end (checks, normalisation, posterior fit, chunked exact search
      without the labelled positives, output table with posteriors),
  (b) a bare ``faiss.IndexFlatIP`` top-k search of the same data (the physical floor on CPU),
  (c) ``sentence_transformers.util.semantic_search`` on the same tensors (its defaults:
      query_chunk_size=100, corpus_chunk_size=500000); if sentence-transformers is not installed,
      a faithful re-implementation of its algorithm (chunked ``torch.mm`` + ``torch.topk``, merged
      per query), clearly labelled as such,

each in its own child process (same seeded data), so each stage's peak memory (ru_maxrss) is its
own. Prints the ratios a/b and c/a and writes the report to ``bench/results/scan_speed.txt``.

Usage::

    python bench/scan_speed.py --queries 20000 --candidates 20000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def make_data(nq: int, nc: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((nq, d), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    c = rng.standard_normal((nc, d), dtype=np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    return q, c


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def semantic_search_reimpl(query_embeddings, corpus_embeddings, query_chunk_size=100,
                           corpus_chunk_size=500000, top_k=10):
    """The algorithm of sentence_transformers.util.semantic_search (v2-v6), re-implemented:
    for each query chunk and corpus chunk, cosine scores by torch.mm, torch.topk per chunk, then
    the per-query candidates of all corpus chunks are merged and sorted (heap in the original)."""
    import torch

    qn = torch.nn.functional.normalize(query_embeddings, p=2, dim=1)
    cn = torch.nn.functional.normalize(corpus_embeddings, p=2, dim=1)
    results = [[] for _ in range(len(qn))]
    for qs in range(0, len(qn), query_chunk_size):
        for cs in range(0, len(cn), corpus_chunk_size):
            scores = torch.mm(qn[qs:qs + query_chunk_size], cn[cs:cs + corpus_chunk_size].T)
            vals, idx = torch.topk(scores, min(top_k, scores.shape[1]), dim=1, largest=True, sorted=False)
            vals, idx = vals.tolist(), idx.tolist()
            for r in range(len(vals)):
                for v, i in zip(vals[r], idx[r], strict=True):
                    results[qs + r].append((v, cs + i))
    return [[{"corpus_id": i, "score": v} for v, i in sorted(res, reverse=True)[:top_k]] for res in results]


def stage(name: str, nq: int, nc: int, d: int, k: int, seed: int, labelled: int | None = None) -> dict:
    import torch

    q, c = make_data(nq, nc, d, seed)
    base = rss_mb()
    info: dict = {"stage": name}
    if name == "fnlab_scan":
        import pandas as pd

        from fnlab.analysis.scan import scan

        n_lab = nq if labelled is None else int(labelled)
        pos = pd.DataFrame({"query": np.arange(n_lab), "candidate": np.arange(n_lab) % nc})
        t = time.perf_counter()
        res = scan(q, c, pos, top_k=k, progress=False, device="cpu")
        info["seconds"] = time.perf_counter() - t
        info["rows"] = len(res.table)
        info["breakdown"] = res.summary["seconds"]
    elif name == "faiss_flat":
        import faiss

        t = time.perf_counter()
        index = faiss.IndexFlatIP(d)
        index.add(c)
        _, idx = index.search(q, k)
        info["seconds"] = time.perf_counter() - t
        info["rows"] = int(idx.size)
    elif name == "semantic_search":
        qt, ct = torch.from_numpy(q), torch.from_numpy(c)
        try:
            import sentence_transformers
            from sentence_transformers.util import semantic_search
            info["impl"] = f"sentence-transformers {sentence_transformers.__version__} util.semantic_search"
        except ImportError:
            semantic_search = semantic_search_reimpl
            info["impl"] = ("RE-IMPLEMENTATION of sentence-transformers util.semantic_search "
                            "(package not installed)")
        t = time.perf_counter()
        hits = semantic_search(qt, ct, top_k=k)
        info["seconds"] = time.perf_counter() - t
        info["rows"] = sum(len(h) for h in hits)
    else:
        raise ValueError(f"unknown stage {name!r}")
    info["peak_rss_mb"] = rss_mb()
    info["data_rss_mb"] = base
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=100_000)
    ap.add_argument("--candidates", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--top-k", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1,
                    help="run (a) and (b) this many times, alternating, and keep each one's fastest run "
                         "(the CPU may be shared: repeats make the ratio less noisy)")
    ap.add_argument("--skip-semantic-search", action="store_true", help="only (a) and (b)")
    ap.add_argument("--labelled", type=int, nargs="*", default=[],
                    help="also time (a) with only this many labelled pairs (queries 0..N-1), e.g. 2 200: the "
                         "posterior fit with few labels must be no slower than with many")
    ap.add_argument("--labelled-stage", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(HERE / "results" / "scan_speed.txt"))
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.stage:  # child process: one stage, JSON on stdout
        print(json.dumps(stage(args.stage, args.queries, args.candidates, args.dim, args.top_k, args.seed,
                               args.labelled_stage)))
        return 0

    import faiss
    import torch

    size = [f"--queries={args.queries}", f"--candidates={args.candidates}", f"--dim={args.dim}",
            f"--top-k={args.top_k}", f"--seed={args.seed}"]
    stages = ["faiss_flat", "fnlab_scan"] * max(1, args.repeat)
    stages += [] if args.skip_semantic_search else ["semantic_search"]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res: dict = {}
    runs: dict[str, list[float]] = {}
    for name in stages:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, __file__, "--stage", name, *size], capture_output=True, text=True,
                              env=env, check=False)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            raise SystemExit(f"stage {name} failed (exit {proc.returncode})")
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        runs.setdefault(name, []).append(got["seconds"])
        if name not in res or got["seconds"] < res[name]["seconds"]:
            res[name] = got

    for n_lab in args.labelled:
        print(f"running fnlab_scan with {n_lab} labelled pairs ...", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, __file__, "--stage", "fnlab_scan", *size, f"--labelled-stage={n_lab}"],
                              capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            raise SystemExit(f"stage fnlab_scan ({n_lab} labelled) failed (exit {proc.returncode})")
        res[f"labelled_{n_lab}"] = json.loads(proc.stdout.strip().splitlines()[-1])
    a, b = res["fnlab_scan"]["seconds"], res["faiss_flat"]["seconds"]
    lines = [
        "fnlab scan speed benchmark",
        f"date        {time.strftime('%Y-%m-%d %H:%M:%S')}, load average {os.getloadavg()[0]:.1f}",
        "commit      " + subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                        text=True, check=False).stdout.strip(),
        f"command     python bench/scan_speed.py {' '.join(size)} --repeat={args.repeat}"
        + (f" --labelled {' '.join(map(str, args.labelled))}" if args.labelled else "")
        + (" --skip-semantic-search" if args.skip_semantic_search else ""),
        f"data        {args.queries:,} queries x {args.candidates:,} candidates, d={args.dim}, top-k={args.top_k}, "
        "random unit vectors (float32), query i labelled with candidate i",
        f"machine     {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), faiss {faiss.__version__} ({faiss.omp_get_max_threads()} threads)",
        "",
        f"{'stage':<42}{'seconds':>10}{'peak RSS MB':>14}{'data MB':>10}",
    ]
    labels = {"fnlab_scan": "(a) fnlab scan, end to end",
              "faiss_flat": "(b) bare faiss IndexFlatIP top-k",
              "semantic_search": "(c) semantic_search"}
    for name in ("fnlab_scan", "faiss_flat", "semantic_search"):
        if name in res:
            r = res[name]
            lines.append(f"{labels[name]:<42}{r['seconds']:>10.2f}{r['peak_rss_mb']:>14.0f}{r['data_rss_mb']:>10.0f}")
    bd = res["fnlab_scan"]["breakdown"]
    lines += [
        "",
        f"(a) breakdown: search {bd['search']:.2f} s, posterior fit {bd['fit']:.2f} s, table {bd['table']:.2f} s, "
        f"checks and normalisation {bd['total'] - bd['search'] - bd['fit'] - bd['table']:.2f} s",
        f"ratio a/b = {a / b:.3f}   (target <= 1.5)",
        f"posterior fit = {bd['fit'] / a:.1%} of the scan   (target <= 25%)",
    ]
    for n_lab in args.labelled:
        r = res[f"labelled_{n_lab}"]
        lines.append(f"(a) with {n_lab:,} labelled pairs: {r['seconds']:.2f} s, posterior fit {r['breakdown']['fit']:.2f} s")
    if "semantic_search" in res:
        c = res["semantic_search"]["seconds"]
        lines += [f"ratio c/a = {c / a:.3f}   (> 1 means fnlab scan is faster than semantic_search)",
                  f"(c) is {res['semantic_search']['impl']}"]
    if args.repeat > 1:
        lines.append("all runs (s): " + "; ".join(f"{k}: {', '.join(f'{v:.2f}' for v in vs)}" for k, vs in runs.items())
                     + " (fastest of each kept)")
    lines.append("peak RSS = ru_maxrss of the stage's own process (includes the two input arrays, 'data MB').")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
