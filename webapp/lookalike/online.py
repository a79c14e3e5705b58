"""A reader's E_u recomputed now, from their features, with the active user tower (no
retraining): after each click, a topic pick or a profile change, before their next feed.

One call reads the reader's latest clicks (one query), runs the tower (about a millisecond),
and writes the vector to Postgres (one upsert, the durable copy) and Redis (what the feed
reads). Clicks make the reader a seed of the clicked stories at the next refresh, which
joins seeds to the vectors of the active tower.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import redis
from django.db import connection
from django.utils import timezone

from recsys.artifacts import ArtifactError
from recsys.online import ClickedStory, OnlineTower, ReaderFeatures
from webapp.common.db import reconnecting
from webapp.lookalike import store
from webapp.lookalike.models import ModelKind, ModelRun
from webapp.lookalike.registry import online_tower, registry
from webapp.news.models import Reader, Source

log = logging.getLogger(__name__)


def _active_tower() -> tuple[int, OnlineTower] | None:
    """The serving tower run's id and its OnlineTower (webapp.lookalike.registry): the run
    Redis points at; without that pointer, the one this process last used, else the one
    active in Postgres. ArtifactError if its files are unreadable."""
    run_id = None
    try:
        run_id = store.active_tower_get()
    except redis.RedisError:
        pass
    if run_id is None:
        current = registry.current(ModelKind.USER_TOWER)
        if current is not None:
            return current
    elif (tower := registry.find(ModelKind.USER_TOWER, run_id)) is not None:
        return run_id, tower
    fields = ("pk", "artifact_path")
    run = (ModelRun.objects.filter(pk=run_id).values_list(*fields).first() if run_id is not None else None) or \
        ModelRun.objects.filter(kind=ModelKind.USER_TOWER, is_active=True).values_list(*fields).first()
    if run is None:
        return None
    return run[0], online_tower(*run)


_CLICKS_SQL = """
    SELECT c.item_id, i.category, i.subcategory, i.title, i.abstract
    FROM news_click c JOIN news_item i ON i.id = c.item_id
    WHERE c.reader_id = %(reader)s
    ORDER BY c.clicked_at DESC, c.id DESC
    LIMIT %(limit)s
"""

_UPSERT_SQL = """
    INSERT INTO lookalike_readervector (reader_id, model_run_id, dim, vector, computed_at)
    VALUES (%(reader)s, %(run)s, %(dim)s, %(vector)s, %(now)s)
    ON CONFLICT (reader_id, model_run_id)
    DO UPDATE SET dim = EXCLUDED.dim, vector = EXCLUDED.vector, computed_at = EXCLUDED.computed_at
"""


def _clicked(reader_id: int, limit: int) -> list[ClickedStory]:
    """The reader's latest `limit` clicked stories, oldest first."""
    with connection.cursor() as cur:
        cur.execute(_CLICKS_SQL, {"reader": reader_id, "limit": limit})
        rows = cur.fetchall()
    return [ClickedStory(str(item_id), cat, sub, f"{title}. {abstract}")
            for item_id, cat, sub, title, abstract in reversed(rows)]


def _upsert(reader_id: int, run_id: int, vector: np.ndarray, now: datetime) -> None:
    with connection.cursor() as cur:
        cur.execute(_UPSERT_SQL, {"reader": reader_id, "run": run_id, "dim": len(vector),
                                  "vector": vector.astype("<f4").tobytes(), "now": now})


@dataclass(frozen=True)
class VectorUpdate:
    reader_id: int
    run_id: int
    vector: np.ndarray
    features: ReaderFeatures
    computed_at: datetime
    redis: bool  # False: Postgres only (the feed reads it once Redis is rebuilt)
    seconds: float  # read, tower and both writes


@reconnecting
def reader_vector_refresh(*, reader_id: int, topics: list[str] | None = None, profile: dict | None = None,
                          now: datetime | None = None) -> VectorUpdate | None:
    """Recompute and store the reader's E_u under the active tower; None when no tower is
    trained yet. `topics` and `profile` are the reader's (read from the database if not
    given). Raises ArtifactError if the tower's files are unreadable."""
    started = time.perf_counter()
    active = _active_tower()
    if active is None:
        return None
    run_id, tower = active
    if topics is None or profile is None:
        row = Reader.objects.filter(pk=reader_id).values_list("topics", "region", "age_band", "device").first()
        if row is None:
            return None
        topics = row[0] if topics is None else topics
        profile = dict(zip(("region", "age_band", "device"), row[1:], strict=True)) if profile is None else profile
    fields, features = tower.fields(clicked=_clicked(reader_id, tower.max_history), topics=topics, profile=profile)
    vector = tower.embed(fields)
    now = now or timezone.now()
    _upsert(reader_id, run_id, vector, now)
    try:
        store.reader_vectors_write(run_id=run_id, vectors=[(reader_id, vector)])
        in_redis = True
    except redis.RedisError as exc:
        log.warning("reader %s: vector stored in Postgres only (Redis: %s)", reader_id, exc.__class__.__name__)
        in_redis = False
    return VectorUpdate(reader_id, run_id, vector, features, now, in_redis, time.perf_counter() - started)


def web_readers_embed(*, run: ModelRun, tower: OnlineTower, catalog: str) -> int:
    """After a retraining on `catalog`'s readers, the vectors under the new tower run of the
    readers it did not train on who read that catalog (web readers of the demo catalog):
    written before the run serves, so they stay personal and remain seeds. Returns how many."""
    if catalog != Source.DEMO:
        return 0
    now = timezone.now()
    rows = list(Reader.objects.filter(source=Source.WEB).values_list("pk", "topics", "region", "age_band", "device"))
    vectors = []
    for pk, topics, *profile in rows:
        vector = tower.vector(clicked=_clicked(pk, tower.max_history), topics=topics,
                              profile=dict(zip(("region", "age_band", "device"), profile, strict=True)))
        vectors.append((pk, vector))
        _upsert(pk, run.pk, vector, now)
    if vectors:
        try:
            store.reader_vectors_write(run_id=run.pk, vectors=vectors)
        except redis.RedisError as exc:
            log.warning("web readers' vectors in Postgres only (Redis: %s)", exc.__class__.__name__)
    return len(vectors)


def reader_vector_refresh_quietly(*, reader_id: int, **kwargs) -> VectorUpdate | None:
    """reader_vector_refresh for the request path: a failure is logged, never raised (the
    click or the profile change is already stored; the vector catches up on the next one)."""
    try:
        return reader_vector_refresh(reader_id=reader_id, **kwargs)
    except ArtifactError as exc:
        log.error("reader %s: vector not recomputed, the user tower cannot be loaded: %s", reader_id, exc)
    except Exception:  # noqa: BLE001 -- the request must not fail for the vector's sake
        log.exception("reader %s: vector not recomputed", reader_id)
    return None
