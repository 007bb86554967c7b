"""The training posterior with a second view of a folder's texts (`fnlab train --view-encoder minilm`) and without.

A user's ``pairs`` folder has texts on both sides (``text``, ``a_text``) and embeddings from the user's own model.
Where that model cannot tell a near-copy of a document from a different document equally near it, a sentence
encoder that training did not shape can. Two folders, both with ground truth (``relevance.csv``):

- ``planted``: shape captions; every document has its query; a quarter of the documents have a near-copy (its text
  with accented vowels, "résumé" for "resume": another text even after normalisation, so neither the exact-duplicate
  labels nor the content keys know it; one text to MiniLM, whose tokenizer strips accents) and a decoy (another
  caption), both equally near the document in the folder's 32-d embeddings, each with a query of its own. The
  near-copies and their queries are the false negatives.
- ``docstrings``: standard-library docstrings (query = first sentence, document = the rest); 20% of the documents
  have a near-copy (lower-cased, punctuation dropped) with a query of its own (the original's, lower-cased); the
  folder's embeddings are MiniLM reduced to 16-d by PCA (a weaker model than the view). Documents the library
  repeats word for word answer each other's queries too.

Each folder is trained as ``fnlab train --dataset pairs --root FOLDER --sampler fne --epochs 3`` with and without
``--view-encoder minilm`` (same seeds), and the run's own posterior (``eval.json``, the test split) is scored
against the ground truth, beside raw similarity: AUROC and AP over every unlabelled pair and over each query's top 10, ECE, the prior the
posterior estimated on the validation split against that split's true one, test relevant rSum, and the run's seconds
(texts are encoded once per machine, ``fnlab.data.view_cache``: the first run with the view pays the encoding, later
runs on the same folder read it).

    python bench/train_view.py                       # both folders, seeds 0 1 2
    python bench/train_view.py --folders planted --seeds 0
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


#: a near-copy of a text that the content keys do not join (accents are kept by the normalisation) and MiniLM does
ACCENTED = str.maketrans("aeiou", "áéíóú")


def planted_folder(root: Path, n: int = 240, k: int = 60, *, d: int = 32, seed: int = 0, noise: float = 0.3) -> Path:
    """``n`` documents (shipped shape captions), each with its query; ``k`` of them have a near-copy (accented vowels)
    and a decoy (another caption), equally near the document in the embeddings, each with a query of its own; a
    copy and a decoy sit in their document's split. Ground truth: document <-> near-copy, both ways."""
    from fnlab.data.pretrained import CAPTION_TABLE, shipped_root

    with np.load(shipped_root() / CAPTION_TABLE, allow_pickle=False) as z:
        texts = [str(t) for t in z["texts"]]
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(texts))
    doc_t = [texts[i] for i in pick[:n]]
    decoy_t = [texts[i] for i in pick[n:n + k]]
    docs = rng.standard_normal((n, d)).astype(np.float32)
    a = np.concatenate([docs, *[docs[:k] + noise * rng.standard_normal((k, d)).astype(np.float32) for _ in range(2)]])
    b = a + noise * rng.standard_normal(a.shape).astype(np.float32)
    a_text = doc_t + [t.translate(ACCENTED) for t in doc_t[:k]] + decoy_t
    q_text = [f"which one shows {t}?" for t in doc_t] + [f"which picture shows {t}?" for t in doc_t[:k]] + [
        f"which one shows {t}?" for t in decoy_t]
    split = rng.choice(["train", "val", "test"], size=n, p=[0.5, 0.25, 0.25])
    split = np.concatenate([split, split[:k], split[:k]])
    _write(root, a, b, q_text, a_text, split, content=doc_t + doc_t[:k] + decoy_t)
    return root


def docstring_folder(root: Path, n: int = 1500, *, share: float = 0.2, dim: int = 16, seed: int = 0) -> Path:
    """Standard-library docstrings (``bench/real_text.py``), a share of documents near-copied (lower-cased,
    punctuation dropped) with the original's query lower-cased; embeddings: MiniLM reduced to ``dim`` by PCA."""
    from real_text import stdlib_docstrings

    from fnlab.data.minilm import embed_texts

    pairs = stdlib_docstrings(n)
    queries, docs = [q for q, _ in pairs], [d for _, d in pairs]
    rng = np.random.default_rng(seed)
    copied = np.sort(rng.choice(len(docs), size=int(share * len(docs)), replace=False))
    a_text = docs + [re.sub(r"[^\w\s]", "", docs[i]).lower() for i in copied]
    q_text = queries + [queries[i].lower() for i in copied]
    a, b = embed_texts(a_text), embed_texts(q_text)
    mean = a.mean(0)
    _, _, vt = np.linalg.svd(a - mean, full_matrices=False)
    a, b = (a - mean) @ vt[:dim].T, (b - mean) @ vt[:dim].T
    split = rng.choice(["train", "val", "test"], size=len(docs), p=[0.6, 0.2, 0.2])
    split = np.concatenate([split, split[copied]])
    _write(root, a, b, q_text, a_text, split, content=docs + [docs[i] for i in copied])
    return root


def _write(root: Path, a, b, q_text, a_text, split, *, content: list[str]) -> None:
    """The folder; document ``j`` answers query ``j`` (labelled) and every query whose document has the same
    ``content`` (the text it was copied from): planted near-copies, and documents the corpus itself repeats word for
    word (the ground truth, ``relevance.csv``)."""
    m = len(a_text)
    root.mkdir(parents=True)
    np.save(root / "a.npy", np.asarray(a, dtype=np.float32))
    np.save(root / "b.npy", np.asarray(b, dtype=np.float32))
    pd.DataFrame({"b": np.arange(m), "a": np.arange(m), "text": q_text, "a_text": a_text, "split": split}).to_csv(
        root / "pairs.csv", index=False)
    groups: dict[str, list[int]] = {}
    for j, t in enumerate(content):
        groups.setdefault(t, []).append(j)
    rel = [(q, j) for q in range(m) for j in groups[content[q]]]
    pd.DataFrame(rel, columns=["b", "a"]).to_csv(root / "relevance.csv", index=False)


FOLDERS = {"planted": planted_folder, "docstrings": docstring_folder}


def _truth(folder: Path) -> dict:
    """The test split's queries and false-negative pairs, and the true prior of the validation split, where the run's
    posterior is fitted (false-negative pairs / unlabelled pairs, queries against documents)."""
    from fnlab import data as fdata

    out = {}
    for split in ("test", "val"):
        ds = fdata.load("pairs", root=folder, split=split)
        lab, rel = ds.labelled_matrix().astype(bool), ds.relevance.astype(bool)
        n_fn = int((rel.astype(np.int8) - lab.astype(np.int8)).maximum(0).nnz)
        out.update({f"{split}_queries": ds.n_b, f"{split}_fn_pairs": n_fn,
                    f"{split}_prior": n_fn / (ds.n_a * ds.n_b - lab.nnz)})
    return {"test_queries": out["test_queries"], "test_fn_pairs": out["test_fn_pairs"], "true_prior": out["val_prior"]}


def _run(folder: Path, out: Path, seed: int, view: bool, epochs: int) -> dict:
    cmd = [sys.executable, "-m", "fnlab.cli", "train", "--dataset", "pairs", "--root", str(folder), "--sampler", "fne",
           "--epochs", str(epochs), "--seed", str(seed), "--no-progress", "--no-pages", "--out", str(out)]
    if view:
        cmd += ["--view-encoder", "minilm"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    sec = time.perf_counter() - t
    ev = json.loads((out / "eval.json").read_text())
    fd, top = ev["fn_detection"], ev.get("fn_detection_topk") or {}
    return {"auroc": fd["auroc"], "ap": fd["ap"], "ece": fd["ece"], "top_auroc": top.get("auroc"),
            "top_ap": top.get("ap"), "sim_auroc": fd["similarity_auroc"], "sim_ap": fd["similarity_ap"],
            "sim_top_auroc": top.get("similarity_auroc"), "sim_top_ap": top.get("similarity_ap"), "prior": fd["prior_estimated"],
            "status": fd["status"], "relevant_rsum": (ev.get("relevant_recall") or {}).get("rsum"), "seconds": sec}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folders", nargs="+", default=list(FOLDERS), choices=list(FOLDERS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.folders:
            folder = FOLDERS[name](Path(tmp) / name)
            truth = _truth(folder)
            print(f"{name}: {truth['test_queries']} test queries, {truth['test_fn_pairs']} false-negative pairs; "
                  f"true prior of the validation split (where the posterior is fitted) {truth['true_prior']:.2e}",
                  flush=True)
            for seed in args.seeds:
                for view in (False, True):
                    r = _run(folder, Path(tmp) / "runs" / f"{name}-{seed}-{int(view)}", seed, view, args.epochs)
                    rows.append({"folder": name, "view": "minilm" if view else "-", "seed": seed, **r, **truth})
                    print(f"  seed {seed} view {rows[-1]['view']:>6}: AP {r['ap']:.3f} AUROC {r['auroc']:.3f} "
                          f"top-10 AP {r['top_ap']:.3f} prior {r['prior']:.2e} ECE {r['ece']:.3f} "
                          f"rel rSum {r['relevant_rsum']:.1f} {r['seconds']:.1f} s", flush=True)
    df = pd.DataFrame(rows)
    cols = ["auroc", "ap", "top_auroc", "top_ap", "sim_auroc", "sim_ap", "sim_top_auroc", "sim_top_ap", "ece", "prior",
            "true_prior", "relevant_rsum", "seconds"]
    summary = df.groupby(["folder", "view"])[cols].agg(["mean", "std"])
    print()
    print(f"`python bench/train_view.py --folders {' '.join(args.folders)} --seeds {' '.join(map(str, args.seeds))} "
          f"--epochs {args.epochs}` (mean and sd over seeds; the run's posterior on the test split)\n")
    print("| folder | view | AUROC (similarity) | AP (similarity) | top-10 AUROC (similarity) | top-10 AP (similarity) "
          "| ECE | prior (true, val) | relevant rSum | seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (folder, view), r in summary.iterrows():
        def f(c, fmt=".3f", r=r):
            return f"{r[(c, 'mean')]:{fmt}} ± {r[(c, 'std')]:{fmt}}" if len(args.seeds) > 1 else f"{r[(c, 'mean')]:{fmt}}"
        def sim(c, r=r):
            return f" ({r[(c, 'mean')]:.3f})"

        print(f"| {folder} | {view} | {f('auroc')}{sim('sim_auroc')} | {f('ap')}{sim('sim_ap')} | "
              f"{f('top_auroc')}{sim('sim_top_auroc')} | {f('top_ap')}{sim('sim_top_ap')} | {f('ece')} | "
              f"{r[('prior', 'mean')]:.2e} ({r[('true_prior', 'mean')]:.2e}) | {f('relevant_rsum', '.1f')} | "
              f"{f('seconds', '.1f')} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
