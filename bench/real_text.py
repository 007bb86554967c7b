"""False-negative detection on real text embedded with MiniLM (all-MiniLM-L6-v2, offline).

The corpus is real English prose that ships with every Python: the docstrings of the standard
library. Each docstring of two or more sentences becomes one retrieval pair: the query is its first
sentence, the labelled document the rest. Exact duplicates are the known false negatives, as in
web-scale corpora: documents with the same text as a query's labelled document are unlabelled
matches. The standard library has some of its own (shared docstrings); ``--plant`` adds more by
copying a share of the documents, as a crawl would.

For each posterior estimator the scan's table and a uniform sample of the pool are scored against
that ground truth next to ranking by raw similarity (AUROC, AP), with ECE and the estimated prior
next to the true one.

    python bench/real_text.py                 # ~3 min on 2 cores (embedding dominates)
    python bench/real_text.py --plant 0.1 --max-docs 3000
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

SKIP = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "__hello__", "__phello__", "lib2to3",
        "ensurepip", "venv", "pydoc_data", "test", "msilib", "winreg", "winsound", "_winapi", "nt"}


#: third-party libraries whose documentation joins the standard library's in the larger corpus
LIBRARIES = ("numpy", "scipy", "pandas", "sklearn")
_LIBRARY_SKIP = ("tests", "_test", "conftest", "f2py", "__main__", "distutils", "setup", "_build_utils", "testing")


def library_modules() -> list[str]:
    """The standard library's module names, then every module of :data:`LIBRARIES` (tests and build tools left out)."""
    import pkgutil

    names = [m for m in sorted(sys.stdlib_module_names) if m not in SKIP and not m.startswith("_")]
    for pkg in LIBRARIES:
        try:
            mod = importlib.import_module(pkg)
        except ImportError:
            continue
        names.append(pkg)
        names += [m.name for m in pkgutil.walk_packages(mod.__path__, pkg + ".", onerror=lambda _: None)
                  if not any(x in m.name for x in _LIBRARY_SKIP)]
    return names


def stdlib_docstrings(max_docs: int, modules: list[str] | None = None) -> list[tuple[str, str]]:
    """``(first sentence, rest)`` of standard-library docstrings with at least two sentences (``modules``: these
    modules instead, e.g. :func:`library_modules`)."""
    out, seen_names = [], set()
    for mod_name in (modules if modules is not None else sorted(sys.stdlib_module_names)):
        if mod_name in SKIP or mod_name.startswith("_"):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mod = importlib.import_module(mod_name)
        except BaseException:  # noqa: BLE001 - platform-specific modules, and library modules that exit on import
            continue
        objs = [mod] + [v for _, v in inspect.getmembers(mod) if inspect.isfunction(v) or inspect.isclass(v)]
        for cls in [o for o in objs if inspect.isclass(o)]:
            objs += [v for _, v in inspect.getmembers(cls) if inspect.isfunction(v)]
        for obj in objs:
            key = (getattr(obj, "__module__", ""), getattr(obj, "__qualname__", getattr(obj, "__name__", "")))
            if key in seen_names:
                continue
            seen_names.add(key)
            doc = inspect.getdoc(obj) or ""
            doc = re.sub(r"\s+", " ", doc).strip()
            parts = re.split(r"(?<=[.!?])\s+", doc, maxsplit=1)
            if len(parts) == 2 and len(parts[0]) > 20 and len(parts[1]) > 40:
                out.append((parts[0], parts[1][:600]))
            if len(out) >= max_docs:
                return out
    return out


def build(*, max_docs: int = 3000, plant: float = 0.05, seed: int = 0) -> dict:
    """The real-text retrieval problem: MiniLM embeddings of queries (first sentences) and documents
    (the rest, plus ``plant`` planted copies), the labelled pairs (query i -> document i), the ground
    truth (documents whose text equals the labelled document's) and the texts.

    Returns ``{"queries" [Nq, 384], "candidates" [Nc, 384], "positives", "truth" (sparse bool [Nq, Nc]),
    "query_texts", "candidate_texts", "copies", "embed_s"}``. Embeddings are cached under
    ``.fnlab_cache/`` by a hash of the texts.
    """
    import hashlib

    import scipy.sparse as sp

    from fnlab.data.minilm import embed_texts as encode_texts

    pairs = stdlib_docstrings(max_docs)
    queries = [q for q, _ in pairs]
    docs = [d for _, d in pairs]
    rng = np.random.default_rng(seed)
    copies = rng.choice(len(docs), size=int(plant * len(docs)), replace=False)
    corpus = docs + [docs[i] for i in copies]
    t_emb = time.perf_counter()
    key = hashlib.sha256("\x00".join(queries + ["\x01"] + corpus).encode()).hexdigest()[:16]
    cache = Path(".fnlab_cache") / f"real_text_{key}.npz"
    if cache.exists():  # embeddings of these exact texts, from an earlier run
        with np.load(cache, allow_pickle=False) as z:
            q_emb, c_emb = z["q"], z["c"]
    else:
        q_emb = encode_texts(queries)
        c_emb = encode_texts(corpus)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, q=q_emb, c=c_emb)
    by_text: dict[str, list[int]] = {}
    for j, t in enumerate(corpus):
        by_text.setdefault(t, []).append(j)
    rows = [i for i, d in enumerate(docs) for _ in by_text[d]]
    cols = [j for d in docs for j in by_text[d]]
    truth = sp.csr_matrix((np.ones(len(rows), bool), (rows, cols)), shape=(len(queries), len(corpus)))
    return {"queries": q_emb, "candidates": c_emb, "positives": _positives(len(queries), len(corpus)),
            "truth": truth, "query_texts": queries, "candidate_texts": corpus, "copies": copies,
            "embed_s": time.perf_counter() - t_emb}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-docs", type=int, default=3000)
    ap.add_argument("--plant", type=float, default=0.05, help="share of documents copied (exact duplicates)")
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench/results/real_text.md")
    args = ap.parse_args(argv)

    from sklearn.metrics import average_precision_score, roc_auc_score

    from fnlab import posterior as P
    from fnlab.analysis.evaluate import expected_calibration_error
    from fnlab.analysis.scan import scan

    t0 = time.perf_counter()
    data = build(max_docs=args.max_docs, plant=args.plant, seed=args.seed)
    q_emb, c_emb, t_emb = data["queries"], data["candidates"], data["embed_s"]
    queries, corpus, copies = data["query_texts"], data["candidate_texts"], data["copies"]
    docs = corpus[:len(queries)]
    rng = np.random.default_rng(args.seed)
    rng.choice(len(docs), size=int(args.plant * len(docs)), replace=False)  # the draw build() made
    # ground truth: a document is relevant to a query when its text equals the labelled document's
    tc = data["truth"].tocoo()
    truth = {(int(i), int(j)) for i, j in zip(tc.row, tc.col, strict=True) if i != j}
    positives = pd.DataFrame({"query": np.arange(len(queries)), "candidate": np.arange(len(queries))})
    n_pool = len(queries) * len(corpus) - len(queries)
    true_prior = len(truth) / n_pool
    lines = ["# False-negative detection on real text (MiniLM, stdlib docstrings)", "",
             f"`python bench/real_text.py --max-docs {args.max_docs} --plant {args.plant} --top-k {args.top_k} "
             f"--seed {args.seed}`", "",
             f"{len(queries)} queries, {len(corpus)} documents ({len(copies)} planted copies), {len(truth)} "
             f"false negatives (exact duplicates of the labelled document), true prior {true_prior:.2e}; "
             f"embedding {t_emb:.0f} s.", "",
             f"| estimator | prior (true {true_prior:.2e}) | top-k AUROC (similarity) | top-k AP (similarity) | top-k ECE | "
             "flagged p>0.5 (precision) | pool AUROC (similarity) | pool AP (similarity) | pool ECE | fit s |"
             ,
             "|---|---|---|---|---|---|---|---|---|---|"]
    pq = rng.integers(0, len(queries), 200_000)
    pc = rng.integers(0, len(corpus), 200_000)
    keep = pc != pq
    pq, pc = pq[keep], pc[keep]
    # every false negative joins the pool sample, weighted to its share (AP needs some positives)
    fq = np.array([i for i, _ in truth])
    fc = np.array([j for _, j in truth])
    y_pool = np.array([(a, b) in truth for a, b in zip(pq, pc, strict=True)])
    results = {}
    for name in P.available():
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = scan(q_emb, c_emb, positives, top_k=args.top_k, estimator=name, seed=args.seed)
        fit_s = time.perf_counter() - t
        tab = res.table
        y = np.array([(a, b) in truth for a, b in zip(tab["query"], tab["candidate"], strict=True)])
        p, s = tab["p_false_negative"].to_numpy(np.float64), tab["similarity"].to_numpy()
        p = np.nan_to_num(p, nan=0.0)
        ctx = P.PairContext(q_emb / np.linalg.norm(q_emb, axis=1, keepdims=True),
                            c_emb / np.linalg.norm(c_emb, axis=1, keepdims=True), _positives(len(queries), len(corpus)))
        qq, cc = np.r_[pq, fq], np.r_[pc, fc]
        yy = np.r_[y_pool, np.ones(fq.size, bool)]
        pp = np.nan_to_num(P.prob_false_negative(res.posterior, ctx.signals(qq, cc)).double().numpy(), nan=0.0)
        ss = ctx.similarity(qq, cc)
        row = {
            "prior": float(res.posterior.prior_pos),
            "topk_auroc": roc_auc_score(y, p), "topk_auroc_sim": roc_auc_score(y, s),
            "topk_ap": average_precision_score(y, p), "topk_ap_sim": average_precision_score(y, s),
            "topk_ece": expected_calibration_error(p, y),
            "pool_auroc": roc_auc_score(yy, pp), "pool_auroc_sim": roc_auc_score(yy, ss),
            "pool_ap": average_precision_score(yy, pp), "pool_ap_sim": average_precision_score(yy, ss),
            "pool_ece": expected_calibration_error(pp[: pq.size], yy[: pq.size]),
            "fit_s": fit_s, "signals": res.summary.get("signals"),
            "flagged": float((p > 0.5).mean()), "precision": float(y[p > 0.5].mean()) if (p > 0.5).any() else None,
            "notes": res.summary.get("warnings"),
        }
        results[name] = row
        precision = "-" if row["precision"] is None else f"{row['precision']:.2f}"
        lines.append(f"| {name} | {row['prior']:.2e} | {row['topk_auroc']:.3f} ({row['topk_auroc_sim']:.3f}) | "
                     f"{row['topk_ap']:.3f} ({row['topk_ap_sim']:.3f}) | {row['topk_ece']:.3f} | "
                     f"{row['flagged']:.1%} ({precision}) | "
                     f"{row['pool_auroc']:.3f} ({row['pool_auroc_sim']:.3f}) | {row['pool_ap']:.3f} "
                     f"({row['pool_ap_sim']:.3f}) | {row['pool_ece']:.4f} | {fit_s:.1f} |")
    lines += ["", "Pool: 200k uniform unlabelled pairs plus every false negative (for AUROC/AP; ECE on the uniform "
              "part only). Parentheses: ranking the same pairs by raw cosine similarity.",
              f"Total {time.perf_counter() - t0:.0f} s."]
    text = "\n".join(lines)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    return 0


def _positives(nq: int, nc: int):
    import scipy.sparse as sp

    return sp.csr_matrix((np.ones(nq, bool), (np.arange(nq), np.arange(nq))), shape=(nq, nc))


if __name__ == "__main__":
    raise SystemExit(main())
