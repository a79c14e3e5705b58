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
from scipy.stats import rankdata

from recsys.stage2 import BUCKETS, bucket_of

TOP_SHARE = 0.1
SCORERS = ("ralm", "seed_average", "click_profile", "category_affinity", "coldstart", "category_truth")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (average ranks for ties); 0 when either side is constant."""
    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(np.sqrt((ra ** 2).sum() * (rb ** 2).sum()))
    return float((ra * rb).sum() / den) if den > 0 else 0.0


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half; 0.5 without both."""
    labels = np.asarray(labels, bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


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
