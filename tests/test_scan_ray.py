"""``fnlab scan --engine ray``: same answer as the local scan, survives a killed worker, refuses bad input.

One local Ray (num_cpus=2) is started for the whole module. Inputs are small (600 queries x
1,500 candidates, d=16) with planted near-duplicates, so the posterior takes values across
(0, 1) and the comparison of the two engines is not vacuous.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fnlab.analysis.scan import ScanInputError, scan
from fnlab.cli import main
from fnlab.retrieval.similarity import index_params, recall_at_k, topk

NQ, NC, D, K = 600, 1500, 16, 8


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def data():
    """Queries near their labelled candidate; every 5th query also has an unlabelled near-duplicate."""
    rng = np.random.default_rng(7)
    c = rng.standard_normal((NC, D)).astype(np.float32)
    q = c[:NQ] + 0.4 * rng.standard_normal((NQ, D)).astype(np.float32)
    dup = np.arange(0, NQ, 5)
    c[NQ + dup] = c[dup] + 0.05 * rng.standard_normal((dup.size, D)).astype(np.float32)  # false negatives
    pos = pd.DataFrame({"query": np.arange(NQ), "candidate": np.arange(NQ)})
    extra = pd.DataFrame({"query": [3, 3, 10], "candidate": [900, 901, 1200]})  # several positives per query
    pos = pd.concat([pos, extra], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local = scan(q, c, pos, top_k=K, seed=11, negative_sample=20_000, prior=1e-3)
    return q, c, pos, local


def _same(local: pd.DataFrame, other: pd.DataFrame) -> None:
    key = ["query", "candidate", "rank"]
    a = local.sort_values(["query", "rank"]).reset_index(drop=True)
    b = other.sort_values(["query", "rank"]).reset_index(drop=True)
    assert len(a) == len(b) == NQ * K
    pd.testing.assert_frame_equal(a[key].astype("int64"), b[key].astype("int64"))
    np.testing.assert_allclose(b["p_false_negative"], a["p_false_negative"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(b["similarity"], a["similarity"], atol=1e-5, rtol=0)


def _npy_shards(folder: Path, arr: np.ndarray, cuts: list[int]) -> Path:
    folder.mkdir()
    for j, part in enumerate(np.split(arr, cuts)):
        np.save(folder / f"part-{j:02d}.npy", part)
    return folder


def _parquet_shards(folder: Path, arr: np.ndarray, ids: np.ndarray, cuts: list[int]) -> Path:
    folder.mkdir()
    for j, (part, part_ids) in enumerate(zip(np.split(arr, cuts), np.split(ids, cuts), strict=True)):
        pd.DataFrame({"id": part_ids, "embedding": list(part)}).to_parquet(folder / f"q-{j}.parquet")
    return folder


def test_ray_equals_local_on_npy_shards_with_sharded_candidates(ray_cluster, data, tmp_path):
    q, c, pos, local = data
    assert (local.table["p_false_negative"] > 0.5).sum() > 20  # planted duplicates are flagged: not vacuous
    qdir = _npy_shards(tmp_path / "q", q, [250, 400])
    cdir = _npy_shards(tmp_path / "c", c, [700])  # two files on disk, searched as three candidate shards
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sharded = scan(str(qdir), str(cdir), pos, top_k=K, seed=11, negative_sample=20_000, prior=1e-3,
                       engine="ray", batch_size=128, candidate_shards=3)
    _same(local.table, sharded.table)  # three candidate shards merged exactly
    np.testing.assert_allclose(sharded.table.sort_values(["query", "rank"])["positive_similarity"],
                               local.table["positive_similarity"], atol=1e-6)
    assert sharded.summary["engine"] == "ray" and sharded.summary["ray"]["candidate_shards"] == 3
    for key in ("rows", "labelled_pairs", "suspects_above_0.5", "queries_with_suspect_above_0.5"):
        assert sharded.summary[key] == local.summary[key], key
    assert sharded.summary["posterior"]["prior_pos"] == pytest.approx(local.summary["posterior"]["prior_pos"],
                                                                      rel=1e-4)


def test_cli_ray_on_parquet_shards_with_ids(ray_cluster, data, tmp_path, capsys):
    q, c, pos, local = data
    qdir = _parquet_shards(tmp_path / "q", q, np.arange(NQ) + 10_000, [300])
    cdir = _parquet_shards(tmp_path / "c", c, np.arange(NC) + 50_000, [1000])
    pos_ids = pd.DataFrame({"query": pos["query"] + 10_000, "candidate": pos["candidate"] + 50_000})
    pos_ids.to_csv(tmp_path / "pos.csv", index=False)
    out = tmp_path / "suspects"
    rc = main(["scan", "--engine", "ray", "--queries", str(qdir), "--candidates", str(cdir), "--positives",
               str(tmp_path / "pos.csv"), "--top-k", str(K), "--seed", "11", "--negative-sample", "20000", "--prior", "0.001",
               "--batch-size", "256", "--out", str(out), "--quiet"])
    assert rc == 0
    parts = sorted(out.glob("part-*.parquet"))
    assert parts and (out / "_summary.json").exists()
    assert not list(tmp_path.glob(".suspects.staging-*"))  # staging renamed into place
    table = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    assert len(pd.read_parquet(out)) == len(table)  # the folder reads as one table: the summary is skipped
    table["query"] -= 10_000
    table["candidate"] -= 50_000
    _same(local.table, table)
    summary = json.loads((out / "_summary.json").read_text())
    assert summary["rows"] == NQ * K and summary["output"]["parts"] == len(parts)
    assert summary["ray"]["query_format"] == "parquet" and summary["ray"]["query_shards"] == 2


def test_killed_worker_is_retried_and_job_completes(ray_cluster, data, tmp_path):
    q, c, pos, local = data
    marker = tmp_path / "killed-once"
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = scan(q, c, pos, top_k=K, seed=11, negative_sample=20_000, prior=1e-3, engine="ray", batch_size=120, workers=1,
                   out=str(out), _kill_marker=str(marker))  # its one worker dies on its second of 5 batches
    assert marker.exists()  # a worker process did receive SIGKILL mid-job
    table = pd.concat([pd.read_parquet(p) for p in out.glob("part-*.parquet")], ignore_index=True)
    _same(local.table, table)
    assert res.summary["rows"] == NQ * K


def test_other_dimension_shard_is_named(ray_cluster, data, tmp_path):
    q, c, pos, _ = data
    qdir = _npy_shards(tmp_path / "q", q, [300])
    np.save(qdir / "part-99.npy", np.ones((5, D + 3), np.float32))
    with pytest.raises(ScanInputError, match=r"part-99\.npy.*d=19.*d=16"):
        scan(str(qdir), c, pos, top_k=K, engine="ray")


def test_parquet_row_of_another_length_is_named_and_nothing_written(ray_cluster, data, tmp_path):
    q, c, pos, _ = data
    qdir = tmp_path / "q"
    qdir.mkdir()
    pd.DataFrame({"id": np.arange(300), "embedding": list(q[:300])}).to_parquet(qdir / "a.parquet")
    rows = list(q[300:])
    rows[123] = rows[123][:10]  # the first row is fine: only a worker sees this one
    pd.DataFrame({"id": np.arange(300, NQ), "embedding": rows}).to_parquet(qdir / "b.parquet")
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ScanInputError, match=r"b\.parquet.*10 values.*d=16"):
            scan(str(qdir), c, pos, top_k=K, engine="ray", out=str(out), negative_sample=1000)
    assert not out.exists() and not list(tmp_path.glob(".out.staging-*"))  # a failed job leaves nothing


def test_overlapping_ids_across_shards_are_refused(ray_cluster, data, tmp_path):
    q, c, pos, _ = data
    qdir = _parquet_shards(tmp_path / "q", q, np.concatenate([np.arange(300), np.arange(290, 590)]), [300])
    with pytest.raises(ScanInputError, match=r"id 290 in shards .*q-0\.parquet and .*q-1\.parquet"):
        scan(str(qdir), c, pos, top_k=K, engine="ray")


def test_unreachable_ray_address_fails_fast_with_a_clear_error(tmp_path, data):
    pytest.importorskip("ray")
    q, c, pos, _ = data
    np.save(tmp_path / "q.npy", q)
    np.save(tmp_path / "c.npy", c)
    pos.to_csv(tmp_path / "pos.csv", index=False)
    # a closed port on this machine: the command ends with one line (the address is checked before Ray starts, within
    # its connect timeout); the limit below only ends a hung test on a busy machine
    proc = subprocess.run([sys.executable, "-m", "fnlab.cli", "scan", "--engine", "ray", "--ray-address",
                           "127.0.0.1:1", "--queries", str(tmp_path / "q.npy"), "--candidates", str(tmp_path / "c.npy"),
                           "--positives", str(tmp_path / "pos.csv"), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 2
    assert "--ray-address 127.0.0.1:1: cannot reach a Ray cluster" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_recall_check_in_summary_matches_a_direct_computation(ray_cluster, data):
    q, c, pos, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loc = scan(q, c, pos, top_k=K, seed=11, negative_sample=5000, index="ivf", estimator="paper",
                   index_params=["nlist=30", "nprobe=2"], recall_check=200)
        ray_res = scan(q, c, pos, top_k=K, seed=11, negative_sample=5000, index="ivf", estimator="paper",
                       index_params={"nlist": 30, "nprobe": 2}, recall_check=200, engine="ray", batch_size=300)
    r = loc.summary["recall_check"]
    assert r["queries"] == 200 and r["k"] == K
    assert loc.summary["index_params"] == {"kind": "ivf", "nlist": 30, "nprobe": 2}
    # the same number from scratch: the table's top-k of the sampled queries vs exact search
    rq = np.sort(np.random.default_rng([11, 1]).choice(NQ, 200, replace=False))
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    cn = c / np.linalg.norm(c, axis=1, keepdims=True)
    excl = [pos.loc[pos["query"] == i, "candidate"].to_numpy() for i in rq]
    exact = topk(qn[rq], cn, K, exclude=excl)[1]
    approx = loc.table.set_index("query").loc[rq].groupby(level=0)["candidate"].apply(list)
    approx = np.array([row + [-1] * (K - len(row)) for row in approx])
    assert r["recall_at_k"] == pytest.approx(recall_at_k(approx, exact))
    assert 0.3 < r["recall_at_k"] < 1.0  # nprobe=2 of 30 cells misses some neighbours: not vacuous
    assert ray_res.summary["recall_check"]["recall_at_k"] == pytest.approx(r["recall_at_k"])
    _same(loc.table, ray_res.table)  # same index built once on the driver: same approximate answer


def test_hnsw_recall_and_index_parameter_validation(data, tmp_path, capsys):
    q, c, pos, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = scan(q, c, pos, top_k=K, negative_sample=5000, index="hnsw", estimator="paper",
                   index_params={"efSearch": 64, "M": 8},
                   recall_check=100)
    assert res.summary["index_params"] == {"kind": "hnsw", "M": 8, "efConstruction": 80, "efSearch": 64}
    assert 0.5 < res.summary["recall_check"]["recall_at_k"] <= 1.0
    for kind, bad, msg in (("ivf", ["nprobe=0"], "nprobe=0: expected an integer >= 1"),
                           ("ivf", ["efSearch=4"], "unknown parameter 'efSearch' for index 'ivf'"),
                           ("hnsw", ["M=many"], "expected an integer"),
                           ("hnsw", ["M"], "expected KEY=VALUE")):
        with pytest.raises(ValueError, match=msg):
            index_params(kind, bad)
        with pytest.raises(ScanInputError, match=msg):
            scan(q, c, pos, top_k=K, index=kind, index_params=bad)
    np.save(tmp_path / "q.npy", q)
    np.save(tmp_path / "c.npy", c)
    pos.to_csv(tmp_path / "pos.csv", index=False)
    rc = main(["scan", "--queries", str(tmp_path / "q.npy"), "--candidates", str(tmp_path / "c.npy"), "--positives",
               str(tmp_path / "pos.csv"), "--out", str(tmp_path / "s.parquet"), "--index", "ivf", "--index-param",
               "nlist=0"])
    assert rc == 2 and "nlist=0: expected an integer >= 1" in capsys.readouterr().err
    assert not (tmp_path / "s.parquet").exists()


def test_without_ray_the_engine_says_how_to_install(data, monkeypatch):
    q, c, pos, _ = data
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ScanInputError, match=r"pip install 'fnlab\[ray\]'"):
        scan(q, c, pos, top_k=K, engine="ray")
