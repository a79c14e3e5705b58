"""The demo's ground truth: a position-based click model over hidden reader interests.

A simulated reader clicks a story shown at position p with probability
    P(click) = P(examine p) * P(attracted | reader, story, age)
    P(examine p) = (1 + p) ** -examination_decay                       (p = 0 is the top)
    logit P(attracted) = bias
        + w_category    * log(n_categories * interest[category])         (0 for a uniform reader)
        + w_subcategory * log(n_subcategories * interest[subcategory | category])
        + w_taste       * <reader.taste, story.taste> / sqrt(taste_dim)
        + w_audience    * [the reader belongs to the story's audience group]
        + story.quality
        - w_freshness   * age_hours / freshness_half_life_hours
Readers' interests and tastes come from fixtures/readers.jsonl; a story's hidden taste vector,
quality and audience group, and a reader's audience groups, are drawn from generators seeded by
their ids, so they are the same in every process and no table or API exposes them. Models are
scored against this truth.

A *world* is a named ClickModelConfig (WORLDS). In `labels` every interest a reader has beyond
the taste vector is a category or subcategory the CTR model sees. In `audiences` stories also
appeal to hidden audience groups that cut across the labels (a town, a team's following, a
political leaning): a reader belongs to a few of them, and no label names them, so only the
readers a story reaches can reveal its group (docs/worlds.md argues the sizes). A world may be
named with overrides, `audiences:w_audience=1.2,w_taste=0.5`, for a differently weighted world.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field
from functools import lru_cache

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
    n_audiences: int = 0  # hidden audience groups no label names (0: none)
    audiences_per_reader: int = 0  # groups each reader belongs to
    audience_share: float = 0.0  # share of stories that appeal to one group (the rest to nobody in particular)
    w_audience: float = 0.0  # attraction gained by a member of the story's group

    def __post_init__(self) -> None:
        assert self.taste_dim > 0
        assert self.examination_decay >= 0
        assert self.freshness_half_life_hours > 0
        assert 0 <= self.audiences_per_reader <= self.n_audiences
        assert 0.0 <= self.audience_share <= 1.0


class UnknownWorld(ValueError):
    """A world name that is not registered, or an override that is not a number field."""


WORLDS: dict[str, ClickModelConfig] = {
    # Interests are the labels (plus a taste the labels partly carry): the count knows nearly
    # all that a look-alike could find.
    "labels": ClickModelConfig(),
    # The same readers and labels, plus hidden audiences: 12 groups, 2 per reader, four
    # stories in five written for one of them, and e^3 (about 20x) the odds for its members.
    "audiences": ClickModelConfig(n_audiences=12, audiences_per_reader=2, audience_share=0.8, w_audience=3.0),
}
DEFAULT_WORLD = "audiences"


def world_config(spec: str) -> ClickModelConfig:
    """The config of a world spec: a name in WORLDS, optionally followed by `:field=value,...`
    overrides of its numeric fields. UnknownWorld (a ValueError) for anything else."""
    name, _, overrides = (spec or "").strip().partition(":")
    if name not in WORLDS:
        raise UnknownWorld(f"unknown demo world {name!r} (one of {', '.join(WORLDS)}, optionally "
                           "with overrides, e.g. audiences:w_audience=1.2)")
    config = WORLDS[name]
    if not overrides.strip():
        return config
    kinds = {f.name: f.type for f in dataclasses.fields(ClickModelConfig)}
    changes: dict[str, float | int] = {}
    for part in overrides.split(","):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or key not in kinds:
            raise UnknownWorld(f"world override {part.strip()!r}: expected FIELD=NUMBER with a field of "
                               f"{', '.join(kinds)}")
        try:
            changes[key] = int(value) if kinds[key] in (int, "int") else float(value)
        except ValueError:
            raise UnknownWorld(f"world override {part.strip()!r}: {value.strip()!r} is not a number") from None
    try:
        return dataclasses.replace(config, **changes)
    except AssertionError:
        raise UnknownWorld(f"world {spec!r}: the overrides are out of range") from None


@dataclass(frozen=True)
class ReaderTruth:
    """Hidden interests: `interests` sums to 1 over categories; `sub_interests[c]` sums to 1
    over the subcategories of c; `taste` has shape (taste_dim,)."""

    interests: dict[str, float]
    sub_interests: dict[str, dict[str, float]]
    taste: np.ndarray
    activity: float = 1.0  # relative visit rate
    id: str = ""  # the reader's external id: it seeds their audience groups


@dataclass(frozen=True)
class ItemTruth:
    category: str
    subcategory: str
    taste: np.ndarray  # (taste_dim,)
    quality: float
    audience: int = -1  # the audience group the story appeals to; -1: none


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
    audience = -1
    if config.n_audiences:  # its own generator: the taste and quality are the same in every world
        pick = _seeded_rng("audience", external_id)
        if pick.random() < config.audience_share:
            audience = int(pick.integers(config.n_audiences))
    return ItemTruth(category=category, subcategory=subcategory, taste=taste, quality=quality, audience=audience)


@lru_cache(maxsize=65536)
def _reader_audiences(reader_id: str, n_audiences: int, per_reader: int) -> np.ndarray:
    out = np.zeros(n_audiences)
    if n_audiences and per_reader:
        out[_seeded_rng("audiences", reader_id).choice(n_audiences, per_reader, replace=False)] = 1.0
    return out


def reader_audiences(reader: ReaderTruth, config: ClickModelConfig) -> np.ndarray:
    """The reader's audience groups as a 0/1 vector (n_audiences,), seeded by the reader's id."""
    return _reader_audiences(reader.id, config.n_audiences, config.audiences_per_reader).copy()


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
        member = reader_audiences(reader, c)[item.audience] if item.audience >= 0 and c.n_audiences else 0.0
        return (
            c.bias
            + c.w_category * max(log_cat, c.min_log_interest)
            + c.w_subcategory * max(log_sub, c.min_log_interest)
            + c.w_taste * taste
            + c.w_audience * member
            + item.quality
            - c.w_freshness * max(age_hours, 0.0) / c.freshness_half_life_hours
        )

    def attraction(self, reader: ReaderTruth, item: ItemTruth, *, age_hours: float) -> float:
        return 1.0 / (1.0 + math.exp(-self.attraction_logit(reader, item, age_hours=age_hours)))

    def click_probability(
        self, reader: ReaderTruth, item: ItemTruth, *, position: int, age_hours: float
    ) -> float:
        return self.examination(position) * self.attraction(reader, item, age_hours=age_hours)
