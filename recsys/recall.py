"""Recall before ranking: from a large catalog, the few hundred stories the ranker should
score for one reader, found without scoring every story.

- `CtrLists`: the CTR model is linear in its features and the reader enters it only through
  the category affinity, so a story's CTR logit is `a * affinity[category] + static` with a
  story-only `static` (its smoothed CTR, exposure and age). Per category, the stories sorted by
  `static` give the reader's exact CTR top-K by merging the heads of the lists.
- `VectorIndex`: an approximate nearest-neighbour index (faiss) over unit vectors labelled
  by item id, one or more per item (the feed's serving copy puts in each warm item's RALM
  E_global). Inverted lists with product-quantised codes keep it at a few dozen bytes a
  vector; a small index is exact.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import faiss
import numpy as np

EXACT_BELOW = 20_000  # vectors: below this the index is exact (a flat scan costs less than training)
CODE_BYTES = 16  # bytes per vector in the quantised index (product quantiser of 16 sub-vectors × 8 bits)
PROBES = 16  # inverted lists visited per query


@contextmanager
def _one_thread():
    """faiss on the calling thread alone while inside: one query per request thread, the web
    server's threads are the parallelism. Restored after: faiss and torch share one OpenMP
    runtime, so a process-wide setting would leave a training or import process's torch on
    one thread too."""
    was = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(was)


class CtrLists:
    """Stories per category sorted by the story-only part of the CTR logit."""

    def __init__(self, category: np.ndarray, static: np.ndarray, n_categories: int) -> None:
        category = np.asarray(category, np.int64)
        self.static = np.asarray(static, np.float64)
        order = np.lexsort((-self.static, category))  # by category, then best first
        bounds = np.searchsorted(category[order], np.arange(n_categories + 1))
        self.lists = [order[bounds[c]:bounds[c + 1]] for c in range(n_categories)]

    def top(self, category_term: np.ndarray, k: int, allowed: np.ndarray) -> np.ndarray:
        """Rows of the k best stories by `category_term[category] + static` among those
        `allowed` (a bool mask over rows), best first."""
        heads, cats = [], []
        for c, rows in enumerate(self.lists):
            take = rows[:k]
            ok = allowed[take]
            extra = k
            while not ok.all() and len(take) < len(rows):  # skipped stories: read further down the list
                take = rows[:len(take) + extra]
                ok = allowed[take]
                extra *= 2
            heads.append(take[ok][:k])
            cats.append(np.full(len(heads[-1]), c))
        rows = np.concatenate(heads) if heads else np.zeros(0, np.int64)
        if not len(rows):
            return rows
        score = self.static[rows] + np.asarray(category_term, np.float64)[np.concatenate(cats)]
        return rows[np.argsort(-score, kind="stable")[:k]]


class VectorIndex:
    """Unit vectors labelled by item id (several per item), searched by inner product.
    Thread-safe (one lock: a search takes about a millisecond)."""

    def __init__(self, dim: int, training: np.ndarray) -> None:
        """`training`: a sample of the vectors to come (float32, unit rows); with fewer than
        EXACT_BELOW rows the index is exact."""
        self.dim = dim
        if len(training) < EXACT_BELOW:
            self._index = faiss.IndexIDMap(faiss.IndexFlatIP(dim))
        else:
            lists = int(np.clip(np.sqrt(len(training)) / 2, 16, 1024))
            self._quantizer = faiss.IndexFlatIP(dim)
            self._index = faiss.IndexIVFPQ(self._quantizer, dim, lists, CODE_BYTES, 8, faiss.METRIC_INNER_PRODUCT)
            self._index.cp.seed = 0
            with _one_thread():
                self._index.train(np.ascontiguousarray(training, np.float32))
            self._index.nprobe = PROBES
        self._lock = threading.Lock()

    @property
    def exact(self) -> bool:
        return isinstance(self._index, faiss.IndexIDMap)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Vectors (n, dim), each labelled with its item's id (n,)."""
        if not len(ids):
            return
        with self._lock, _one_thread():
            self._index.add_with_ids(np.ascontiguousarray(vectors, np.float32), np.asarray(ids, np.int64))

    def remove(self, ids: np.ndarray) -> None:
        """Every vector of these items."""
        if len(ids):
            with self._lock, _one_thread():
                self._index.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, np.int64)))

    def search(self, query: np.ndarray, items: int) -> np.ndarray:
        """The ids of up to `items` items whose best vector is nearest the (unit) query, best first."""
        if not len(self):
            return np.zeros(0, np.int64)
        hits = min(len(self), 4 * items)  # an item has several vectors: ask for more hits than items
        with self._lock, _one_thread():
            _, labels = self._index.search(np.ascontiguousarray(query, np.float32).reshape(1, -1), hits)
        labels = labels[0][labels[0] >= 0]
        _, first = np.unique(labels, return_index=True)
        return labels[np.sort(first)][:items]


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)
