"""False-negative detection on text nobody here wrote: the descriptions of the machine's installed Debian packages.

Every package has a one-line synopsis and a long description, written by its maintainers. Each package becomes one
retrieval pair: the query is its synopsis, the labelled document its long description. Packages built from one
source often share their long description word for word (``libfoo1`` and ``libfoo-dev``), so the natural exact
duplicates of a query's labelled document are its known false negatives: unlabelled matches nobody planted.

Both sides are embedded with MiniLM (all-MiniLM-L6-v2, offline; it reads at most 256 tokens, so two long
descriptions that differ only after that are one embedding and count as a near-copy the ground truth does not
know). The scan runs as a user would run ``fnlab scan``: on the embeddings alone, with ``--texts`` (near-duplicate
texts and the text view), and on the same data written as a ``pairs`` folder (``--dataset-dir``: the scan reads the
folder's own texts, ``text`` and ``a_text``); each is scored on the scanned rows with the calibration suite's metrics,
next to raw similarity.

    python bench/package_descriptions.py                       # reads `dpkg-query`
    python bench/package_descriptions.py --from status.txt     # a saved `dpkg-query -W -f='${Package}\\t${Description}\\n---END---\\n'`

The set of installed packages differs between machines: the results file records how many there were.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

QUERY_FORMAT = "${Package}\\t${Description}\\n---END---\\n"


def read_descriptions(text: str) -> list[tuple[str, str, str]]:
    """``(package, synopsis, long description)`` of every package with a long description, from ``dpkg-query``'s
    output in :data:`QUERY_FORMAT` (the long description's lines joined, its ``.`` paragraph marks left out)."""
    out = []
    for block in text.split("---END---\n"):
        if not block.strip():
            continue
        head, _, rest = block.partition("\n")
        package, _, synopsis = head.partition("\t")
        long = " ".join(line.strip() for line in rest.splitlines() if line.strip() not in ("", ".")).strip()
        if long and synopsis.strip():
            out.append((package, synopsis.strip(), long))
    return out


def build(descriptions: list[tuple[str, str, str]]) -> dict:
    """The retrieval data: queries = synopses, candidates = long descriptions (MiniLM, ``[N, 384]`` each), query i
    labelled with document i, and the truth: every document with the same long description as document i."""
    from fnlab.data.minilm import embed_texts

    synopses, documents = [d[1] for d in descriptions], [d[2] for d in descriptions]
    n = len(descriptions)
    groups = collections.defaultdict(list)
    for i, doc in enumerate(documents):
        groups[doc].append(i)
    rows, cols = zip(*[(i, j) for g in groups.values() for i in g for j in g], strict=True)
    truth = sp.csr_matrix((np.ones(len(rows), bool), (rows, cols)), shape=(n, n))
    return {"queries": embed_texts(synopses).astype(np.float32), "candidates": embed_texts(documents).astype(np.float32),
            "positives": sp.eye(n, n, format="csr", dtype=bool), "truth": truth,
            "query_texts": synopses, "candidate_texts": documents,
            "duplicate_groups": sum(len(g) > 1 for g in groups.values())}


def write_folder(root: Path, data: dict) -> Path:
    """The data as a user's ``pairs`` folder: ``a.npy`` (documents), ``b.npy`` (synopses), ``pairs.csv`` (package i's
    synopsis labelled with its document, both texts) and ``relevance.csv`` (the identical descriptions)."""
    import pandas as pd

    root.mkdir(parents=True)
    np.save(root / "a.npy", data["candidates"])
    np.save(root / "b.npy", data["queries"])
    n = data["queries"].shape[0]
    pd.DataFrame({"b": np.arange(n), "a": np.arange(n), "text": data["query_texts"],
                  "a_text": data["candidate_texts"]}).to_csv(root / "pairs.csv", index=False)
    truth = data["truth"].tocoo()
    pd.DataFrame({"b": truth.row, "a": truth.col}).to_csv(root / "relevance.csv", index=False)
    return root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="source", default=None, help="a saved dpkg-query output (default: run dpkg-query)")
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--out", default=str(HERE / "results" / "package_descriptions.md"))
    args = ap.parse_args(argv)
    if args.source:
        text = Path(args.source).read_text(encoding="utf-8")
    else:
        text = subprocess.run(["dpkg-query", "-W", "-f", QUERY_FORMAT], capture_output=True, text=True, check=True).stdout
    data = build(read_descriptions(text))

    from calibration import scan_metrics

    import fnlab.data
    from fnlab.analysis.scan import scan, scan_dataset
    from fnlab.posterior import pair_member

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_folder(Path(tmp) / "packages", data)
        for label, kw in (("embeddings", {}),
                          ("+ --texts", {"query_texts": data["query_texts"], "candidate_texts": data["candidate_texts"]}),
                          ("pairs folder (--dataset-dir)", {"folder": folder})):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if "folder" in kw:  # what `fnlab scan --dataset-dir FOLDER` runs
                    ds = fnlab.data.load("pairs", root=kw["folder"], split="all")
                    res = scan_dataset(np.load(kw["folder"] / "a.npy"), np.load(kw["folder"] / "b.npy"), ds,
                                       top_k=args.top_k, seed=0)
                else:
                    res = scan(data["queries"], data["candidates"], data["positives"], top_k=args.top_k, seed=0, **kw)
            m = scan_metrics(res, data["truth"], data["positives"])
            y = res.table["p_false_negative"].to_numpy() > 0.5
            truth = data["truth"].copy()
            truth.sort_indices()
            wrong = res.table[y & ~pair_member(truth, res.table["query"].to_numpy(), res.table["candidate"].to_numpy())]
            m["wrong_above_0.5"] = [(int(q), int(c), data["query_texts"][q], data["query_texts"][c])
                                    for q, c in zip(wrong["query"], wrong["candidate"], strict=True)]
            results.append((label, m))

    n = data["queries"].shape[0]
    fmt = lambda v, s=".3f": "-" if v is None else format(v, s)  # noqa: E731
    lines = ["# False negatives in Debian package descriptions (`python bench/package_descriptions.py`)", "",
             f"{n} installed packages with a long description; query = synopsis, labelled document = its long "
             f"description; {data['duplicate_groups']} groups of packages share a long description word for word, "
             f"{int(data['truth'].nnz) - n} unlabelled (query, document) matches. The scan's top {args.top_k} a query "
             f"({n * args.top_k} rows), `pu` posterior:", "",
             "| input | prior (true) | status | FN rows | mean P | ECE | p > 0.5: flagged, precision, recall "
             "| p > 0.9: flagged, precision | AP (similarity) | AUROC (similarity) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for label, m in results:
        lines.append(f"| {label} | {m['prior']:.2e} ({m['true_prior']:.2e}) | {m['status']} | {m['fn_rows']} | "
                     f"{m['mean_p']:.2e} | {m['ece']:.4f} | {m['flagged_0.5']}, {fmt(m['precision_0.5'])}, "
                     f"{fmt(m['recall_0.5'])} | {m['flagged_0.9']}, {fmt(m['precision_0.9'])} | "
                     f"{fmt(m['ap'])} ({fmt(m['ap_sim'])}) | {fmt(m['auroc'])} ({fmt(m['auroc_sim'])}) |")
    lines += ["", "Rows at p > 0.5 that the ground truth (identical long descriptions) does not call matches:", ""]
    for label, m in results:
        for q, c, sq, sc in m["wrong_above_0.5"]:
            lines.append(f"- {label}: query {q} ({sq!r}) -> document {c} (the document of {sc!r})")
    report = "\n".join(lines) + "\n"
    Path(args.out).write_text(report, encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
