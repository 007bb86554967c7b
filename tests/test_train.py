"""Training loop: learning happens, seeds reproduce, FN rate bookkeeping, run outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from fnlab.storage.runs import RunStore
from fnlab.training.objective import Relevance
from fnlab.training.train import Callback, TrainConfig, train

TINY = {"n_train": 160, "n_val": 40, "n_test": 40}


def tiny_config(**kw) -> TrainConfig:
    base = dict(dataset="shapes", dataset_options=TINY, sampler="random", epochs=2, batch_size=32,
                queue_size=0, dim=32, seed=0, device="cpu", num_threads=1)
    base.update(kw)
    return TrainConfig(**base)


class Recorder(Callback):
    def __init__(self):
        self.steps, self.epochs, self.started, self.ended = 0, [], None, None

    def on_train_start(self, config, info):
        self.started = info

    def on_step(self, epoch, step, steps, loss):
        self.steps += 1
        assert math.isfinite(loss)

    def on_epoch_end(self, epoch, metrics):
        self.epochs.append(metrics)

    def on_train_end(self, run):
        self.ended = run


def test_short_training_learns_above_chance(tmp_path):
    """Recall on held-out data well above chance after a few epochs (learning happened)."""
    rec = Recorder()
    store = RunStore(tmp_path)
    run = train(tiny_config(epochs=4, lr=3e-3, sampler="semihard"), callbacks=[rec], store=store, name="learn")
    ev = run.load_json("eval")
    n_a, n_b = 40, 200
    # chance rSum: t2i R@K = K / n_a; i2t (5 captions per image) R@K = 1 - C(n_b - 5, K) / C(n_b, K)
    chance = sum(100 * k / n_a + 100 * (1 - math.comb(n_b - 5, k) / math.comb(n_b, k)) for k in (1, 5, 10))
    assert ev["recall"]["rsum"] > 1.8 * chance, (ev["recall"], chance)
    # run contents per the contract
    for f in ("emb_a_val.npy", "emb_b_val.npy", "emb_a_test.npy", "emb_b_test.npy", "model.pt",
              "posterior.json", "eval.json", "config.json"):
        assert run.has(f), f
    emb = run.load_array("emb_a_test")
    assert emb.dtype == np.float32 and emb.shape == (n_a, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    m = run.metrics
    assert list(m["epoch"]) == [1, 2, 3, 4]
    assert {"loss", "val_rsum", "sampled_fn_rate", "seconds"} <= set(m.columns)
    assert m["sampled_fn_rate"].between(0, 1).all()
    assert run.config["dataset"] == {"name": "shapes", "root": None, "options": TINY}
    assert rec.steps == 4 * rec.started["steps_per_epoch"] and len(rec.epochs) == 4 and rec.ended is not None
    assert {"auroc", "ap", "ece", "similarity_auroc", "similarity_ap", "reliability", "prior_estimated"} <= set(ev["fn_detection"])
    # the config round-trips
    assert TrainConfig.from_dict(run.config).to_run_config(run.config["dataset"]) == {k: v for k, v in run.config.items() if k != "model_spec"}


def test_same_seed_same_numbers_with_queue_and_fne():
    cfg = dict(sampler="fne", sampler_params={"mode": "paper", "min_confident": 5}, queue_size=96, epochs=2,
               warmup_epochs=1, eval_splits=("val",))
    a = train(tiny_config(**cfg))
    b = train(tiny_config(**cfg))
    for ra, rb in zip(a["metrics"], b["metrics"], strict=True):
        for k in ("loss", "val_rsum", "sampled_fn_rate"):
            assert ra[k] == pytest.approx(rb[k], rel=1e-6, abs=1e-9) or (math.isnan(ra[k]) and math.isnan(rb[k]))
    np.testing.assert_allclose(a["embeddings"]["val"][0], b["embeddings"]["val"][0], atol=1e-6)
    assert a["metrics"][0]["warmup"] == 1.0 and a["metrics"][1]["warmup"] == 0.0
    assert 0.0 <= a["metrics"][1]["sampled_fn_rate"] <= 1.0


def test_oracle_never_samples_false_negatives():
    out = train(tiny_config(sampler="oracle", queue_size=64, warmup_epochs=0, epochs=1, eval_splits=("val",)))
    # the oracle drops relevant candidates; only rows whose every candidate is relevant fall back
    assert out["metrics"][0]["sampled_fn_rate"] < 0.02


def test_relevance_lookup_directions():
    """t2i: anchor caption b, negative image a; i2t: anchor image a, negative caption b: both relevance[b, a]."""
    dense = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=bool)  # [n_b=4, n_a=3]
    rel = Relevance(sp.csr_matrix(dense))
    t2i = rel.mask(np.array([0, 2]), np.array([2, 1, 0]), anchors_are_b=True)
    np.testing.assert_array_equal(t2i, [[dense[0, 2], dense[0, 1], dense[0, 0]], [dense[2, 2], dense[2, 1], dense[2, 0]]])
    i2t = rel.mask(np.array([1]), np.array([3, 2, 0]), anchors_are_b=False)
    np.testing.assert_array_equal(i2t, [[dense[3, 1], dense[2, 1], dense[0, 1]]])


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="'epochs'"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="'loss'"):
        TrainConfig(loss="hinge-ish")
    with pytest.raises(ValueError, match="unknown field"):
        TrainConfig.from_dict({"epochz": 3})
    with pytest.raises(ValueError, match="sampler"):
        train(tiny_config(sampler="nope"))
    with pytest.raises(ValueError, match="'posterior'.*pu"):  # a typo fails before any training
        TrainConfig(posterior="gausian")


def test_fne_posterior_switch_is_recorded_per_epoch():
    """Running FNE stats accumulate over the epoch's batches; the switch-on is logged."""
    cfg = dict(sampler="fne", sampler_params={"mode": "paper", "min_confident": 3}, queue_size=96, epochs=2,
               warmup_epochs=1, eval_splits=("val",))
    on = train(tiny_config(**cfg))["metrics"]
    assert on[0]["posterior_active"] == 0.0 and on[0]["confident_pairs"] == 0.0  # warm-up: no sampling
    assert on[1]["confident_pairs"] > 3  # summed over the epoch's batches, not one batch
    assert 0.0 < on[1]["posterior_active"] <= 1.0 and on[1]["posterior_on_step"] >= 1
    off = train(tiny_config(**{**cfg, "sampler_params": {"mode": "paper", "min_confident": 10**6}}))["metrics"]
    assert off[1]["posterior_active"] == 0.0 and math.isnan(off[1]["posterior_on_step"])


def test_calibrated_fne_uses_the_fitted_posterior_from_the_first_step_after_warmup():
    cfg = dict(sampler="fne", queue_size=96, epochs=3, warmup_epochs=1, eval_splits=("val",), select_by="auto")
    out = train(tiny_config(**cfg))
    m = out["metrics"]
    assert m[0]["posterior_active"] == 0.0  # warm-up
    for row in m[1:]:
        assert row["posterior_active"] == 1.0 and row["posterior_on_step"] == 1.0
        assert 0.0 < row["fne_prior"] < 1.0
    assert out["posterior"]["estimator"] == "pu"
    # the kept model is the best validation epoch, on the relevant rSum where ground truth exists
    best = max(m, key=lambda r: r["val_relevant_rsum"])
    assert m[-1]["best_epoch"] == best["epoch"]
    assert out["eval"]["selected_on"] == "val_relevant_rsum" and out["eval"]["best_epoch"] == best["epoch"]


def test_calibrated_fne_fits_one_posterior_per_direction_where_the_pool_is_scored(monkeypatch):
    """Each refit fits captions->images and images->captions, queries from the online encoder and candidates
    from the momentum twin that fills the queue, and every sampler call says which direction it samples."""
    from fnlab.samplers.fne import FNESampler, pool_evidence
    from fnlab.training import train as T

    fits, seen = [], []
    real_fit = T.fit_run_posterior

    from fnlab.posterior.pool import PoolEvidence

    keys = []

    def spy_fit(emb_a, emb_b, dataset, **kw):
        fits.append((kw.get("direction", "t2i"), emb_a.copy(), emb_b.copy()))
        keys.append(kw.get("query_keys"))
        return real_fit(emb_a, emb_b, dataset, **kw)

    real_sample = FNESampler.sample

    def spy_sample(self, sims, pos_sims, positive_mask, k=1, generator=None, ctx=None):
        seen.append(ctx.direction)
        assert torch.as_tensor(ctx.positive_mean).ndim == 0
        pool = pool_evidence(ctx)  # the step's pool evidence, one row per anchor, one column per pool slot
        assert isinstance(pool, PoolEvidence) and pool.positive_mask.shape == sims.shape
        return real_sample(self, sims, pos_sims, positive_mask, k=k, generator=generator, ctx=ctx)

    monkeypatch.setattr(T, "fit_run_posterior", spy_fit)
    monkeypatch.setattr(FNESampler, "sample", spy_sample)
    out = train(tiny_config(sampler="fne", queue_size=96, epochs=3, warmup_epochs=1, eval_splits=("val",)))
    refits = [f[0] for f in fits[:-1]]  # the last fit is the run's posterior.json (captions query images)
    assert refits == ["t2i", "i2t", "t2i", "i2t"] and fits[-1][0] == "t2i"
    assert seen[:2] == ["i2t", "t2i"] and set(seen) == {"i2t", "t2i"}
    # epoch 3's refit: candidates come from the twin, which lags the online encoder the queries come from
    _, a_t2i, b_t2i = fits[2]
    _, a_i2t, b_i2t = fits[3]
    assert not np.allclose(a_t2i, a_i2t)  # images: twin (t2i candidates) vs online (i2t queries)
    assert not np.allclose(b_t2i, b_i2t)
    # query_neighbour is fitted as the pool shows it: the online query against the twin's copies of the queries
    assert keys[2] is not None and keys[2].shape == b_t2i.shape and not np.allclose(keys[2], b_t2i)
    assert keys[3] is not None and keys[3].shape == a_i2t.shape and np.allclose(keys[3], a_t2i)
    assert keys[-1] is None  # the run's posterior.json: online embeddings on both sides
    assert 0.0 < out["metrics"][-1]["fne_prior_i2t"] < 1.0


def test_select_by_labelled_keeps_the_best_labelled_epoch_and_relevant_needs_ground_truth():
    out = train(tiny_config(epochs=3, eval_splits=("val",)))  # the default: labelled
    m = out["metrics"]
    assert m[-1]["best_epoch"] == max(m, key=lambda r: r["val_rsum"])["epoch"]
    assert out["eval"]["selected_on"] == "val_rsum"
    with pytest.raises(ValueError, match="select_by"):
        tiny_config(select_by="best")
    from fnlab.training.train import _selection_score

    with pytest.raises(ValueError, match="ground truth"):
        _selection_score("relevant", {"rsum": 100.0}, None)
    assert _selection_score("auto", {"rsum": 100.0}, None) == 100.0
    assert _selection_score("auto", {"rsum": 100.0}, {"rsum": 300.0}) == 300.0


@pytest.mark.parametrize("loss", ["triplet", "infonce", "dcl", "hcl", "fnc"])
def test_every_training_loss_runs_on_picked_negatives(loss):
    """Each registered loss trains through the sampler path (after the warm-up) with finite values."""
    out = train(tiny_config(loss=loss, epochs=2, warmup_epochs=1, num_negatives=4,
                            loss_params={"margin": 0.2}))
    metrics = out["metrics"]
    rows = metrics if isinstance(metrics, list) else metrics.to_dict("records")
    assert len(rows) == 2 and all(math.isfinite(r["loss"]) for r in rows)


def test_pick_loss_is_the_registered_loss():
    """``triplet`` in the trainer is fnlab.losses' triplet on the picked negatives: mean over the k
    picked negatives, summed over anchors."""
    from fnlab.training.train import build_pick_loss

    torch.manual_seed(0)
    sims = torch.rand(5, 9) * 2 - 1
    pos = sims[:, 0]
    mask = torch.zeros(5, 9, dtype=torch.bool)
    mask[:, 0] = True
    idx = torch.randint(1, 9, (5, 2))
    want = (0.2 - pos[:, None] + sims.gather(1, idx)).clamp(min=0).mean(dim=1).sum()
    got = build_pick_loss("triplet", {"margin": 0.2, "temperature": 0.5})(sims, pos, mask, neg_idx=idx)
    torch.testing.assert_close(got, want)


def test_runs_show_says_when_fne_sampled_as_simans():
    import pandas as pd

    from fnlab.cli.runs import run_health

    never = pd.DataFrame({"epoch": [1, 2, 3], "warmup": [1.0, 0.0, 0.0], "posterior_active": [0.0, 0.0, 0.0],
                          "below_warmup": [0.0, 0.0, 1.0]})
    notes = run_health(never)
    assert any("sampled as SimANS" in n for n in notes) and any("warm-up" in n for n in notes)
    active = never.assign(posterior_active=[0.0, 1.0, 0.5], below_warmup=0.0, fne_prior=[None, 0.05, 0.04])
    assert run_health(active) == ["the posterior was active on 75% of the steps after the warm-up"]
    empty = active.assign(fne_prior=[None, 1e-7, 1e-7])
    assert "found no false negatives" in run_health(empty)[-1]
    # a density rule whose posteriors failed the share check at some refits: said, with the share
    unread = active.assign(fne_density_read=[None, 1.0, 0.5])
    assert any("read no band density from 25% of the posteriors" in n for n in run_health(unread))
    assert not any("density" in n for n in run_health(active.assign(fne_density_read=[None, 1.0, 1.0])))


def test_fne_density_rules_record_whether_they_read_the_density(monkeypatch):
    """rules 'adapt' and 'leave' log, per epoch after the warm-up, the share of their posteriors (one a direction)
    whose density they read (:func:`reads_density`: ``share_trusted``); 'soft' reads none and logs nothing."""
    from types import SimpleNamespace

    from fnlab.samplers import fne

    def metrics(rule, *trusted):
        s = fne.FNESampler(rule=rule)
        s._warmup = False
        s.by_direction = {d: SimpleNamespace(prior_pos=0.1, share_trusted=t) for d, t in zip(("t2i", "i2t"), trusted, strict=False)}
        s.posterior = s.by_direction["t2i"]
        return s.epoch_metrics()

    assert metrics("adapt", True, False)["fne_density_read"] == 0.5
    assert metrics("leave", False, False)["fne_density_read"] == 0.0
    assert metrics("adapt", True, True)["fne_density_read"] == 1.0
    assert "fne_density_read" not in metrics("soft", True, False) and "fne_density_read" not in metrics("keep", False)
    # in a run: logged after the warm-up only, from the run's own refits
    answers = iter([True, False] * 10_000)
    monkeypatch.setattr(fne, "reads_density", lambda post: next(answers))
    m = train(tiny_config(sampler="fne", queue_size=96, epochs=2, warmup_epochs=1, eval_splits=("val",),
                          sampler_params={"rule": "adapt"}))["metrics"]
    assert "fne_density_read" not in m[0] or math.isnan(m[0]["fne_density_read"])
    assert m[1]["fne_density_read"] == 0.5
