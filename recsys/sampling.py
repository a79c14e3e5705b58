"""Negative sampling for the sampled softmax: log-uniform over popularity *rank*.

p(r) = (log(r + 2) - log(r + 1)) / log(D + 1),  r = 0 for the most popular of D items.
Sampling by rank (not by count) keeps the head from swallowing every negative; two public
re-implementations sample by count, which inverts the intended distribution.
"""

from __future__ import annotations

import numpy as np


class LogUniformSampler:
    """Draws item indices by the log-uniform law over their popularity ranks.

    `counts` has shape (D,): any popularity measure; ties are ranked by index.
    """

    def __init__(self, counts: np.ndarray) -> None:
        counts = np.asarray(counts)
        if counts.ndim != 1 or len(counts) == 0:
            raise ValueError("counts must be a non-empty 1-D array")
        self.n = len(counts)
        self.item_by_rank = np.argsort(-counts, kind="stable")  # rank -> item
        self.rank_of_item = np.empty(self.n, dtype=np.int64)
        self.rank_of_item[self.item_by_rank] = np.arange(self.n)
        self._log_n1 = np.log(self.n + 1.0)

    def rank_probability(self, ranks: np.ndarray) -> np.ndarray:
        ranks = np.asarray(ranks, dtype=np.float64)
        return (np.log(ranks + 2.0) - np.log(ranks + 1.0)) / self._log_n1

    def probability(self, items: np.ndarray) -> np.ndarray:
        """p of drawing each item, shape of `items`."""
        return self.rank_probability(self.rank_of_item[np.asarray(items)])

    def sample_ranks(self, size: int | tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        # Inverse CDF: P(rank <= r) = log(r + 2) / log(D + 1).
        u = rng.random(size)
        ranks = np.floor(np.exp(u * self._log_n1)).astype(np.int64) - 1
        return np.clip(ranks, 0, self.n - 1)

    def sample(self, size: int | tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return self.item_by_rank[self.sample_ranks(size, rng)]
