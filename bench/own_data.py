"""Training on a user's own embeddings: which head and learning rate keep (and add to) what they know.

A ``pairs`` folder holds embeddings that already rank their labelled pairs. This trains each head
(``mlp``: random init, the old behaviour; ``linear`` and ``residual``: start from the embeddings,
:mod:`fnlab.models.heads`) at several learning rates through the same path as
``fnlab train --dataset pairs --root FOLDER`` (default sampler, queue, warm-up, 5 epochs, kept epoch
by labelled validation rSum), and prints the test split's rSum of the raw embeddings beside the
trained runs', with the relevant rSum where the folder has ground truth (planted duplicates).

Folders:
- ``planted-S`` / ``planted-L``: a clustered space, documents = cluster centre + noise, queries =
  noisy copies of their documents, a share of documents duplicated (the duplicates are the false
  negatives, in ``relevance.csv``); 64-d; 200 / 3000 queries.
- ``text-S`` / ``text-L``: standard-library docstrings (``bench/real_text.py``: query = first sentence,
  document = the rest, 10% of documents copied), MiniLM embeddings (384-d) on both sides; 300 / 3000
  queries. ``text-S64``: the same 300 reduced to 64-d by PCA fitted on the documents (the size of the
  folder in issue 24).

    python bench/own_data.py                          # every folder, heads mlp/linear/residual, lr 2e-3 5e-4 1e-4
    python bench/own_data.py --folders text-S --seeds 0 1 2 --lrs 2e-3
    python bench/own_data.py --write my_folder --docs 300     # a folder to try fnlab train/scan on
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

CACHE = Path(".fnlab_cache") / "own_data"


def planted_folder(root: Path, n_queries: int, *, dim: int = 64, clusters: int = 20, spread: float = 0.6,
                   query_noise: float = 0.35, distort: float = 0.0, dup_share: float = 0.1, seed: int = 0) -> Path:
    """A clustered ``pairs`` folder whose raw embeddings already rank the labelled pairs well.

    Documents are cluster centres plus noise; a share of them is duplicated (a near-copy); every document
    (original or copy) has one query, a noisy copy of it, seen through a fixed linear distortion
    ``I + distort G`` (``G`` Gaussian, so a trained map has something to learn). A query's false
    negatives are its document's duplicates (``relevance.csv``); a document and its copies share a split.
    """
    rng = np.random.default_rng(seed)
    n_orig = int(round(n_queries / (1 + dup_share)))
    centres = rng.standard_normal((clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    docs = centres[rng.integers(0, clusters, n_orig)] + spread * rng.standard_normal((n_orig, dim)) / np.sqrt(dim)
    copies = rng.choice(n_orig, size=n_queries - n_orig, replace=False)
    group = np.concatenate([np.arange(n_orig), copies])
    docs = np.concatenate([docs, docs[copies] + 0.05 * rng.standard_normal((len(copies), dim)) / np.sqrt(dim)])
    warp = np.eye(dim) + distort * rng.standard_normal((dim, dim)) / np.sqrt(dim)
    queries = docs @ warp + query_noise * rng.standard_normal(docs.shape) / np.sqrt(dim)
    split = rng.choice(["train", "val", "test"], size=n_orig, p=[0.7, 0.15, 0.15])[group]
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "a.npy", docs.astype(np.float32))
    np.save(root / "b.npy", queries.astype(np.float32))
    pd.DataFrame({"b": np.arange(len(docs)), "a": np.arange(len(docs)), "split": split,
                  "text": [f"query {i}" for i in range(len(docs))]}).to_csv(root / "pairs.csv", index=False)
    rel = [(i, j) for i in range(len(docs)) for j in np.flatnonzero(group == group[i]) if j != i]
    pd.DataFrame(rel, columns=["b", "a"]).to_csv(root / "relevance.csv", index=False)
    return root


def text_folder(root: Path, n_docs: int, *, pca_dim: int | None = None, plant: float = 0.1, seed: int = 0) -> Path:
    """Docstring queries and documents, MiniLM on both sides, 10% of documents duplicated."""
    from real_text_train import write_pairs

    if not (root / "relevance.csv").exists():
        write_pairs(root, n_docs, plant, seed)
        if pca_dim:
            a, b = np.load(root / "a.npy"), np.load(root / "b.npy")
            mean = a.mean(0)
            _, _, vt = np.linalg.svd(a - mean, full_matrices=False)
            np.save(root / "a.npy", ((a - mean) @ vt[:pca_dim].T).astype(np.float32))
            np.save(root / "b.npy", ((b - mean) @ vt[:pca_dim].T).astype(np.float32))
    return root


def write_text_pairs(root: Path, n_docs: int, *, plant: float = 0.1, pca_dim: int | None = None,
                     seed: int = 0) -> dict:
    """A user's folder as they would write it: docstring queries and documents with their texts on both
    sides (``text``, ``a_text``), MiniLM embeddings (384-d, or ``pca_dim`` by PCA fitted on the documents),
    a share ``plant`` of documents copied (a copy is a false negative of its original's query; ground truth in
    ``relevance.csv``), documents of one text in one split."""
    from real_text import stdlib_docstrings

    from fnlab.data.minilm import embed_texts

    pairs = stdlib_docstrings(n_docs)
    queries, docs = [q for q, _ in pairs], [d for _, d in pairs]
    rng = np.random.default_rng(seed)
    copies = rng.choice(len(docs), size=int(plant * len(docs)), replace=False)
    corpus = docs + [docs[i] for i in copies]
    by_text: dict[str, list[int]] = {}
    for j, t in enumerate(corpus):
        by_text.setdefault(t, []).append(j)
    groups = {t: g for g, t in enumerate(by_text)}
    split_of_group = rng.choice(["train", "val", "test"], size=len(groups), p=[0.7, 0.15, 0.15])
    # every document gets a query: copies are labelled with their original's query text too (a second user
    # asking the same thing), so each lands in its split and carries its text
    q_text = queries + [queries[i] for i in copies]
    a_emb, b_emb = embed_texts(corpus), embed_texts(q_text)
    if pca_dim:
        mean = a_emb.mean(0)
        _, _, vt = np.linalg.svd(a_emb - mean, full_matrices=False)
        a_emb, b_emb = ((a_emb - mean) @ vt[:pca_dim].T), ((b_emb - mean) @ vt[:pca_dim].T)
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "a.npy", a_emb.astype(np.float32))
    np.save(root / "b.npy", b_emb.astype(np.float32))
    pd.DataFrame({"b": np.arange(len(corpus)), "a": np.arange(len(corpus)), "text": q_text, "a_text": corpus,
                  "split": [split_of_group[groups[d]] for d in corpus]}).to_csv(root / "pairs.csv", index=False)
    rel = [(i, j) for i, d in enumerate(corpus) for j in by_text[d] if j != i]
    pd.DataFrame(rel, columns=["b", "a"]).to_csv(root / "relevance.csv", index=False)
    return {"queries": len(q_text), "documents": len(corpus), "copies": len(copies), "false_negatives": len(rel)}


FOLDERS = {
    "planted-S": lambda: planted_folder(CACHE / "planted_200", 200, query_noise=1.5, distort=1.0),
    "planted-L": lambda: planted_folder(CACHE / "planted_3000", 3000, query_noise=1.5, distort=1.0),
    "text-S": lambda: text_folder(CACHE / "text_300", 300),
    "text-S64": lambda: text_folder(CACHE / "text_300_pca64", 300, pca_dim=64),
    "text-L": lambda: text_folder(CACHE / "text_3000", 3000),
}


def raw_eval(root: Path) -> dict:
    """Test-split retrieval of the raw embeddings (cosine), as ``eval.json`` reports a run's."""
    from fnlab import data
    from fnlab.analysis.evaluate import evaluate_embeddings
    from fnlab.retrieval.similarity import normalize

    ds = data.load("pairs", root=str(root), split="test")
    return evaluate_embeddings(normalize(ds.a_inputs.astype(np.float32)), normalize(ds.b_inputs.astype(np.float32)),
                               ds)


def run_one(root: Path, head: str, lr: float, seed: int, epochs: int) -> dict:
    import fnlab.models.dual as dual
    from fnlab.training.train import TrainConfig, train

    old = dual.default_head
    dual.default_head = lambda ds: head  # the head a pairs folder gets, for this measurement
    try:
        out = train(TrainConfig(dataset="pairs", dataset_root=str(root), lr=lr, seed=seed, epochs=epochs,
                                num_threads=1))
    finally:
        dual.default_head = old
    ev = out["eval"]
    return {"rsum": ev["recall"]["rsum"],
            "relevant_rsum": (ev.get("relevant_recall") or {}).get("rsum", float("nan")),
            "best_epoch": ev["best_epoch"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folders", nargs="+", default=list(FOLDERS), choices=list(FOLDERS))
    ap.add_argument("--heads", nargs="+", default=["mlp", "linear", "residual"])
    ap.add_argument("--lrs", type=float, nargs="+", default=[2e-3, 5e-4, 1e-4])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--write", metavar="DIR", default=None,
                    help="only write a text folder as a user would (texts on both sides) into DIR and stop")
    ap.add_argument("--docs", type=int, default=300, help="documents of --write (before the copies)")
    ap.add_argument("--pca-dim", type=int, default=None, help="--write: reduce the MiniLM embeddings to this size")
    args = ap.parse_args(argv)
    if args.write:
        print(write_text_pairs(Path(args.write), args.docs, pca_dim=args.pca_dim))
        return 0

    from fnlab import data

    rows = []
    for fname in args.folders:
        root = FOLDERS[fname]()
        tr = data.load("pairs", root=str(root), split="train")
        te = data.load("pairs", root=str(root), split="test")
        raw = raw_eval(root)
        raw_rel = (raw.get("relevant_recall") or {}).get("rsum", float("nan"))
        print(f"{fname}: {tr.n_b} train / {te.n_b} test queries, d_a={tr.a_inputs.shape[1]}, "
              f"d_b={tr.b_inputs.shape[1]}; raw test rSum {raw['recall']['rsum']:.1f}, relevant {raw_rel:.1f}",
              flush=True)
        rows.append({"folder": fname, "head": "raw", "lr": 0.0, "seed": -1, "rsum": raw["recall"]["rsum"],
                     "relevant_rsum": raw_rel, "best_epoch": 0, "seconds": 0.0})
        for head in args.heads:
            for lr in args.lrs:
                for seed in args.seeds:
                    t0 = time.perf_counter()
                    r = run_one(root, head, lr, seed, args.epochs)
                    rows.append({"folder": fname, "head": head, "lr": lr, "seed": seed, **r,
                                 "seconds": time.perf_counter() - t0})
                    print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    g = df.groupby(["folder", "head", "lr"], sort=False)
    summary = g[["rsum", "relevant_rsum"]].mean().round(1).astype(str) + " +- " + \
        g[["rsum", "relevant_rsum"]].std().fillna(0.0).round(1).astype(str)
    summary["best_epochs"] = g["best_epoch"].apply(lambda s: " ".join(str(int(v)) for v in s))
    print(summary.to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
