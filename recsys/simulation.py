"""The demo's ground truth: a position-based click model over hidden reader interests.

A simulated reader clicks a story shown at position p with probability
    P(click) = P(examine p) * P(attracted | reader, story, age)
    P(examine p) = (1 + p) ** -examination_decay                       (p = 0 is the top)
    logit P(attracted) = bias
        + w_category    * log(n_categories * interest[category])         (0 for a uniform reader)
        + w_subcategory * log(n_subcategories * interest[subcategory | category])
        + w_taste       * <reader.taste, story.taste> / sqrt(taste_dim)
        + story.quality
        - w_freshness   * age_hours / freshness_half_life_hours
Readers' interests and tastes come from fixtures/readers.jsonl; a story's hidden taste vector
and quality are drawn from a generator seeded by its id, so they are the same in every process
and no table or API exposes them. Models are scored against this truth.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ClickModelConfig:
    taste_dim: int = 8  # size of the latent taste vectors
    bias: float = -2.2  # attraction logit of an average story for a uniform reader
    w_category: float = 1.0  # weight of the (log) category interest
    w_subcategory: float = 0.5  # weight of the (log) subcategory interest within the category
    w_taste: float = 1.0  # weight of the latent taste match
    quality_sd: float = 0.4  # spread of the stories' hidden quality
    w_freshness: float = 0.5  # attraction lost per freshness half-life of age
    freshness_half_life_hours: float = 24.0
    examination_decay: float = 0.7  # position bias: P(examine p) = (1 + p) ** -decay
    min_log_interest: float = -4.0  # floor of the log-interest terms (interest 0 is not -inf)

    def __post_init__(self) -> None:
        assert self.taste_dim > 0
        assert self.examination_decay >= 0
        assert self.freshness_half_life_hours > 0


@dataclass(frozen=True)
class ReaderTruth:
    """Hidden interests: `interests` sums to 1 over categories; `sub_interests[c]` sums to 1
    over the subcategories of c; `taste` has shape (taste_dim,)."""

    interests: dict[str, float]
    sub_interests: dict[str, dict[str, float]]
    taste: np.ndarray
    activity: float = 1.0  # relative visit rate


@dataclass(frozen=True)
class ItemTruth:
    category: str
    subcategory: str
    taste: np.ndarray  # (taste_dim,)
    quality: float


def _seeded_rng(*parts: str) -> np.random.Generator:
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def item_truth(
    *, external_id: str, category: str, subcategory: str, config: ClickModelConfig
) -> ItemTruth:
    """A story's hidden taste vector: its subcategory's direction plus its own noise."""
    topic = _seeded_rng("topic", category, subcategory).standard_normal(config.taste_dim)
    rng = _seeded_rng("item", external_id)
    own = rng.standard_normal(config.taste_dim)
    taste = (0.6 * topic + 0.8 * own) / math.hypot(0.6, 0.8)
    quality = float(rng.normal(0.0, config.quality_sd))
    return ItemTruth(category=category, subcategory=subcategory, taste=taste, quality=quality)


@dataclass
class ClickModel:
    """Click probabilities of simulated readers; `taxonomy` maps category -> subcategories."""

    taxonomy: dict[str, list[str]]
    config: ClickModelConfig = field(default_factory=ClickModelConfig)

    def examination(self, position: int) -> float:
        return float((1.0 + position) ** -self.config.examination_decay)

    def attraction_logit(self, reader: ReaderTruth, item: ItemTruth, *, age_hours: float) -> float:
        c = self.config
        n_cat = len(self.taxonomy)
        subs = self.taxonomy.get(item.category, [item.subcategory])
        p_cat = reader.interests.get(item.category, 0.0)
        p_sub = reader.sub_interests.get(item.category, {}).get(item.subcategory, 0.0)
        log_cat = math.log(n_cat * p_cat) if p_cat > 0 else c.min_log_interest
        log_sub = math.log(len(subs) * p_sub) if p_sub > 0 else c.min_log_interest
        taste = float(reader.taste @ item.taste) / math.sqrt(c.taste_dim)
        return (
            c.bias
            + c.w_category * max(log_cat, c.min_log_interest)
            + c.w_subcategory * max(log_sub, c.min_log_interest)
            + c.w_taste * taste
            + item.quality
            - c.w_freshness * max(age_hours, 0.0) / c.freshness_half_life_hours
        )

    def attraction(self, reader: ReaderTruth, item: ItemTruth, *, age_hours: float) -> float:
        return 1.0 / (1.0 + math.exp(-self.attraction_logit(reader, item, age_hours=age_hours)))

    def click_probability(
        self, reader: ReaderTruth, item: ItemTruth, *, position: int, age_hours: float
    ) -> float:
        return self.examination(position) * self.attraction(reader, item, age_hours=age_hours)
