"""The one run loader (fnlab.storage.loader.LoadedRun) that `fnlab eval` and the app read runs through, the page
data stored beside a run (fnlab.storage.pages.RunPages) and renaming a run (RunStore.rename)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from _app_support import tiny_runs_root

from fnlab.core import files
from fnlab.storage.loader import LoadedRun
from fnlab.storage.runs import RunStore


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tiny_runs_root(tmp_path_factory.mktemp("fnlab_loader"))


def _copy(root, tmp_path, name="copy"):
    dst = tmp_path / "runs" / name
    shutil.copytree(root / "tiny", dst)
    return dst


def _rewrite(run_dir, filename, obj=None):
    """Replace (or, with obj None, remove) a run file and record the change in run.json, as fnlab would."""
    info = json.loads((run_dir / "run.json").read_text())
    if obj is None:
        (run_dir / filename).unlink()
        info["files"].pop(filename, None)
    else:
        files.write_json(run_dir / filename, obj)
        info["files"][filename] = {"sha256": files.sha256_file(run_dir / filename),
                                   "bytes": (run_dir / filename).stat().st_size}
    files.write_json(run_dir / "run.json", info)


def test_loaded_run_reads_what_training_saved(root):
    r = LoadedRun.from_store(root, "tiny")
    assert r.saved_splits == ("test", "val") and r.splits == ("test", "val", "train", "all")
    a, b = r.embeddings("test")
    saved = RunStore(root).load("tiny")
    np.testing.assert_array_equal(a, saved.load_array("emb_a_test"))
    np.testing.assert_array_equal(b, saved.load_array("emb_b_test"))
    assert not a.flags.writeable  # shared between sessions: nobody may change it
    assert r.dataset("test").n_a == len(a)
    assert r.posterior_source == "posterior.json"
    stored = saved.load_json("posterior")
    assert r.posterior().params()["prior_pos"] == pytest.approx(stored["prior_pos"])
    assert r.posterior().params()["estimator"] == stored["estimator"]


def test_unsaved_splits_and_all_are_encoded_with_the_runs_model(root):
    """A split the run did not save is encoded with model.pt; its saved splits encode to what was saved."""
    from fnlab.models.dual import encode_side

    r = LoadedRun.from_store(root, "tiny")
    a_tr, b_tr = r.embeddings("train")
    assert a_tr.shape == (r.dataset("train").n_a, a_tr.shape[1]) and b_tr.shape[0] == r.dataset("train").n_b
    np.testing.assert_allclose(np.linalg.norm(a_tr, axis=1), 1.0, atol=1e-5)
    a_all, b_all = r.embeddings("all")
    assert len(a_all) == r.dataset("all").n_a and len(b_all) == r.dataset("all").n_b
    again = encode_side(r.model(), r.dataset("test").a_inputs, "a", device="cpu")
    np.testing.assert_allclose(again, r.embeddings("test")[0], atol=1e-5)


@pytest.mark.parametrize("estimator", ["relative", "pu"])
def test_without_posterior_json_the_runs_own_estimator_is_fitted(root, tmp_path, estimator):
    """Not the default estimator: the one the run's config names, fitted as training fits it (val, its seed,
    the captions' second view where it needs no encoder)."""
    from fnlab.cli.eval import evaluate_run
    from fnlab.data.minilm import dataset_text_view
    from fnlab.training.train import fit_run_posterior

    run_dir = _copy(root, tmp_path)
    cfg = json.loads((run_dir / "config.json").read_text())
    cfg["posterior"] = estimator
    _rewrite(run_dir, "config.json", cfg)
    _rewrite(run_dir, "posterior.json")
    r = LoadedRun.open(run_dir)
    r.verify()
    post = r.posterior()
    assert r.posterior_source == f"fitted here: {estimator} on val"
    a, b = r.embeddings("val")
    view = dataset_text_view(r.dataset("val"), encode=False)
    want = fit_run_posterior(a, b, r.dataset("val"), estimator=estimator, seed=int(cfg["seed"]), text_view=view)
    assert post.params() == want.params()
    out = evaluate_run(str(run_dir), "test")  # fnlab eval reads through the same loader
    assert out["fn_detection"] is not None


def test_eval_names_a_missing_run_and_an_unknown_split(root, tmp_path):
    from fnlab.cli.eval import evaluate_run

    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate_run(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="unknown split"):
        LoadedRun.from_store(root, "tiny").embeddings("holdout")


def test_pages_are_stored_keyed_by_checksum_and_equal_the_live_computation(root, tmp_path):
    from fnlab.analysis import explore
    from fnlab.storage.pages import RunPages

    r = LoadedRun.from_store(root, "tiny")
    pg = RunPages(r, root=tmp_path / "pages")
    rk = pg.rankings("test", "t2i")
    assert pg.has("rankings", "test", "t2i")
    s = pg.sides("test", "t2i")
    for q in (0, 7, 23):
        stored, rank = rk.table(s, q, 12)
        live, live_rank = explore.ranking(s, q, k=12, posterior=r.posterior())
        assert rank == live_rank
        np.testing.assert_array_equal(stored["candidate"], live["candidate"])
        np.testing.assert_allclose(stored["p_false_negative"], live["p_false_negative"], rtol=1e-5, equal_nan=True)
        assert list(stored["status"]) == list(live["status"])
    # a fresh reader reads the stored item (no recomputation: the computation is not called)
    again = RunPages(LoadedRun.from_store(root, "tiny"), root=tmp_path / "pages")
    again._item(("rankings", "test", "t2i"), lambda: pytest.fail("recomputed a stored item"))
    # no temporary folder is left behind, and every stored item is complete
    assert not [p for p in pg.folder.iterdir() if p.name.startswith(".tmp")]
    assert all((p / "done.json").is_file() for p in pg.folder.iterdir())


def test_a_half_written_item_never_loads(root, tmp_path):
    from fnlab.storage import pages

    r = LoadedRun.from_store(root, "tiny")
    pg = pages.RunPages(r, root=tmp_path / "pages")
    path = pg.folder / "projection-test"
    path.mkdir(parents=True)
    np.save(path / "xy.npy", np.zeros((3, 2)))  # no done.json: a writer died here
    xy = pg.projection("test")
    assert xy.shape == (r.dataset("test").n_a + r.dataset("test").n_b, 2)
    assert (path / "done.json").is_file()


def test_distribution_teaching_posteriors_and_example(root, tmp_path):
    from fnlab.storage.pages import RunPages

    r = LoadedRun.from_store(root, "tiny")
    pg = RunPages(r, root=tmp_path / "pages")
    smp, p = pg.distribution("test", "t2i")
    assert len(p) == len(smp.hard) and ((p >= 0) & (p <= 1)).all()
    paper = pg.posterior("t2i", "paper", "auto")
    fixed = pg.posterior("t2i", "paper", 0.2)
    assert fixed.prior_pos == 0.2 and fixed.pos_mean == paper.pos_mean  # only Bayes' prior changes
    assert (pg.hard_probs("test", "t2i", "paper", 0.2) >= pg.hard_probs("test", "t2i", "paper", "auto")).all()
    i2t = pg.posterior("i2t")  # images querying captions: a posterior of their own pairs
    assert i2t is not r.posterior()
    ex = pg.example("test")
    assert ex is not None and 0 <= ex["query"] < r.dataset("test").n_b
    assert "fne_params" in ex and {"hardest", "semihard", "random", "fne"} <= set(ex["pool"])


def test_rename_keeps_everything_and_refuses_what_fnlab_did_not_write(root, tmp_path):
    from fnlab.core.ownership import OwnershipError
    from fnlab.storage.pages import RunPages

    run_dir = _copy(root, tmp_path, "before")
    store = RunStore(tmp_path / "runs")
    key = LoadedRun.from_store(store.root, "before").checksum
    (run_dir / "review_decisions.jsonl").write_text("")
    run = store.rename("before", "after")
    assert run.name == "after" and run.info["name"] == "after" and not run_dir.exists()
    assert (store.root / "after" / "review_decisions.jsonl").is_file()
    run.verify()
    assert LoadedRun.from_store(store.root, "after").checksum == key  # its stored pages still apply
    assert RunPages(LoadedRun.from_store(store.root, "after")).folder.name.endswith(key)
    with pytest.raises(FileExistsError):
        _copy(root, tmp_path, "other")
        store.rename("after", "other")
    with pytest.raises(ValueError):
        store.rename("after", "../escape")
    (store.root / "after" / "thesis.tex").write_text("mine")  # not fnlab's to move any more
    with pytest.raises(OwnershipError):
        store.rename("after", "elsewhere")
    assert (store.root / "after" / "thesis.tex").is_file()


def test_pages_prepared_in_background_for_every_saved_split_and_a_page_never_waits_for_another_item(root, tmp_path):
    import threading

    from fnlab.storage.pages import RunPages

    r = LoadedRun.from_store(root, "tiny")
    pg = RunPages(r, root=tmp_path / "pages")
    # an item whose computation is held: another item is still served meanwhile
    release, started = threading.Event(), threading.Event()

    def held():
        started.set()
        assert release.wait(60)
        return {"x": np.zeros(1)}

    holder = threading.Thread(target=pg._item, args=(("held",), held))
    holder.start()
    assert started.wait(60)
    ranked = pg.rankings("test", "t2i")  # not blocked by the held item
    assert pg.has("rankings", "test", "t2i") and not pg.has("held")
    release.set()
    holder.join(60)
    assert pg.has("held")
    # the background preparation stores every saved split's items, both directions, once per reader
    thread = pg.prepare_in_background()
    assert pg.prepare_in_background() is thread
    thread.join(120)
    assert not thread.is_alive()
    assert set(r.saved_splits) >= {"test", "val"}
    for split in r.saved_splits:
        for d in ("t2i", "i2t"):
            assert pg.has("rankings", split, d) and pg.has("distribution", split, d), (split, d)
        assert pg.has("projection", split)
    again = pg.rankings("test", "t2i")
    s = pg.sides("test", "t2i")
    np.testing.assert_array_equal(again.table(s, 0, 10)[0]["candidate"], ranked.table(s, 0, 10)[0]["candidate"])
