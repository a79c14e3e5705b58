"""Writes: building a feed (and logging its impressions), recording clicks, publishing
stories, refreshing popularity. Views, commands and tasks call these; nothing else writes."""

from __future__ import annotations

import json
import logging
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import redis
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from recsys.baseline import baseline_scores
from webapp import degraded
from webapp.lookalike.online import reader_vector_refresh_quietly
from webapp.lookalike.services import seedset_mark_dirty
from webapp.lookalike.store import CATALOG_VERSION_KEY
from webapp.lookalike.store import client as store_client
from webapp.news import ranking, ratelimit
from webapp.news.models import Click, Impression, Item, Reader, Source
from webapp.news.selectors import catalog_for, feed_candidates_for, reader_history

logger = logging.getLogger(__name__)
READER_PROFILE_FIELDS = ("region", "age_band", "device")


class NotFound(Exception):
    """The thing asked for does not exist (the API answers 404)."""


class Rejected(ValueError):
    """The request is well-formed but not allowed (the API answers 400); `field` names the
    input at fault."""

    def __init__(self, message: str, *, field: str = "non_field_errors") -> None:
        super().__init__(message)
        self.field = field


class RateLimited(Exception):
    """Over a rate limit (the API answers 429 with Retry-After); nothing was stored."""

    def __init__(self, message: str, *, limit: str, retry_after: int) -> None:
        super().__init__(message)
        self.limit, self.retry_after = limit, retry_after


@dataclass(frozen=True)
class FeedEntry:
    impression_id: int
    position: int
    item: Item
    score: float
    score_parts: dict[str, float]
    why: str = ""
    warm: bool = False


@dataclass(frozen=True)
class FeedPage:
    request_id: str
    reader_id: int
    mode: str
    entries: list[FeedEntry] = field(default_factory=list)
    degraded: tuple[str, ...] = ()  # what the page was built without (Redis, a model), see webapp.degraded


def feed_build(*, reader: Reader, limit: int, now: datetime | None = None, mode: str | None = None,
               weight: float | None = None, evidence: float | None = None, budget: float | None = None,
               history: tuple[list[int], dict[int, int]] | None = None) -> FeedPage:
    """Rank the reader's candidates (live items of their catalog they have not clicked), log
    the top `limit` as impressions with the ranker's mode and score parts, return them.
    `mode`, `weight`, `evidence` (the blend's n0) and `budget` override the settings for this request
    (A/B comparisons); until a ranker is trained the baseline (popularity x recency) ranks.
    `history`: (clicked, shown) as selectors.reader_history gives them as of `now`, when the
    caller already read them (selectors.reader_with_history)."""
    if history is not None and now is None:
        raise ValueError("a history read by the caller needs the `now` it was read at")
    now = now or timezone.now()
    config = ranking.ranker_config(mode, weight, evidence, budget)  # ValueError on a bad mode, w, n0 or budget
    clicked, shown = history if history is not None else reader_history(reader=reader, now=now)
    with degraded.collect() as fell_back:
        ranked = ranking.rank(reader_id=reader.pk, source=catalog_for(reader=reader), clicked=clicked, shown=shown,
                              now=now, limit=limit, config=config, topics=reader.topics)
    if ranked is None:
        ranked = _baseline(reader=reader, now=now, limit=limit, clicked=clicked, shown=shown)
    items = {i.pk: i for i in ranked.items} if ranked.items is not None else \
        Item.objects.in_bulk([int(i) for i in ranked.item_ids])
    request_id = uuid.uuid4().hex
    kept = [n for n, i in enumerate(ranked.item_ids) if int(i) in items]  # a story deleted since the catalog copy

    def log(kept: list[int]) -> list[int]:
        return _impressions_insert(reader_id=reader.pk, request_id=request_id, now=now, mode=ranked.mode,
                                   rows=[(int(ranked.item_ids[n]), float(ranked.scores[n]), ranked.parts[n])
                                         for n in kept])

    try:
        ids = log(kept)
    except IntegrityError:  # a story deleted after this process copied the catalog: drop it, reload the copy
        ranking.catalogs.clear()
        live = set(Item.objects.filter(pk__in=[int(ranked.item_ids[n]) for n in kept]).values_list("pk", flat=True))
        kept = [n for n in kept if int(ranked.item_ids[n]) in live]
        ids = log(kept)
    entries = [
        FeedEntry(ids[pos], pos, items[int(ranked.item_ids[n])], float(ranked.scores[n]), ranked.parts[n],
                  why=ranked.why[n] if ranked.why else "", warm=ranked.warm[n] if ranked.warm else False)
        for pos, n in enumerate(kept)
    ]
    return FeedPage(request_id=request_id, reader_id=reader.pk, mode=ranked.mode, entries=entries,
                    degraded=tuple(fell_back))


_IMPRESSIONS_SQL = """
    INSERT INTO news_impression (reader_id, item_id, request_id, position, shown_at, mode, score, score_parts)
    SELECT %(reader)s, item_id, %(request)s, position, %(now)s, %(mode)s, score, score_parts
    FROM jsonb_to_recordset(%(page)s::jsonb) AS page(item_id bigint, position smallint, score float8,
                                                      score_parts jsonb)
    RETURNING id, position
"""


def _impressions_insert(*, reader_id: int, request_id: str, now: datetime, mode: str,
                        rows: list[tuple[int, float, dict]]) -> list[int]:
    """Log a page, `rows` = (item id, score, score parts) in page order, as impressions;
    return their ids in the same order. One INSERT ... RETURNING in autocommit (a constant
    statement over the page as one JSON document): what bulk_create does, without the two
    extra round trips of the transaction it opens (a tenth of the feed's latency), without a
    model instance per row, and with one parameter to send for the rows instead of eight
    arrays quoted element by element (a millisecond a page)."""
    if not rows:
        return []
    page = json.dumps([{"item_id": item_id, "position": pos, "score": score, "score_parts": parts}
                       for pos, (item_id, score, parts) in enumerate(rows)])
    with connection.cursor() as cur:
        cur.execute(_IMPRESSIONS_SQL, {"reader": reader_id, "request": request_id, "now": now, "mode": mode,
                                       "page": page})
        by_position = {position: pk for pk, position in cur.fetchall()}
    return [by_position[pos] for pos in range(len(rows))]


def _baseline(*, reader: Reader, now: datetime, limit: int, clicked: list[int],
              shown: dict[int, int]) -> ranking.Ranked:
    cand = feed_candidates_for(reader=reader, now=now, clicked=clicked, shown=shown)
    parts = baseline_scores(
        popularity=cand.popularity,
        age_hours=cand.age_hours,
        times_shown=cand.times_shown,
        recency_half_life_hours=settings.FEED_RECENCY_HALF_LIFE_HOURS,
    )
    score = parts.pop("score")
    # Highest score first; ties broken by the newer item id so the order is deterministic.
    order = np.lexsort((-cand.item_ids, -score))[:limit]
    return ranking.Ranked("baseline", cand.item_ids[order], score[order],
                          [{k: round(float(v[idx]), 6) for k, v in parts.items()} for idx in order])


@dataclass(frozen=True)
class ClickResult:
    click: Click
    created: bool


def click_record(
    *, impression_id: int, reader_id: int | None = None, web_reader: int | None = None, now: datetime | None = None,
    throttle: bool = False,
) -> ClickResult:
    """Store a click on an impression. A repeated click on the same impression stores
    nothing new and returns the first one. `web_reader`: the web reader the caller acts as;
    an impression shown to a web reader exists only for that reader (webapp.news.access).
    `throttle` (the web's requests): a new click over the reader's CLICK_RATE_LIMIT raises
    RateLimited and stores nothing (a repeated click is answered as before)."""
    impression = Impression.objects.select_related("reader").filter(pk=impression_id).first()
    if impression is None or (impression.reader.source == Source.WEB and impression.reader_id != web_reader):
        raise NotFound(f"Impression {impression_id} not found.")
    if reader_id is not None and impression.reader_id != reader_id:
        raise Rejected("This impression was shown to another reader.", field="reader")
    rate = ratelimit.rate_parse(settings.CLICK_RATE_LIMIT) if throttle else None
    if rate is not None:
        existing = Click.objects.filter(impression=impression).first()
        if existing is not None:
            return ClickResult(click=existing, created=False)
        retry_after = ratelimit.hit(scope="clicks", key=impression.reader_id, rate=rate)
        if retry_after is not None:
            raise RateLimited(f"Too many clicks: at most {rate.text} per reader. Try again in {retry_after} s.",
                              limit=rate.text, retry_after=retry_after)
    with transaction.atomic():
        click, created = Click.objects.get_or_create(
            impression=impression,
            defaults={
                "reader_id": impression.reader_id,
                "item_id": impression.item_id,
                "clicked_at": now or timezone.now(),
            },
        )
        if created:
            seedset_mark_dirty(item_ids=[impression.item_id])
    if created:  # the reader's vector with this click, before their next feed (no retraining)
        reader_vector_refresh_quietly(reader_id=impression.reader_id)
    return ClickResult(click=click, created=created)


def item_embed_later(*, item_id: int) -> None:
    """Queue the item's text embedding once the current transaction commits. If the broker
    is down, the periodic sweep (or `manage.py embed_items`) picks the item up later."""
    from workers.celery import app  # the web process only needs the app to send by name

    def enqueue() -> None:
        try:
            app.send_task("workers.tasks.embed_items", args=[[item_id]])
        except Exception as exc:  # noqa: BLE001 -- any broker failure: leave it to the sweep
            logger.warning("could not queue embedding of item %s (%s); the sweep will", item_id, exc)

    transaction.on_commit(enqueue)


def item_publish(*, item: Item, now: datetime | None = None) -> Item:
    """Make a held-back story live."""
    if item.published_at is None:
        item.published_at = now or timezone.now()
        item.save(update_fields=["published_at"])
        transaction.on_commit(catalog_changed)
    return item


def item_publish_next(*, source: str, now: datetime | None = None) -> Item | None:
    """Publish the next held-back story of a catalog (in external-id order), if any."""
    with transaction.atomic():
        item = (
            Item.objects.select_for_update(skip_locked=True)
            .filter(source=source, published_at__isnull=True)
            .order_by("external_id")
            .first()
        )
        return item_publish(item=item, now=now) if item else None


# Per item: impressions and clicks (the CTR model's item CTR), and the similarity's record: the
# clicks on impressions that logged a similarity and the clicks it predicted for them. The
# logged similarity is P(click) on the calibration's scale, whatever the position; the clicks
# per unit of similarity at each position, over every impression logged with the same map
# (RALM's for a warm story, the cold-start model's for a cold one), turn it into expected
# clicks there. So each map's expected clicks add up to its clicks: a story's record is its
# appeal against the stories scored the same way, not the drift of a whole map since training
# (the cold map over-predicts live clicks in the demo, and folding that in held every cold
# story back). `story_factor` in the parts is divided out: the record is of the similarity
# before the recalibration it feeds.
_COUNTS_SQL = """
    WITH shown AS (
        SELECT m.item_id, m.position, (c.id IS NOT NULL)::int AS clicked,
               COALESCE((m.score_parts ->> 'warm')::boolean, false) AS warm,
               (m.score_parts ->> 'similarity')::float8
                   / COALESCE(NULLIF((m.score_parts ->> 'story_factor')::float8, 0), 1) AS similarity
        FROM news_impression AS m LEFT JOIN news_click AS c ON c.impression_id = m.id
    ),
    rates AS (
        SELECT position, warm, SUM(clicked) / NULLIF(SUM(similarity), 0) AS rate
        FROM shown WHERE similarity IS NOT NULL GROUP BY position, warm
    ),
    counts AS (
        SELECT s.item_id, COUNT(*) AS shown, SUM(s.clicked) AS clicked,
               SUM(s.clicked) FILTER (WHERE s.similarity IS NOT NULL) AS sim_clicked,
               ROUND(SUM(s.similarity * p.rate) FILTER (WHERE s.similarity IS NOT NULL)::numeric, 6)::float8
                   AS sim_expected
        FROM shown AS s LEFT JOIN rates AS p ON p.position = s.position AND p.warm = s.warm
        GROUP BY s.item_id
    )
    UPDATE news_item AS i
    SET shown_count = COALESCE(n.shown, 0), click_count = COALESCE(n.clicked, 0),
        similarity_clicks = COALESCE(n.sim_clicked, 0), similarity_expected = COALESCE(n.sim_expected, 0)
    FROM news_item AS j LEFT JOIN counts AS n ON n.item_id = j.id
    WHERE i.id = j.id
      AND (i.shown_count, i.click_count, i.similarity_clicks, i.similarity_expected)
          IS DISTINCT FROM (COALESCE(n.shown, 0), COALESCE(n.clicked, 0), COALESCE(n.sim_clicked, 0),
                            COALESCE(n.sim_expected, 0))
"""


def item_popularity_refresh(
    *, now: datetime | None = None, half_life_hours: float | None = None
) -> int:
    """Recompute every item's decayed click count in one statement. Clicks older than ten
    half-lives (weight < 0.001) are ignored. Returns the number of items updated."""
    now = now or timezone.now()
    half_life = half_life_hours or settings.POPULARITY_HALF_LIFE_HOURS
    decay = math.log(2) / (half_life * 3600.0)
    with connection.cursor() as cur:
        cur.execute(
            """
            WITH recent AS (
                SELECT item_id, SUM(EXP(-%(decay)s * EXTRACT(EPOCH FROM (%(now)s - clicked_at))))
                       AS pop
                FROM news_click
                WHERE clicked_at > %(now)s - make_interval(secs => %(window)s)
                  AND clicked_at <= %(now)s
                GROUP BY item_id
            )
            UPDATE news_item AS i
            SET popularity = COALESCE(r.pop, 0)
            FROM news_item AS j LEFT JOIN recent AS r ON r.item_id = j.id
            WHERE i.id = j.id AND i.popularity IS DISTINCT FROM COALESCE(r.pop, 0)
            """,
            {"decay": decay, "now": now, "window": 10 * half_life * 3600.0},
        )
        updated = cur.rowcount
        cur.execute(_COUNTS_SQL)
    catalog_changed()
    return updated


def catalog_changed() -> None:
    """Tell every web process to reload its copy of the live catalog (webapp.news.ranking)."""
    try:
        store_client().incr(CATALOG_VERSION_KEY)
    except redis.RedisError:
        logger.warning("Redis unreachable: web processes pick up catalog changes within their TTL")


def reader_start(*, now: datetime | None = None) -> Reader:
    """A new web reader ("start reading"): no profile, no topics, no clicks yet."""
    now = now or timezone.now()
    key = uuid.uuid4().hex
    return Reader.objects.create(source=Source.WEB, external_id=key, name=f"Reader {key[:6]}", created_at=now)


def reader_update(*, reader: Reader, topics: list[str] | None = None, profile: dict[str, str] | None = None) -> Reader:
    """Change a reader's picked topics and/or profile fields; when anything changed, their
    vector follows at once. Topics must be categories of the reader's catalog."""
    fields = []
    if topics is not None:
        known = set(Item.objects.filter(source=catalog_for(reader=reader)).values_list("category", flat=True)
                    .distinct())
        unknown = sorted(set(topics) - known)
        if unknown:
            raise Rejected(f"Unknown topic(s): {', '.join(unknown)}.", field="topics")
        if list(dict.fromkeys(topics)) != reader.topics:
            reader.topics = list(dict.fromkeys(topics))
            fields.append("topics")
    for name, value in (profile or {}).items():
        if name not in READER_PROFILE_FIELDS:
            raise Rejected(f"Unknown profile field {name!r}.", field=name)
        limit = Reader._meta.get_field(name).max_length
        if len(value) > limit:
            raise Rejected(f"At most {limit} characters.", field=name)
        if getattr(reader, name) != value:
            setattr(reader, name, value)
            fields.append(name)
    if fields:
        reader.save(update_fields=fields)
        reader_vector_refresh_quietly(reader_id=reader.pk)
    return reader


def reader_claim(*, reader: Reader | None, user) -> Reader:
    """Tie a web reader to an account (sign-up or the first log-in of a session reader);
    an account that has a reader keeps it. Returns the account's reader."""
    own = Reader.objects.filter(user=user).first()
    if own is not None:
        return own
    if reader is None or reader.source != Source.WEB or reader.user_id not in (None, user.pk):
        reader = reader_start()
    reader.user = user
    reader.name = user.get_username()
    reader.save(update_fields=["user", "name"])
    return reader
