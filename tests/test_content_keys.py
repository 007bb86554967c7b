"""Content keys: identical inputs, and on sides with texts, texts equal after normalisation."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from fnlab.core.content import merge_keys
from fnlab.data.base import MatchingDataset


def _reference(*keys):
    """Slow union-find: rows i and j share a key in some array -> one group; groups numbered by first row."""
    n = len(keys[0])
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for k in keys:
        for i in range(n):
            for j in range(i):
                if k[i] == k[j]:
                    parent[find(i)] = find(j)
    return [find(i) for i in range(n)]


def _same_partition(a, b):
    return len(set(zip(a, b, strict=True))) == len(set(a)) == len(set(b))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12).flatmap(lambda n: st.lists(st.lists(st.integers(0, 4), min_size=n, max_size=n),
                                                      min_size=1, max_size=3)))
def test_merge_keys_is_the_union_of_the_partitions(keys):
    got = merge_keys(*[np.asarray(k) for k in keys]).tolist()
    assert _same_partition(got, _reference(*keys))
    assert sorted(set(got)) == list(range(len(set(got))))  # dense 0..k-1


def test_text_sides_share_content_up_to_case_spacing_and_marks():
    a_text = ["The manual of tool X.", "the  manual of tool x", "", "", "C++ compiler", "C compiler"]
    ds = MatchingDataset("t", "all", np.arange(6), np.eye(6, dtype=np.float32), np.eye(6, dtype=np.float32),
                         "features", "features", a_meta=pd.DataFrame({"a_text": a_text}),
                         b_meta=pd.DataFrame({"text": ["q"] * 6}))
    keys = ds.content_keys("a").tolist()
    assert keys[0] == keys[1]  # case, spacing and the full stop aside, one text
    assert keys[2] != keys[3]  # two empty texts are not one content
    assert keys[4] != keys[5]  # punctuation that changes what it says stays
    assert len(set(ds.content_keys("b").tolist())) == 1  # six queries of one text
    same_rows = MatchingDataset("t", "all", np.arange(2), np.ones((2, 3), np.float32), np.eye(2, 3, dtype=np.float32),
                                "features", "features", a_meta=pd.DataFrame({"a_text": ["one", "two"]}))
    assert same_rows.content_keys("a").tolist() == [0, 0]  # identical inputs stay one content whatever the texts
