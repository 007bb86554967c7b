"""fnlab.analysis.projection: faiss kNN graph, UMAP with its disk cache, selection_to_ids."""

from __future__ import annotations

import numpy as np
import pytest

from fnlab.analysis import projection


def _clusters(n_per=40, d=16, seed=0):
    r = np.random.default_rng(seed)
    centres = r.normal(size=(3, d)) * 4
    x = np.concatenate([c + r.normal(size=(n_per, d)) for c in centres]).astype(np.float32)
    return x, np.repeat(np.arange(3), n_per)


def test_knn_graph_matches_brute_force():
    x, _ = _clusters()
    idx, dist = projection.knn_graph(x, 6)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = u @ u.T
    assert np.all(idx[:, 0] == np.arange(len(x)))
    assert np.all(dist[:, 0] == 0)
    for r in range(len(x)):
        ref = np.sort(sims[r])[::-1][:6]
        np.testing.assert_allclose(1 - dist[r, 1:], ref[1:], atol=1e-5)  # ties tolerated: compare values


def test_knn_graph_puts_self_first_with_duplicates():
    x = np.ones((5, 4), dtype=np.float32)
    idx, dist = projection.knn_graph(x, 3)
    assert np.all(idx[:, 0] == np.arange(5))
    assert len({tuple(sorted(r)) for r in idx}) >= 1 and np.all(dist >= 0)


def test_umap_2d_separates_clusters_and_caches(tmp_path):
    x, labels = _clusters()
    xy = projection.umap_2d(x, n_neighbors=10, random_state=0, cache_dir=tmp_path)
    assert xy.shape == (120, 2) and xy.dtype == np.float32 and np.isfinite(xy).all()
    # Nearest neighbour in the map shares the cluster for almost every point.
    d = ((xy[:, None] - xy[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(1)] == labels).mean() > 0.95
    files = list(tmp_path.glob("*.npy"))
    assert len(files) == 1
    # A second call reads the cache (planted marker proves it is not recomputed).
    np.save(files[0], np.full((120, 2), 7.0, dtype=np.float32))
    again = projection.umap_2d(x, n_neighbors=10, random_state=0, cache_dir=tmp_path)
    assert np.all(again == 7.0)
    # Different parameters -> different key.
    projection.umap_2d(x, n_neighbors=5, random_state=0, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 2


@pytest.mark.parametrize("bad", [np.zeros((2, 4)), np.zeros(5), np.array([[np.nan, 1.0]] * 5)])
def test_umap_2d_rejects_bad_input(bad, tmp_path):
    with pytest.raises(ValueError):
        projection.umap_2d(bad, cache_dir=tmp_path)


def test_selection_to_ids_reads_custom_data():
    event = {"selection": {"points": [
        {"curve_number": 0, "point_index": 3, "customdata": [42]},
        {"curve_number": 1, "point_index": 3, "customdata": [7, "extra"]},
        {"curve_number": 1, "point_index": 4, "customdata": 42},
        {"curve_number": 2, "point_index": 0},
        {"curve_number": 2, "point_index": 1, "customdata": {"1": 5, "0": 99}},  # numpy rows arrive as dicts
    ], "point_indices": [3, 3, 4, 0, 1], "box": [], "lasso": []}}
    assert projection.selection_to_ids(event) == [7, 42, 99]
    assert projection.selection_to_ids(event["selection"]) == [7, 42, 99]

    class Attr:  # streamlit returns attribute-style objects
        selection = {"points": [{"customdata": ["5"]}]}

    assert projection.selection_to_ids(Attr()) == [5]
    assert projection.selection_to_ids(None) == []
    assert projection.selection_to_ids({"selection": {"points": []}}) == []


def test_cached_umap_only_reads_the_disk_cache(tmp_path):
    emb = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    assert projection.cached_umap(emb, n_neighbors=15, random_state=0, cache_dir=tmp_path) is None  # nothing computed
    assert list(tmp_path.iterdir()) == []
    path = projection._cache_path(emb, 15, 0, 0.1, tmp_path)
    xy = np.arange(100, dtype=np.float32).reshape(50, 2)
    np.save(path, xy)
    np.testing.assert_array_equal(projection.cached_umap(emb, n_neighbors=15, random_state=0, cache_dir=tmp_path), xy)
    assert projection.cached_umap(emb, n_neighbors=10, random_state=0, cache_dir=tmp_path) is None  # other params
    path.write_bytes(b"damaged")
    assert projection.cached_umap(emb, n_neighbors=15, random_state=0, cache_dir=tmp_path) is None


def test_pca_2d_separates_two_clusters_instantly():
    rng = np.random.default_rng(0)
    centre = rng.normal(size=16)
    emb = np.concatenate([centre + 0.05 * rng.normal(size=(30, 16)), -centre + 0.05 * rng.normal(size=(30, 16))])
    xy = projection.pca_2d(emb)
    assert xy.shape == (60, 2) and xy.dtype == np.float32
    assert np.sign(xy[:30, 0]).std() == 0 and np.sign(xy[30:, 0]).std() == 0 and xy[0, 0] * xy[30, 0] < 0
    np.testing.assert_array_equal(xy, projection.pca_2d(emb))  # deterministic
