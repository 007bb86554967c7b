"""Review decisions under concurrency: two writers (processes, and threads) lose nothing; undo."""

from __future__ import annotations

import multiprocessing as mp
import threading

import pandas as pd

from fnlab.analysis import review


def _writer(folder: str, offset: int, n: int, start) -> None:
    store = review.FolderDecisions(folder)
    start.wait()
    for i in range(n):
        store.record("t2i", offset + i, i % 7, review.FALSE_NEGATIVE if i % 2 else review.TRUE_NEGATIVE)


def test_two_processes_lose_no_decision(tmp_path):
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), offset, 100, start)) for offset in (0, 1000)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=900)  # generous: only ends a hung test
        assert p.exitcode == 0
    d = review.FolderDecisions(tmp_path).load()
    assert len(d) == 200 and set(d["query"]) == set(range(100)) | set(range(1000, 1100))


def test_two_threads_on_a_run_lose_no_decision(tmp_path):
    class FakeRun:  # RunDecisions needs only the run's folder
        path = tmp_path

    start = threading.Barrier(2)

    def tab(offset: int) -> None:
        store = review.RunDecisions(FakeRun())
        start.wait()
        for i in range(100):
            store.record("i2t", offset + i, 1, review.FALSE_NEGATIVE)

    threads = [threading.Thread(target=tab, args=(o,)) for o in (0, 500)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(review.RunDecisions(FakeRun()).load()) == 200


def test_undo_is_per_session_and_restores_the_previous_decision(tmp_path):
    mine, other = review.FolderDecisions(tmp_path), review.FolderDecisions(tmp_path)
    mine.record("t2i", 1, 2, review.FALSE_NEGATIVE)
    mine.record("t2i", 1, 2, review.TRUE_NEGATIVE)  # changed my mind
    other.record("t2i", 5, 6, review.FALSE_NEGATIVE)
    undone = mine.undo()
    assert undone["decision"] == review.TRUE_NEGATIVE
    d = mine.load().set_index(["query", "candidate"])["decision"]
    assert d[(1, 2)] == review.FALSE_NEGATIVE and d[(5, 6)] == review.FALSE_NEGATIVE  # other tab untouched
    assert mine.undo()["decision"] == review.FALSE_NEGATIVE
    assert mine.undo() is None  # nothing of mine left to undo
    assert len(mine.load()) == 1 and other.undo() is not None and len(mine.load()) == 0


def test_torn_last_line_and_old_parquet_table(tmp_path):
    old = pd.DataFrame({"direction": ["t2i"], "query": [9], "candidate": [9], "decision": [review.TRUE_NEGATIVE],
                        "decided_at": ["2024-01-01T00:00:00"]})
    old.to_parquet(tmp_path / "review_decisions.parquet", index=False)  # written by an older fnlab
    log = review.FolderDecisions(tmp_path)
    log.record("t2i", 1, 1, review.FALSE_NEGATIVE)
    with open(log.path, "a") as fh:  # a writer killed in the middle of a line
        fh.write('{"id": "x", "session": "s", "direction": "t2i", "qu')
    assert set(log.load()["query"]) == {1, 9}  # the torn line is ignored
    log.record("t2i", 2, 2, review.FALSE_NEGATIVE)  # and the next append starts on a fresh line
    assert set(review.FolderDecisions(tmp_path).load()["query"]) == {1, 2, 9}
    log.save(log.load().query("query != 9"))  # whole-table save logs only the difference
    assert set(log.load()["query"]) == {1, 2}
