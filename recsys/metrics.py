"""Ranking metrics: per group (one clicked item among candidates), ties counted fairly; MIND's
official per-impression metrics (several clicks among the shown stories, the scoring script's
tie order); ROC AUC over a whole set; Spearman's rho."""

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


MIND_METRICS = ("auc", "mrr", "ndcg@5", "ndcg@10")


def impression_metrics(scores: np.ndarray, labels: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]:
    """MIND's official metrics (msnews/MIND evaluate.py) of each impression, vectorized.

    scores, labels (S,): the impressions' shown stories one after another, each impression in
    its logged order; lengths (G,): stories per impression. Returns per impression "auc"
    (scikit-learn's roc_auc_score: a tie counts one half), "mrr" (sum(labels / rank) /
    sum(labels)) and "ndcg@5", "ndcg@10" (gains 2^y - 1, discounts log2(rank + 1)), each (G,).
    MRR and nDCG rank by the script's `np.argsort(scores)[::-1]` on float64 scores: rows of one
    length go through numpy's argsort together, which orders ties as the per-impression call
    does, so tied scores land where the official script puts them.

    An impression with one class only (every story clicked, or none) is NaN in every metric:
    the official script's roc_auc_score raises on it, so callers skip and count such rows.
    Raises ValueError on a non-finite score, as the script's roc_auc_score does."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, np.float64)
    lengths = np.asarray(lengths, np.int64)
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    out = {m: np.full(len(lengths), np.nan) for m in MIND_METRICS}
    for n in np.unique(lengths[lengths > 0]).tolist():
        rows = np.flatnonzero(lengths == n)
        cells = offsets[rows][:, None] + np.arange(n)
        s, y = scores[cells], labels[cells]
        pos = y.sum(1)
        both = (pos > 0) & (pos < n)
        rows, s, y, pos = rows[both], s[both], y[both], pos[both]
        if not len(rows):
            continue
        for name, value in _ranked_metrics(s, y, pos).items():
            out[name][rows] = value
    return out


def _ranked_metrics(s: np.ndarray, y: np.ndarray, pos: np.ndarray) -> dict[str, np.ndarray]:
    """The four metrics of impressions of one length n: scores and labels (G, n), clicks (G,)."""
    from scipy.stats import rankdata

    n = s.shape[1]
    ranks = rankdata(s, method="average", axis=1)  # Mann-Whitney's U: the ROC curve's area with ties
    auc = ((ranks * y).sum(1) - pos * (pos + 1) / 2) / (pos * (n - pos))
    ranked = np.take_along_axis(y, np.argsort(s, axis=1)[:, ::-1], 1)
    ideal = np.take_along_axis(y, np.argsort(y, axis=1)[:, ::-1], 1)
    out = {"auc": auc, "mrr": (ranked / np.arange(1, n + 1)).sum(1) / pos}
    for k in (5, 10):
        discounts = np.log2(np.arange(min(k, n)) + 2)
        dcg = lambda r, k=k, d=discounts: ((2 ** r[:, :k] - 1) / d).sum(1)  # noqa: E731
        out[f"ndcg@{k}"] = dcg(ranked) / dcg(ideal)
    return out


def group_metrics(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """Flat (S,) scores, boolean labels and group ids: each positive against the negatives of
    its group (positive_metrics's AUC); averaged over positives with at least one negative."""
    order = np.argsort(groups, kind="stable")
    scores, labels, groups = scores[order], labels[order], groups[order]
    _, gid = np.unique(groups, return_inverse=True)  # (S,) 0..G-1, ascending
    neg_gid = gid[~labels]
    n_neg = np.bincount(neg_gid, minlength=int(gid.max(initial=-1)) + 1)
    col = np.arange(len(neg_gid)) - np.repeat(np.cumsum(n_neg) - n_neg, n_neg)  # place in its group
    neg = np.zeros((len(n_neg), int(n_neg.max(initial=0))))  # (G, N) each group's negatives, padded
    neg_mask = np.zeros(neg.shape, bool)
    neg[neg_gid, col], neg_mask[neg_gid, col] = scores[~labels], True
    pos_gid = gid[labels]
    pos_gid = pos_gid[n_neg[pos_gid] > 0]
    pos = scores[labels][n_neg[gid[labels]] > 0]
    aucs = positive_metrics(pos, neg[pos_gid], neg_mask[pos_gid])["auc"] if len(pos) else np.zeros(0)
    return {"auc": float(np.mean(aucs)) if len(aucs) else 0.0, "groups": len(aucs)}


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC over all pairs of a positive and a negative, scikit-learn's (a tie counts one
    half); None when one class is missing. labels (S,) 0/1 or bool, scores (S,)."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    if len(labels) == 0 or labels.min() == labels.max():
        return None
    return float(roc_auc_score(labels, scores))


def spearman_columns(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spearman's rho (SciPy's: average ranks for ties) of each column of x (n, k) with t (n,);
    0 for a column, or all of them when t is, constant (or with a NaN)."""
    from scipy.stats import spearmanr

    out = np.zeros(x.shape[1])
    varies = np.ptp(x, axis=0) > 0
    if not varies.any() or not np.ptp(t) > 0:
        return out
    rho = spearmanr(np.column_stack([x[:, varies], t])).statistic  # ((k+1, k+1) or, for k = 1, a number)
    out[varies] = rho if np.ndim(rho) == 0 else rho[-1, :-1]
    return out
