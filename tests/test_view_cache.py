"""The disk cache of sentence-encoder embeddings (`fnlab.data.view_cache`)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from fnlab.data import minilm, view_cache


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FNLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "text_views"


def test_round_trip_and_what_is_never_read(cache):
    texts = ["alpha", "beta"]
    emb = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert view_cache.load("enc", texts) is None
    view_cache.save("enc", texts, emb)
    np.testing.assert_array_equal(view_cache.load("enc", texts), emb)
    assert view_cache.load("other encoder", texts) is None  # another encoder's entry
    assert view_cache.load("enc", ["beta", "alpha"]) is None  # other texts (or order)
    (entry,) = cache.glob("*.npz")
    entry.write_bytes(b"not an npz")  # a damaged entry is a miss, not an error
    assert view_cache.load("enc", texts) is None
    assert not list(cache.glob(".tmp-*"))  # nothing half-written left


def test_a_changed_local_model_is_another_fingerprint(tmp_path):
    model = tmp_path / "model"
    (model / "1_Pooling").mkdir(parents=True)
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "1_Pooling" / "config.json").write_text("{}")
    before = view_cache.encoder_fingerprint(str(model), bundled=False)
    assert view_cache.encoder_fingerprint(str(model), bundled=False) == before
    (model / "model.safetensors").write_bytes(b"new weights!")
    assert view_cache.encoder_fingerprint(str(model), bundled=False) != before
    assert view_cache.encoder_fingerprint("minilm", bundled=True).startswith("bundled-minilm")


def test_text_view_encodes_once_per_machine(cache, monkeypatch):
    texts = ["a sentence nobody shipped", "another one", "a sentence nobody shipped"]
    first = minilm.text_view(texts)
    assert len(list(cache.glob("*.npz"))) == 1

    def no_model(name=minilm.DEFAULT_ENCODER):
        raise AssertionError("the encoder was loaded although its embeddings are cached")

    monkeypatch.setattr(minilm, "load_encoder", no_model)
    np.testing.assert_array_equal(minilm.text_view(texts), first)
    assert os.environ["FNLAB_CACHE"] in str(cache)
