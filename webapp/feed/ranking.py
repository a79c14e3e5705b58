"""The feed ranker on the hot path: this module gathers the inputs of recsys.ranker.rank,
calls it, and explains the page ("why this story").

Per request, Postgres answers one round trip (the reader and their history, read by the
caller) and takes the page's impressions, and Redis answers twice (the catalog version and
the serving runs in one MGET; the states' version and the reader's vector in one pipeline);
everything else is in memory:
- the live catalog (ids, categories, ages, counts, titles, text vectors) is a per-process
  copy, reloaded when the catalog version in Redis moves (a story published, the counts
  refreshed) or after FEED_CATALOG_TTL_SECONDS; a reload reads the columns, not model
  instances, and fetches only the text vectors it has not seen (they never change). A
  catalog of up to FEED_RECALL_ABOVE stories also keeps them as model instances, so the page
  needs no query; a larger one leaves the page's ten to one query (webapp.feed.services);
- the models of the active runs (cold-start + calibration, CTR) are loaded once per run;
- RALM scores come from webapp.lookalike.serving (reader vector from Redis, item states from
  the per-process serving copy).

Above FEED_RECALL_ABOVE live stories the ranker does not score them all: `recall` hands it
at most about a thousand, the union of the CTR model's exact top RECALL_CTR (recsys.recall.CtrLists),
the RECALL_RALM warm stories nearest the reader through the serving copy's index (the paper's
look-alike exposure gate used as recall), the RECALL_FRESH newest cold stories and the
RECALL_POPULAR most popular ones.
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
from django.db.models.expressions import RawSQL

from recsys import ranker
from recsys.arms import Arm
from recsys.artifacts import ArtifactError, load_coldstart, load_ctr
from recsys.ctr import FEATURES, assemble
from recsys.profiles import PROFILE_HISTORY, reader_profiles
from recsys.recall import CtrLists
from webapp.common import degraded
from webapp.common.catalog import CATALOG_VERSION_KEY
from webapp.common.connections import redis_client
from webapp.lookalike import store
from webapp.lookalike.models import ModelKind, ModelRun
from webapp.lookalike.serving import NO_SCORES, ReaderView, WarmScores, reader_view
from webapp.news.models import Item, ItemStatus

log = logging.getLogger(__name__)
RECALL_CTR, RECALL_RALM, RECALL_FRESH, RECALL_POPULAR = 400, 200, 100, 100


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
    popularity: np.ndarray  # (N,) the decayed recent clicks
    warm: np.ndarray  # (N,) bool, the durable status (display; scoring asks the serving store)
    vectors: np.ndarray  # (N, 384) float32, zero rows where an item has none yet
    row: dict[int, int]
    titles: list[str]
    items: list[Item] | None  # the rows as model instances (what the page shows) in a small catalog
    version: int | None
    loaded: float
    ctr_lists: dict = field(default_factory=dict)  # CtrLists per ranker models' key, built on first use
    newest: np.ndarray | None = None  # rows, newest first
    most_popular: np.ndarray | None = None  # rows, most popular first

    def recall_lists(self, m: Models) -> CtrLists:
        """The stories per category by the story-only part of the CTR logit as of now (the
        copy is reloaded with the counts each minute: the ages drift by that much)."""
        lists = self.ctr_lists.get(m.key)
        if lists is None:
            coef, intercept = m.ranker.ctr
            x = assemble(affinity=np.zeros(len(self.ids)), item_clicks=self.clicked, item_impressions=self.shown,
                         age_hours=(time.time() - self.published) / 3600.0, position=0.0, prior=m.prior)
            lists = self.ctr_lists[m.key] = CtrLists(self.category, x.astype(np.float64) @ coef + intercept,
                                                     len(self.categories))
        return lists


class _TextVectors:
    """The catalog's text vectors in one growing buffer: a reload whose stories are the last
    one's plus newer ones (pk order) appends these and shares the rest, so a process holds
    the vectors once, not once per copy of the catalog. A story's vector never changes once
    computed; one not computed yet (a zero row) is asked for again at every reload."""

    DIM = 384

    def __init__(self) -> None:
        self.ids = np.zeros(0, np.int64)
        self.buffer = np.zeros((0, self.DIM), np.float32)
        self.empty = np.zeros(0, np.int64)  # ids whose vector was not there yet, sorted

    def rows_for(self, ids: np.ndarray) -> np.ndarray:
        """(len(ids), DIM): the vectors of these ids (sorted), fetching only unseen ones."""
        n_old = len(self.ids)
        if len(ids) >= n_old and np.array_equal(ids[:n_old], self.ids):
            if len(ids) > len(self.buffer):  # room for growth, so appends rarely copy
                grown = np.zeros((int(len(ids) * 1.25) + 64, self.DIM), np.float32)
                grown[:n_old] = self.buffer[:n_old]
                self.buffer = grown
            wanted = np.concatenate([self.empty[np.isin(self.empty, ids[:n_old])], ids[n_old:]])
        else:  # stories left the catalog: a new buffer, the known vectors copied over
            known = {int(i): k for k, i in enumerate(self.ids)}
            old = np.array([known.get(int(i), -1) for i in ids], np.int64)
            buffer = np.zeros((int(len(ids) * 1.25) + 64, self.DIM), np.float32)
            buffer[np.flatnonzero(old >= 0)] = self.buffer[old[old >= 0]]
            self.buffer = buffer
            wanted = np.union1d(ids[old < 0], self.empty[np.isin(self.empty, ids)])
        self.ids = ids.copy()
        found = self._fetch(wanted, self.buffer, np.searchsorted(ids, wanted))
        self.empty = np.setdiff1d(wanted, found)
        return self.buffer[: len(ids)]

    @staticmethod
    def _fetch(ids: np.ndarray, into: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The vectors of `ids` into these `rows` of `into` (zero where none); the ids found."""
        at = dict(zip(ids.tolist(), rows.tolist(), strict=True))
        into[rows] = 0.0
        found = []
        for start in range(0, len(ids), 5000):
            for pk, raw in Item.objects.filter(pk__in=ids[start:start + 5000].tolist(), text_vector__isnull=False) \
                    .values_list("pk", "text_vector"):
                into[at[pk]] = np.frombuffer(raw, dtype="<f4")
                found.append(pk)
        return np.array(found, np.int64)


class CatalogCache:
    def __init__(self) -> None:
        self._copies: dict[str, Catalog] = {}
        self._vectors: dict[str, _TextVectors] = {}
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
            degraded.note(f"redis unreachable ({exc.__class__.__name__}): catalog copy kept to its TTL",
                          kind=degraded.REDIS)
        copy = self._copies.get(source)
        fresh = copy is not None and time.monotonic() - copy.loaded < settings.FEED_CATALOG_TTL_SECONDS
        if copy is not None and fresh and (version is None or version == copy.version):
            return copy
        with self._lock:
            copy = self._load(source, version)
            self._copies[source] = copy
            return copy

    def _load(self, source: str, version: int | None) -> Catalog:
        live = Item.objects.filter(source=source, published_at__isnull=False).order_by("pk")
        columns = ("pk", "category", "subcategory", "published_at", "shown_count", "click_count", "popularity",
                   "status", "title")
        items = None
        if live.count() <= settings.FEED_RECALL_ABOVE:
            items = list(live.defer("text_vector"))
            rows = [tuple(getattr(i, c) for c in columns) for i in items]
            rows = [(*r[:3], r[3].timestamp(), *r[4:]) for r in rows]
        else:  # the time as epoch seconds from Postgres: parsing 100,000 timestamps is most of a reload
            epoch = RawSQL(f'EXTRACT(EPOCH FROM "{Item._meta.db_table}"."published_at")::float8', ())
            rows = list(live.annotate(epoch=epoch).values_list(*columns[:3], "epoch", *columns[4:]))
        n = len(rows)
        ids = np.fromiter((r[0] for r in rows), np.int64, count=n)
        categories = sorted(set(Item.objects.filter(source=source).values_list("category", flat=True).distinct()))
        cat_index = {c: k for k, c in enumerate(categories)}
        subs: dict[str, int] = {}
        published = np.fromiter((r[3] for r in rows), np.float64, count=n)
        popularity = np.fromiter((r[6] for r in rows), np.float64, count=n)
        vectors = self._vectors.setdefault(source, _TextVectors()).rows_for(ids)
        return Catalog(
            source=source,
            ids=ids,
            category=np.fromiter((cat_index[r[1]] for r in rows), np.int64, count=n),
            subcategory=np.fromiter((subs.setdefault(f"{r[1]}/{r[2]}", len(subs)) for r in rows), np.int64, count=n),
            categories=categories,
            published=published,
            shown=np.fromiter((r[4] for r in rows), np.float64, count=n),
            clicked=np.fromiter((r[5] for r in rows), np.float64, count=n),
            popularity=popularity,
            warm=np.fromiter((r[7] == ItemStatus.WARM for r in rows), bool, count=n),
            vectors=vectors,
            row={int(i): k for k, i in enumerate(ids)},
            titles=[r[8] for r in rows],
            items=items,
            version=version,
            loaded=time.monotonic(),
            newest=np.argsort(-published, kind="stable"),
            most_popular=np.argsort(-popularity, kind="stable"),
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
            degraded.note(f"redis unreachable ({exc.__class__.__name__}): models as of the last check",
                          kind=degraded.REDIS)
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
        # An artifact without a learned-weight model (too little to fit it, or written before
        # there was one) lacks its key: that arm falls back.
        learned = {k: ctr[k].linear() if ctr.get(k) is not None else None for k in ("ctr_feature", "ctr_noralm")}
        return Models(key=key, prior=float(ctr["meta"].get("prior", 0.05)), ranker=ranker.Models(
            coldstart=cold["model"].linear(), ctr=(coef, intercept),
            cold_map=cal.cold if cal is not None else None, warm_map=cal.warm if cal is not None else None,
            position_slope=float(coef[FEATURES.index("position")]), **learned))


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
    candidates: int = 0  # the stories the ranker scored


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
           topics: list[str] | tuple[str, ...], r: redis.Redis, pointers: store.Pointers | None,
           recall: bool = True) -> Gathered:
    """The reader as of now (profile, affinity), their candidates (the live stories they
    have not clicked, recalled when there are more than FEED_RECALL_ABOVE, unless `recall`
    is off) with the CTR model's features, and RALM's logits for the warm ones."""
    t = now.timestamp()
    live = cat.published <= t
    if clicked:
        live[[cat.row[i] for i in clicked if i in cat.row]] = False
    history = [cat.row[i] for i in clicked[:PROFILE_HISTORY] if i in cat.row][::-1]  # oldest first
    picked = {cat.categories.index(c) for c in topics if c in cat.categories}
    profile = reader_profiles(item_vectors=cat.vectors, item_category=cat.category, n_categories=len(cat.categories),
                              histories=[np.asarray(history, np.int64)], picked=[picked])
    affinity = profile.category_affinity[0]
    view = ReaderView()
    try:
        view = reader_view(reader_id=reader_id, r=r, pointers=pointers)
    except redis.RedisError:
        log.warning("Redis unreachable: warm items scored by the cold-start model")
    n_live = int(live.sum())
    rows = _recalled(cat, m, live, affinity, view) if recall and n_live > settings.FEED_RECALL_ABOVE else \
        np.flatnonzero(live)
    age = (t - cat.published[rows]) / 3600.0
    seen = np.zeros(len(rows))
    if shown and len(rows):
        pairs = [(cat.row[i], n) for i, n in shown.items() if i in cat.row]
        if pairs:
            where, n = np.array(pairs, np.int64).T
            k = np.minimum(np.searchsorted(rows, where), len(rows) - 1)  # rows are sorted
            seen[k[rows[k] == where]] = n[rows[k] == where]
    ids = cat.ids[rows]
    ctr_x = assemble(affinity=affinity[cat.category[rows]], item_clicks=cat.clicked[rows],
                     item_impressions=cat.shown[rows], age_hours=age, position=0.0, prior=m.prior)
    scored = NO_SCORES
    if len(rows):
        try:
            scored = view.scores(ids)
        except redis.RedisError:
            log.warning("Redis unreachable: warm items scored by the cold-start model")
    ralm = np.full(len(rows), np.nan)
    ralm[np.searchsorted(ids, scored.item_ids)] = scored.logits  # ids are sorted (catalog in pk order)
    return Gathered(
        reader=ranker.Reader(profile.vectors[0], affinity, has_clicks=bool(history)),
        candidates=ranker.Candidates(ids=ids, category=cat.category[rows], group=cat.subcategory[rows],
                                     vectors=cat.vectors[rows], age_hours=age, seen=seen, ctr_features=ctr_x),
        scores=ranker.Scores(ralm), rows=rows, history=history, picked=picked, warm=scored)


def _recalled(cat: Catalog, m: Models, live: np.ndarray, affinity: np.ndarray, view: ReaderView) -> np.ndarray:
    """The rows the ranker scores out of a large catalog, sorted: the CTR model's exact top
    RECALL_CTR, the RECALL_RALM stories nearest the reader by RALM, and the RECALL_FRESH
    newest cold and RECALL_POPULAR most popular live stories."""
    ctr = cat.recall_lists(m).top(m.ranker.ctr[0][FEATURES.index("affinity")] * affinity, RECALL_CTR, live)
    near = view.recall(RECALL_RALM)
    at = np.minimum(np.searchsorted(cat.ids, near), max(len(cat.ids) - 1, 0))
    nearest = at[cat.ids[at] == near] if len(cat.ids) else np.zeros(0, np.int64)
    fresh = _first(cat.newest, live & ~cat.warm, RECALL_FRESH)
    popular = _first(cat.most_popular, live, RECALL_POPULAR)
    rows = np.unique(np.concatenate([ctr, nearest, fresh, popular]))
    return rows[live[rows]]


def _first(order: np.ndarray, allowed: np.ndarray, n: int) -> np.ndarray:
    """The first n rows of `order` that are `allowed`."""
    take = order[: 2 * n]
    while (ok := allowed[take]).sum() < n and len(take) < len(order):
        take = order[: 2 * len(take)]
    return take[ok][:n]


def rank(*, reader_id: int, source: str, clicked: list[int], shown: dict[int, int], now: datetime, limit: int,
         arm: Arm, topics: list[str] | tuple[str, ...] = (), recall: bool = True) -> Ranked | None:
    """Rank the reader's candidates with the arm; None when no trained ranker serves (the
    caller uses the baseline). `clicked`: the reader's clicked item ids, newest first;
    `shown`: recent impressions per item; `topics`: categories the reader picked; `recall`
    off: every live story is scored (what a recalled page is measured against). A reader
    with neither clicks nor topics gets the calibrated popularity and freshness mix (every
    reader term of the models is zero)."""
    r = redis_client()
    try:  # one round trip for what the caches check (each asks on its own, and notes the outage, if it fails)
        pointers = store.pointers_get(r=r)
    except redis.RedisError:
        pointers = None
    m = models.get(r, pointers)
    if m.error is not None:
        degraded.note(f"ranker models unusable, baseline ranking: {m.error}", kind=degraded.RANKER_MODEL)
    if m.ranker is None:
        return None
    cat = catalogs.get(source, r, pointers)
    g = gather(reader_id=reader_id, cat=cat, m=m, clicked=clicked, shown=shown, now=now, topics=topics, r=r,
               pointers=pointers, recall=recall)
    out = ranker.rank(g.reader, g.candidates, g.scores, arm=arm, models=m.ranker, limit=limit)
    page = out.page
    personal = bool(g.history) or bool(g.picked)
    ranked = Ranked(out.arm, g.candidates.ids[page], out.final[page], [out.parts(int(k)) for k in page],
                    items=[cat.items[g.rows[k]] for k in page] if cat.items is not None else None,
                    candidates=len(g.candidates.ids))
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
    return cat.titles[same[int(np.argmax(sims))]]


def _why(item_id: int, warm: bool, scored: WarmScores, category: str, *, because: str | None, picked: bool,
         personal: bool, age_hours: float) -> str:
    """Which of the reader's clicks or topics led to the story (or that nothing personal did).
    Every line holds for this reader: a warm story says "readers like you" only when the
    reader passes its calibrated closeness test (webapp.lookalike.closeness.closeness_bars), and
    then claims exactly the seeds of the clusters they are close to; otherwise it says what
    does hold (its readers, the topic the reader read or picked)."""
    if not personal:
        when = "New" if age_hours < 24 else "Popular"
        return f"{when} in {category}: the feed is popular and fresh stories until you click or pick topics."
    if warm:
        found = scored.why(item_id)
        claim = found.claim if found is not None else None
        if claim:
            return f"Readers like you read it: {claim}." + (f" You read “{because}” in {category}." if because
                                                            else "")
        readers = f"Read by {found.seeds} recent readers" if found is not None else "Read by recent readers"
        if because:
            return f"{readers}, on a topic you read ({category}), like “{because}”."
        if picked:
            return f"{readers}, on a topic you picked: {category}."
        return f"{readers}, in {category}."
    if because:
        return f"New story on a topic you read ({category}), like “{because}”."
    if picked:
        return f"New story on a topic you picked: {category}."
    return f"New in {category}." if age_hours < 24 else f"Popular in {category}."
