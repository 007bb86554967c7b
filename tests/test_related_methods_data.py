"""Issue 22's methods that read the data: the guide model's veto (``guided``), CET with the pooling-bias option, the
text-identity positive mask; and every new method training end to end (short runs on a tiny pairs folder)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from fnlab import data
from fnlab import samplers as S
from fnlab.data.base import MatchingDataset
from fnlab.data.identity import text_identity_labels
from fnlab.data.pooling import apply_pooling, caption_view_scores
from fnlab.retrieval.hooks import EpochContext, SampleContext
from fnlab.samplers.cet import rank_table
from fnlab.samplers.guided import guide_veto


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def pairs_dataset(n_a=30, n_b=40, d=8, seed=0, texts=None, a_texts=None) -> MatchingDataset:
    """A text-text split of embeddings in one space: query ``q`` labelled with document ``q % n_a``, each query near
    its document; ground truth: its document and the one after it."""
    rng = np.random.default_rng(seed)
    a = unit(rng.normal(size=(n_a, d)))
    b_to_a = np.arange(n_b) % n_a
    b = unit(a[b_to_a] + 0.3 * rng.normal(size=(n_b, d)))
    rel = sp.csr_matrix((np.ones(2 * n_b, bool), (np.r_[np.arange(n_b), np.arange(n_b)],
                                                  np.r_[b_to_a, (b_to_a + 1) % n_a])), shape=(n_b, n_a))
    b_meta = pd.DataFrame({"text": texts if texts is not None else [f"query {i}" for i in range(n_b)]})
    a_meta = pd.DataFrame({"a_text": a_texts}) if a_texts is not None else pd.DataFrame(index=range(n_a))
    return MatchingDataset("pairs", "train", b_to_a, a, b, "features", "features", relevance=rel, b_meta=b_meta,
                           a_meta=a_meta, inputs_are_embeddings=True)


# ================================================================== the guide's view and veto
def test_caption_view_scores_equal_a_brute_force_loop():
    rng = np.random.default_rng(0)
    g = unit(rng.normal(size=(50, 8)))
    owner = rng.integers(0, 12, 50)
    got = caption_view_scores(g, None, owner, 13, chunk=7)
    want = np.full((50, 13), -1.0)
    for q in range(50):
        for c in range(50):
            if c != q:
                want[q, owner[c]] = max(want[q, owner[c]], float(g[q] @ g[c]))
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert (got[:, 12] == -1).all()  # an image without captions


def test_guide_veto_rules():
    scores = torch.tensor([[0.9, 0.95, 0.85, 0.5, 0.0], [-0.5, -0.49, -0.8, -0.2, 0.9]])
    positive = torch.tensor([[True, False, False, False, False], [True, False, False, False, False]])
    above = guide_veto(scores, positive)  # GISTEmbed: scored above the positive
    assert above.tolist() == [[False, True, False, False, False], [False, True, False, True, True]]
    margin = guide_veto(scores, positive, margin=0.1)
    assert margin[0].tolist() == [False, True, True, False, False]
    rel = guide_veto(scores, positive, margin=None, relative_margin=0.05)  # cut s+ - |s+| r
    assert rel[1].tolist() == [False, True, False, True, True]  # -0.49 > -0.525
    ceiling = guide_veto(scores, positive, margin=None, max_score=0.6)
    assert ceiling.tolist() == [[False, True, True, False, False], [False, False, False, False, True]]
    synthetic = guide_veto(scores, positive, real=torch.tensor([True, False, True, True, True]))
    assert not synthetic[:, 1].any()


def _guided_context(ds, direction="t2i"):
    """A pool of the whole split: t2i anchors = the queries, candidates = the documents (partner: a query of each)."""
    if direction == "t2i":
        anchor_ids, cand_ids = torch.arange(ds.n_b), torch.arange(ds.n_a)
        positive = torch.from_numpy(ds.labelled_matrix().toarray())
    else:
        anchor_ids, cand_ids = torch.arange(ds.n_a), torch.arange(ds.n_b)
        positive = torch.from_numpy(ds.labelled_matrix().toarray().T)
    return SampleContext(direction, anchor_ids=anchor_ids, candidate_ids=cand_ids, positive_mask=positive)


@pytest.mark.parametrize("direction", ["t2i", "i2t"])
def test_guided_never_picks_what_the_guide_scores_above_the_positive(direction):
    ds = pairs_dataset()
    smp = S.build("guided", base="hardest", guide="inputs")
    smp.start_epoch(EpochContext(1, warmup=False, dataset=ds))
    assert smp.scores.shape == (ds.n_b, ds.n_a) and smp.source == "inputs"
    ctx = _guided_context(ds, direction)
    guide = smp.scores if direction == "t2i" else smp.scores.T
    g_pos = guide.masked_fill(~ctx.positive_mask, -math.inf).amax(dim=1, keepdim=True)
    vetoed = (guide > g_pos) & ~ctx.positive_mask
    assert vetoed.any()
    sims = guide.clone()  # a model that agrees with the guide: plain hardest would pick vetoed candidates
    picks = smp.sample(sims, sims.masked_fill(~ctx.positive_mask, -1).amax(dim=1), ctx.positive_mask, k=1, ctx=ctx)
    hardest = S.build("hardest").sample(sims, sims.amax(dim=1), ctx.positive_mask, k=1)
    assert vetoed.gather(1, hardest).any() and not vetoed.gather(1, picks).any()
    rows = vetoed.any(dim=1)
    want = sims.masked_fill(ctx.positive_mask | vetoed, -math.inf).argmax(dim=1)
    assert torch.equal(picks[rows, 0], want[rows])  # the hardest candidate the guide lets through
    assert smp.epoch_metrics()["guide_vetoed"] == pytest.approx(float(vetoed.sum()) / vetoed.shape[0])


def test_guided_composes_with_every_declared_base_and_keeps_the_vetoed_out_of_whole_pool_losses():
    ds = pairs_dataset()
    ctx = _guided_context(ds)
    g = torch.Generator().manual_seed(0)
    sims = torch.rand(ds.n_b, ds.n_a, generator=g, dtype=torch.float64)
    pos = sims.masked_fill(~ctx.positive_mask, -1).amax(dim=1)
    for base in S.registry.GUIDED_BASES:
        smp = S.build("guided", base=base, guide="inputs")
        smp.fit(ds)
        veto = smp.veto(ctx.positive_mask, ctx)
        w = smp.weights(sims, pos, ctx.positive_mask, ctx=SampleContext.of(ctx))
        assert (w[veto] == 0).all(), base
        if smp.num_picks(1) is None:
            side = smp.side_info(sims, pos, ctx.positive_mask, SampleContext.of(ctx))
            assert not (side["neg_mask"] & veto).any(), base
    prefixed = S.build("guided", base="simans", simans_a=2.0, simans_top_k=7)
    assert prefixed.base.a == 2.0 and prefixed.base.top_k == 7 and prefixed.uses_queue
    assert not S.build("guided", base="in_batch").uses_queue
    with pytest.raises(ValueError, match="not parameters of base 'hardest'"):
        S.build("guided", base="hardest", simans_a=2.0)


# ================================================================== the text-identity mask
def test_text_identity_lifts_labels_over_duplicate_texts_and_training_masks_them():
    texts = ["q0", "same", "q2", "same", "q4", "q5"]
    a_texts = ["d0", "d1", "dup", "d3", "dup"]
    ds = pairs_dataset(n_a=5, n_b=6, texts=texts, a_texts=a_texts)  # query q labelled with document q % 5
    lifted = text_identity_labels(ds).toarray()
    labels = ds.labelled_matrix().toarray()
    assert (lifted >= labels).all()
    assert lifted[1, 3] and lifted[3, 1]  # queries 1 and 3 share a text: each one's document is the other's too
    assert lifted[2, 4] and lifted[4, 2]  # documents 2 and 4 share a text
    assert lifted.sum() == labels.sum() + 4
    assert text_identity_labels(pairs_dataset()) is None  # no duplicates: nothing to lift
    from fnlab.training.objective import Relevance, SampledObjective, _Pool

    obj = SampledObjective.__new__(SampledObjective)
    obj.identity = Relevance(sp.csr_matrix(lifted))
    b_to_a = torch.from_numpy(ds.b_to_a)
    pool = _Pool("t2i", torch.zeros(6, 2), torch.arange(6), b_to_a, torch.zeros(5, 2), torch.arange(5),
                 torch.arange(5), torch.zeros(5, 2), torch.arange(5))
    assert torch.equal(obj._positive_mask(pool), torch.from_numpy(lifted))


# ================================================================== pooling bias and CET
def test_pooling_keeps_only_judged_relevant_labels_and_records_the_pool():
    ds = pairs_dataset(n_a=30, n_b=40)
    pooled = apply_pooling(ds, pooling_depth=3, pooling_noise=0.0, pooling_record=10)
    scores = caption_view_scores(ds.b_inputs, ds.a_inputs, ds.b_to_a, ds.n_a)
    judged = np.argsort(-scores, axis=1)[:, :3]
    rel = ds.relevance.toarray()
    want = [(q, a) for q in range(ds.n_b) for a in judged[q] if rel[q, a]]
    got = list(zip(pooled.b_meta["query_group"], pooled.b_to_a, strict=True))
    assert sorted(got) == sorted(want) and pooled.n_b == len(want)
    for row in range(pooled.n_b):
        q = pooled.b_meta["query_group"][row]
        assert list(pooled.b_meta["judged"][row]) == list(judged[q])
        assert list(pooled.b_meta["pool_ranked"][row])[:3] == list(judged[q])
        np.testing.assert_array_equal(pooled.b_inputs[row], ds.b_inputs[q])
    # unjudged relevant pairs are the planted false negatives, and sibling rows of a query are each other's positives
    identity = text_identity_labels(pooled).toarray()
    for row in range(pooled.n_b):
        q = pooled.b_meta["query_group"][row]
        siblings = pooled.b_to_a[pooled.b_meta["query_group"].to_numpy() == q]
        assert identity[row, siblings].all()
    with pytest.raises(ValueError, match="no ground truth"):
        apply_pooling(MatchingDataset("x", "train", ds.b_to_a, ds.a_inputs, ds.b_inputs, "features", "features"),
                      pooling_depth=3)


def test_pooling_is_an_option_of_the_pairs_loader(tmp_path):
    ds = pairs_dataset(n_a=30, n_b=40)
    np.save(tmp_path / "a.npy", ds.a_inputs)
    np.save(tmp_path / "b.npy", ds.b_inputs)
    pd.DataFrame({"b": range(40), "a": ds.b_to_a, "text": ds.b_meta["text"], "split": "train"}).to_csv(
        tmp_path / "pairs.csv", index=False)
    coo = ds.relevance.tocoo()
    pd.DataFrame({"b": coo.row, "a": coo.col}).to_csv(tmp_path / "relevance.csv", index=False)
    plain = data.load("pairs", root=str(tmp_path), split="train")
    pooled = data.load("pairs", root=str(tmp_path), split="train", pooling_depth=3, pooling_noise=0.0)
    assert "pool_ranked" in pooled.b_meta.columns and "pool_ranked" not in plain.b_meta.columns
    assert pooled.spec["options"]["pooling_depth"] == 3
    with pytest.raises(ValueError, match="pooling_depth"):
        data.load("pairs", root=str(tmp_path), split="train", pooling_depth=-1)


def _planted_pooling(seed=0, q=100, c=300):
    """Relevance ~8%; the model's similarity separates it (0.7 vs 0.2, sd 0.1); a weak retriever (relevance + noise
    of sd 0.8) ranks the candidates and the top 20 are judged; labels = relevant and judged."""
    g = torch.Generator().manual_seed(seed)
    r = torch.rand(q, c, generator=g) < 0.08
    s = torch.where(r, 0.7 + 0.1 * torch.randn(q, c, generator=g), 0.2 + 0.1 * torch.randn(q, c, generator=g))
    weak = r.float() + 0.8 * torch.randn(q, c, generator=g)
    rank = weak.argsort(dim=1, descending=True).argsort(dim=1).float() + 1
    rank = torch.where(rank <= 100, rank, torch.full_like(rank, 101.0))  # recorded to depth 100
    judged = rank <= 20
    return s, rank, r, judged, r & judged


@pytest.mark.parametrize("seed", [0, 1])
def test_cet_recovers_unjudged_matches_and_the_judged_pool(seed):
    from sklearn.metrics import roc_auc_score

    s, rank, r, judged, y = _planted_pooling(seed)
    smp = S.build("cet")
    opt = torch.optim.Adam(smp.parameters(), lr=0.1)
    for _ in range(150):
        loss = smp.observation_nll(s, rank, y).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        p_rel, p_sel = smp.posteriors(s, rank)
    unjudged_match, judged_non_match = r & ~judged, judged & ~r
    assert float((p_rel[unjudged_match] > 0.5).float().mean()) >= 0.7
    assert float((p_rel[judged_non_match] < 0.1).float().mean()) >= 0.9
    assert roc_auc_score(judged.flatten().numpy(), p_sel.flatten().numpy()) >= 0.9
    w = smp.negative_weight(s, rank)
    at_equal_s = (s > 0.65) & (s < 0.75)
    assert float(w[unjudged_match & at_equal_s].mean()) <= 0.5 * float(w[judged_non_match | (judged & at_equal_s & ~y)]
                                                                       .mean())
    # without the selection model (labels read as relevance) most unjudged matches look irrelevant
    naive = torch.nn.Parameter(torch.tensor([10.0, 0.5]))
    opt = torch.optim.Adam([naive], lr=0.1)
    for _ in range(150):
        p = torch.sigmoid(naive[0] * (s - naive[1]))
        loss = torch.nn.functional.binary_cross_entropy(p, y.float())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert float((torch.sigmoid(naive[0] * (s - naive[1]))[unjudged_match] > 0.5).float().mean()) < 0.7


def test_cet_reads_the_pool_ranks_of_its_pairs_in_both_directions():
    table = rank_table([np.array([2, 0]), np.array([1])], n_a=3)
    assert table.toarray().tolist() == [[2, 0, 1], [0, 1, 0]]
    smp = S.build("cet")
    ds = pairs_dataset(n_a=3, n_b=2)
    ds.b_meta["pool_ranked"] = [np.array([2, 0]), np.array([1])]
    smp.start_epoch(EpochContext(1, warmup=False, dataset=ds))
    t2i = SampleContext("t2i", anchor_ids=torch.tensor([0, 1]), candidate_ids=torch.tensor([0, 1, 2, -1]))
    assert smp.pool_ranks(t2i, (2, 4), torch.device("cpu")).tolist() == [[2, 3, 1, 3], [3, 1, 3, 3]]
    i2t = SampleContext("i2t", anchor_ids=torch.tensor([2]), candidate_ids=torch.tensor([1, 0]))
    assert smp.pool_ranks(i2t, (1, 2), torch.device("cpu")).tolist() == [[3, 1]]
    with pytest.raises(ValueError, match="pooling_depth"):
        S.build("cet").start_epoch(EpochContext(1, warmup=False, dataset=pairs_dataset()))


# ================================================================== end to end
@pytest.fixture(scope="module")
def pairs_root(tmp_path_factory):
    """A pairs folder of 240 queries over 160 documents (16-d), duplicated query texts, ground truth, a split column."""
    root = tmp_path_factory.mktemp("pairs22")
    rng = np.random.default_rng(3)
    n_a, n_b = 160, 240
    a = unit(rng.normal(size=(n_a, 16)))
    b_to_a = rng.integers(0, n_a, n_b)
    b = unit(a[b_to_a] + 0.4 * rng.normal(size=(n_b, 16)))
    np.save(root / "a.npy", a)
    np.save(root / "b.npy", b)
    split = np.where(np.arange(n_a) % 5 == 0, "val", np.where(np.arange(n_a) % 5 == 1, "test", "train"))
    texts = [f"query {i % 200}" for i in range(n_b)]  # 40 exact duplicate texts
    pd.DataFrame({"b": range(n_b), "a": b_to_a, "text": texts, "split": split[b_to_a]}).to_csv(root / "pairs.csv",
                                                                                              index=False)
    near = np.argsort(-(a @ a.T), axis=1)[:, 1]  # each document's nearest other: a ground-truth match too
    pd.DataFrame({"b": np.arange(n_b), "a": near[b_to_a]}).to_csv(root / "relevance.csv", index=False)
    return root


@pytest.mark.parametrize("sampler,loss,extra", [
    ("in_batch", "asl", {}), ("in_batch", "wmse", {"loss_params": {"w_size": 32}}), ("hasa", None, {}),
    ("guided", None, {}), ("simans", None, {"sampler_params": {"refresh_every": 2}}),
    ("cet", None, {"dataset_options": {"pooling_depth": 5}}),
])
def test_each_new_method_trains_end_to_end(pairs_root, sampler, loss, extra):
    from fnlab.training.train import TrainConfig, train

    cfg = TrainConfig(dataset="pairs", dataset_root=str(pairs_root), sampler=sampler, loss=loss, epochs=2,
                      batch_size=32, queue_size=64, dim=16, warmup_epochs=0, posterior="paper", seed=0,
                      select_by="relevant", **extra)
    out = train(cfg)
    assert len(out["metrics"]) >= 2 and all(math.isfinite(m["loss"]) for m in out["metrics"] if m["epoch"] > 0)
    assert out["eval"]["relevant_recall"]["rsum"] > 0
    last = out["metrics"][-1]
    if sampler == "guided":
        assert last["guide_vetoed"] > 0
    if sampler == "cet":
        assert 0 < last["cet_neg_weight"] <= 1
    if sampler == "simans":
        assert last["simans_refreshes"] >= 2 and 0 <= last["mined_fn_rate"] <= 1


def test_the_benchmark_trains_a_sampler_pool_with_another_loss(tmp_path):
    from bench import reproduce

    assert reproduce._split("in_batch+asl") == ("in_batch", "asl") and "cet" not in reproduce._default_rows()
    rc = reproduce.main(["--datasets", "shapes", "-o", "n_train=64", "-o", "n_val=32", "-o", "n_test=32",
                         "--samplers", "in_batch+asl", "hasa", "--epochs", "1", "--warmup-epochs", "0", "--seeds", "0",
                         "--batch-size", "32", "--queue-size", "64", "--posterior", "paper", "--out", str(tmp_path)])
    assert rc == 0
    rows = pd.read_csv(tmp_path / "reproduce.csv").set_index("sampler")
    assert rows.loc["in_batch+asl", "loss"] == "asl" and rows.loc["hasa", "loss"] == "hasa"
