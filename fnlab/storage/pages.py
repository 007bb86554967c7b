"""What the app's pages read for one run, computed once and kept on disk beside it.

A page should read, not compute. For each run (:class:`fnlab.storage.loader.LoadedRun`) and each split
and direction it is shown in, :class:`RunPages` computes once and stores:

* ``rankings``: every query's top :data:`TOP_K` candidates with similarity and the run's posterior
  P(false negative), and each query's labelled-positive rank (:func:`fnlab.analysis.explore.rankings`);
* ``distribution``: positive, negative and false-negative similarities and each query's top unlabelled
  candidates with their P(false negative) (:func:`fnlab.analysis.explore.similarity_sample`);
* ``projection`` (per split): a PCA map of both sides, shown at once while a UMAP is computed elsewhere;
* ``example`` (per split, ``t2i``): the query a lesson opens on (:func:`fnlab.analysis.explore.teaching_example`).

Where: ``$FNLAB_CACHE/pages/<run checksum>/`` (default ``.fnlab_cache/pages``), keyed by
:attr:`LoadedRun.checksum`, so a renamed run keeps its pages and a retrained one never reads stale ones;
the run folder itself is never written. Each item is a folder of ``.npy``/``.json`` files written into a
temporary sibling and renamed into place in one step (atomic on POSIX), after a ``done.json`` written
last: a reader sees a complete item or none, never half of one. Two processes computing the same item
both succeed; the second rename finds the first's folder and keeps it. Arrays load with
``allow_pickle=False``.

``fnlab`` writes these when ``fnlab train`` has saved a run (:func:`store_for_app`, the test and val
splits), when the app's background job finishes training (:meth:`RunPages.prepare`, every
saved split), in a background thread when the app first opens a run (:meth:`RunPages.prepare_in_background`),
and whenever a page asks for an item not there yet.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from fnlab.core import files
from fnlab.storage.loader import LoadedRun

#: the most candidates a ranking shows (the Rankings page's top-K slider ends here)
TOP_K = 50
#: bumped when what an item holds changes, so older caches are recomputed instead of misread
VERSION = 2
DIRECTIONS = ("t2i", "i2t")
_DONE = "done.json"
#: queries in the fixed batch samplers are compared on (:meth:`RunPages.pool`)
POOL_QUERIES = 128
#: splits ``fnlab train`` stores pages for (:func:`store_for_app`): what the app opens first and a split change
#: reaches next; the train split's rankings cost several times both and are computed when first asked for
TRAIN_TIME_SPLITS = ("test", "val")
#: samplers the lesson compares FNE with (besides hardest), over the pool
COMPARED = ("hardest", "semihard", "random")
_SAMPLE_FIELDS = ("positive", "negative", "false_negative", "hard", "hard_is_fn", "hardest", "hard_query",
                  "hard_candidate", "hard_pos")


def cache_dir() -> Path:
    """``$FNLAB_CACHE/pages`` (default ``.fnlab_cache/pages``), read at call time, made absolute."""
    return Path(os.environ.get("FNLAB_CACHE", ".fnlab_cache")).absolute() / "pages"


class RunPages:
    """The stored page data of one run (see the module docstring).

    Args:
        run: the loaded run.
        root: the pages cache folder (default :func:`cache_dir`).

    Thread-safe; items already read are kept in memory.
    """

    def __init__(self, run: LoadedRun, root: str | os.PathLike | None = None) -> None:
        self.run = run
        self.root = Path(root) if root is not None else cache_dir()
        self._lock = threading.RLock()
        self._item_locks: dict[tuple, threading.Lock] = {}  # one per item: items compute side by side
        self._memory: dict[tuple, Any] = {}
        self._sides: dict[tuple[str, str], Any] = {}
        self._background: threading.Thread | None = None

    @property
    def folder(self) -> Path:
        """This run's folder in the cache."""
        return self.root / f"v{VERSION}-{self.run.checksum}"

    # ------------------------------------------------------------------ shared inputs
    def sides(self, split: str, direction: str):
        """The split's :class:`fnlab.analysis.explore.Sides` in ``direction`` (built once)."""
        from fnlab.analysis import explore

        key = (split, direction)
        if key not in self._sides:  # built outside the lock (a race builds it twice, the same): no page waits
            a, b = self.run.embeddings(split)
            built = explore.sides(self.run.dataset(split), a, b, direction,
                                  view_encoder=self.run.config.get("view_encoder"))
            with self._lock:
                self._sides.setdefault(key, built)
        return self._sides[key]

    # ------------------------------------------------------------------ posteriors
    def posterior(self, direction: str = "t2i", estimator: str | None = None, prior: float | str = "auto") -> Any:
        """The posterior pages show for ``direction``.

        Default: the run's own (``t2i``: :meth:`LoadedRun.posterior`, its ``posterior.json``; ``i2t``: the run's
        estimator fitted the same way on images querying captions, since a posterior fitted on captions' pairs
        does not read images' pairs). With ``estimator``/``prior``: that estimator fitted on the split training
        fits on (``val``), labels only, the run's seed; ``paper`` with a fixed prior reuses its fitted Gaussians
        and only changes Bayes' prior. Fits are stored (their parameters) and read back on the next call.
        """
        from fnlab import posterior as fp

        estimator = estimator or self.run.estimator
        prior = fp.check_prior(prior)
        if direction == "t2i" and estimator == self.run.estimator and prior == "auto":
            return self.run.posterior()
        if estimator == "paper" and prior != "auto":
            base = self.posterior(direction, "paper", "auto").params()
            return fp.from_params({**base, "prior_pos": float(prior)})

        def compute() -> dict[str, Any]:
            from fnlab.storage.loader import POSTERIOR_SPLIT
            from fnlab.training.train import fit_run_posterior

            split = POSTERIOR_SPLIT if POSTERIOR_SPLIT in self.run.splits else self.run.splits[0]
            a, b = self.run.embeddings(split)
            post = fit_run_posterior(a, b, self.run.dataset(split), estimator=estimator, prior=prior,
                                     seed=int(self.run.config.get("seed") or 0), direction=direction)
            return {"params": post.params()}

        label = "auto" if prior == "auto" else f"{float(prior):.6g}"
        key = ("posterior-object", direction, estimator, label)
        if key not in self._memory:
            params = self._item(("posterior", direction, estimator, label), compute, kind="json")["params"]
            with self._lock:
                self._memory.setdefault(key, fp.from_params(params))
        return self._memory[key]

    def hard_probs(self, split: str, direction: str, estimator: str | None = None,
                   prior: float | str = "auto") -> np.ndarray:
        """``[H]`` P(false negative) of the split's hard pairs (:meth:`distribution`) under :meth:`posterior`."""
        smp, stored = self.distribution(split, direction)
        if estimator in (None, self.run.estimator) and prior == "auto":
            return stored
        label = "auto" if prior == "auto" else f"{float(prior):.6g}"
        key = ("hard-p", split, direction, estimator, label)
        if key not in self._memory:
            post = self.posterior(direction, estimator, prior)
            p = self.sides(split, direction).prob_false_negative(post, smp.hard_query, smp.hard_candidate)
            p.setflags(write=False)
            with self._lock:
                self._memory.setdefault(key, p)
        return self._memory[key]

    # ------------------------------------------------------------------ items
    def rankings(self, split: str, direction: str):
        """Every query's top :data:`TOP_K` (:class:`fnlab.analysis.explore.Rankings`)."""
        from fnlab.analysis import explore

        def compute() -> dict[str, np.ndarray]:
            r = explore.rankings(self.sides(split, direction), k=TOP_K, posterior=self.posterior(direction))
            return {"candidates": r.candidates, "similarity": r.similarity, "p_false_negative": r.p_false_negative,
                    "positive_rank": r.positive_rank}

        arrays = self._item(("rankings", split, direction), compute)
        return explore.Rankings(**{k: arrays[k] for k in ("candidates", "similarity", "p_false_negative",
                                                          "positive_rank")})

    def distribution(self, split: str, direction: str) -> tuple[Any, np.ndarray]:
        """``(similarity sample, P(false negative) of its hard pairs)``: the Distributions page's data
        (:class:`fnlab.analysis.explore.SimilaritySample`; ``[H]`` float64 probabilities)."""
        from fnlab.analysis import explore

        def compute() -> dict[str, np.ndarray]:
            s = self.sides(split, direction)
            smp = explore.similarity_sample(s)
            out = {f: getattr(smp, f) for f in _SAMPLE_FIELDS if getattr(smp, f) is not None}
            out["hard_p"] = s.prob_false_negative(self.posterior(direction), smp.hard_query, smp.hard_candidate)
            return out

        arrays = self._item(("distribution", split, direction), compute)
        smp = explore.SimilaritySample(**{f: arrays.get(f) for f in _SAMPLE_FIELDS})
        return smp, arrays["hard_p"]

    def projection(self, split: str) -> np.ndarray:
        """``[n_a + n_b, 2]`` PCA coordinates of side A then side B (:func:`fnlab.analysis.projection.pca_2d`)."""
        from fnlab.analysis import projection

        def compute() -> dict[str, np.ndarray]:
            a, b = self.run.embeddings(split)
            return {"xy": projection.pca_2d(np.concatenate([a, b]))}

        return self._item(("projection", split), compute)["xy"]

    def scan(self, split: str, top_k: int) -> tuple[Any, dict]:
        """``(table, summary)`` of the scan for suspected false negatives of ``split`` (captions querying images,
        each query's ``top_k`` unlabelled candidates, the run's own posterior):
        :func:`fnlab.analysis.scan.scan_dataset`."""
        def compute() -> dict[str, Any]:
            from fnlab.analysis import scan

            a, b = self.run.embeddings(split)
            encoder = self.run.config.get("view_encoder")  # the texts' view in the encoder the run's posterior read
            res = scan.scan_dataset(a, b, self.run.dataset(split), top_k=int(top_k), posterior=self.run.posterior(),
                                    **({"text_encoder": encoder} if encoder else {}))
            return {"table": res.table, "summary": dict(res.summary)}

        got = self._item(("scan", split, str(int(top_k))), compute, kind="table")
        return got["table"], got["summary"]

    def pool_split(self, split: str) -> str:
        """The split whose candidates a sampler comparison draws from: the training split when the run saved its
        embeddings (the pool size samplers see in training), else ``split``."""
        return "train" if "train" in self.run.saved_splits else split

    def pool(self, split: str, direction: str, size: int = POOL_QUERIES):
        """A fixed random batch of ``size`` queries of :meth:`pool_split` against all its candidates
        (:func:`fnlab.analysis.explore.batch`; seed 0), built once."""
        from fnlab.analysis import explore

        pool = self.pool_split(split)
        key = ("pool", pool, direction, int(size))
        if key not in self._memory:
            s = self.sides(pool, direction)
            qs = np.sort(np.random.default_rng(0).choice(len(s.queries), size=min(int(size), len(s.queries)),
                                                         replace=False))
            built = explore.batch(s, qs)
            with self._lock:
                self._memory.setdefault(key, built)
        return self._memory[key]

    def pool_probabilities(self, split: str, direction: str, size: int = POOL_QUERIES) -> np.ndarray:
        """``[B, M]`` P(false negative) of every pair of :meth:`pool` under the direction's posterior (what a
        sampler comparison reads as false-negative risk where the data have no ground truth)."""
        from fnlab.analysis import explore

        def compute() -> dict[str, np.ndarray]:
            return {"p": explore.pool_probabilities(self.pool(split, direction, size), self.posterior(direction),
                                                    self.sides(self.pool_split(split), direction))}

        return self._item(("pool-p", self.pool_split(split), direction, str(int(size))), compute)["p"]

    def example(self, split: str) -> dict | None:
        """The lesson's example and setting for ``split`` (text → image), or ``None`` without ground truth.

        The FNE setting is the one, among FNE's calibrated rules at their defaults, that draws the fewest false
        negatives over :meth:`pool` (ties: the registry's default); the example query is then
        :func:`fnlab.analysis.explore.teaching_example` with it. Returns the example's fields plus
        ``fne_params`` (the setting) and ``pool`` (``{sampler: {"fn_risk", "hardness"}}`` over the pool for
        hardest, the setting's FNE, every FNE rule, and each sampler in :data:`COMPARED`)."""
        def compute() -> dict[str, Any]:
            from fnlab import samplers
            from fnlab.analysis import explore

            if self.sides(split, "t2i").relevant is None:
                return {"example": None}
            post = self.run.posterior()
            rule = next((p for p in samplers.param_specs("fne") if p.name == "rule"), None)
            settings = [{}] + [{"rule": r} for r in (rule.choices if rule else ()) if r != rule.default]
            built = {_setting_label(st): samplers.build_for_run("fne", st, posterior=post) for st in settings}
            built.update({name: samplers.build(name) for name in COMPARED})
            bb = self.pool(split, "t2i")
            summary = explore.sampler_summary(bb, explore.sampler_weights(bb, built))
            pool = {r.sampler: {"fn_risk": float(r.fn_risk), "hardness": float(r.hardness)}
                    for r in summary.itertuples()}
            best = min(settings, key=lambda st: pool[_setting_label(st)]["fn_risk"] - (1e-9 if not st else 0))
            ex = explore.teaching_example(self.sides(split, "t2i"),
                                          {"hardest": built["hardest"], "fne": built[_setting_label(best)]})
            if ex is not None:
                ex.update(fne_params=best, pool=pool, pool_split=self.pool_split(split), pool_queries=len(bb.queries))
            return {"example": ex}

        return self._item(("example", split), compute, kind="json")["example"]

    def has(self, *key: str) -> bool:
        """Whether item ``key`` (``("rankings", split, direction)``...) is stored."""
        return (self._path(key) / _DONE).is_file()

    def prepare(self, splits: Iterable[str] = ("test",), *, progress: Callable[[str], None] | None = None) -> None:
        """Compute and store every item of ``splits`` (both directions), saying what it does to ``progress``."""
        for split in splits:
            steps = [(f"rankings of the {split} split", lambda s=split: [self.rankings(s, d) for d in DIRECTIONS]),
                     (f"similarity distributions of the {split} split",
                      lambda s=split: [self.distribution(s, d) for d in DIRECTIONS]),
                     (f"the {split} split's map and example", lambda s=split: (self.projection(s), self.example(s)))]
            for what, step in steps:
                if progress is not None:
                    progress(what)
                step()

    def prepare_in_background(self, splits: Iterable[str] | None = None) -> threading.Thread:
        """Start (once per reader) a daemon thread that runs :meth:`prepare` on ``splits`` (default: every saved
        split, test first), so that a page opened later reads instead of computing. A page asking for an item
        meanwhile waits only for that item: items are locked one by one. A failure is printed, never raised (the
        page computes what is missing when it asks). Returns the thread (``join`` it to wait)."""
        order = tuple(self.run.saved_splits if splits is None else splits)
        with self._lock:
            if self._background is None:
                def work() -> None:
                    try:
                        self.prepare(order)
                    except Exception:  # noqa: BLE001 - a page computes what is missing when it asks
                        import traceback

                        traceback.print_exc()

                self._background = threading.Thread(target=work, name=f"fnlab-pages-{self.run.checksum[:8]}",
                                                    daemon=True)
                self._background.start()
            return self._background

    # ------------------------------------------------------------------ storage
    def _path(self, key: tuple) -> Path:
        return self.folder / "-".join(key)

    def _item(self, key: tuple, compute: Callable[[], dict], *, kind: str = "npy") -> dict:
        got = self._memory.get(key)
        if got is not None:
            return got
        with self._lock:
            lock = self._item_locks.setdefault(key, threading.Lock())
        with lock:  # one computation per item; other items go on meanwhile (no item waits for itself)
            if key in self._memory:
                return self._memory[key]
            path = self._path(key)
            got = _read(path, kind)
            if got is None:
                got = compute()
                _write(path, got, kind)
            self._memory[key] = got
            return got


def store_for_app(run: Any, splits: Iterable[str] = TRAIN_TIME_SPLITS, root: str | os.PathLike | None = None,
                  *, progress: Callable[[str], None] | None = None) -> tuple[Path, tuple[str, ...]]:
    """Store what the app's pages read for a saved run (:meth:`RunPages.prepare`), for those of ``splits`` the
    run saved embeddings of, so the app opens the run and changes split reading instead of computing.

    Args:
        run: a saved run (:class:`fnlab.storage.runs.Run`) or a :class:`LoadedRun`.
        splits: splits to store, in order (missing ones are skipped).
        root: the pages cache folder (default :func:`cache_dir`).
        progress: told what is computed, step by step.

    Returns:
        ``(folder, splits stored)``: the run's folder in the cache and the splits whose pages are there now.
    """
    loaded = run if isinstance(run, LoadedRun) else LoadedRun(run)
    pages = RunPages(loaded, root)
    chosen = tuple(s for s in splits if s in loaded.saved_splits)
    pages.prepare(chosen, progress=progress)
    return pages.folder, chosen


def _setting_label(setting: dict) -> str:
    """``fne`` for FNE at its defaults, else ``fne rule=keep``."""
    return " ".join(["fne", *(f"{k}={v}" for k, v in sorted(setting.items()))])


def _read(path: Path, kind: str) -> dict | None:
    """The item stored in ``path``, or ``None`` when it is absent or incomplete (no ``done.json``)."""
    if not (path / _DONE).is_file():
        return None
    try:
        if kind == "json":
            return files.read_json(path / "item.json", "a page item written by fnlab")
        if kind == "table":
            import pandas as pd

            return {"table": pd.read_parquet(path / "table.parquet"),
                    "summary": files.read_json(path / "summary.json", "a scan summary written by fnlab")}
        out = {}
        for f in sorted(path.glob("*.npy")):
            arr = files.read_npy(f, "an array written by fnlab")
            arr.setflags(write=False)
            out[f.stem] = arr
        return out
    except Exception:  # noqa: BLE001 - damaged (pyarrow raises several types): computed again and replaced
        return None  # damaged: computed again and replaced


def _write(path: Path, item: dict, kind: str) -> None:
    """Write ``item`` as folder ``path`` in one step (a temporary sibling renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        if kind == "json":
            files.write_json(tmp / "item.json", item)
        elif kind == "table":
            item["table"].to_parquet(tmp / "table.parquet", index=False)
            files.write_json(tmp / "summary.json", item["summary"])
        else:
            for name, arr in item.items():
                np.save(tmp / f"{name}.npy", np.asarray(arr), allow_pickle=False)
        files.write_json(tmp / _DONE, {"version": VERSION, "files": sorted(p.name for p in tmp.iterdir())})
        if path.is_dir() and not (path / _DONE).is_file() and all(
                p.is_file() and p.suffix in (".npy", ".json", ".parquet") for p in path.iterdir()):
            shutil.rmtree(path, ignore_errors=True)  # an incomplete item of ours (files we write, nothing else)
        try:
            os.rename(tmp, path)
        except OSError:
            if not (path / _DONE).is_file():  # not another writer's complete item: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
