"""The feed ranker on the hot path (recsys.ranker decides; this module gathers its inputs).

Per request, Postgres answers two indexed queries (the reader's clicks, their recent
impressions) and takes the page's impressions, and Redis answers twice (the catalog version
and the serving runs in one MGET; the states' version and the reader's vector in one
pipeline); everything else is in memory:
- the live catalog (ids, categories, ages, counts, text vectors) is a per-process copy,
  reloaded when the catalog version in Redis moves (a story published, the counts refreshed)
  or after FEED_CATALOG_TTL_SECONDS;
- the models of the active runs (cold-start + calibration, CTR) are loaded once per run;
- RALM scores come from webapp.lookalike.serving (reader vector from Redis, item states from
  the per-process serving copy).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import redis
from django.conf import settings

from recsys.artifacts import ArtifactError, load_coldstart, load_ctr
from recsys.coldstart import PROFILE_HALF_LIFE, Profiles, reader_logits
from recsys.ctr import FEATURES, affinity_of, assemble, with_similarity
from recsys.ranker import (
    RankerConfig,
    diversified_top,
    expected_page_clicks,
    final_scores,
    on_ctr_scale,
    story_factor,
    within_budget,
)
from webapp import degraded
from webapp.lookalike import store
from webapp.lookalike.models import ModelKind, ModelRun
from webapp.lookalike.serving import WarmScores, warm_scores
from webapp.news.models import Item, ItemStatus

log = logging.getLogger(__name__)
PROFILE_HISTORY = 100
SEEN_DISCOUNT = 0.5  # a story shown to the reader in the last day scores half per showing
TOPIC_CLICKS = 2.0  # a picked topic counts as this many clicks in its category (affinity)


@dataclass
class Catalog:
    source: str
    ids: np.ndarray  # (N,) every published item of the source
    category: np.ndarray  # (N,) index into categories
    subcategory: np.ndarray  # (N,) index into subcategories
    categories: list[str]
    published: np.ndarray  # (N,) epoch seconds
    shown: np.ndarray  # (N,)
    clicked: np.ndarray  # (N,)
    sim_clicks: np.ndarray  # (N,) the similarity's record (recsys.ranker.story_factor)
    sim_expected: np.ndarray  # (N,)
    warm: np.ndarray  # (N,) bool, the durable status (display; scoring asks the serving store)
    vectors: np.ndarray  # (N, 384) float32, zero rows where an item has none yet
    row: dict[int, int]
    items: list[Item]  # the rows as model instances (what the page shows), without their vectors
    version: int | None
    loaded: float


class CatalogCache:
    def __init__(self) -> None:
        self._copies: dict[str, Catalog] = {}
        self._vectors: dict[int, np.ndarray] = {}  # text vectors never change: fetched once
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._copies.clear()
            self._vectors.clear()

    def get(self, source: str, r: redis.Redis | None, pointers: store.Pointers | None = None) -> Catalog:
        """`pointers`: the catalog version as the request read it (else asked here)."""
        try:
            version = pointers.catalog_version if pointers is not None else \
                int((r or store.client()).get(store.CATALOG_VERSION_KEY) or 0)
        except redis.RedisError as exc:
            version = None
            degraded.note(f"redis unreachable ({exc.__class__.__name__}): catalog copy kept to its TTL")
        copy = self._copies.get(source)
        fresh = copy is not None and time.monotonic() - copy.loaded < settings.FEED_CATALOG_TTL_SECONDS
        if copy is not None and fresh and (version is None or version == copy.version):
            return copy
        with self._lock:
            copy = self._load(source, version)
            self._copies[source] = copy
            return copy

    def _load(self, source: str, version: int | None) -> Catalog:
        objs = list(Item.objects.filter(source=source, published_at__isnull=False).order_by("pk")
                    .defer("text_vector"))
        rows = [(i.pk, i.category, i.subcategory, i.published_at, i.shown_count, i.click_count, i.status,
                 i.similarity_clicks, i.similarity_expected) for i in objs]
        missing = [r[0] for r in rows if r[0] not in self._vectors]
        for start in range(0, len(missing), 5000):
            for pk, raw in Item.objects.filter(pk__in=missing[start:start + 5000], text_vector__isnull=False) \
                    .values_list("pk", "text_vector"):
                self._vectors[pk] = np.frombuffer(bytes(raw), dtype="<f4")
        categories = sorted(set(Item.objects.filter(source=source).values_list("category", flat=True).distinct()))
        cat_index = {c: n for n, c in enumerate(categories)}
        subs: dict[str, int] = {}
        zero = np.zeros(384, np.float32)
        n = len(rows)
        return Catalog(
            source=source,
            ids=np.fromiter((r[0] for r in rows), np.int64, count=n),
            category=np.fromiter((cat_index[r[1]] for r in rows), np.int64, count=n),
            subcategory=np.fromiter((subs.setdefault(f"{r[1]}/{r[2]}", len(subs)) for r in rows), np.int64, count=n),
            categories=categories,
            published=np.fromiter((r[3].timestamp() for r in rows), np.float64, count=n),
            shown=np.fromiter((r[4] for r in rows), np.float64, count=n),
            clicked=np.fromiter((r[5] for r in rows), np.float64, count=n),
            sim_clicks=np.fromiter((r[7] for r in rows), np.float64, count=n),
            sim_expected=np.fromiter((r[8] for r in rows), np.float64, count=n),
            warm=np.fromiter((r[6] == ItemStatus.WARM for r in rows), bool, count=n),
            vectors=np.stack([self._vectors.get(r[0], zero) for r in rows]) if rows else np.zeros((0, 384), np.float32),
            row={r[0]: k for k, r in enumerate(rows)},
            items=objs,
            version=version,
            loaded=time.monotonic(),
        )


@dataclass
class Models:
    """The cold-start model with its calibration, and the CTR models, of the active runs."""

    key: tuple[int | None, int | None] = (None, None)
    cold: object | None = None
    calibration: object | None = None
    ctr: object | None = None
    ctr_similarity: object | None = None
    prior: float = 0.05
    error: str | None = None
    # (coef, intercept) on raw features: one matrix-vector product per request instead of sklearn's checks.
    cold_linear: tuple | None = None
    ctr_linear: tuple | None = None
    ctr_similarity_linear: tuple | None = None


class ModelCache:
    """Reloaded when the look-alike pointer in Redis moves (every run switch moves it) or,
    without Redis, once a minute."""

    def __init__(self) -> None:
        self._models = Models()
        self._pointer: int | None = -1
        self._checked = 0.0
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._models, self._pointer = Models(), -1

    def get(self, r: redis.Redis | None, pointers: store.Pointers | None = None) -> Models:
        """`pointers`: the look-alike pointer as the request read it (else asked here)."""
        try:
            pointer = pointers.lookalike if pointers is not None else store.active_lookalike_get(r=r or store.client())
        except redis.RedisError as exc:
            pointer = self._pointer if time.monotonic() - self._checked < 60 else -2
            degraded.note(f"redis unreachable ({exc.__class__.__name__}): models as of the last check")
        if pointer == self._pointer:
            return self._models
        with self._lock:
            runs = {k: ModelRun.objects.filter(kind=k, is_active=True).values_list("pk", "artifact_path").first()
                    for k in (ModelKind.COLDSTART, ModelKind.CTR)}
            key = tuple(v[0] if v else None for v in runs.values())
            if key != self._models.key:
                self._models = self._load(runs, key)
            self._pointer, self._checked = pointer, time.monotonic()
            return self._models

    @staticmethod
    def _load(runs: dict, key) -> Models:
        m = Models(key=key)
        try:
            if runs[ModelKind.COLDSTART]:
                cold = load_coldstart(Path(runs[ModelKind.COLDSTART][1]))
                m.cold, m.calibration = cold["model"], cold["calibration"]
            if runs[ModelKind.CTR]:
                ctr = load_ctr(Path(runs[ModelKind.CTR][1]))
                m.ctr, m.ctr_similarity = ctr["ctr"], ctr["ctr_similarity"]
                m.prior = float(ctr["meta"].get("prior", m.prior))
            m.cold_linear = m.cold.linear() if m.cold is not None else None
            m.ctr_linear = m.ctr.linear() if m.ctr is not None else None
            m.ctr_similarity_linear = m.ctr_similarity.linear() if m.ctr_similarity is not None else None
        except ArtifactError as exc:
            log.error("ranker models not loaded, the feed falls back to the baseline: %s", exc)
            m = Models(key=key, error=str(exc))
        return m


catalogs = CatalogCache()
models = ModelCache()


@dataclass
class Ranked:
    """The page: candidate rows into the catalog, their scores and parts, and the reasons."""

    mode: str
    item_ids: np.ndarray
    scores: np.ndarray
    parts: list[dict[str, float | bool | None]]
    why: list[str] = field(default_factory=list)
    warm: list[bool] = field(default_factory=list)
    items: list[Item] | None = None  # the page's items when the catalog copy has them


def ranker_config(mode: str | None = None, weight: float | None = None, evidence: float | None = None,
                  budget: float | None = None) -> RankerConfig:
    return RankerConfig(mode=mode or settings.FEED_RANKER_MODE,
                        weight=settings.FEED_BLEND_WEIGHT if weight is None else weight,
                        gate=settings.FEED_GATE_THRESHOLD, max_per_subcategory=settings.FEED_MAX_PER_SUBCATEGORY,
                        evidence=settings.FEED_BLEND_EVIDENCE if evidence is None else evidence,
                        budget=settings.FEED_BLEND_BUDGET if budget is None else budget)


def rank(*, reader_id: int, source: str, clicked: list[int], shown: dict[int, int], now: datetime, limit: int,
         config: RankerConfig, topics: list[str] | tuple[str, ...] = ()) -> Ranked | None:
    """Rank the reader's candidates; None when no trained ranker serves (the caller uses the
    baseline). `clicked`: the reader's clicked item ids, newest first; `shown`: recent
    impressions per item; `topics`: categories the reader picked. A reader with neither
    clicks nor topics gets the calibrated popularity and freshness mix (every reader term of
    the models is zero)."""
    r = store.client()
    try:  # one round trip for what the caches check (each asks on its own, and notes the outage, if it fails)
        pointers = store.pointers_get(r=r)
    except redis.RedisError:
        pointers = None
    m = models.get(r, pointers)
    if m.error is not None:
        degraded.note(f"ranker models unusable, baseline ranking: {m.error}")
    if m.cold is None or m.ctr is None:
        return None
    cat = catalogs.get(source, r, pointers)
    t = now.timestamp()
    live = cat.published <= t
    if clicked:
        live[[cat.row[i] for i in clicked if i in cat.row]] = False
    rows = np.flatnonzero(live)
    if not len(rows):
        return Ranked(config.mode, np.zeros(0, np.int64), np.zeros(0), [])
    ids = cat.ids[rows]

    # The reader as of now: text profile and category affinity from their latest clicks.
    history = [cat.row[i] for i in clicked[:PROFILE_HISTORY] if i in cat.row][::-1]  # oldest first
    n_cat = len(cat.categories)
    counts = np.bincount(cat.category[history], minlength=n_cat).astype(np.float64) if history else np.zeros(n_cat)
    picked = {cat.categories.index(t) for t in topics if t in cat.categories}
    for c in picked:  # a picked topic weighs like TOPIC_CLICKS clicks in its category
        counts[c] += TOPIC_CLICKS
    vec = np.zeros((1, cat.vectors.shape[1]), np.float32)
    if history:
        w = 0.5 ** (np.arange(len(history))[::-1] / PROFILE_HALF_LIFE)
        v = (w[:, None] * cat.vectors[history]).sum(0)
        vec[0] = v / max(float(np.linalg.norm(v)), 1e-12)
    affinity = affinity_of(counts, counts.sum(), n_cat)
    profile = Profiles(vec, affinity[None].astype(np.float32))
    age = (t - cat.published[rows]) / 3600.0

    # Similarity: the calibrated cold-start score, RALM's (blended with it) for warm items.
    lin = reader_logits(*m.cold_linear, profile=profile.vectors[0], affinity=profile.category_affinity[0][
        cat.category[rows]], item_vectors=cat.vectors[rows], age_hours=age)
    # Without calibration maps (a history too thin to fit them) the cold-start model's own
    # probability stands in for every item, and RALM only explains (why) instead of scoring.
    similarity = m.calibration.cold.predict(lin) if m.calibration is not None else _sigmoid(lin)
    ralm = np.full(len(rows), np.nan)
    warm_now = np.zeros(len(rows), bool)
    scored = WarmScores(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64))
    try:
        scored = warm_scores(reader_id=reader_id, item_ids=ids, r=r, pointers=pointers)
    except redis.RedisError:
        log.warning("Redis unreachable: warm items scored by the cold-start model")
    if len(scored.item_ids):
        pos = np.searchsorted(ids, scored.item_ids)  # ids are sorted (catalog in pk order)
        ralm[pos], warm_now[pos] = scored.logits, True
        if m.calibration is not None:
            similarity[pos] = m.calibration.warm.predict(np.stack([scored.logits, lin[pos]], 1))
    # Per story, how its readers have clicked against what the similarity predicted (its own
    # appeal, which the run's calibration maps cannot know); the feature mode's CTR model was
    # fitted on the similarity as it comes, so it reads that one.
    factor = story_factor(cat.sim_clicks[rows], cat.sim_expected[rows], settings.FEED_STORY_PRIOR_CLICKS)
    as_fitted, similarity = similarity, np.minimum(similarity * factor, 1.0)

    x = assemble(affinity=affinity[cat.category[rows]], item_clicks=cat.clicked[rows],
                 item_impressions=cat.shown[rows], age_hours=age, position=0.0, prior=m.prior)
    ctr_logit = x.astype(np.float64) @ m.ctr_linear[0] + m.ctr_linear[1]
    ctr = _sigmoid(ctr_logit)
    ctr_sim = None
    requested = config.mode
    if config.mode == "feature":
        if m.ctr_similarity is None:
            config = dataclasses.replace(config, mode="blend")
        else:
            w, b = m.ctr_similarity_linear
            ctr_sim = _sigmoid(with_similarity(x, as_fitted).astype(np.float64) @ w + b)
    seen_all = np.zeros(len(cat.ids))
    for item_id, n in shown.items():
        if item_id in cat.row:
            seen_all[cat.row[item_id]] = n
    seen = seen_all[rows]
    repeat = SEEN_DISCOUNT ** seen

    def page_for(weight: float) -> tuple[np.ndarray, np.ndarray]:
        """(final scores, the page's candidate indices) with blend weight `weight`."""
        final = final_scores(dataclasses.replace(config, weight=weight), ctr=ctr, similarity=similarity,
                             ctr_with_similarity=ctr_sim, limit=limit, shown=cat.shown[rows]) * repeat
        return final, diversified_top(final, cat.subcategory[rows], limit=limit,
                                      per_group=config.max_per_subcategory, tie_break=ids)

    budgeted = config.mode == "blend" and config.budget > 0 and config.weight > 0
    # A reader with no clicks yet keeps the full w: the CTR model knows nothing of them but
    # their picked topics, so its expected clicks are the population's, and the budget would
    # take back the one personal signal they gave (the similarity of their topics and text).
    if budgeted and history:  # the CTR model's expected clicks on a page, its position term and the repeat discount
        slope = float(m.ctr_linear[0][FEATURES.index("position")])
        used, (final, top) = within_budget(
            page_for, lambda page: expected_page_clicks(ctr_logit, page[1], position_slope=slope, factor=repeat),
            weight=config.weight, budget=config.budget)
    else:
        used, (final, top) = config.weight, page_for(config.weight)
    evidence = config.mode == "blend" and config.evidence > 0
    scale = on_ctr_scale(ctr, similarity) if evidence else None

    out = Ranked(config.mode, ids[top], final[top], [], items=[cat.items[rows[k]] for k in top])
    for k in top:
        part = {"ctr": round(float(ctr[k]), 6), "similarity": round(float(similarity[k]), 6),
                "story_factor": round(float(factor[k]), 4),
                "coldstart_logit": round(float(lin[k]), 4), "warm": bool(warm_now[k]),
                "ralm_logit": None if np.isnan(ralm[k]) else round(float(ralm[k]), 4),
                "weight": config.weight if config.mode == "blend" else (0.0 if config.mode == "ctr" else None),
                "seen": int(seen[k]), "calibrated": m.calibration is not None}
        if budgeted:  # the w the budget left this page (the label keeps the w asked for)
            part |= {"budget": config.budget, "weight_used": used}
        if evidence:  # w decays with the story's impressions; the similarity on the CTR's scale
            part |= {"evidence": config.evidence, "shown": int(cat.shown[rows[k]]),
                     "similarity_scale": round(scale, 4)}
        if ctr_sim is not None:
            part["ctr_with_similarity"] = round(float(ctr_sim[k]), 6)
        if requested != config.mode:  # the A/B arm asked for, served by a fallback
            part["requested"] = requested
        out.parts.append(part)
        out.warm.append(bool(warm_now[k]))
        c = int(cat.category[rows[k]])
        out.why.append(_why(int(ids[k]), bool(warm_now[k]), scored, cat.categories[c],
                            because=_nearest_click(cat, history, rows[k]), picked=c in picked,
                            personal=bool(history) or bool(picked), age_hours=age[k]))
    return out


def _nearest_click(cat: Catalog, history: list[int], row: int) -> str | None:
    """The title of the reader's clicked story in the same category closest in text to the
    candidate (rows into the catalog); None without such a click."""
    same = [h for h in history if cat.category[h] == cat.category[row]]
    if not same:
        return None
    sims = cat.vectors[same] @ cat.vectors[row]
    return cat.items[same[int(np.argmax(sims))]].title


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _why(item_id: int, warm: bool, scored: WarmScores, category: str, *, because: str | None, picked: bool,
         personal: bool, age_hours: float) -> str:
    """Which of the reader's clicks or topics led to the story (or that nothing personal did)."""
    if not personal:
        when = "New" if age_hours < 24 else "Popular"
        return f"{when} in {category}: the feed is popular and fresh stories until you click or pick topics."
    if warm:
        found = scored.why(item_id)
        lead = "Readers like you read it"
        if found:
            near, total = found
            lead = f"{lead}: {near} of its {total} recent readers share your taste"
        return f"{lead}, as you read “{because}”." if because else f"{lead}."
    if because:
        return f"New story on a topic you read ({category}), like “{because}”."
    if picked:
        return f"New story on a topic you picked: {category}."
    return f"New in {category}." if age_hours < 24 else f"Popular in {category}."
