"""Texts in a scan: near-duplicate texts and a second view reach the posterior; texts that do not match the
rows, or an encoder that cannot load, cost one warning line and the scan runs without them."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from fnlab.analysis.scan import ScanInputError, ScanWarning, load_texts, scan
from fnlab.cli import main
from fnlab.data.pretrained import CAPTION_TABLE, shipped_root


@pytest.fixture(scope="module")
def shipped_texts():
    """Texts whose MiniLM embeddings ship with the repository (no model is loaded)."""
    with np.load(shipped_root() / CAPTION_TABLE, allow_pickle=False) as z:
        return [str(t) for t in z["texts"][:400]]


def data(texts, seed=0, n_dup=12):
    """Candidates are texts' embeddings plus noise; a few candidates repeat another's text (a copy)."""
    from fnlab.data.minilm import text_view

    rng = np.random.default_rng(seed)
    cand_texts = list(texts[:200])
    for i in range(n_dup):
        cand_texts.append(cand_texts[i].upper() + " ")  # the same text after normalisation
    c = text_view(cand_texts[:200]) + 0.05 * rng.standard_normal((200, 384)).astype(np.float32)
    c = np.concatenate([c, c[:n_dup] + 0.02 * rng.standard_normal((n_dup, 384)).astype(np.float32)])
    q = c[:150] + 0.2 * rng.standard_normal((150, 384)).astype(np.float32)
    pos = pd.DataFrame({"query": np.arange(150), "candidate": np.arange(150)})
    return q, c, pos, cand_texts


def test_texts_give_near_duplicate_and_view_signals(shipped_texts):
    q, c, pos, cand_texts = data(shipped_texts)
    res = scan(q, c, pos, top_k=5, candidate_texts=cand_texts, seed=0)
    assert res.summary["text_view"] == ["candidate"]
    assert {"positive_duplicate", "view_positive_neighbour"} <= set(res.posterior.signals)
    t = res.table.set_index(["query", "candidate"])
    for i in range(12):
        row = t.loc[(i, 200 + i)]
        assert row["p_false_negative"] > 0.9 and row["why"] == "same content as the labelled positive"


def test_texts_that_do_not_match_the_rows_cost_the_view_only(shipped_texts):
    q, c, pos, cand_texts = data(shipped_texts)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = scan(q, c, pos, top_k=5, candidate_texts=cand_texts[:-3], seed=0)
    msgs = [str(w.message) for w in caught if issubclass(w.category, ScanWarning)]
    assert any("209 texts but 212 candidate rows" in m for m in msgs)
    assert res.summary["text_view"] == [] and len(res.table) == 150 * 5


def test_cli_texts_and_a_missing_encoder(shipped_texts, tmp_path, capsys):
    q, c, pos, cand_texts = data(shipped_texts)
    np.save(tmp_path / "q.npy", q)
    np.save(tmp_path / "c.npy", c)
    pos.to_csv(tmp_path / "p.csv", index=False)
    (tmp_path / "c.txt").write_text("\n".join(cand_texts) + "\n", encoding="utf-8")
    args = ["scan", "--queries", str(tmp_path / "q.npy"), "--candidates", str(tmp_path / "c.npy"), "--positives",
            str(tmp_path / "p.csv"), "--top-k", "5", "--texts", f"candidates={tmp_path / 'c.txt'}"]
    assert main([*args, "--out", str(tmp_path / "a.parquet")]) == 0
    out = capsys.readouterr().out
    assert "calibration            calibrated" in out and "text view on candidate" in out
    assert main([*args, "--text-encoder", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b.parquet")]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "text encoder" in ln]
    assert len(lines) == 1 and "nowhere" in lines[0] and "runs without the candidate text view" in lines[0]
    assert main([*args[:-2], "--texts", "docs.txt", "--out", str(tmp_path / "c.parquet")]) != 0
    assert "--texts 'docs.txt': expected queries=FILE or candidates=FILE" in capsys.readouterr().err


def test_load_texts_reads_lines_and_tables(tmp_path):
    (tmp_path / "a.txt").write_text("one\ntwo\n", encoding="utf-8")
    assert load_texts(tmp_path / "a.txt") == ["one", "two"]
    pd.DataFrame({"text": ["x", "y"]}).to_csv(tmp_path / "b.csv", index=False)
    assert load_texts(tmp_path / "b.csv") == ["x", "y"]
    pd.DataFrame({"other": [1]}).to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(ScanInputError, match="text"):
        load_texts(tmp_path / "c.csv")
    with pytest.raises(ScanInputError, match="no such file"):
        load_texts(tmp_path / "none.txt")


def test_triplets_carry_the_texts_the_scan_had(shipped_texts, tmp_path):
    from fnlab.analysis.scan import triplets

    q, c, pos, cand_texts = data(shipped_texts)
    query_texts = [f"query {i}" for i in range(len(q))]
    res = scan(q, c, pos, top_k=5, seed=0)
    trip = triplets(res, query_texts=query_texts, candidate_texts=cand_texts)
    assert list(trip.columns[-3:]) == ["anchor_text", "positive_text", "negative_text"]
    for row in trip.sample(20, random_state=0).itertuples():
        assert (row.anchor_text, row.positive_text, row.negative_text) == (
            query_texts[row.anchor], cand_texts[row.positive], cand_texts[row.negative])
    with pytest.raises(ScanInputError, match="candidate texts: 100 texts, but the triplets name candidate row"):
        triplets(res, candidate_texts=cand_texts[:100])
    # from the command line: --texts reach --triplets, and a second scan may replace that file
    np.save(tmp_path / "q.npy", q)
    np.save(tmp_path / "c.npy", c)
    pos.to_csv(tmp_path / "p.csv", index=False)
    (tmp_path / "c.txt").write_text("\n".join(cand_texts) + "\n", encoding="utf-8")
    args = ["scan", "--queries", str(tmp_path / "q.npy"), "--candidates", str(tmp_path / "c.npy"), "--positives",
            str(tmp_path / "p.csv"), "--top-k", "5", "--texts", f"candidates={tmp_path / 'c.txt'}", "--out",
            str(tmp_path / "s.parquet"), "--triplets", str(tmp_path / "t.csv"), "--quiet"]
    for _ in range(2):
        assert main(args) == 0
    written = pd.read_csv(tmp_path / "t.csv")
    assert list(written.columns[-2:]) == ["positive_text", "negative_text"] and "anchor_text" not in written
    assert (written["negative_text"] == [cand_texts[i] for i in written["negative"]]).all()


def _text_folder(root, texts, seed=0, n=150, k=12):
    """A text-text ``pairs`` folder whose embeddings cannot tell a copy from a cluster-mate: each of ``k``
    documents has a copy (the same text after normalisation) and a decoy (another text), both equally near it in
    the embeddings. The copies are the false negatives (``relevance.csv``)."""
    rng = np.random.default_rng(seed)
    d = 32
    docs = rng.standard_normal((n, d)).astype(np.float32)
    near = [docs[:k] + 0.3 * rng.standard_normal((k, d)).astype(np.float32) for _ in range(2)]
    a = np.concatenate([docs, *near])
    b = docs + 0.3 * rng.standard_normal((n, d)).astype(np.float32)
    root.mkdir()
    np.save(root / "a.npy", a)
    np.save(root / "b.npy", b)
    pd.DataFrame({"b": np.arange(n), "a": np.arange(n), "text": texts[200:200 + n]}).to_csv(root / "pairs.csv",
                                                                                          index=False)
    a_text = list(texts[:n]) + [t.upper() + " " for t in texts[:k]] + list(texts[360:360 + k])
    pd.DataFrame({"a_text": a_text}).to_csv(root / "candidates.csv", index=False)
    rel = [(j, j) for j in range(n)] + [(i, n + i) for i in range(k)]
    pd.DataFrame(rel, columns=["b", "a"]).to_csv(root / "relevance.csv", index=False)
    return [(i, n + i) for i in range(k)], [(i, n + k + i) for i in range(k)]


def test_a_folder_scan_reads_the_folders_own_texts(shipped_texts, tmp_path):
    """`fnlab scan --dataset-dir` gives the posterior the folder's texts on both sides (content and view), as
    --texts would: a copy of the labelled document is found by its text where the embeddings cannot tell it
    from a cluster-mate."""
    from fnlab import data as fdata
    from fnlab.analysis.scan import scan_dataset

    copies, decoys = _text_folder(tmp_path / "mine", shipped_texts)
    out = tmp_path / "s.parquet"
    assert main(["scan", "--dataset-dir", str(tmp_path / "mine"), "--top-k", "5", "--quiet", "--out", str(out)]) == 0
    t = pd.read_parquet(out).set_index(["query", "candidate"])
    for pair in copies:
        assert t.loc[pair, "p_false_negative"] > 0.9 and t.loc[pair, "why"] == "same content as the labelled positive"
    shown = [p for p in decoys if p in t.index]
    assert shown and max(t.loc[p, "p_false_negative"] for p in shown) < 0.5
    # the same scan through the API, with and without the texts: the embeddings alone do not separate them
    ds = fdata.load("pairs", root=tmp_path / "mine", split="all")
    a, b = np.load(tmp_path / "mine" / "a.npy"), np.load(tmp_path / "mine" / "b.npy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with_texts = scan_dataset(a, b, ds, top_k=5, seed=0)
        without = scan_dataset(a, b, ds, top_k=5, seed=0, text_view=False)
    assert set(with_texts.summary["text_view"]) == {"query", "candidate"}
    assert without.summary["text_view"] == []
    aps = {name: res.summary["detection_in_top_k"]["posterior"]["ap"] for name, res in (("with", with_texts), ("without", without))}
    assert aps["with"] > 0.95 > aps["without"] + 0.2, aps
