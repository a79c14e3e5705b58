"""Baselines a practitioner would compare against: implicit ALS and item-kNN."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits


def reader_item_matrix(readers: np.ndarray, items: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """Binary (R, I) matrix of who clicked what."""
    m = sp.csr_matrix((np.ones(len(readers), np.float32), (readers, items)), shape=shape)
    m.data[:] = 1.0
    return m


def fit_als(matrix: sp.csr_matrix, *, factors: int = 64, regularization: float = 0.05, iterations: int = 15,
            alpha: float = 10.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Implicit-feedback ALS (Hu, Koren & Volinsky) from the `implicit` package, on the CPU.
    Returns reader factors (R, f) and item factors (I, f)."""
    from implicit.cpu.als import AlternatingLeastSquares

    with threadpool_limits(limits=1, user_api="blas"):  # implicit's own threads do the work
        model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=alpha,
                                        iterations=iterations, random_state=seed)
        model.fit(matrix, show_progress=False)
    return np.asarray(model.user_factors), np.asarray(model.item_factors)


class ItemKNN:
    """Item-based kNN: score(u, j) = sum over u's clicked items i of cos(i, j), the cosine of
    the items' reader columns."""

    def __init__(self, matrix: sp.csr_matrix) -> None:
        self.x = matrix.tocsr()
        norms = np.sqrt(np.asarray(self.x.multiply(self.x).sum(0)).ravel())
        self.xn = (self.x @ sp.diags(1.0 / np.maximum(norms, 1e-12))).tocsc()

    def scores(self, readers: np.ndarray, items: np.ndarray) -> np.ndarray:
        """readers (G,), items (G, C) (-1 = padding) -> (G, C)."""
        out = np.zeros(items.shape, dtype=np.float64)
        uniq, inv = np.unique(readers, return_inverse=True)
        for start in range(0, len(uniq), 256):
            chunk = uniq[start:start + 256]
            profile = (self.x[chunk] @ self.xn.T) @ self.xn  # (u, I): sum_i x_ui cos(i, j)
            profile = np.asarray(profile.todense()) if sp.issparse(profile) else profile
            rows = np.flatnonzero((inv >= start) & (inv < start + len(chunk)))
            cand = items[rows]
            out[rows] = np.where(cand >= 0, profile[inv[rows] - start][np.arange(len(rows))[:, None],
                                                                       np.maximum(cand, 0)], 0.0)
        return out
