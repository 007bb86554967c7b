"""The related methods built on the hooks (STAR, ADORE, ClusterNS, dynamic mining, MoCo-HNF): their formulas
against transcriptions of the official code written here, and the planted acceptance tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from fnlab import losses as L
from fnlab import samplers as S
from fnlab.retrieval.hooks import EpochContext, SampleContext
from fnlab.samplers.clusterns import farthest_point_init
from fnlab.samplers.dynamic_hn import is_stale


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def epoch_over(anchors: torch.Tensor, candidates: torch.Tensor, labels: sp.csr_matrix, direction: str = "t2i",
               **kw) -> EpochContext:
    """An epoch context over fixed training embeddings (anchor side and candidate side) and labels."""
    sides = {"b": anchors, "a": candidates} if direction == "t2i" else {"a": anchors, "b": candidates}
    labels = sp.csr_matrix(labels)
    by_dir = {direction: labels, ("i2t" if direction == "t2i" else "t2i"): labels.T.tocsr()}
    return EpochContext(2, warmup=False, encoder=lambda split, side, which: sides[side],
                        labels=lambda d: by_dir[d], generator=torch.Generator().manual_seed(0), **kw)


# ================================================================== STAR
def official_inbatch_train(q, d, other, rel_pair_mask, hard_pair_mask):
    """Transcription of DRhard ``model.py`` ``inbatch_train`` (scores already computed as dot products)."""
    b = q.shape[0]
    batch_scores = q @ d.T
    single_positive = batch_scores.diagonal()
    positive = single_positive.reshape(-1, 1).repeat(1, b).reshape(-1)
    logits = torch.cat([positive[:, None], batch_scores.reshape(-1)[:, None]], dim=1)
    first = -F.log_softmax(logits, dim=1)[:, 0] * rel_pair_mask.reshape(-1)
    first_loss, first_num = first.sum(), rel_pair_mask.sum()
    other_scores = (q @ other.T).reshape(-1)
    n_other = other.shape[0]
    positive = single_positive.reshape(-1, 1).repeat(1, n_other).reshape(-1)
    logits = torch.cat([positive[:, None], other_scores[:, None]], dim=1)
    second = -F.log_softmax(logits, dim=1)[:, 0] * hard_pair_mask.reshape(-1)
    return (first_loss + second.sum()) / (first_num + hard_pair_mask.sum())


@pytest.mark.parametrize("b,h", [(4, 4), (9, 18)])
def test_pairwise_logistic_equals_the_official_inbatch_train(b, h):
    g = torch.Generator().manual_seed(b)
    q, d, other = (torch.randn(n, 6, generator=g, dtype=torch.float64) for n in (b, b, h))
    rel = torch.ones(b, b, dtype=torch.float64) - torch.eye(b, dtype=torch.float64)
    rel[0, 1] = 0  # document 1 is labelled relevant to query 0 too
    hard = (torch.rand(b, h, generator=g) > 0.1).to(torch.float64)
    want = official_inbatch_train(q, d, other, rel, hard)
    sims = q @ torch.cat([d, other]).T
    positive = torch.cat([rel == 0, hard == 0], dim=1)
    got = L.build("pairwise_logistic")(sims, sims.diagonal(), positive)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    summed = L.build("pairwise_logistic", reduction="sum")(sims, sims.diagonal(), positive)
    torch.testing.assert_close(summed / b, want)  # what the trainer computes: the sum over anchors / B
    one = L.build("pairwise_logistic")(torch.tensor([[0.9, 0.3]]), torch.tensor([0.9]), torch.tensor([[True, False]]))
    assert float(one) == pytest.approx(math.log1p(math.exp(0.3 - 0.9)), abs=1e-7)


def test_star_mines_once_never_a_labelled_positive_and_draws_uniformly():
    g = torch.Generator().manual_seed(0)
    n_q, n_c = 60, 300
    anchors, cands = unit(torch.randn(n_q, 8, generator=g)), unit(torch.randn(n_c, 8, generator=g))
    rows, cols = np.r_[np.arange(n_q), 3], np.r_[np.arange(n_q) * 5 % n_c, 7]  # query 3: a second positive, 7
    labels = sp.csr_matrix((np.ones(n_q + 1, dtype=bool), (rows, cols)), shape=(n_q, n_c))
    smp = S.build("star", top_k=200)
    epoch = epoch_over(anchors, cands, labels)
    smp.start_epoch(epoch)
    mined = smp.mined["t2i"]
    assert mined.shape == (n_q, 200) and (mined >= 0).all()
    assert not np.asarray(labels[np.repeat(np.arange(n_q), 200), mined.flatten().numpy().copy()]).any()  # 0 of 12,000
    brute = (anchors @ cands.T).masked_fill(torch.from_numpy(labels.toarray()), -math.inf).topk(200).indices
    assert torch.equal(mined.sort(dim=1).values, brute.sort(dim=1).values)
    before = mined.clone()
    anchors.mul_(-1)  # the model moves on: a later epoch changes nothing
    smp.start_epoch(EpochContext(3, warmup=False, encoder=epoch.encoder, labels=epoch.labels))
    assert torch.equal(smp.mined["t2i"], before)
    # each step draws one per anchor uniformly from its list: plant 5 "false negatives" in the top 10 of a list
    reps = 10_000
    smp.mined["t2i"] = before[:1].expand(reps, -1).clone()
    ctx = SampleContext("t2i", anchors=anchors[:1].expand(reps, -1), anchor_ids=torch.arange(reps))
    ext = smp.extend_pool(ctx, epoch)
    drawn = ext.ids
    assert torch.equal(ext.owners, torch.arange(reps))  # one per anchor, shared by the batch
    planted = set(before[0, :10:2].tolist())
    rate = float(np.isin(drawn.numpy(), list(planted)).mean())
    assert abs(rate - 5 / 200) < 0.01 and len(drawn) == reps


# ================================================================== ADORE
def official_adore_query_loss(y_pred: torch.Tensor, retrieve_pids, rel_pids, metric_cut: int) -> torch.Tensor:
    """Transcription of DRhard ``adore/train.py`` (one query of the inner loop); ``y_pred`` over the list
    (retrieved, then the labelled positives appended when none was retrieved)."""
    target = np.isin(retrieve_pids, rel_pids).astype(np.int32)
    if target.sum() == 0:
        retrieve_pids = np.hstack([retrieve_pids, rel_pids])
        target = np.hstack([target, [True] * len(rel_pids)])
    target = target.reshape(-1, 1)
    rel_diff = target - target.T
    pos_pairs = torch.tensor((rel_diff > 0).astype(np.float64))
    neg_pairs = torch.tensor((rel_diff < 0).astype(np.float64))
    num_pairs = 2 * pos_pairs.sum()
    y = y_pred.reshape(-1, 1)
    c_pos = torch.log(1 + torch.exp(-(y - y.T)))
    c_neg = torch.log(1 + torch.exp(y - y.T))
    c = pos_pairs * c_pos + neg_pairs * c_neg
    arr = 1 / torch.arange(1, 1 + len(y), dtype=torch.float64)
    arr[metric_cut:] = 0
    return (c * (arr.view(-1, 1) - arr.view(1, -1)).abs()).sum() / num_pairs


@pytest.mark.parametrize("retrieved_pos", [True, False])
def test_lambdarank_equals_the_official_adore_loss(retrieved_pos):
    from fnlab.samplers.adore import retrieved_ranks

    g = torch.Generator().manual_seed(3)
    k, n_c, cut = 12, 40, 8
    retrieved = torch.stack([torch.randperm(n_c, generator=g)[:k] for _ in range(3)])
    rel = [[int(retrieved[0, 4])], [int(retrieved[1, 0]), int(retrieved[1, 9])],
           [int(retrieved[2, 2])] if retrieved_pos else [int(torch.tensor(list(set(range(n_c))
                                                                              - set(retrieved[2].tolist())))[0])]]
    labels = sp.csr_matrix((np.ones(4, dtype=bool), ([0, 1, 1, 2], [r for rr in rel for r in rr])), shape=(3, n_c))
    columns = torch.unique(torch.cat([retrieved.flatten(), torch.tensor([r for rr in rel for r in rr])]))
    rank = retrieved_ranks(retrieved, labels, columns)
    scores = torch.randn(3, n_c, generator=g, dtype=torch.float64)
    sims = scores[:, columns]
    positive = torch.from_numpy(labels[:, columns.numpy()].toarray())
    got = L.build("lambdarank", metric_cut=cut, reduction="none")(sims, sims[:, 0], positive, rank=rank)
    for i in range(3):
        pids = retrieved[i].numpy()
        lst = np.hstack([pids, rel[i]]) if not np.isin(pids, rel[i]).any() else pids
        want = official_adore_query_loss(scores[i, torch.from_numpy(lst)], pids, np.array(rel[i]), cut)
        torch.testing.assert_close(got[i], want, rtol=1e-10, atol=1e-12)


def test_adore_pushes_a_false_negative_above_the_positive_hardest():
    # one query's list: a false negative at rank 1, the labelled positive at rank 2, then true negatives
    sims = torch.tensor([[0.95, 0.90, 0.60, 0.55, 0.40, 0.30]], dtype=torch.float64, requires_grad=True)
    positive = torch.tensor([[False, True, False, False, False, False]])
    rank = torch.arange(1, 7)[None, :]
    loss_fn = L.build("lambdarank", reduction="sum")
    w = (1 / rank[0, 1] - 1 / rank[0]).abs().double() * ~positive[0]
    assert float(w[0]) == 0.5 and int(w.argmax()) == 0  # |1/2 - 1/1| is the largest weight of the row
    loss_fn(sims, sims[:, 1], positive, rank=rank).backward()
    grad = sims.grad[0]
    assert int(grad.argmax()) == 0 and grad[0] > 0  # dL/ds_FN: the largest push down among the candidates
    push = S.build("adore").weights(sims.detach(), sims.detach()[:, 1], positive)[0]
    assert int(push.argmax()) == 0 and push[1] == 0  # the playground's view agrees; none on the positive


class _TwoTower(torch.nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.wa = torch.nn.Parameter(torch.randn(6, 4, generator=g))
        self.wb = torch.nn.Parameter(torch.randn(6, 4, generator=g))

    def encode_a(self, x):
        return unit(x @ self.wa)

    def encode_b(self, x):
        return unit(x @ self.wb)


def test_adore_trains_the_query_side_only_against_a_frozen_index():
    from fnlab.training.objective import SampledObjective

    g = torch.Generator().manual_seed(2)
    a_in, b_in = torch.randn(10, 6, generator=g), torch.randn(30, 6, generator=g)
    b_to_a = torch.arange(30) // 3
    model = _TwoTower()
    smp = S.build("adore", top_k=5)

    def encoder(split, side, enc):
        with torch.no_grad():
            return enc.encode_a(a_in) if side == "a" else enc.encode_b(b_in)

    obj = SampledObjective(smp, L.build("lambdarank", reduction="sum"), L.build("triplet", mode="sum"), model, b_to_a,
                           queue_size=64, dim=4, momentum=0.9, num_negatives=1, relevance=None,
                           generator=torch.Generator().manual_seed(0), inputs=(a_in, b_in), encoder=encoder)
    assert obj.queue is None and obj.directions == ("t2i",)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    obj.start_epoch(2, warmup=False, queue_starts=False, model=model, fit_posterior=None)
    images_before, captions_before = encoder("train", "a", model).clone(), encoder("train", "b", model).clone()
    for step in range(3):
        bidx = torch.arange(8) + step
        aidx = b_to_a[bidx]
        loss = obj.loss(model.encode_a(a_in[aidx]), model.encode_b(b_in[bidx]), a_in[aidx], b_in[bidx], aidx, bidx,
                        warmup=False)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step == 0:
            index = obj.indexes[("a", "online")]
            frozen = index.embeddings.clone()
    assert torch.equal(index.embeddings, frozen) and index.version == 1  # never rebuilt
    assert torch.equal(encoder("train", "a", model), images_before)  # the candidate side: bit-identical
    assert torch.equal(frozen, images_before)
    assert not torch.allclose(encoder("train", "b", model), captions_before)  # the query side trained


# ================================================================== ClusterNS
def planted_clusters(n_clusters=8, per=16, d=32, seed=0, spread=0.1):
    """von Mises-like clusters on the unit sphere: intra-cluster cosine about 0.9, inter about 0."""
    g = torch.Generator().manual_seed(seed)
    centres = unit(torch.randn(n_clusters, d, generator=g, dtype=torch.float64))
    x = unit(centres.repeat_interleave(per, 0) + spread * torch.randn(n_clusters * per, d, generator=g,
                                                                      dtype=torch.float64))
    return x, torch.arange(n_clusters).repeat_interleave(per)


def official_momentum_update(centroid, datapoints, lr):
    """Transcription of ClusterNS ``kmeans_cluster.forward`` + ``update`` (``kmeans_optim="momentum"``)."""
    intra = F.cosine_similarity(datapoints.unsqueeze(1), centroid.unsqueeze(0), dim=-1)
    dp_index = intra.argmax(dim=-1, keepdim=True)
    index_dp = F.one_hot(dp_index.squeeze(-1), centroid.shape[0]).T
    data = index_dp.to(datapoints.dtype) @ datapoints
    updated = index_dp.sum(dim=-1).bool().unsqueeze(1).expand_as(centroid)
    data = data + centroid * updated.logical_not()
    return lr * data + (1 - lr) * centroid


def test_clusterns_update_equals_the_official_momentum_step():
    x, _ = planted_clusters(seed=1)
    smp = S.build("clusterns", k=8, kmeans_lr=1e-3)
    smp.start(x, "t2i")
    want = smp.centroids["t2i"].clone()
    for _ in range(5):
        want = official_momentum_update(want, x, 1e-3)
        smp.update(x, "t2i")
    torch.testing.assert_close(smp.centroids["t2i"], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clusterns_flags_planted_same_cluster_pairs(seed):
    x, cluster = planted_clusters(seed=seed)
    truth = (cluster[:, None] == cluster[None, :]) & ~torch.eye(128, dtype=torch.bool)
    for k, need_recall in ((8, 0.95), (16, 0.0)):
        smp = S.build("clusterns", k=k, seed=seed)
        smp.start(x, "t2i")
        for _ in range(20):
            smp.update(x, "t2i")
        flagged = smp.same_cluster(x, "t2i")
        recall = float((flagged & truth).sum() / truth.sum())
        precision = float((flagged & truth).sum() / flagged.sum().clamp_min(1))
        assert recall >= need_recall and precision >= 0.95, (k, recall, precision)
        own = smp.assign(x, "t2i").argmax(dim=1)
        hn = smp.hard_negatives(x, "t2i")
        assert not torch.isclose(hn, F.normalize(smp.centroids["t2i"][own], dim=1)).all(dim=1).any()
    # the official chain start (the point least similar to the *last* centroid) revisits clusters
    chain = farthest_point_init(x, 8, 0, chain=True)
    covered = {int(cluster[(x @ c).argmax()]) for c in chain}
    assert len(covered) < 8


def official_bml(cos, fn_mask, alpha, beta):
    """Transcription of ClusterNS ``kmeans_cluster.false_negative_loss`` (mean over the B x B matrix)."""
    positive = cos.diag().unsqueeze(-1).expand_as(cos)
    delta = (cos - positive) * fn_mask
    return (F.relu(delta + alpha) + F.relu(-delta - beta)).mean()


def test_infonce_bml_equals_the_official_objective():
    g = torch.Generator().manual_seed(0)
    b, t = 6, 0.05
    z1, z2, z3 = (unit(torch.randn(b, 8, generator=g, dtype=torch.float64)) for _ in range(3))
    fn = torch.rand(b, b, generator=g) > 0.6
    fn.fill_diagonal_(False)
    cos = z1 @ z2.T
    logits = torch.cat([cos, z1 @ z3.T], dim=1) / t
    want = F.cross_entropy(logits, torch.arange(b)) + 1e-2 * official_bml(cos, fn.double(), 0.2, 0.5)
    sims = torch.cat([cos, z1 @ z3.T], dim=1)
    positive = torch.cat([torch.eye(b, dtype=torch.bool), torch.zeros(b, b, dtype=torch.bool)], dim=1)
    fn_mask = torch.cat([fn, torch.zeros(b, b, dtype=torch.bool)], dim=1)
    loss = L.build("infonce_bml", temperature=t, bml_weight=1e-2)
    torch.testing.assert_close(loss(sims, cos.diag(), positive, fn_mask=fn_mask), want)
    # parity: no flags and no weight is InfoNCE over the whole pool
    plain = L.build("infonce", temperature=t)(sims, cos.diag(), positive)
    torch.testing.assert_close(L.build("infonce_bml", temperature=t, bml_weight=0.0)(sims, cos.diag(), positive),
                               plain, rtol=1e-6, atol=1e-6)


def test_bml_unit_values():
    loss = L.build("infonce_bml")
    pos = torch.zeros(1)
    for delta, want in ((-0.3, 0.0), (0.0, 0.2), (-0.7, 0.2)):
        sims = torch.tensor([[delta]], requires_grad=True)
        torch.testing.assert_close(loss.bml(sims, pos, torch.tensor([[True]])), torch.tensor([want]))
    sims = torch.tensor([[0.5]], requires_grad=True)
    value = loss.bml(sims, pos, torch.tensor([[False]]))
    value.sum().backward()
    assert float(value.detach()) == pytest.approx(0.2) and float(sims.grad) == 0.0  # unflagged: constant alpha


# ================================================================== dynamic hard-negative mining
def test_the_refresh_rule():
    s0 = torch.tensor(0.6)
    assert bool(is_stale(torch.tensor(0.50), s0))  # 0.575 < 0.6: replaced
    assert not bool(is_stale(torch.tensor(0.55), s0))  # 0.6325 >= 0.6: kept
    assert not bool(is_stale(torch.tensor(0.50), s0, abs_cap=0.4))


def _planted_queries():
    """Two caption queries over 4 images: image 0 is each query's labelled positive, image 1 a ground-truth
    false negative at the top (near-copy of the positive), images 2 and 3 true negatives."""
    cands = unit(torch.tensor([[1.0, 0.0, 0.0], [0.999, 0.045, 0.0], [0.8, 0.6, 0.0], [0.0, 1.0, 0.0]]))
    anchors = unit(torch.tensor([[1.0, 0.0, 0.0], [0.99, 0.0, 0.14]]))
    labels = sp.csr_matrix(np.array([[1, 0, 0, 0], [1, 0, 0, 0]], dtype=bool))
    return anchors, cands, labels


@pytest.mark.parametrize("filt,want", [("none", 1), ("positive_aware", 2)])
def test_dynamic_mining_replacement_with_and_without_the_filter(filt, want):
    anchors, cands, labels = _planted_queries()
    smp = S.build("dynamic_hn", filter=filt, depth=3)
    epoch = epoch_over(anchors, cands, labels)
    ctx = SampleContext("t2i", anchors=anchors, anchor_ids=torch.arange(2))
    epoch.step = 1
    ext = smp.extend_pool(ctx, epoch)  # the first step: mines every anchor's hard negative
    assert ext.ids.tolist() == [want, want]  # unfiltered: the planted false negative; filtered: a true negative
    assert not np.asarray(labels[[0, 1], ext.ids.numpy().copy()]).any()  # never a labelled positive


@pytest.mark.parametrize("now,replaced", [(0.50, True), (0.55, False)])
def test_dynamic_mining_replaces_stale_negatives_on_its_period_only(now, replaced):
    """A cached hard negative mined at s0 = 0.6 that the current model scores ``now``: replaced at 0.50
    (0.575 < 0.6), kept at 0.55 (0.6325 >= 0.6); checked on step 100, not on step 99."""
    anchors = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    cands = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.6, 0.8], [0.0, math.sqrt(1 - now**2), now], [0.0, 1.0, 0.0]])
    labels = sp.csr_matrix(np.array([[1, 0, 0, 0], [1, 0, 0, 0]], dtype=bool))
    smp = S.build("dynamic_hn", period=100, depth=3)
    epoch = epoch_over(anchors, cands, labels)
    ctx = SampleContext("t2i", anchors=anchors, anchor_ids=torch.arange(2))
    epoch.step = 1
    smp.extend_pool(ctx, epoch)  # mines
    assert smp.hard["t2i"][1].tolist() == [1]  # query 1's hardest non-positive (0.8)
    smp.hard["t2i"][1], smp.s0["t2i"][1] = 2, 0.6  # plant: image 2, mined when it scored 0.6
    epoch.step = 99
    smp.extend_pool(ctx, epoch)
    assert smp.hard["t2i"][1].tolist() == [2] and smp.checks == 0  # not a check step
    epoch.step = 100
    smp.extend_pool(ctx, epoch)
    assert smp.checks == 1
    assert smp.hard["t2i"][1].tolist() == ([1] if replaced else [2])  # the fresh hardest, image 1 (0.8)
    if replaced:
        assert float(smp.s0["t2i"][1]) == pytest.approx(0.8)  # its score now is its new s0


# ================================================================== MoCo-HNF
def test_moco_hnf_samples_planted_queue_duplicates_more_than_random():
    g = torch.Generator().manual_seed(0)
    b, queue = 8, 4096
    sims = torch.rand(b, queue + b, generator=g) * 0.6  # everything else at cosine <= 0.6
    positive = torch.zeros(b, queue + b, dtype=torch.bool)
    positive[torch.arange(b), torch.arange(b)] = True
    sims[torch.arange(b), torch.arange(b)] = 0.99
    relevant = positive.clone()
    for i in range(b):  # two near-copies of each anchor's item in the queue, unlabelled
        cols = b + torch.randperm(queue, generator=g)[:2]
        sims[i, cols] = 0.95
        relevant[i, cols] = True
    fn = relevant & ~positive
    smp = S.build("moco_hnf", top_n=16)
    picks = smp.sample(sims, sims.diagonal(), positive, k=smp.num_picks(1))
    rate = float(fn.gather(1, picks).float().mean())
    rand = S.build("random").sample(sims, sims.diagonal(), positive, k=16, generator=torch.Generator().manual_seed(0))
    rate_random = float(fn.gather(1, rand).float().mean())
    aware = S.build("positive_aware", top_k=16).sample(sims, sims.diagonal(), positive, k=16,
                                                       generator=torch.Generator().manual_seed(0))
    assert rate >= 2 / 16 - 1e-9 and rate > rate_random and float(fn.gather(1, aware).float().mean()) == 0.0
    w = smp.weights(sims, sims.diagonal(), positive)
    assert torch.equal((w > 0).sum(dim=1), torch.full((b,), 16))


# ================================================================== every method trains
def test_each_method_trains_one_short_epoch_from_the_benchmark(tmp_path):
    """``bench/reproduce.py`` trains every new method (one short epoch on a small split, the sampler active from
    the first step) with its own default loss."""
    import pandas as pd

    from bench import reproduce

    new = ["star", "adore", "clusterns", "dynamic_hn", "moco_hnf"]
    assert set(new) <= set(reproduce.SAMPLERS)
    rc = reproduce.main(["--datasets", "shapes", "-o", "n_train=96", "-o", "n_val=32", "-o", "n_test=32",
                         "--samplers", *new, "--epochs", "1", "--warmup-epochs", "0", "--seeds", "0",
                         "--batch-size", "32", "--queue-size", "64", "--posterior", "paper", "--out", str(tmp_path)])
    assert rc == 0
    rows = pd.read_csv(tmp_path / "reproduce.csv").set_index("sampler")
    assert list(rows.index) == new
    assert rows["loss"].tolist() == [S.default_loss(n) for n in new]
    assert rows["sampled_fn_rate"].between(0, 1).all() and rows["rsum"].notna().all()
    assert rows.loc[["star", "adore", "dynamic_hn"], "mined_fn_rate"].between(0, 1).all()  # mined slots reached the pool
