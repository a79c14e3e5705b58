"""The baseline ranker: recency x popularity, used until the learned models land.

    score = log1p(popularity + prior) * 0.5 ** (age_hours / recency_half_life)
                                      * seen_discount ** times_shown_recently

`popularity` is an exponentially decayed click count; the prior keeps a story nobody has
clicked yet from scoring zero, so fresh stories still get shown (and can collect clicks).
"""

from __future__ import annotations

import numpy as np


def baseline_scores(
    *,
    popularity: np.ndarray,
    age_hours: np.ndarray,
    times_shown: np.ndarray,
    recency_half_life_hours: float = 24.0,
    seen_discount: float = 0.5,
    prior: float = 1.0,
) -> dict[str, np.ndarray]:
    """Score N candidates. All arrays have shape (N,). Returns the final score and its parts,
    each of shape (N,)."""
    popularity = np.asarray(popularity, dtype=np.float64)
    age_hours = np.asarray(age_hours, dtype=np.float64)
    times_shown = np.asarray(times_shown, dtype=np.float64)
    if not (popularity.shape == age_hours.shape == times_shown.shape) or popularity.ndim != 1:
        raise ValueError("popularity, age_hours and times_shown must be 1-D of equal length")
    if recency_half_life_hours <= 0 or not 0 < seen_discount <= 1:
        raise ValueError("need recency_half_life_hours > 0 and 0 < seen_discount <= 1")
    pop = np.log1p(np.maximum(popularity, 0.0) + prior)
    recency = 0.5 ** (np.maximum(age_hours, 0.0) / recency_half_life_hours)
    novelty = seen_discount ** times_shown
    return {"score": pop * recency * novelty, "popularity": pop, "recency": recency,
            "novelty": novelty}

BASELINE = "baseline"  # the arm name impressions ranked by this carry (not an arm of recsys.arms)
