"""How well a scorer picks a story's audience, where the truth is known (the demo world's
hidden click model): rank every reader who has not clicked the story by the scorer and
compare with their true attraction to it.

Per story and scorer: Spearman's rho between score and truth, and the AUC of the score for
the truly top `top_share` readers. Over stories: the mean per seed bucket, with its
standard error. The scorers a look-alike model must beat need no training:
- `category_affinity`: the reader's smoothed share of clicks in the story's category (what
  the CTR model sees of the reader);
- `click_profile`: the cosine of the reader's subcategory click counts with the seeds' mean
  (an untrained look-alike);
and `category_truth`, the truth's category term alone, is the ceiling of category knowledge.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from recsys import metrics
from recsys.stage2 import BUCKETS, bucket_of

TOP_SHARE = 0.1
SCORERS = ("ralm", "seed_average", "click_profile", "category_affinity", "coldstart", "category_truth")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (average ranks for ties); 0 when either side is constant."""
    return float(metrics.spearman_columns(np.asarray(a, np.float64)[:, None], np.asarray(b, np.float64))[0])


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half; 0.5 without both."""
    found = metrics.auc(labels, scores)
    return 0.5 if found is None else found


def story_audience(truth: np.ndarray, scores: Mapping[str, np.ndarray],
                   top_share: float = TOP_SHARE) -> dict[str, dict[str, float]]:
    """truth (R,): the candidates' true attraction logits; scores: scorer -> (R,) (NaN-free)."""
    truth = np.asarray(truth, np.float64)
    top = truth >= np.quantile(truth, 1.0 - top_share)
    return {name: {"rho": spearman(s, truth), "auc": auc(top, s)} for name, s in scores.items()}


def cosine_rows(x: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Cosine of each row of x (R, d) with v (d,); 0 for zero rows."""
    nx = np.linalg.norm(x, axis=1) * max(float(np.linalg.norm(v)), 1e-12)
    return np.where(nx > 0, x @ v / np.maximum(nx, 1e-12), 0.0)


def summarise(per_story: list[tuple[int, dict[str, dict[str, float]]]]) -> dict:
    """(seed count, story_audience) per story -> {"buckets": {bucket: {scorer: {"rho",
    "rho_se", "auc", "auc_se", "stories"}}}}, buckets as in recsys.stage2.BUCKETS."""
    out: dict[str, dict] = {}
    for b, (name, _, _) in enumerate(BUCKETS):
        rows = [m for n, m in per_story if bucket_of(np.array([n]))[0] == b]
        if not rows:
            continue
        out[name] = {}
        for scorer in rows[0]:
            rho = np.array([m[scorer]["rho"] for m in rows if scorer in m])
            au = np.array([m[scorer]["auc"] for m in rows if scorer in m])
            se = lambda x: float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")  # noqa: E731
            out[name][scorer] = {"rho": round(float(rho.mean()), 4), "rho_se": round(se(rho), 4),
                                 "auc": round(float(au.mean()), 4), "auc_se": round(se(au), 4),
                                 "stories": len(rho)}
    return {"buckets": out}


# ---------------------------------------------------------------------------------------------
# Both views against the truth, over one (readers x warm stories) matrix per scorer.
#
# The feed's view ranks, for each reader, the warm stories they have not clicked; the audience
# view ranks, for each warm story, the readers who have not clicked it. Each scorer is taken
# alone and added to the count (z-scores within the ranked set, the added term weighted
# ADDED_WEIGHT), and every comparison is a paired difference over the same readers or stories.

ADDED_WEIGHT = 0.5


def paired(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """The mean of a - b over the units both have (not NaN), with its standard error."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return {"diff": float("nan"), "se": float("nan"), "n": int(len(d))}
    return {"diff": round(float(d.mean()), 4), "se": round(float(d.std(ddof=1) / np.sqrt(len(d))), 4), "n": int(len(d))}


def _z(x: np.ndarray) -> np.ndarray:
    sd = float(x.std())
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def view_rhos(truth: np.ndarray, scores: Mapping[str, np.ndarray], mask: np.ndarray, *, count: str = "count",
              axis: int = 1, min_size: int = 10, added_weight: float = ADDED_WEIGHT) -> dict[str, np.ndarray]:
    """Spearman's rho per unit (a reader when axis=1: a row; a story when axis=0: a column)
    between each scorer and the truth over the unit's cells in `mask`, and the same for
    `count + w * scorer` (key "+name"). NaN for a unit with fewer than `min_size` cells or a
    scorer with NaN there. truth, scores and mask are (R, I)."""
    if axis == 0:
        truth, mask = truth.T, mask.T
        scores = {k: v.T for k, v in scores.items()}
    n_units = truth.shape[0]
    out = {k: np.full(n_units, np.nan) for k in scores} | {f"+{k}": np.full(n_units, np.nan)
                                                           for k in scores if k != count}
    for u in range(n_units):
        cells = np.flatnonzero(mask[u])
        if len(cells) < min_size:
            continue
        t = truth[u, cells]
        zc = _z(scores[count][u, cells]) if count in scores else None
        names, columns = [], []
        for k, s in scores.items():
            x = s[u, cells]
            if not np.all(np.isfinite(x)):
                continue
            names.append(k), columns.append(x)
            if zc is not None and k != count:
                names.append(f"+{k}"), columns.append(zc + added_weight * _z(x))
        if names:
            for k, rho in zip(names, metrics.spearman_columns(np.column_stack(columns), t), strict=True):
                out[k][u] = rho
    return out


def log_share(own: np.ndarray, total: np.ndarray, n: int) -> np.ndarray:
    """The smoothed log share of a reader's clicks in a label (recsys.profiles.category_affinity)."""
    share = (np.asarray(own, np.float64) + 1.0) / (np.asarray(total, np.float64)[..., None] + n)
    return np.log(share * n)


def count_scores(clicks: np.ndarray, item_category: np.ndarray, item_sub: np.ndarray,
                 sub_weight: float = 0.5) -> np.ndarray:
    """"The count": for every reader and story, the reader's smoothed log share of clicks in the
    story's category plus `sub_weight` times the same for its subcategory. clicks: (R, I) 0/1."""
    n_cat, n_sub = int(item_category.max()) + 1, int(item_sub.max()) + 1
    by_cat = np.zeros((clicks.shape[0], n_cat))
    by_sub = np.zeros((clicks.shape[0], n_sub))
    np.add.at(by_cat.T, item_category, clicks.T.astype(np.float64))
    np.add.at(by_sub.T, item_sub, clicks.T.astype(np.float64))
    total = clicks.sum(1)
    return log_share(by_cat, total, n_cat)[:, item_category] + sub_weight * log_share(by_sub, total, n_sub)[:, item_sub]


def seed_lookalike(vectors: np.ndarray, seeds: list[np.ndarray], *, cosine: bool = False) -> np.ndarray:
    """(R, I): each reader's vector against the mean vector of each story's seed readers (dot
    product, or cosine); NaN for a story without seeds."""
    out = np.full((len(vectors), len(seeds)), np.nan)
    for i, s in enumerate(seeds):
        if len(s):
            out[:, i] = cosine_rows(vectors, vectors[s].mean(0)) if cosine else vectors @ vectors[s].mean(0)
    return out


def estimated_tastes(*, reader: np.ndarray, item: np.ndarray, clicked: np.ndarray, offsets: np.ndarray,
                     item_hidden: np.ndarray, n_readers: int, l2: float = 1.0, iterations: int = 12) -> np.ndarray:
    """What the logs can tell of each reader's hidden taste when every story's hidden features
    are given: per reader, a logistic regression of their clicks on the shown stories' hidden
    features (item_hidden, (I, H)) beside `offsets` (N, K) covariates that carry what is known
    anyway (an intercept is added), ridge-penalised on the hidden part; Newton's method.
    Returns (n_readers, H): the hidden part's coefficients (zeros for a reader never shown)."""
    h = item_hidden.shape[1]
    out = np.zeros((n_readers, h))
    order = np.argsort(reader, kind="stable")
    bounds = np.searchsorted(reader[order], np.arange(n_readers + 1))
    for r in range(n_readers):
        rows = order[bounds[r]:bounds[r + 1]]
        y = clicked[rows].astype(np.float64)
        if len(rows) < 5 or y.sum() == 0:
            continue
        x = np.hstack([np.ones((len(rows), 1)), offsets[rows], item_hidden[item[rows]]])
        pen = np.r_[np.full(x.shape[1] - h, 1e-6), np.full(h, l2)]
        beta = np.zeros(x.shape[1])
        for _ in range(iterations):
            p = 1.0 / (1.0 + np.exp(-np.clip(x @ beta, -30, 30)))
            grad = x.T @ (y - p) - pen * beta
            hess = (x * (p * (1 - p))[:, None]).T @ x + np.diag(pen)
            step = np.linalg.solve(hess, grad)
            beta += step
            if np.abs(step).max() < 1e-6:
                break
        out[r] = beta[-h:]
    return out
