"""Ranking metrics per group (one clicked item among candidates), ties counted fairly."""

from __future__ import annotations

import numpy as np


def positive_metrics(pos: np.ndarray, neg: np.ndarray, neg_mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """pos (G,) scores of the clicked item; neg (G, N) scores of the others (neg_mask marks
    real ones). Returns per-group AUC, MRR, nDCG@5 and nDCG@10, each (G,). Ties count one
    half in AUC; MRR and nDCG average over the orders a tie could break into."""
    neg_mask = np.ones(neg.shape, bool) if neg_mask is None else neg_mask
    n = neg_mask.sum(1)
    greater = ((neg > pos[:, None]) & neg_mask).sum(1)
    ties = ((neg == pos[:, None]) & neg_mask).sum(1)
    auc = np.where(n > 0, (n - greater - 0.5 * ties) / np.maximum(n, 1), np.nan)
    out = {"auc": auc, "mrr": np.zeros(len(pos)), "ndcg@5": np.zeros(len(pos)), "ndcg@10": np.zeros(len(pos))}
    max_t = int(ties.max()) if len(ties) else 0
    for extra in range(max_t + 1):  # rank = greater + 1 + extra, equally likely over 0..ties
        w = np.where(extra <= ties, 1.0 / (ties + 1), 0.0)
        rank = greater + 1 + extra
        out["mrr"] += w / rank
        gain = 1.0 / np.log2(rank + 1)
        out["ndcg@5"] += w * np.where(rank <= 5, gain, 0.0)
        out["ndcg@10"] += w * np.where(rank <= 10, gain, 0.0)
    return out


def group_metrics(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """Flat (S,) scores, boolean labels and group ids: each positive against the negatives of
    its group; averaged over positives with at least one negative."""
    order = np.argsort(groups, kind="stable")
    scores, labels, groups = scores[order], labels[order], groups[order]
    bounds = np.flatnonzero(np.diff(groups)) + 1
    aucs = []
    for s, lab in zip(np.split(scores, bounds), np.split(labels, bounds), strict=True):
        if lab.any() and (~lab).any():
            neg = s[~lab]
            for p in s[lab]:
                aucs.append(((neg < p).sum() + 0.5 * (neg == p).sum()) / len(neg))
    return {"auc": float(np.mean(aucs)) if aucs else 0.0, "groups": len(aucs)}
