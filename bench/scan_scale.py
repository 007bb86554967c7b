"""Benchmark: the scan at scale: Ray engine vs local, exact vs approximate indexes, 1M x 1M.

Three figures, each stage in its own child process (so its peak memory, ru_maxrss, is its own),
seeded synthetic data:

1. ``engines``: ``fnlab.scan.scan`` at ``--nq x --nc`` (default 100k x 100k, d=128, top-10),
   ``engine="local"`` vs ``engine="ray"`` on a local Ray with the same cores (queries as .npy
   shards, output as committed Parquet parts), the ratio ray / local printed side by side.
2. ``indexes``: the retrieval of the scan (``fnlab.retrieval.similarity.build_index`` + ``topk`` with the
   labelled positive left out) for 1M candidates x 100k queries, d=128, k=10: exact (flat) vs
   ivf vs hnsw: build and search time, peak memory, recall@10 against exact on 1,000 sampled
   queries (``fnlab.retrieval.similarity.recall_at_k``).
3. ``million``: the same retrieval at 1M x 1M with the approximate index (targets: recall@10 >= 0.95
   on 1,000 sampled queries, < 15 min on 2 cores, peak < 4 GB).

Data: candidates drawn around ``--clusters`` random centres (cosine ~0.5 within a cluster, as
embeddings of real corpora cluster by topic; uniform random vectors in d=128 have no near
neighbours at all and no index can be approximate on them), unit length; query i is a noisy
copy of candidate i (its labelled positive). Every stage records the machine's load (``uptime``)
before and after, since the machine is shared. Results: ``bench/results/scan_scale*.txt``.

Usage::

    nice -n 5 python bench/scan_scale.py engines --nq 100000 --nc 100000
    nice -n 5 python bench/scan_scale.py indexes --nq 100000 --nc 1000000
    nice -n 5 python bench/scan_scale.py million --index ivf --index-param nprobe=32
    python bench/scan_scale.py million-scan --estimator pu       # the whole scan, 1M x 1M, ivf
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"


def make_data(nq: int, nc: int, d: int, clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit candidates ``[nc, d]`` and queries ``[nq, d]`` (query i near candidate i)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    c = np.empty((nc, d), np.float32)
    step = 1 << 18
    for s in range(0, nc, step):
        n = min(step, nc - s)
        block = centres[rng.integers(0, clusters, n)] + rng.standard_normal((n, d), dtype=np.float32) / np.sqrt(d)
        c[s:s + n] = block / np.linalg.norm(block, axis=1, keepdims=True)
    q = np.empty((nq, d), np.float32)
    for s in range(0, nq, step):
        n = min(step, nq - s)
        src = np.arange(s, s + n) % nc
        block = c[src] + 0.7 * rng.standard_normal((n, d), dtype=np.float32) / np.sqrt(d)
        q[s:s + n] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return q, c


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# ---------------------------------------------------------------------------------- stages
def stage_engine(engine: str, a: argparse.Namespace) -> dict:
    import pandas as pd

    from fnlab.analysis.scan import scan

    q, c = make_data(a.nq, a.nc, a.dim, a.clusters, a.seed)
    pos = pd.DataFrame({"query": np.arange(a.nq), "candidate": np.arange(a.nq) % a.nc})
    base = peak_mb()
    kw = dict(top_k=a.k, seed=a.seed, estimator=a.estimator, negative_sample=20_000, index=a.scan_index,
              index_params=a.index_param or None, recall_check=a.recall_queries if a.scan_index != "flat" else 0)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        if engine == "local":
            res = scan(q, c, pos, **kw)
        else:
            qdir = Path(tmp) / "queries"
            qdir.mkdir()
            for j, part in enumerate(np.array_split(q, 8)):
                np.save(qdir / f"part-{j}.npy", part)
            cdir = Path(tmp) / "candidates.npy"
            np.save(cdir, c)
            del q, c
            t = time.perf_counter()
            res = scan(str(qdir), str(cdir), pos, engine="ray", out=str(Path(tmp) / "out"), num_cpus=a.cpus, **kw)
        seconds = time.perf_counter() - t
    return {"stage": f"scan_{engine}", "seconds": seconds, "rows": res.summary["rows"],
            "recall_at_k": res.summary.get("recall_check", {}).get("recall_at_k"),
            "summary_seconds": res.summary["seconds"], "peak_mb": peak_mb(), "data_mb": base}


def stage_index(kind: str, a: argparse.Namespace) -> dict:
    import faiss
    import scipy.sparse as sp

    from fnlab.retrieval.similarity import build_index, index_description, recall_at_k, topk

    faiss.omp_set_num_threads(a.cpus)
    q, c = make_data(a.nq, a.nc, a.dim, a.clusters, a.seed)
    excl = sp.csr_matrix((np.ones(a.nq, bool), (np.arange(a.nq), np.arange(a.nq) % a.nc)), shape=(a.nq, a.nc))
    base = peak_mb()
    t = time.perf_counter()
    index = build_index(c, kind, params=a.index_param if kind == a.index else None, seed=a.seed)
    t_build = time.perf_counter() - t
    t = time.perf_counter()
    scores, idx = topk(q, None, a.k, exclude=excl, index=index)
    t_search = time.perf_counter() - t
    peak = peak_mb()
    described = index_description(index)
    rq = np.sort(np.random.default_rng([a.seed, 1]).choice(a.nq, min(a.recall_queries, a.nq), replace=False))
    del index
    t = time.perf_counter()
    exact = topk(q[rq], c, a.k, exclude=excl[rq])[1]
    t_exact_sample = time.perf_counter() - t
    return {"stage": f"index_{kind}", "build_s": t_build, "search_s": t_search, "total_s": t_build + t_search,
            "recall_at_k": recall_at_k(idx[rq], exact), "recall_queries": int(rq.size),
            "exact_search_of_sample_s": t_exact_sample, "peak_mb": peak, "data_mb": base,
            "queries_per_s": a.nq / t_search,
            "params": described,
            "params_used": (a.index_param or "defaults") if kind == a.index else "defaults"}


def run_child(argv: list[str]) -> dict:
    before = uptime()
    proc = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"stage {argv} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["uptime_before"], out["uptime_after"] = before, uptime()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("figure", choices=("engines", "indexes", "million", "million-scan", "_stage"))
    p.add_argument("--nq", type=int, default=None)
    p.add_argument("--nc", type=int, default=None)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--estimator", default="paper", help="posterior of the engines figure (default paper)")
    p.add_argument("--index", default="ivf", help="million: the approximate index; indexes: which gets --index-param")
    p.add_argument("--index-param", action="append", default=[])
    p.add_argument("--scan-index", default="flat", help="engines: the index of the whole scan (million-scan: ivf)")
    p.add_argument("--kinds", default="flat,ivf,hnsw", help="indexes: kinds to compare")
    p.add_argument("--recall-queries", type=int, default=1000)
    p.add_argument("--tag", default="", help="suffix of the results file name")
    p.add_argument("--stage", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.figure == "_stage":
        kind, _, name = a.stage.partition(":")
        out = stage_engine(name, a) if kind == "engine" else stage_index(name, a)
        print(json.dumps(out))
        return
    RESULTS.mkdir(exist_ok=True)
    common = ["--dim", str(a.dim), "--k", str(a.k), "--clusters", str(a.clusters), "--cpus", str(a.cpus),
              "--seed", str(a.seed), "--estimator", a.estimator, "--index", a.index,
              "--recall-queries", str(a.recall_queries)] + [f"--index-param={x}" for x in a.index_param]
    if a.figure == "million-scan":
        nq, nc = a.nq or 1_000_000, a.nc or 1_000_000
        index = a.scan_index if a.scan_index != "flat" else "ivf"
        r = run_child(["_stage", "--stage", "engine:local", "--nq", str(nq), "--nc", str(nc), "--scan-index", index,
                       *common])
        rows = [r]
        lines = [f"whole scan (fnlab.scan.scan, engine local): {nq:,} queries x {nc:,} candidates, d={a.dim}, "
                 f"top-{a.k}, index {index}, estimator {a.estimator}, {a.cpus} CPUs, {a.clusters} clusters",
                 f"seconds {r['seconds']:.1f} ({r['seconds'] / 60:.1f} min), peak MB {r['peak_mb']:.0f}, "
                 f"recall@{a.k} {r['recall_at_k']} on {a.recall_queries} sampled queries, rows {r['rows']:,}",
                 f"load: before {r['uptime_before']} | after {r['uptime_after']}"]
        name = f"scan_scale_million_scan{a.tag}.txt"
    elif a.figure == "engines":
        nq, nc = a.nq or 100_000, a.nc or 100_000
        rows = [run_child(["_stage", "--stage", f"engine:{e}", "--nq", str(nq), "--nc", str(nc), *common])
                for e in ("local", "ray")]
        ratio = rows[1]["seconds"] / rows[0]["seconds"]
        lines = [f"scan {nq:,} x {nc:,}, d={a.dim}, top-{a.k}, estimator {a.estimator}, {a.cpus} CPUs",
                 f"{'engine':8} {'seconds':>9} {'peak MB':>9}  load before / after"]
        for r in rows:
            lines.append(f"{r['stage'][5:]:8} {r['seconds']:9.1f} {r['peak_mb']:9.0f}  {r['uptime_before'][-40:]} / "
                         f"{r['uptime_after'][-40:]}")
        lines.append(f"ray / local = {ratio:.3f} (target <= 1.3)")
        lines.append("ray peak MB is the driver's only (workers are other processes)")
        name = f"scan_scale_engines_{nq // 1000}k{a.tag}.txt"
    else:
        nq = a.nq or (100_000 if a.figure == "indexes" else 1_000_000)
        nc = a.nc or 1_000_000
        kinds = a.kinds.split(",") if a.figure == "indexes" else [a.index]
        rows = [run_child(["_stage", "--stage", f"index:{k}", "--nq", str(nq), "--nc", str(nc), *common])
                for k in kinds]
        lines = [f"retrieval of the scan: {nc:,} candidates x {nq:,} queries, d={a.dim}, k={a.k}, {a.cpus} CPUs, "
                 f"{a.clusters} clusters",
                 f"{'index':6} {'build s':>8} {'search s':>9} {'total s':>8} {'q/s':>8} {'peak MB':>8} "
                 f"{'recall@' + str(a.k):>10}  params"]
        for r in rows:
            lines.append(f"{r['stage'][6:]:6} {r['build_s']:8.1f} {r['search_s']:9.1f} {r['total_s']:8.1f} "
                         f"{r['queries_per_s']:8.0f} {r['peak_mb']:8.0f} {r['recall_at_k']:10.4f}  "
                         f"{r['params_used']} {r['params']}")
        for r in rows:
            lines.append(f"load {r['stage'][6:]}: before {r['uptime_before']} | after {r['uptime_after']}")
        lines.append(f"recall measured on {rows[0]['recall_queries']} sampled queries against exact IndexFlatIP")
        name = f"scan_scale_{a.figure}{a.tag}.txt"
    niced = f"nice -n {os.nice(0)} " if os.nice(0) else ""
    cmd = f"{niced}python bench/scan_scale.py " + " ".join(sys.argv[1:])
    text = "\n".join([f"command: {cmd}", *lines, "", "raw: " + json.dumps(rows)]) + "\n"
    (RESULTS / name).write_text(text)
    print(text)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
