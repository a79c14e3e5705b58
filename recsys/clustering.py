"""Seed clustering: k-means (scikit-learn) of an item's transformed seed vectors."""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans


def clusters_for(n: int, k: int, min_size: int) -> int:
    """How many clusters n seeds get: k, or fewer so that a cluster averages about
    `min_size` seeds (the paper's seed sets are millions; ours can be five readers)."""
    return max(1, min(k, n // max(min_size, 1))) if n else 0


def cluster_labels(vectors: np.ndarray, k: int, *, min_size: int = 1, random_state: int = 0) -> np.ndarray:
    """vectors (n, h) -> cluster id of each seed (n,), ids 0..c-1 with none empty."""
    n = len(vectors)
    c = clusters_for(n, k, min_size)
    if c == n:
        return np.arange(n)
    if c == 1:
        return np.zeros(n, dtype=np.int64)
    labels = KMeans(n_clusters=c, n_init=1, max_iter=50, random_state=random_state).fit(
        np.asarray(vectors, dtype=np.float32)).labels_
    return np.unique(labels, return_inverse=True)[1]


def cluster_seeds(vectors: np.ndarray, k: int, *, min_size: int = 1,
                  random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """vectors (n, h) -> centroids (c, h) float32 and seeds per centroid (c,), c from
    clusters_for(n, k, min_size)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if len(vectors) == 0:
        return np.zeros((0, vectors.shape[1] if vectors.ndim == 2 else 0), np.float32), np.zeros(0, np.float32)
    labels = cluster_labels(vectors, k, min_size=min_size, random_state=random_state)
    sizes = np.bincount(labels).astype(np.float32)
    sums = np.zeros((len(sizes), vectors.shape[1]), np.float64)
    np.add.at(sums, labels, vectors)
    return (sums / sizes[:, None]).astype(np.float32), sizes


def pad_states(states: list[tuple[np.ndarray, np.ndarray]], k: int, dim: int):
    """Stack per-item (centroids (k_i, h), sizes (k_i,)) into centroids (C, k, h), sizes (C, k)
    and mask (C, k); items without seeds get an all-False mask."""
    cents = np.zeros((len(states), k, dim), dtype=np.float32)
    sizes = np.zeros((len(states), k), dtype=np.float32)
    mask = np.zeros((len(states), k), dtype=bool)
    for row, (c, s) in enumerate(states):
        n = min(len(s), k)
        cents[row, :n], sizes[row, :n], mask[row, :n] = c[:n], s[:n], True
    return cents, sizes, mask
