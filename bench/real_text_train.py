"""Training on real text embedded with MiniLM: does FNE keep hard negatives free of false negatives there?

The corpus of ``bench/real_text.py``: standard-library docstrings, query = first sentence, labelled
document = the rest, a share of the documents copied (exact duplicates, as in a crawl); a query's
false negatives are the copies of its labelled document. This writes that corpus in fnlab's ``pairs``
layout (MiniLM embeddings on both sides, the duplicates as ``relevance.csv``) under ``.fnlab_cache``,
trains projection heads with each sampler as the headline does (``bench/reproduce.py``: momentum queue,
one VSE++ warm-up epoch, the kept epoch by relevant validation rSum) and prints relevant rSum on test
and the sampled false-negative rate.

    python bench/real_text_train.py             # random, hardest, semihard, simans, fne calibrated, oracle; seeds 0 1 2
    python bench/real_text_train.py --plant 0.2 --seeds 0 1 2
    python bench/real_text_train.py --samplers in_batch+asl in_batch+wmse hasa guided --seeds 0
    python bench/real_text_train.py --samplers cet -o pooling_depth=20 --seeds 0   # labels only in a judged pool

Rows are the registry's samplers (``fnlab.samplers.variants``); ``SAMPLER+LOSS`` trains a sampler's pool with
another loss; ``-o KEY=VALUE`` passes a ``pairs`` loader option (the pooling-bias simulation).
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

from fnlab.samplers import variants  # noqa: E402

#: label -> (sampler, fixed params), from the registry (as bench/reproduce.py)
SAMPLERS = variants(separator=" ")


def _embedded(queries: list[str], docs: list[str], embed) -> tuple[np.ndarray, np.ndarray]:
    """MiniLM embeddings of the queries and documents, cached under ``.fnlab_cache`` by a hash of the texts (the
    corpora of every share of copies embed the same documents)."""
    import hashlib

    key = hashlib.sha256("\x00".join(queries + ["\x01"] + docs).encode()).hexdigest()[:16]
    cache = Path(".fnlab_cache") / f"docstrings_{key}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            return z["q"], z["d"]
    q, d = embed(queries), embed(docs)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, q=q, d=d)
    return q, d


def write_pairs(root: Path, max_docs: int, plant: float, seed: int, *, corpus: str = "stdlib",
                split_shares: tuple[float, float, float] = (0.7, 0.15, 0.15), copy_queries: bool = False) -> dict:
    """The docstring corpus in the ``pairs`` layout; returns its sizes. ``corpus``: ``"stdlib"`` (the standard
    library's docstrings) or ``"libraries"`` (those plus numpy's, scipy's, pandas' and scikit-learn's);
    ``split_shares``: train, validation and test shares of the documents.

    ``copy_queries``: each planted copy is also an entry of its own, labelled with its original's query (a
    document indexed twice). Without it a copy has no pair: it sits in the train split's candidates but is never a
    labelled positive, so a training pool (the momentum queue holds labelled positives) never holds it, and the
    planted copies change nothing in training; nor do they reach the validation or test split. A copy's entry has
    its original's query embedding but no query text: with the text, training's text identity
    (:mod:`fnlab.data.identity`) would make the two entries one query and every copy a labelled positive before any
    sampler saw it, so the copies would measure nothing."""
    from real_text import library_modules, stdlib_docstrings

    from fnlab.data.minilm import embed_texts

    pairs = stdlib_docstrings(max_docs, library_modules() if corpus == "libraries" else None)
    if corpus == "libraries":  # one pair per distinct query sentence (libraries repeat their summaries)
        seen: set[str] = set()
        pairs = [(q, d) for q, d in pairs if not (q in seen or seen.add(q))]
    queries, docs = [q for q, _ in pairs], [d for _, d in pairs]
    rng = np.random.default_rng(seed)
    copies = rng.choice(len(docs), size=int(plant * len(docs)), replace=False)
    texts = docs + [docs[i] for i in copies]
    by_text: dict[str, list[int]] = {}
    for j, t in enumerate(texts):
        by_text.setdefault(t, []).append(j)
    # the entries: every document with its query, then (copy_queries) every copy with its original's query
    entry_doc = np.concatenate([np.arange(len(docs)), copies]).astype(np.int64) if copy_queries \
        else np.arange(len(docs))
    entry_a = np.arange(len(entry_doc))  # entry i's labelled candidate is row i of a.npy (originals, then copies)
    rel = [(i, j) for i, d in enumerate(entry_doc) for j in by_text[docs[d]]]
    root.mkdir(parents=True, exist_ok=True)
    q_emb, d_emb = _embedded(queries, docs, embed_texts)
    np.save(root / "b.npy", q_emb[entry_doc])
    np.save(root / "a.npy", d_emb[np.concatenate([np.arange(len(docs)), copies]).astype(np.int64)])  # copies: same rows
    if corpus == "libraries":  # the same split of the documents whatever the share of copies
        rng = np.random.default_rng([seed, 1])
    # every document with the same text in the same split, so a query's duplicates are candidates beside it
    groups = {t: g for g, t in enumerate(by_text)}
    split_of_group = rng.choice(["train", "val", "test"], size=len(groups), p=list(split_shares))
    text = [queries[d] if i < len(docs) else "" for i, d in enumerate(entry_doc)]  # a copy's entry: no text
    pd.DataFrame({"b": np.arange(len(entry_doc)), "a": entry_a, "text": text,
                  "split": [split_of_group[groups[docs[d]]] for d in entry_doc]}).to_csv(root / "pairs.csv",
                                                                                       index=False)
    pd.DataFrame(rel, columns=["b", "a"]).to_csv(root / "relevance.csv", index=False)
    return {"queries": len(entry_doc), "documents": len(texts), "copies": len(copies),
            "false_negatives": len(rel) - len(entry_doc)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-docs", type=int, default=3000)
    ap.add_argument("--plant", type=float, default=0.1, help="share of documents copied (exact duplicates)")
    ap.add_argument("--samplers", nargs="+", default=["random", "hardest", "semihard", "simans", "fne calibrated", "oracle"],
                    help="labels from: " + ", ".join(SAMPLERS) + " (each optionally +LOSS)")
    ap.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                    help="pairs loader option, e.g. -o pooling_depth=20")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--loss-param", action="append", default=[], metavar="KEY=VALUE",
                    help="a loss parameter (JSON value), e.g. w_eps=0.1 for in_batch+wmse on 384-d embeddings")
    args = ap.parse_args(argv)
    import json

    options = {}
    for item in args.option:
        key, _, value = item.partition("=")
        options[key] = json.loads(value)
    loss_params = {}
    for item in args.loss_param:
        key, _, value = item.partition("=")
        loss_params[key] = json.loads(value)
    bad = [label for label in args.samplers if label.partition("+")[0] not in SAMPLERS]
    if bad:
        ap.error(f"unknown sampler(s) {bad}; valid: {', '.join(SAMPLERS)}")

    from fnlab import data
    from fnlab.training.train import TrainConfig, train

    root = Path(".fnlab_cache") / f"real_text_pairs_{args.max_docs}_{args.plant}"
    if not (root / "relevance.csv").exists():
        sizes = write_pairs(root, args.max_docs, args.plant, seed=0)
        print(f"wrote {root}: {sizes}")
    for split in ("train", "test"):
        ds = data.load("pairs", root=str(root), split=split, **options)
        print(f"{split}: {ds.n_b} queries, {ds.n_a} documents, "
              f"{ds.false_negative_matrix().nnz / ds.n_b:.3f} false negatives per query")
    rows = []
    for label in args.samplers:
        base, _, loss = label.partition("+")
        sampler, params = SAMPLERS[base]
        for seed in args.seeds:
            t0 = time.perf_counter()
            try:
                out = train(TrainConfig(dataset="pairs", dataset_root=str(root), dataset_options=options,
                                        sampler=sampler, sampler_params=params, loss=loss or None,
                                        loss_params=loss_params, epochs=args.epochs, seed=seed, num_threads=1,
                                        select_by="relevant"))
            except ValueError as err:  # a setting this data cannot take: the row says so, the others run
                print(f"{label} seed {seed}: not run: {err}", flush=True)
                continue
            after = [m for m in out["metrics"] if not m.get("warmup")]
            rate = [m["sampled_fn_rate"] for m in after if m["sampled_fn_rate"] == m["sampled_fn_rate"]]
            rows.append({"sampler": label, "seed": seed, "relevant_rsum": out["eval"]["relevant_recall"]["rsum"],
                         "rsum": out["eval"]["recall"]["rsum"], "sampled_fn_rate": float(np.mean(rate)),
                         "seconds": time.perf_counter() - t0})
            print(rows[-1], flush=True)
    if not rows:
        return 1
    df = pd.DataFrame(rows).groupby("sampler", sort=False)[["relevant_rsum", "rsum", "sampled_fn_rate"]]
    print((df.mean().round(4).astype(str) + " +- " + df.std().round(4).astype(str)).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
