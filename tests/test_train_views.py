"""A user folder's texts as the training posterior's second view (`fnlab train --view-encoder`).

The folder's embeddings cannot tell a copy of a document from a decoy (both equally near it); the texts can: each
copy is its document's text with accented vowels (another text even after normalisation, so neither the
exact-duplicate labels nor the content keys know it; the same text to MiniLM, whose tokenizer strips accents), each
decoy another caption. The copies, and the copies' own queries, are the false negatives (``relevance.csv``).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from _bench_module import load_bench

from fnlab import data as fdata
from fnlab.cli import main
from fnlab.data.minilm import dataset_side_view, dataset_views
from fnlab.training.train import TrainConfig, train


def _bench():
    return load_bench("train_view")


def _folder(root, **kw):
    """``bench/train_view.py``'s planted folder: 240 documents with their queries; 60 have a near-copy and a decoy."""
    return _bench().planted_folder(root, **kw)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return _folder(tmp_path_factory.mktemp("views") / "mine")


def _config(folder, **kw):
    return TrainConfig(dataset="pairs", dataset_root=str(folder), sampler="fne", sampler_params={"window": 10},
                       epochs=2, batch_size=64, queue_size=256, seed=0, device="cpu", **kw)


def test_side_views_of_a_text_folder(folder, tmp_path):
    ds = fdata.load("pairs", root=folder, split="val")
    assert dataset_views(ds) == (None, None)  # without an encoder: nothing these texts need encoding for
    a_view, b_view = dataset_views(ds, "minilm")
    assert a_view.shape == (ds.n_a, 384) and b_view.shape == (ds.n_b, 384)
    np.testing.assert_allclose(np.linalg.norm(a_view, axis=1), 1.0, atol=1e-5)
    # a document and its copy are near in the view, and two contents to the keys
    texts = list(ds.a_meta["a_text"])
    accented = _bench().ACCENTED
    pairs = [(i, texts.index(t.translate(accented))) for i, t in enumerate(texts)
             if t.translate(accented) in texts and t.translate(accented) != t]
    assert pairs
    assert min(float(a_view[i] @ a_view[j]) for i, j in pairs) > 0.99
    keys = ds.content_keys("a")
    assert all(keys[i] != keys[j] for i, j in pairs)
    # a candidate without a text is a zero row (no similarity to anything), not the empty string's embedding
    blank = _folder(tmp_path / "blank", n=40, k=5)
    table = pd.read_csv(blank / "pairs.csv")
    table.loc[:9, "a_text"] = ""
    table.to_csv(blank / "pairs.csv", index=False)
    ds = fdata.load("pairs", root=blank, split="all")
    view = dataset_side_view(ds, "a", encoder="minilm")
    empty = ds.a_meta["a_text"].fillna("").astype(str).str.strip() == ""
    assert empty.sum() == 10 and not view[empty.to_numpy()].any() and (np.abs(view[~empty.to_numpy()]).sum(1) > 0).all()
    # image-caption data has no side-A texts
    shapes = fdata.load("shapes-precomp", split="val")
    assert dataset_side_view(shapes, "a", encode=False) is None


def test_training_posterior_reads_the_folders_texts(folder):
    """With the view the run's posterior tells the copies from the decoys the embeddings cannot; without, it cannot
    (the ground truth's false negatives on the test split: AP over every unlabelled pair)."""
    without = train(_config(folder))
    with_view = train(_config(folder, view_encoder="minilm"))
    fd0, fd1 = without["eval"]["fn_detection"], with_view["eval"]["fn_detection"]
    assert fd1["ap"] > 0.9 and fd1["ap"] > fd0["ap"] + 0.3, (fd0, fd1)
    assert fd0["ap"] < 0.7  # the embeddings alone: copy and decoy alike
    assert without["posterior"]["prior_window"] > 1.5 * with_view["posterior"]["prior_window"]  # decoys counted


def test_cli_view_encoder_is_recorded_and_eval_reads_it(folder, tmp_path, capsys):
    out = tmp_path / "runs" / "v"
    assert main(["train", "--dataset", "pairs", "--root", str(folder), "--sampler", "fne", "--param", "window=10",
                 "--epochs", "2", "--batch-size", "64", "--queue-size", "256", "--view-encoder", "minilm",
                 "--no-progress", "--no-pages", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["view_encoder"] == "minilm"
    stored = json.loads((out / "eval.json").read_text())["fn_detection"]
    capsys.readouterr()
    assert main(["eval", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)["fn_detection"]
    assert again["ap"] == pytest.approx(stored["ap"], abs=1e-9) and stored["ap"] > 0.9


def test_an_encoder_that_cannot_load_fails_before_training(folder, tmp_path, capsys):
    out = tmp_path / "runs" / "bad"
    rc = main(["train", "--dataset", "pairs", "--root", str(folder), "--epochs", "1", "--no-progress", "--no-pages",
               "--view-encoder", str(tmp_path / "no-such-model"), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc != 0 and "no-such-model" in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_pool_views_follow_each_side():
    """FNE's pool: side B's view where captions sit (t2i anchors and partners, i2t candidates), side A's elsewhere."""
    from fnlab.training.objective import SampledObjective

    b_view, a_view = torch.eye(4)[:3], torch.eye(4)[1:] * 2
    obj = SampledObjective.__new__(SampledObjective)
    obj.caption_view, obj.a_view = b_view, a_view

    class Pool:
        def __init__(self, direction):
            self.direction = direction
            self.anchor_ids, self.partner_ids, self.cand_ids = torch.tensor([0, 2]), torch.tensor([1, -1]), torch.tensor([2, 0])

    t2i = obj._views(Pool("t2i"))
    assert torch.equal(t2i["anchor_view"], b_view[[0, 2]]) and torch.equal(t2i["candidate_view"], a_view[[2, 0]])
    assert torch.equal(t2i["partner_view"], torch.stack([b_view[1], torch.zeros(4)]))  # a synthetic slot: zeros
    i2t = obj._views(Pool("i2t"))
    assert torch.equal(i2t["candidate_view"], b_view[[2, 0]]) and torch.equal(i2t["anchor_view"], a_view[[0, 2]])
    obj.a_view = None
    assert set(obj._views(Pool("t2i"))) == {"anchor_view", "partner_view"}  # as before side A had a view
