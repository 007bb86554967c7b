"""A user's own folder as a first-class path: training keeps what the embeddings know, the words follow
the data, and exports carry texts beside ids.

The planted folder: documents in a clustered space, each query a noisy copy of its document, a share
of documents duplicated (the duplicates are false negatives, in ``relevance.csv``). Its raw embeddings
already rank the labelled pairs well; a run trained on it through ``fnlab train --dataset pairs`` must
rank them at least as well.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fnlab import data
from fnlab.analysis.evaluate import retrieval_recall
from fnlab.cli import main
from fnlab.retrieval.similarity import normalize
from fnlab.storage.runs import Run


def planted_folder(root: Path, n_queries: int = 150, *, dim: int = 24, clusters: int = 6, spread: float = 0.3,
                   query_noise: float = 0.8, distort: float = 0.3, dup_share: float = 0.15, seed: int = 0) -> Path:
    """A seeded ``pairs`` folder (texts on both sides) whose raw embeddings rank the labelled pairs well."""
    rng = np.random.default_rng(seed)
    n_orig = int(round(n_queries / (1 + dup_share)))
    centres = rng.standard_normal((clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    docs = centres[rng.integers(0, clusters, n_orig)] + spread * rng.standard_normal((n_orig, dim)) / np.sqrt(dim)
    copies = rng.choice(n_orig, size=n_queries - n_orig, replace=False)
    group = np.concatenate([np.arange(n_orig), copies])  # a planted duplicate and its original share a group
    docs = np.concatenate([docs, docs[copies] + 0.03 * rng.standard_normal((len(copies), dim)) / np.sqrt(dim)])
    warp = np.eye(dim) + distort * rng.standard_normal((dim, dim)) / np.sqrt(dim)  # queries seen a little askew
    queries = docs @ warp + query_noise * rng.standard_normal(docs.shape) / np.sqrt(dim)
    split = rng.choice(["train", "val", "test"], size=n_orig, p=[0.6, 0.2, 0.2])[group]
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "a.npy", docs.astype(np.float32))
    np.save(root / "b.npy", queries.astype(np.float32))
    pd.DataFrame({"b": np.arange(len(docs)), "a": np.arange(len(docs)), "split": split,
                  "text": [f"question about topic {g}" for g in group],
                  "a_text": [f"document on topic {g}" for g in group]}).to_csv(root / "pairs.csv", index=False)
    rel = [(i, j) for i in range(len(docs)) for j in np.flatnonzero(group == group[i]) if j != i]
    pd.DataFrame(rel, columns=["b", "a"]).to_csv(root / "relevance.csv", index=False)
    return root


def unit(x: np.ndarray) -> np.ndarray:
    return normalize(np.asarray(x, dtype=np.float32))


def labelled_and_random_similarities(ea: np.ndarray, eb: np.ndarray, b_to_a: np.ndarray) -> tuple[float, float]:
    """Mean cosine of the labelled pairs and of all other pairs."""
    sims = eb @ ea.T
    mask = np.zeros_like(sims, dtype=bool)
    mask[np.arange(len(b_to_a)), b_to_a] = True
    return float(sims[mask].mean()), float(sims[~mask].mean())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short run on the planted folder, trained by the CLI as a user would (without the app's pages, which
    this module does not read)."""
    tmp = tmp_path_factory.mktemp("own")
    folder = planted_folder(tmp / "mine")
    out = tmp / "runs" / "mine"
    assert main(["train", "--dataset", "pairs", "--root", str(folder), "--epochs", "3", "--seed", "0",
                 "--threads", "1", "--no-progress", "--no-pages", "--out", str(out)]) == 0
    return folder, Run(out)


def test_a_run_on_a_planted_folder_ranks_its_pairs_at_least_as_well_as_the_raw_embeddings(trained):
    folder, run = trained
    test = data.load("pairs", root=folder, split="test")
    raw_a, raw_b = unit(test.a_inputs), unit(test.b_inputs)
    raw, raw_rel = retrieval_recall(raw_a, raw_b, test.b_to_a, relevance=test.relevance)
    ea, eb = run.load_array("emb_a_test"), run.load_array("emb_b_test")
    got, got_rel = retrieval_recall(ea, eb, test.b_to_a, relevance=test.relevance)
    assert raw["rsum"] > 450  # the planted embeddings already rank well: the bar is high
    assert got["rsum"] >= raw["rsum"] and got["t2i"]["1"] >= raw["t2i"]["1"] and got["i2t"]["1"] >= raw["i2t"]["1"]
    assert got_rel["rsum"] >= raw_rel["rsum"]
    assert run.load_json("eval")["recall"]["rsum"] == pytest.approx(got["rsum"])
    # the similarities of labelled pairs are kept, and still stand out from the rest
    raw_pos, raw_other = labelled_and_random_similarities(raw_a, raw_b, test.b_to_a)
    pos, other = labelled_and_random_similarities(ea, eb, test.b_to_a)
    assert raw_pos > 0.6 and pos >= raw_pos - 0.1
    assert pos - other >= 0.8 * (raw_pos - raw_other)


def test_the_run_records_its_head_and_its_starting_point(trained):
    folder, run = trained
    spec = run.config["model_spec"]
    assert spec["head"] in ("linear", "residual") and spec["head_start"] == "identity" and spec["dim"] == 24
    metrics = run.metrics
    assert metrics["epoch"].tolist() == [0, 1, 2, 3]  # epoch 0: the untrained model, the raw embeddings
    val = data.load("pairs", root=folder, split="val")
    raw_val, raw_val_rel = retrieval_recall(unit(val.a_inputs), unit(val.b_inputs), val.b_to_a,
                                            relevance=val.relevance)
    assert metrics["val_rsum"].iloc[0] == pytest.approx(raw_val["rsum"])
    assert metrics["val_relevant_rsum"].iloc[0] == pytest.approx(raw_val_rel["rsum"])
    best = int(run.load_json("eval")["best_epoch"])
    assert metrics["val_rsum"].iloc[best] == metrics["val_rsum"].max()  # selection saw epoch 0 too


def test_the_old_random_init_head_destroyed_what_the_embeddings_knew(trained, monkeypatch):
    """The failure the identity start fixes, on the same folder: a random-init MLP head ranks far worse."""
    import fnlab.models.dual as dual
    from fnlab.training.train import TrainConfig, train

    folder, _ = trained
    monkeypatch.setattr(dual, "default_head", lambda ds: "mlp")
    out = train(TrainConfig(dataset="pairs", dataset_root=str(folder), epochs=2, seed=0, num_threads=1))
    test = data.load("pairs", root=folder, split="test")
    raw, _ = retrieval_recall(unit(test.a_inputs), unit(test.b_inputs), test.b_to_a)
    assert out["eval"]["recall"]["rsum"] < raw["rsum"] - 50
    assert out["metrics"][0]["epoch"] == 1  # no epoch 0 for a random start


def test_training_that_only_hurts_keeps_the_starting_point(trained):
    """A learning rate that wrecks every epoch: the kept model is epoch 0, the raw embeddings themselves."""
    from fnlab.training.train import TrainConfig, train

    folder, _ = trained
    out = train(TrainConfig(dataset="pairs", dataset_root=str(folder), epochs=2, seed=0, lr=30.0, num_threads=1))
    assert out["eval"]["best_epoch"] == 0
    assert all(m["val_rsum"] <= out["metrics"][0]["val_rsum"] for m in out["metrics"])
    test = data.load("pairs", root=folder, split="test")
    ea, eb = out["embeddings"]["test"]
    np.testing.assert_allclose(ea, unit(test.a_inputs), atol=1e-5)
    np.testing.assert_allclose(eb, unit(test.b_inputs), atol=1e-5)


def test_words_and_exports_follow_a_text_folder(trained):
    from fnlab.analysis import explore, review, scan

    folder, run = trained
    test = data.load("pairs", root=folder, split="test")
    assert (test.a_modality, test.b_modality) == ("text", "text")
    assert (test.nouns.a_plural, test.nouns.b_plural) == ("documents", "queries")
    assert explore.direction_labels(test) == {"t2i": "query → document", "i2t": "document → query"}
    res = scan.scan_dataset(run.load_array("emb_a_test"), run.load_array("emb_b_test"), test, top_k=3)
    table = review.merge(res.table, review.empty(), direction="t2i")
    exported = pd.read_csv(io.BytesIO(review.export_bytes(table, "csv", dataset=test)))
    cols = list(exported.columns)
    assert cols[:3] == ["direction", "query", "query_id"] or cols.index("query_id") == cols.index("query") + 1
    assert (exported["query_id"] == test.b_ids[exported["query"]]).all()  # rows of b.npy
    assert (exported["candidate_id"] == test.a_ids[exported["candidate"]]).all()
    pairs = pd.read_csv(folder / "pairs.csv")
    assert (exported["query_text"] == pairs["text"].to_numpy()[exported["query_id"]]).all()
    assert (exported["candidate_text"] == pairs["a_text"].to_numpy()[exported["candidate_id"]]).all()
    assert exported["decision"].eq(review.UNDECIDED).all()
    parquet = pd.read_parquet(io.BytesIO(review.export_bytes(table, "parquet", dataset=test)))
    assert parquet["query_text"].tolist() == exported["query_text"].tolist()
    # the reverse direction swaps the sides; an index outside the split is refused, naming the column
    flipped = explore.with_content(pd.DataFrame({"query": [0], "candidate": [1]}), test, direction="i2t")
    assert flipped["query_text"].iloc[0] == pairs["a_text"].iloc[test.a_ids[0]]
    assert flipped["candidate_text"].iloc[0] == pairs["text"].iloc[test.b_ids[1]]
    with pytest.raises(ValueError, match="column 'candidate' has indices outside"):
        explore.with_content(pd.DataFrame({"query": [0], "candidate": [test.n_a]}), test)
    assert json.loads(json.dumps(run.config["model_spec"]))["head"] == run.config["model_spec"]["head"]


def test_a_run_trained_with_a_relative_root_opens_from_any_working_folder(tmp_path, monkeypatch):
    from fnlab.storage.loader import LoadedRun

    planted_folder(tmp_path / "work" / "mine", n_queries=60)
    monkeypatch.chdir(tmp_path / "work")  # as a user does: `fnlab train --root mine` from the data's parent
    assert main(["train", "--dataset", "pairs", "--root", "mine", "--epochs", "1", "--seed", "0", "--threads", "1",
                 "--no-progress", "--no-pages", "--out", "runs/mine"]) == 0
    spec = json.loads((tmp_path / "work" / "runs" / "mine" / "config.json").read_text())["dataset"]
    assert spec["root"] == str(tmp_path / "work" / "mine")  # recorded absolute
    elsewhere = tmp_path / "app"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the app, or `fnlab eval`, started in another folder
    run = LoadedRun.open(tmp_path / "work" / "runs" / "mine")
    assert run.dataset("test").n_b > 0
    # a run whose folder has gone says which run, which field, where it looked and what to do
    (tmp_path / "work" / "mine").rename(tmp_path / "work" / "moved")
    with pytest.raises(FileNotFoundError, match=r"run 'mine'.*field 'dataset'.*no such folder.*moved or deleted"):
        LoadedRun.open(tmp_path / "work" / "runs" / "mine").dataset("test")


def test_a_corpus_larger_than_its_queries_exports_every_candidates_text(tmp_path, capsys):
    """Candidates no query labels get their text and split from candidates.csv: the --dataset-dir scan's export
    names them (they had an empty text, and with a split column in pairs.csv they all fell in train)."""
    rng = np.random.default_rng(0)
    n_docs, n_queries, dim = 60, 20, 8
    docs = unit(rng.standard_normal((n_docs, dim)))
    np.save(tmp_path / "a.npy", docs)
    np.save(tmp_path / "b.npy", unit(docs[:n_queries] + 0.3 * rng.standard_normal((n_queries, dim))))
    split = np.where(np.arange(n_docs) % 3 == 0, "test", "train")
    pd.DataFrame({"b": range(n_queries), "a": range(n_queries), "text": [f"question {i}" for i in range(n_queries)],
                  "split": split[:n_queries]}).to_csv(tmp_path / "pairs.csv", index=False)
    pd.DataFrame({"a_text": [f"document {i}" for i in range(n_docs)], "split": split}).to_csv(
        tmp_path / "candidates.csv", index=False)
    test = data.load("pairs", root=tmp_path, split="test")
    assert test.n_a == 20 and (test.a_ids >= n_queries).sum() == 13  # unlabelled documents are in test too
    out = tmp_path / "out" / "suspects.csv"
    out.parent.mkdir()
    np.save(tmp_path / "out" / "ea.npy", test.a_inputs)
    np.save(tmp_path / "out" / "eb.npy", test.b_inputs)
    assert main(["scan", "--dataset-dir", str(tmp_path), "--split", "test", "--queries", str(tmp_path / "out" / "eb.npy"),
                 "--candidates", str(tmp_path / "out" / "ea.npy"), "--top-k", "5", "--out", str(out), "--quiet"]) == 0
    table = pd.read_csv(out)
    unlabelled = table[table["candidate_id"] >= n_queries]
    assert len(unlabelled) and (unlabelled["candidate_text"] == "document " + unlabelled["candidate_id"].astype(str)).all()
