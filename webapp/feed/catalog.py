"""The per-process copy of the live catalog that the feed ranks from: ids, categories, ages,
counts, titles and text vectors as arrays, with the text vectors in one growing buffer.

The copy is reloaded when the catalog version in Redis moves (a story published, the counts
refreshed; webapp.common.catalog) or after FEED_CATALOG_TTL_SECONDS; a reload reads the
columns, not model instances, and fetches only the text vectors it has not seen (they never
change). A catalog of up to FEED_RECALL_ABOVE stories also keeps them as model instances, so
the page needs no query; a larger one leaves the page's ten to one query
(webapp.feed.services).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import redis
from django.conf import settings
from django.db.models.expressions import RawSQL

from webapp.common import degraded
from webapp.common.catalog import CATALOG_VERSION_KEY
from webapp.common.connections import redis_client
from webapp.lookalike import store
from webapp.news.models import Item, ItemStatus


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
    ctr_lists: dict = field(default_factory=dict)  # recall lists per ranker models' key (webapp.feed.gathering)
    newest: np.ndarray | None = None  # rows, newest first
    most_popular: np.ndarray | None = None  # rows, most popular first


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


catalogs = CatalogCache()
