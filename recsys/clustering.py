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


def _dist2(c, p, p_sq):
    """Squared distances (B, n, K) of points p (B, n, h) with norms p_sq (B, n) to centres c (B, K, h)."""
    import torch

    return (p_sq[:, :, None] - 2 * torch.bmm(p, c.transpose(1, 2)) + (c * c).sum(-1)[:, None, :]).clamp(min=0)


def _kmeans_pp(pts, sq, valid, lengths: np.ndarray, kmax: int, gen):
    """Greedy k-means++ (as scikit-learn): the first centre uniformly; each next one the best of
    2 + log(k) candidates drawn with probability ~ squared distance to the closest centre."""
    import torch

    b, _, h = pts.shape
    rows = torch.arange(b)
    cents = torch.zeros(b, kmax, h)
    first = (torch.rand(b, generator=gen) * torch.from_numpy(lengths).float()).long()
    cents[:, 0] = pts[rows, first]
    closest = _dist2(cents[:, :1], pts, sq)[..., 0].masked_fill(~valid, 0)  # (B, n)
    tries = 2 + int(np.log(kmax))
    for j in range(1, kmax):
        cand = torch.multinomial(closest + 1e-12 * valid, tries, replacement=True, generator=gen)  # (B, L)
        cand_pts = pts[rows[:, None], cand]  # (B, L, h)
        d = _dist2(cand_pts, pts, sq).masked_fill(~valid[..., None], 0)  # (B, n, L)
        potential = torch.minimum(closest[..., None], d).sum(1)  # (B, L)
        best = potential.argmin(-1)
        cents[:, j] = cand_pts[rows, best]
        closest = torch.minimum(closest, d[rows, :, best])
    return cents


def batched_kmeans(x: np.ndarray, lengths: np.ndarray, n_clusters: np.ndarray, *, iters: int = 15,
                   seed: int = 0, init: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """k-means for many items at once (Lloyd's algorithm with k-means++ seeding, in torch).

    x (B, n, h): each item's points, padded; lengths (B,): real points per item;
    n_clusters (B,): clusters wanted per item (1 <= c <= length). Returns centroids
    (B, K, h) and cluster sizes (B, K) with K = max(n_clusters); unused slots have size 0.
    `init` (B, K, h): the starting centres (an item's previous centroids, the first
    n_clusters[i] of each row used) instead of k-means++; then a few `iters` reach a fixed
    point when the points moved little.
    """
    import torch

    b, n, h = x.shape
    kmax = int(n_clusters.max()) if b else 0
    if b == 0 or kmax == 0:
        return np.zeros((b, kmax, h), np.float32), np.zeros((b, kmax), np.float32)
    pts = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))  # (B, n, h)
    valid = torch.arange(n)[None, :] < torch.from_numpy(lengths)[:, None]  # (B, n)
    want = torch.from_numpy(n_clusters.astype(np.int64))  # (B,)
    sq = (pts * pts).sum(-1)  # (B, n)
    if init is None:
        cents = _kmeans_pp(pts, sq, valid, lengths, kmax, torch.Generator().manual_seed(seed))
    else:
        cents = torch.from_numpy(np.ascontiguousarray(init[:, :kmax], dtype=np.float32)).clone()
    unused = torch.arange(kmax)[None, :] >= want[:, None]  # (B, K)
    labels = torch.full((b, n), -1, dtype=torch.long)
    # Lloyd's iterations on the items still moving: an item whose labels did not change sits
    # at a fixed point (the same labels give the same centroids), so it leaves the batch with
    # the result it would have after any number of further iterations.
    active = torch.arange(b)
    for _ in range(iters):
        p, v = pts[active], valid[active]
        d = _dist2(cents[active], p, sq[active])
        new = d.masked_fill(unused[active][:, None, :], float("inf")).argmin(-1).masked_fill(~v, -1)
        moved = (new != labels[active]).any(1)
        if not moved.any():
            break
        active, p, v, new = active[moved], p[moved], v[moved], new[moved]
        labels[active] = new
        onehot = torch.nn.functional.one_hot(new.clamp(min=0), kmax).float() * v[..., None]  # (A, n, K)
        counts = onehot.sum(1)  # (A, K)
        sums = torch.bmm(onehot.transpose(1, 2), p)  # (A, K, h)
        cents[active] = torch.where(counts[..., None] > 0, sums / counts.clamp(min=1)[..., None], cents[active])
    onehot = torch.nn.functional.one_hot(labels.clamp(min=0), kmax).float() * valid[..., None]
    return cents.numpy(), onehot.sum(1).numpy()
