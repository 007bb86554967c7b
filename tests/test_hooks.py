"""The typed hooks between the trainer and the samplers and losses (fnlab.retrieval.hooks), and the
declarative registries every list of names is derived from."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from fnlab import losses as L
from fnlab import samplers as S
from fnlab.core.registry import Entry, ParamSpec, Registry
from fnlab.retrieval.hooks import CorpusIndex, EpochContext, PoolExtension, SampleContext
from fnlab.samplers.base import Sampler
from fnlab.training.objective import Relevance, SampledObjective


# ------------------------------------------------------------------ SampleContext
def test_sample_context_is_typed():
    mask = torch.tensor([[True, False, False], [False, True, False]])
    ctx = SampleContext.of(direction="t2i", positive_mask=mask, relevant_mask=mask.clone())
    assert ctx.anchor_side == "b" and ctx.candidate_side == "a" and not ctx.has_pool
    with pytest.raises(TypeError, match="no field.*pool"):
        SampleContext.of(pool=object())
    with pytest.raises(ValueError, match="'relevant_mask'.*shape"):
        SampleContext(relevant_mask=mask[:, :2]).check(2, 3)
    with pytest.raises(ValueError, match="'direction'"):
        SampleContext(direction="up").check(2, 3)
    one = ctx.rows(torch.tensor([False, True]))
    assert one.positive_mask.tolist() == [[False, True, False]] and one.direction == "t2i"
    calls = []
    assert ctx.memo("x", lambda: calls.append(1) or 7) == 7 and ctx.memo("x", lambda: 8) == 7 and calls == [1]
    assert one.memo("x", lambda: 9) == 9  # a sliced context computes its own


def test_samplers_take_the_context_or_its_fields():
    sims = torch.tensor([[0.9, 0.8, 0.1], [0.2, 0.9, 0.7]])
    mask = torch.tensor([[True, False, False], [False, True, False]])
    rel = torch.tensor([[True, True, False], [False, True, False]])
    oracle = S.build("oracle")
    a = oracle.weights(sims, sims.max(1).values, mask, relevant_mask=rel)
    b = oracle.weights(sims, sims.max(1).values, mask, ctx=SampleContext(relevant_mask=rel))
    assert torch.equal(a, b) and a[0, 1] == 0 and a[0, 2] == 1
    with pytest.raises(TypeError, match="no field"):
        S.build("random").weights(sims, sims[:, 0], mask, pool=None)


# ------------------------------------------------------------------ CorpusIndex / EpochContext
def test_corpus_index_searches_exactly_and_refreshes_when_told():
    g = torch.Generator().manual_seed(0)
    builds = []

    def encode():
        builds.append(1)
        x = torch.randn(50, 8, generator=g)
        return x / x.norm(dim=1, keepdim=True)

    idx = CorpusIndex(encode, refresh_every=10)
    q = idx.embeddings[:5] + 0.01
    excl = [np.array([i]) for i in range(5)]  # each query's own item is its labelled positive
    scores, ids = idx.search(q, 7, exclude=excl)
    brute = q @ idx.embeddings.T
    brute[torch.arange(5), torch.arange(5)] = -torch.inf
    want = brute.topk(7, dim=1)
    torch.testing.assert_close(scores, want.values, rtol=1e-5, atol=1e-5)
    assert not (ids == torch.arange(5)[:, None]).any()
    assert idx.version == 1 and idx.built_at == 0
    idx.ensure(9)
    assert idx.version == 1
    idx.ensure(10)
    assert idx.version == 2 and idx.built_at == 10 and len(builds) == 2
    frozen = CorpusIndex(encode)
    frozen.ensure(0)
    frozen.ensure(10**6)
    assert frozen.version == 1


def test_epoch_context_keeps_one_index_per_side_and_encoder():
    calls = []

    def encoder(split, side, which):
        calls.append((split, side, which))
        return np.eye(4, dtype=np.float32)

    ctx = EpochContext(2, warmup=False, encoder=encoder)
    a = ctx.index("a")
    assert ctx.index("a") is a and ctx.index("a", which="online") is not a
    assert calls == [("train", "a", "key"), ("train", "a", "online")]
    assert ctx.encode("val", "b").shape == (4, 4)
    with pytest.raises(ValueError, match="side"):
        ctx.encode("val", "c")
    with pytest.raises(RuntimeError, match="outside training"):
        EpochContext(1, warmup=True).encode("train", "a")


# ------------------------------------------------------------------ the sampler-to-loss channel
def test_side_information_is_gathered_at_the_picks_and_neg_mask_is_honoured():
    sims = torch.tensor([[0.9, 0.5, 0.4, 0.3], [0.2, 0.8, 0.6, 0.1]], requires_grad=True)
    mask = torch.eye(2, 4, dtype=torch.bool)
    pos = sims.diagonal()
    loss = L.build("infonce", temperature=0.5, reduction="none")
    keep = torch.tensor([[True, True, False, True], [True, True, True, False]])
    whole = loss(sims, pos, mask, neg_mask=keep)
    torch.testing.assert_close(whole, loss(sims, pos, mask | ~keep))  # a masked slot is no negative
    idx = torch.tensor([[1, 2], [2, 3]])
    picked = loss(sims, pos, mask, idx, neg_mask=keep)
    want = torch.stack([torch.logaddexp(pos[0] / 0.5, sims[0, 1] / 0.5) - pos[0] / 0.5,
                        torch.logaddexp(pos[1] / 0.5, sims[1, 2] / 0.5) - pos[1] / 0.5])
    torch.testing.assert_close(picked, want)
    with pytest.raises(ValueError, match="takes no side information"):
        loss(sims, pos, mask, fn_mask=keep)
    with pytest.raises(ValueError, match=r"'neg_mask' must be a tensor \[2, 4\]"):
        loss(sims, pos, mask, neg_mask=keep[:, :3])


# ------------------------------------------------------------------ the objective's hooks
class _Tiny(torch.nn.Module):
    def __init__(self, d_in: int = 6, d: int = 4) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.fa = torch.nn.Parameter(torch.randn(d_in, d, generator=g))
        self.fb = torch.nn.Parameter(torch.randn(d_in, d, generator=g))

    def encode_a(self, x):
        y = x @ self.fa
        return y / y.norm(dim=1, keepdim=True)

    def encode_b(self, x):
        y = x @ self.fb
        return y / y.norm(dim=1, keepdim=True)


class _Miner(Sampler):
    """Mines fixed images for caption anchors, flags slot 1 for the loss, draws nothing (whole pool)."""

    name = "test_miner"
    directions = ("t2i",)
    PROVIDES = ("neg_mask",)

    def __init__(self, ids, *, features=None, replace=False):
        self.ids, self.features, self.replace = ids, features, replace
        self.seen: list[SampleContext] = []
        self.scale = torch.nn.Parameter(torch.ones(()))

    def extend_pool(self, ctx, epoch):
        return PoolExtension(torch.tensor(self.ids), features=self.features, replace=self.replace)

    def side_info(self, sims, pos_sims, positive_mask, ctx):
        self.seen.append(ctx)
        keep = torch.ones_like(positive_mask)
        keep[:, 1] = False
        return {"neg_mask": keep}

    def num_picks(self, k):
        return None

    def parameters(self):
        return [self.scale]


def _objective(sampler, loss, *, relevance=None, queue_size=0):
    b_to_a = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(1))
    inputs = (x[:4], x)
    obj = SampledObjective(sampler, loss, L.build("triplet", mode="sum", reduction="sum"), _Tiny(), b_to_a,
                           queue_size=queue_size, dim=4, momentum=0.9, num_negatives=1, relevance=relevance,
                           generator=torch.Generator().manual_seed(0), inputs=inputs)
    obj.start_epoch(2, warmup=False, queue_starts=False, model=obj.model, fit_posterior=None)
    bidx = torch.tensor([0, 2, 4, 6])
    aidx = b_to_a[bidx]
    return obj, inputs, bidx, aidx


def test_pool_extension_appends_mined_candidates_with_labels_and_the_loss_sees_the_whole_pool():
    truth = np.kron(np.eye(4), np.ones((2, 1))).astype(bool)  # [n_b, n_a]: the labelled pairs...
    truth[0, 3] = True  # ...and caption 0 truly matches image 3 too: a false negative in the batch and when mined
    relevance = sp.csr_matrix(truth)
    miner = _Miner([1, 3])
    obj, (a_in, b_in), bidx, aidx = _objective(miner, L.build("infonce", reduction="sum"), relevance=relevance)
    model = obj.model
    fa, fb = model.encode_a(a_in[aidx]), model.encode_b(b_in[bidx])
    loss = obj.loss(fa, fb, a_in[aidx], b_in[bidx], aidx, bidx, warmup=False)
    ctx = miner.seen[-1]
    assert ctx.direction == "t2i" and ctx.extended_from == 4 and ctx.candidates.shape == (6, 4)
    assert ctx.candidate_ids.tolist() == [0, 1, 2, 3, 1, 3]
    assert ctx.partner_ids.tolist() == [0, 2, 4, 6, 2, 6]  # each mined image beside its first caption
    assert ctx.positive_mask[1].tolist() == [False, True, False, False, True, False]  # anchor 1's image, mined too
    # the whole pool, neg_mask honoured: recompute the loss by hand
    pool = torch.cat([fa, model.encode_a(a_in[torch.tensor([1, 3])])])
    sims = fb @ pool.T
    keep = ~ctx.positive_mask
    keep[:, 1] = False
    want = sum(torch.logaddexp(sims[i, i] / 0.07, torch.logsumexp(sims[i][keep[i]] / 0.07, 0)) - sims[i, i] / 0.07
               for i in range(4)) / 4
    torch.testing.assert_close(loss, want)
    loss.backward()  # the mined candidates were encoded with gradients
    assert model.fa.grad is not None and model.fa.grad.abs().sum() > 0
    m = obj.epoch_metrics()
    negatives = int(keep.sum())
    assert m["sampled_fn_rate"] == pytest.approx(2 / negatives)  # caption 0 against image 3, batch slot and mined
    assert m["mined_fn_rate"] == pytest.approx(1 / int(keep[:, 4:].sum()))
    assert obj.parameters() == [miner.scale]


def test_replacing_pool_and_synthetic_candidates():
    miner = _Miner([0, 1, 2, 3], features=torch.eye(4), replace=True)
    obj, (a_in, b_in), bidx, aidx = _objective(miner, L.build("infonce", reduction="sum"), queue_size=16)
    fa, fb = obj.model.encode_a(a_in[aidx]), obj.model.encode_b(b_in[bidx])
    obj.loss(fa, fb, a_in[aidx], b_in[bidx], aidx, bidx, warmup=False).backward()
    ctx = miner.seen[-1]
    assert ctx.extended_from == 0 and torch.equal(ctx.candidates, torch.eye(4))
    assert obj.queue is not None  # this sampler uses the queue; a replaced pool holds none of it
    assert obj.model.fa.grad is None  # no image was encoded: the image side got no gradient
    synth = _Miner([-1, -1], features=torch.eye(4)[:2])
    obj, (a_in, b_in), bidx, aidx = _objective(synth, L.build("infonce", reduction="sum"))
    fa, fb = obj.model.encode_a(a_in[aidx]), obj.model.encode_b(b_in[bidx])
    obj.loss(fa, fb, a_in[aidx], b_in[bidx], aidx, bidx, warmup=False)
    assert not synth.seen[-1].positive_mask[:, 4:].any()  # a synthetic candidate is never a positive
    with pytest.raises(ValueError, match="need their 'features'"):
        PoolExtension(torch.tensor([-1]))
    assert Relevance(sp.eye(3, format="csr", dtype=bool)).mask(np.array([0]), np.array([0, -1]), True).tolist() == [
        [True, False]]


def test_embedding_level_losses_see_the_batch_embeddings():
    class Align(L.Loss):
        name = "test_align"
        needs_embeddings = True

        def embed(self, fa, fb, ids):
            self.got = (fa, fb, ids)
            return (1 - (fa * fb).sum(dim=1)).mean()

    align = Align()
    obj, (a_in, b_in), bidx, aidx = _objective(S.build("random"), align)
    fa, fb = obj.model.encode_a(a_in[aidx]), obj.model.encode_b(b_in[bidx])
    loss = obj.loss(fa, fb, a_in[aidx], b_in[bidx], aidx, bidx, warmup=False)
    assert align.got[0] is fa and torch.equal(align.got[2], aidx)
    torch.testing.assert_close(loss, (1 - (fa * fb).sum(1)).mean())


def test_a_loss_that_needs_side_information_refuses_a_sampler_without_it():
    class NeedsRank(L.Loss):
        name = "test_rank"
        ACCEPTS = REQUIRES = ("rank",)

    with pytest.raises(ValueError, match="needs rank"):
        _objective(S.build("hardest"), NeedsRank())


# ------------------------------------------------------------------ registries
def test_registry_entries_are_declarative_and_lazy():
    reg = Registry("thing")
    reg.declare("frac", "fractions:Fraction", label="A fraction", params=(ParamSpec("n", 1, 0, 9, "numerator"),))
    assert reg.param_specs("frac")[0].name == "n" and reg.entry("frac").title == "A fraction"
    with pytest.raises(ValueError, match="declared twice"):
        reg.declare("frac", "fractions:Fraction")
    with pytest.raises(ValueError, match="valid names: frac"):
        reg.entry("nope")

    class Bad:
        PARAMS = ()

    reg.declare("bad", "builtins:object")
    with pytest.raises(TypeError, match="registry entry"):
        reg.register("bad")(Bad)
    with pytest.raises(ValueError, match="default"):
        ParamSpec("mode", "x", choices=("a", "b"))
    with pytest.raises(ValueError, match="low and high"):
        ParamSpec("t", 0.1)
    e = Entry("fne", params=(ParamSpec("mode", "a", choices=("a", "b"), variant=True),))
    assert e.variants() == [("a", {"mode": "a"}), ("b", {"mode": "b"})]


def test_names_and_specs_load_without_torch():
    code = ("import sys; from fnlab import data, losses, samplers; "
            "assert samplers.param_specs('fne') and losses.param_specs('dcl') and data.entry('shapes').summary; "
            "from fnlab.cli.train import SAMPLER_FLAGS; "
            "print(len(samplers.available()), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) >= 8 and out[1] == "False"


def test_every_list_of_names_is_derived_from_the_registries():
    from app import labels
    from bench import reproduce
    from fnlab.cli.train import SAMPLER_FLAGS
    from fnlab.training.train import train_losses

    assert set(train_losses()) == set(L.available())
    flagged = {p.name for e in S.SAMPLERS.entries() for p in e.params if p.flag}
    assert set(SAMPLER_FLAGS) == flagged >= {"mode", "tau", "margin", "fn_cutoff", "top_k", "a", "b", "base"}
    assert reproduce.SAMPLERS == S.variants(separator=" ") and "fne paper" in reproduce.SAMPLERS
    for name in S.available():
        assert labels.sampler(name) != name or S.entry(name).label == name  # every sampler has a label
        for spec in S.param_specs(name):
            assert "_" not in labels.param(name, spec.name)
    assert labels.sampler_variant("fne", {"mode": "paper"}) == "FNE · paper"
    assert all(labels.loss(n) for n in L.available())


def test_the_worked_example_of_the_architecture_page_runs(monkeypatch):
    """docs/ARCHITECTURE.md's example sampler and entry, run as written through one training step."""
    import re
    from pathlib import Path

    import fnlab.samplers.registry as R

    text = (Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md").read_text()
    sampler_code, entry_code = re.findall(r"```python\n(.*?)```", text, flags=re.S)[:2]
    reg = Registry("sampler")
    monkeypatch.setattr(R, "register", reg.register)  # a throwaway registry: the suite's stays as it is
    ns: dict = {}
    exec(compile(entry_code, "ARCHITECTURE.md", "exec"), {"SAMPLERS": reg, "ParamSpec": ParamSpec})  # noqa: S102
    exec(compile(sampler_code, "ARCHITECTURE.md", "exec"), ns)  # noqa: S102 - our own documentation
    assert reg.param_specs("nearest_mined")[0].name == "top_k" and reg.entry("nearest_mined").meta["no_playground"]
    assert reg.get("nearest_mined") is ns["NearestMinedSampler"] and ns["NearestMinedSampler"].PARAMS
    smp = reg.build("nearest_mined", top_k=2)
    b_to_a = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(1))
    model = _Tiny()
    obj = SampledObjective(smp, L.build("triplet", mode="mean", reduction="sum"),
                           L.build("triplet", mode="sum", reduction="sum"), model, b_to_a, queue_size=0, dim=4,
                           momentum=0.9, num_negatives=1, relevance=None, generator=torch.Generator().manual_seed(0),
                           inputs=(x[:4], x), encoder=lambda split, side, enc: (enc.encode_a(x[:4]) if side == "a"
                                                                                  else enc.encode_b(x)).detach())
    obj.start_epoch(2, warmup=False, queue_starts=False, model=model, fit_posterior=None)
    bidx = torch.tensor([0, 2, 4, 6])
    aidx = b_to_a[bidx]
    seen = []
    real = smp.sample
    monkeypatch.setattr(smp, "sample", lambda *a, **k: seen.append((a, k)) or real(*a, **k))
    loss = obj.loss(model.encode_a(x[:4][aidx]), model.encode_b(x[bidx]), x[:4][aidx], x[bidx], aidx, bidx,
                    warmup=False)
    assert torch.isfinite(loss)
    (sims, _, mask), kw = seen[-1]
    ctx = kw["ctx"]
    assert ctx.extended_from == 4 and sims.shape[1] > 4
    picks = real(sims, sims.diagonal(), mask, ctx=ctx, generator=torch.Generator().manual_seed(0))
    assert (picks >= 4).all()  # drawn from the mined slots only


def test_cli_flags_and_the_default_loss_come_from_the_registries():
    from fnlab.cli import build_parser
    from fnlab.cli.train import config_from_args

    parser = build_parser()
    base = ["train", "--dataset", "shapes", "--out", "x", "--epochs", "1"]
    cfg = config_from_args(parser.parse_args([*base, "--sampler", "star"]))
    assert cfg.loss == "pairwise_logistic" and cfg.sampler_params == {}
    cfg = config_from_args(parser.parse_args([*base, "--sampler", "fne", "--mode", "paper", "--tau", "2"]))
    assert cfg.loss == "triplet" and cfg.sampler_params == {"mode": "paper", "tau": 2.0}
    with pytest.raises(ValueError, match=r"--mode.*expected one of calibrated, paper"):
        config_from_args(parser.parse_args([*base, "--sampler", "fne", "--mode", "soft"]))
    with pytest.raises(ValueError, match="lambdarank.*needs rank"):
        config_from_args(parser.parse_args([*base, "--sampler", "hardest", "--loss", "lambdarank"]))


def test_mined_fn_rate_counts_each_anchors_own_mined_candidates():
    truth = np.kron(np.eye(4), np.ones((2, 1))).astype(bool)
    truth[0, 3] = True  # caption 0 (row 0) truly matches image 3
    relevance = sp.csr_matrix(truth)

    class Owned(_Miner):
        def extend_pool(self, ctx, epoch):  # image 3 mined for row 0, image 1 for row 2
            return PoolExtension(torch.tensor([3, 1]), owners=torch.tensor([0, 2]))

    miner = Owned([3, 1])
    obj, (a_in, b_in), bidx, aidx = _objective(miner, L.build("infonce", reduction="sum"), relevance=relevance)
    fa, fb = obj.model.encode_a(a_in[aidx]), obj.model.encode_b(b_in[bidx])
    obj.loss(fa, fb, a_in[aidx], b_in[bidx], aidx, bidx, warmup=False)
    assert obj.epoch_metrics()["mined_fn_rate"] == pytest.approx(1 / 2)  # row 0's own pick is a false negative
    with pytest.raises(ValueError, match="owners"):
        PoolExtension(torch.tensor([1, 2]), owners=torch.tensor([0]))
