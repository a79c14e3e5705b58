"""What the cold-start and CTR models know of a reader and an item, defined once: the
reader's text profile and category affinity, and the item's freshness.

Training (recsys.hybrid, recsys.ctr), the replay (recsys.scorers) and the feed (through
recsys.ranker) all build them here, so a model always meets the features it was fitted on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

PROFILE_HISTORY = 100  # latest clicks in a reader's text profile and category affinity
PROFILE_HALF_LIFE = 10  # clicks: the 10th most recent click counts half as much as the latest
TOPIC_CLICKS = 2.0  # a category the reader picked counts as this many clicks in it


@dataclass
class Profiles:
    """Readers' text profiles and category affinities, as of some time."""

    vectors: np.ndarray  # (R, d) unit length (zero for readers with no clicks)
    category_affinity: np.ndarray  # (R, C) log(P(category | reader) / uniform), smoothed


def category_affinity(in_category: np.ndarray, total: np.ndarray, n_categories: int,
                      smoothing: float = 1.0) -> np.ndarray:
    """A reader's clicks in a category and in all -> log(share * C) with `smoothing`
    pseudo-clicks in every category: 0 for a reader with no clicks, positive where they
    click more than uniformly."""
    share = (np.asarray(in_category, np.float64) + smoothing) / (np.asarray(total, np.float64)
                                                                 + smoothing * n_categories)
    return np.log(share * n_categories)


def freshness(age_hours: np.ndarray) -> np.ndarray:
    """log1p(age in hours), floored at 0; an unknown age (NaN) counts as 0."""
    return np.log1p(np.maximum(np.nan_to_num(np.asarray(age_hours, np.float64)), 0.0))


def reader_profiles(*, item_vectors: np.ndarray, item_category: np.ndarray, n_categories: int,
                    histories: Sequence[np.ndarray], picked: Sequence[Iterable[int]] | None = None,
                    half_life: float = PROFILE_HALF_LIFE) -> Profiles:
    """histories[r]: item indices clicked by reader r, oldest first (item_vectors (I, d),
    item_category (I,)). The text profile is the recency-weighted mean of the clicked items'
    vectors, normalised; the affinity counts the clicks per category, plus TOPIC_CLICKS for
    each category in picked[r] (the topics a reader chose)."""
    n, d = len(histories), item_vectors.shape[1]
    vectors = np.zeros((n, d), dtype=np.float32)
    counts = np.zeros((n, n_categories), dtype=np.float64)
    for r, hist in enumerate(histories):
        if len(hist):
            w = 0.5 ** (np.arange(len(hist))[::-1] / half_life)
            v = (w[:, None] * item_vectors[hist]).sum(0)
            vectors[r] = v / max(float(np.linalg.norm(v)), 1e-12)
            np.add.at(counts[r], item_category[hist], 1.0)
        for c in set(picked[r]) if picked is not None else ():
            counts[r, c] += TOPIC_CLICKS
    affinity = category_affinity(counts, counts.sum(1, keepdims=True), n_categories)
    return Profiles(vectors, affinity.astype(np.float32))
