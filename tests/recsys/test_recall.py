"""Recall before ranking: the CTR model's exact top-K from per-category lists, and the
vector index over items' E_global and centroids."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.recall import EXACT_BELOW, CtrLists, VectorIndex, unit_rows


@pytest.mark.parametrize("seed", range(5))
def test_the_merged_category_lists_give_the_exact_ctr_top_k(seed):
    rng = np.random.default_rng(seed)
    n, c, k = 3000, 12, 50
    category = rng.integers(0, c, n)
    static = rng.normal(0, 1, n)
    term = rng.normal(0, 2, c)  # the reader: a * affinity per category
    allowed = rng.random(n) > 0.3  # clicked, not yet published
    allowed[category == 3] = False  # a whole category out
    got = CtrLists(category, static, c).top(term, k, allowed)
    score = np.where(allowed, static + term[category], -np.inf)
    expected = np.argsort(-score, kind="stable")[:k]
    assert np.array_equal(got, expected)
    assert CtrLists(category, static, c).top(term, n, np.zeros(n, bool)).size == 0


def test_a_small_index_is_exact_and_forgets_removed_items():
    rng = np.random.default_rng(0)
    vecs = unit_rows(rng.standard_normal((600, 16)))
    ids = np.repeat(np.arange(100, 300), 3)  # three vectors an item
    index = VectorIndex(16, vecs)
    assert index.exact
    index.add(ids, vecs)
    query = unit_rows(rng.standard_normal(16))
    best = vecs @ query
    per_item = {i: best[ids == i].max() for i in np.unique(ids)}
    expected = sorted(per_item, key=lambda i: -per_item[i])[:20]
    assert index.search(query, 20).tolist() == expected
    index.remove(np.array(expected[:5]))
    assert len(index) == 600 - 15
    assert index.search(query, 15).tolist() == expected[5:20]


def test_a_large_index_is_compressed_and_finds_most_of_the_nearest_items():
    rng = np.random.default_rng(1)
    centres = unit_rows(rng.standard_normal((200, 32)))  # items near a few hundred topics, as states are
    n_items, per = 8000, 4
    topic = rng.integers(0, 200, n_items)
    vecs = unit_rows(np.repeat(centres[topic], per, 0) + 0.2 * rng.standard_normal((n_items * per, 32)))
    ids = np.repeat(np.arange(n_items), per)
    assert len(vecs) >= EXACT_BELOW
    index = VectorIndex(32, vecs)
    assert not index.exact
    index.add(ids, vecs)
    found = []
    for q in range(30):
        query = unit_rows(centres[q] + 0.2 * rng.standard_normal(32))
        sims = (vecs @ query).reshape(n_items, per).max(1)
        truth = set(np.argsort(-sims)[:50].tolist())
        found.append(len(truth & set(index.search(query, 200).tolist())) / 50)
    assert np.mean(found) >= 0.85



def test_the_index_leaves_torchs_threads_as_they_were():
    """faiss and torch share one OpenMP runtime: the index keeps its one-thread setting to its
    own calls, so a process that imports, builds or searches one (train, import) keeps
    torch's threads. In a fresh process, where nothing imported recsys.recall before."""
    import subprocess
    import sys

    default = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                             capture_output=True, text=True, check=True).stdout.split()
    code = """
import numpy as np, torch
from recsys.recall import VectorIndex, unit_rows
rng = np.random.default_rng(0)
index = VectorIndex(8, unit_rows(rng.standard_normal((50, 8))))
index.add(np.arange(50), unit_rows(rng.standard_normal((50, 8))))
assert len(index.search(unit_rows(rng.standard_normal(8)), 5)) == 5
index.remove(np.arange(10))
print(torch.get_num_threads())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == default
