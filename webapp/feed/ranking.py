"""The feed ranker on the hot path: this module gathers the inputs of recsys.ranker.rank,
calls it, and explains the page ("why this story").

Per request, Postgres answers one round trip (the reader and their history, read by the
caller) and takes the page's impressions, and Redis answers twice (the catalog version and
the serving runs in one MGET; the states' version and the reader's vector in one pipeline);
everything else is in memory:
- the live catalog (ids, categories, ages, counts, text vectors) is a per-process copy,
  reloaded when the catalog version in Redis moves (a story published, the counts refreshed)
  or after FEED_CATALOG_TTL_SECONDS;
- the models of the active runs (cold-start + calibration, CTR) are loaded once per run;
- RALM scores come from webapp.lookalike.serving (reader vector from Redis, item states from
  the per-process serving copy).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import redis
from django.conf import settings

from recsys import ranker
from recsys.arms import Arm
from recsys.artifacts import ArtifactError, load_coldstart, load_ctr
from recsys.ctr import FEATURES, assemble
from recsys.profiles import PROFILE_HISTORY, reader_profiles
from webapp.common import degraded
from webapp.common.catalog import CATALOG_VERSION_KEY
from webapp.common.connections import redis_client
from webapp.lookalike import store
from webapp.lookalike.models import ModelKind, ModelRun
from webapp.lookalike.serving import WarmScores, warm_scores
from webapp.news.models import Item, ItemStatus

log = logging.getLogger(__name__)


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
                int((r or redis_client()).get(CATALOG_VERSION_KEY) or 0)
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
        missing = [i.pk for i in objs if i.pk not in self._vectors]
        for start in range(0, len(missing), 5000):
            for pk, raw in Item.objects.filter(pk__in=missing[start:start + 5000], text_vector__isnull=False) \
                    .values_list("pk", "text_vector"):
                self._vectors[pk] = np.frombuffer(bytes(raw), dtype="<f4")
        categories = sorted(set(Item.objects.filter(source=source).values_list("category", flat=True).distinct()))
        cat_index = {c: n for n, c in enumerate(categories)}
        subs: dict[str, int] = {}
        zero = np.zeros(384, np.float32)
        n = len(objs)
        return Catalog(
            source=source,
            ids=np.fromiter((i.pk for i in objs), np.int64, count=n),
            category=np.fromiter((cat_index[i.category] for i in objs), np.int64, count=n),
            subcategory=np.fromiter((subs.setdefault(f"{i.category}/{i.subcategory}", len(subs)) for i in objs),
                                    np.int64, count=n),
            categories=categories,
            published=np.fromiter((i.published_at.timestamp() for i in objs), np.float64, count=n),
            shown=np.fromiter((i.shown_count for i in objs), np.float64, count=n),
            clicked=np.fromiter((i.click_count for i in objs), np.float64, count=n),
            warm=np.fromiter((i.status == ItemStatus.WARM for i in objs), bool, count=n),
            vectors=np.stack([self._vectors.get(i.pk, zero) for i in objs]) if objs else np.zeros((0, 384), np.float32),
            row={i.pk: k for k, i in enumerate(objs)},
            items=objs,
            version=version,
            loaded=time.monotonic(),
        )


@dataclass
class Models:
    """The ranker's models of the active runs (recsys.ranker.Models), and the CTR model's
    prior CTR (its item-CTR feature's smoothing)."""

    key: tuple[int | None, int | None] = (None, None)
    ranker: ranker.Models | None = None
    prior: float = 0.05
    error: str | None = None


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
            pointer = pointers.lookalike if pointers is not None else store.active_lookalike_get(r=r)
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
        if not runs[ModelKind.COLDSTART] or not runs[ModelKind.CTR]:
            return Models(key=key)
        try:
            cold = load_coldstart(Path(runs[ModelKind.COLDSTART][1]))
            ctr = load_ctr(Path(runs[ModelKind.CTR][1]))
        except ArtifactError as exc:
            log.error("ranker models not loaded, the feed falls back to the baseline: %s", exc)
            return Models(key=key, error=str(exc))
        cal, ctr_model = cold["calibration"], ctr["ctr"]
        if ctr_model is None:
            return Models(key=key)
        coef, intercept = ctr_model.linear()
        with_sim = ctr["ctr_similarity"]
        return Models(key=key, prior=float(ctr["meta"].get("prior", 0.05)), ranker=ranker.Models(
            coldstart=cold["model"].linear(), ctr=(coef, intercept),
            cold_map=cal.cold if cal is not None else None, warm_map=cal.warm if cal is not None else None,
            position_slope=float(coef[FEATURES.index("position")]),
            ctr_with_similarity=with_sim.linear() if with_sim is not None else None))


catalogs = CatalogCache()
models = ModelCache()


@dataclass
class Ranked:
    """The page: item ids, their scores and parts, and the reasons."""

    arm: str
    item_ids: np.ndarray
    scores: np.ndarray
    parts: list[dict[str, float | bool | str | None]]
    why: list[str] = field(default_factory=list)
    warm: list[bool] = field(default_factory=list)
    items: list[Item] | None = None  # the page's items when the catalog copy has them


@dataclass
class Gathered:
    """What recsys.ranker.rank is given for one request, and what explains its page."""

    reader: ranker.Reader
    candidates: ranker.Candidates
    scores: ranker.Scores
    rows: np.ndarray  # (N,) the candidates' rows in the catalog copy
    history: list[int]  # the reader's clicks as catalog rows, oldest first
    picked: set[int]  # categories the reader picked
    warm: WarmScores


def gather(*, reader_id: int, cat: Catalog, m: Models, clicked: list[int], shown: dict[int, int], now: datetime,
           topics: list[str] | tuple[str, ...], r: redis.Redis, pointers: store.Pointers | None) -> Gathered:
    """The reader as of now (profile, affinity), their candidates (the live stories they
    have not clicked) with the CTR model's features, and RALM's logits for the warm ones."""
    t = now.timestamp()
    live = cat.published <= t
    if clicked:
        live[[cat.row[i] for i in clicked if i in cat.row]] = False
    rows = np.flatnonzero(live)
    history = [cat.row[i] for i in clicked[:PROFILE_HISTORY] if i in cat.row][::-1]  # oldest first
    picked = {cat.categories.index(c) for c in topics if c in cat.categories}
    profile = reader_profiles(item_vectors=cat.vectors, item_category=cat.category, n_categories=len(cat.categories),
                              histories=[np.asarray(history, np.int64)], picked=[picked])
    affinity = profile.category_affinity[0]
    age = (t - cat.published[rows]) / 3600.0
    seen = np.zeros(len(cat.ids))
    for item_id, n in shown.items():
        if item_id in cat.row:
            seen[cat.row[item_id]] = n
    ids = cat.ids[rows]
    ctr_x = assemble(affinity=affinity[cat.category[rows]], item_clicks=cat.clicked[rows],
                     item_impressions=cat.shown[rows], age_hours=age, position=0.0, prior=m.prior)
    scored = WarmScores(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64))
    if len(rows):
        try:
            scored = warm_scores(reader_id=reader_id, item_ids=ids, r=r, pointers=pointers)
        except redis.RedisError:
            log.warning("Redis unreachable: warm items scored by the cold-start model")
    ralm = np.full(len(rows), np.nan)
    ralm[np.searchsorted(ids, scored.item_ids)] = scored.logits  # ids are sorted (catalog in pk order)
    return Gathered(
        reader=ranker.Reader(profile.vectors[0], affinity, has_clicks=bool(history)),
        candidates=ranker.Candidates(ids=ids, category=cat.category[rows], group=cat.subcategory[rows],
                                     vectors=cat.vectors[rows], age_hours=age, seen=seen[rows], ctr_features=ctr_x),
        scores=ranker.Scores(ralm), rows=rows, history=history, picked=picked, warm=scored)


def rank(*, reader_id: int, source: str, clicked: list[int], shown: dict[int, int], now: datetime, limit: int,
         arm: Arm, topics: list[str] | tuple[str, ...] = ()) -> Ranked | None:
    """Rank the reader's candidates with the arm; None when no trained ranker serves (the
    caller uses the baseline). `clicked`: the reader's clicked item ids, newest first;
    `shown`: recent impressions per item; `topics`: categories the reader picked. A reader
    with neither clicks nor topics gets the calibrated popularity and freshness mix (every
    reader term of the models is zero)."""
    r = redis_client()
    try:  # one round trip for what the caches check (each asks on its own, and notes the outage, if it fails)
        pointers = store.pointers_get(r=r)
    except redis.RedisError:
        pointers = None
    m = models.get(r, pointers)
    if m.error is not None:
        degraded.note(f"ranker models unusable, baseline ranking: {m.error}")
    if m.ranker is None:
        return None
    cat = catalogs.get(source, r, pointers)
    g = gather(reader_id=reader_id, cat=cat, m=m, clicked=clicked, shown=shown, now=now, topics=topics, r=r,
               pointers=pointers)
    out = ranker.rank(g.reader, g.candidates, g.scores, arm=arm, models=m.ranker, limit=limit)
    page = out.page
    personal = bool(g.history) or bool(g.picked)
    ranked = Ranked(out.arm, g.candidates.ids[page], out.final[page], [out.parts(int(k)) for k in page],
                    items=[cat.items[g.rows[k]] for k in page])
    for k in page:
        warm = not np.isnan(g.scores.ralm_logit[k])
        c = int(g.candidates.category[k])
        ranked.warm.append(warm)
        ranked.why.append(_why(int(g.candidates.ids[k]), warm, g.warm, cat.categories[c],
                               because=_nearest_click(cat, g.history, int(g.rows[k])), picked=c in g.picked,
                               personal=personal, age_hours=float(g.candidates.age_hours[k])))
    return ranked


def _nearest_click(cat: Catalog, history: list[int], row: int) -> str | None:
    """The title of the reader's clicked story in the same category closest in text to the
    candidate (rows into the catalog); None without such a click."""
    same = [h for h in history if cat.category[h] == cat.category[row]]
    if not same:
        return None
    sims = cat.vectors[same] @ cat.vectors[row]
    return cat.items[same[int(np.argmax(sims))]].title


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
