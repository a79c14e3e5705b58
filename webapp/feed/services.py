"""The feed's writes: building a page (and logging its impressions), recording clicks,
changing a web reader's topics and profile. Views, commands and the simulator call these;
the pages reach recsys/ only through here (the arms' names, webapp.feed.abtest for figures)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from recsys.arms import ARMS
from recsys.arms import arm as arm_named
from recsys.baseline import BASELINE, baseline_scores
from webapp.common import degraded, logs, metrics
from webapp.common.catalog import catalog_changed
from webapp.common.db import reconnecting
from webapp.feed import ranking, ratelimit
from webapp.feed.clients import client_throttle
from webapp.feed.errors import NotFound, RateLimited, Rejected
from webapp.feed.selectors import feed_candidates_for, reader_history, reader_with_history
from webapp.lookalike.online import reader_vector_refresh_quietly
from webapp.lookalike.services import seedset_mark_dirty
from webapp.news.models import Click, Impression, Item, Reader, Source
from webapp.news.selectors import catalog_for, profile_choices
from webapp.news.services import READER_PROFILE_FIELDS


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
    arm: str
    entries: list[FeedEntry] = field(default_factory=list)
    degraded: tuple[str, ...] = ()  # what the page was built without (Redis, a model), see webapp.common.degraded
    degraded_kinds: tuple[str, ...] = ()  # the kinds of those fallbacks (webapp.common.degraded)
    candidates: int = 0  # the stories the ranker scored
    reader: Reader | None = field(default=None, repr=False, compare=False)  # whom the page is for, as read

    def served(self, *, seconds: float) -> None:
        """Count this page in the metrics, answered in `seconds`."""
        metrics.feed_served(arm=self.arm, seconds=seconds, candidates=self.candidates,
                            warm=[e.warm for e in self.entries], degraded=self.degraded_kinds)


def arm_names() -> list[str]:
    """The ranker arms a request may name (recsys.arms), in the registry's order."""
    return list(ARMS)


def feed_serve(*, reader_id: int, limit: int, arm: str | None, client: tuple[str, ...],
               may_read: Callable[[Reader], bool]) -> FeedPage:
    """The page of a feed request (the HTML page's and the API's): the reader and their
    history read in one round trip; NotFound unless the reader exists and `may_read` them
    (webapp.feed.access); the client's feeds counted (RateLimited over
    FEED_CLIENT_RATE_LIMIT; webapp.feed.clients), then the page as feed_build makes it, its
    impressions logged under the client's first key."""
    now = timezone.now()
    reader, clicked, shown = reader_with_history(reader_id=reader_id, now=now)
    if reader is None or not may_read(reader):
        raise NotFound(f"Reader {reader_id} not found.")
    client_throttle(client, scope="feeds")
    return _page(reader=reader, clicked=clicked, shown=shown, now=now, limit=limit, arm=arm, client=client[0])


def feed_build(*, reader: Reader, limit: int, now: datetime | None = None, arm: str | None = None,
               client: str = "") -> FeedPage:
    """Rank the reader's candidates (live items of their catalog they have not clicked), log
    the top `limit` as impressions with the ranker's arm and score parts, return them.
    `arm` names the ranker arm for this request (A/B comparisons; default FEED_ARM); until a
    ranker is trained the baseline (popularity x recency) ranks. `client`: the client the
    page is shown to (webapp.feed.clients), whose clicks alone its impressions take. For
    callers that hold the reader (the closed loop, the simulator, commands); a request over
    HTTP goes through feed_serve."""
    now = now or timezone.now()
    clicked, shown = reader_history(reader=reader, now=now)
    return _page(reader=reader, clicked=clicked, shown=shown, now=now, limit=limit, arm=arm, client=client)


@reconnecting
def _page(*, reader: Reader, clicked: list[int], shown: dict[int, int], now: datetime, limit: int,
          arm: str | None, client: str) -> FeedPage:
    """The page ranked for the reader with their history (`clicked`, `shown` as
    selectors.reader_history gives them as of `now`), its impressions logged."""
    chosen = arm_named(arm or settings.FEED_ARM)  # UnknownArm (a ValueError) on a name not in the registry
    with degraded.collect() as fell_back:
        ranked = ranking.rank(reader_id=reader.pk, source=catalog_for(reader=reader), clicked=clicked, shown=shown,
                              now=now, limit=limit, arm=chosen, topics=reader.topics)
    if ranked is None:
        ranked = _baseline(reader=reader, now=now, limit=limit, clicked=clicked, shown=shown)
    items = {i.pk: i for i in ranked.items} if ranked.items is not None else \
        Item.objects.in_bulk([int(i) for i in ranked.item_ids])
    request_id = logs.request_id() or uuid.uuid4().hex  # the HTTP request's: its log line names these impressions
    kept = [n for n, i in enumerate(ranked.item_ids) if int(i) in items]  # a story deleted since the catalog copy

    def log(kept: list[int]) -> list[int]:
        return _impressions_insert(reader_id=reader.pk, request_id=request_id, now=now, arm=ranked.arm, client=client,
                                   rows=[(int(ranked.item_ids[n]), float(ranked.scores[n]), ranked.parts[n])
                                         for n in kept])

    try:
        ids = log(kept)
    except IntegrityError:  # a story deleted after the catalog was copied: drop it, and say the catalog changed
        catalog_changed()
        live = set(Item.objects.filter(pk__in=[int(ranked.item_ids[n]) for n in kept]).values_list("pk", flat=True))
        kept = [n for n in kept if int(ranked.item_ids[n]) in live]
        ids = log(kept)
    entries = [
        FeedEntry(ids[pos], pos, items[int(ranked.item_ids[n])], float(ranked.scores[n]), ranked.parts[n],
                  why=ranked.why[n] if ranked.why else "", warm=ranked.warm[n] if ranked.warm else False)
        for pos, n in enumerate(kept)
    ]
    logs.bind(reader=reader.pk, arm=ranked.arm, candidates=ranked.candidates, shown=len(entries),
              degraded=sorted(fell_back.kinds))
    return FeedPage(request_id=request_id, reader_id=reader.pk, arm=ranked.arm, entries=entries,
                    degraded=tuple(fell_back), degraded_kinds=tuple(sorted(fell_back.kinds)),
                    candidates=ranked.candidates, reader=reader)


_IMPRESSIONS_SQL = """
    INSERT INTO news_impression (reader_id, item_id, request_id, position, shown_at, arm, client, score, score_parts)
    SELECT %(reader)s, item_id, %(request)s, position, %(now)s, %(arm)s, %(client)s, score, score_parts
    FROM jsonb_to_recordset(%(page)s::jsonb) AS page(item_id bigint, position smallint, score float8,
                                                      score_parts jsonb)
    RETURNING id, position
"""


def _impressions_insert(*, reader_id: int, request_id: str, now: datetime, arm: str, client: str,
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
        cur.execute(_IMPRESSIONS_SQL, {"reader": reader_id, "request": request_id, "now": now, "arm": arm,
                                       "client": client, "page": page})
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
    return ranking.Ranked(BASELINE, cand.item_ids[order], score[order],
                          [{k: round(float(v[idx]), 6) for k, v in parts.items()} for idx in order],
                          candidates=len(cand.item_ids))


@dataclass(frozen=True)
class ClickResult:
    click: Click
    created: bool


@reconnecting
def click_record(
    *, impression_id: int, reader_id: int | None = None, web_reader: int | None = None, now: datetime | None = None,
    throttle: bool = False, client: tuple[str, ...] | None = None,
) -> ClickResult:
    """Store a click on an impression. A repeated click on the same impression stores
    nothing new and returns the first one. `web_reader`: the web reader the caller acts as;
    an impression shown to a web reader exists only for that reader (webapp.feed.access).
    `throttle` (the web's requests): a new click over the reader's CLICK_RATE_LIMIT raises
    RateLimited and stores nothing (a repeated click is answered as before); it counts per
    reader and client, so that nobody else can spend the clicks of a reader whose page they
    were not shown. `client`: the caller's client keys (webapp.feed.clients), given by every
    request over HTTP; an impression shown to another client, or to none (the backfill's, an
    import's, the in-process simulator's), is refused."""
    impression = Impression.objects.select_related("reader").filter(pk=impression_id).first()
    if impression is None or (impression.reader.source == Source.WEB and impression.reader_id != web_reader):
        raise NotFound(f"Impression {impression_id} not found.")
    if reader_id is not None and impression.reader_id != reader_id:
        raise Rejected("This impression was shown to another reader.", field="reader")
    if client is not None and impression.client not in client:
        raise Rejected("This impression was not shown to this client.", field="impression")
    rate = ratelimit.rate_parse(settings.CLICK_RATE_LIMIT) if throttle else None
    if rate is not None:
        existing = Click.objects.filter(impression=impression).first()
        if existing is not None:
            return ClickResult(click=existing, created=False)
        retry_after = ratelimit.hit(scope="clicks", key=f"{impression.reader_id}:{impression.client}", rate=rate)
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
    logs.bind(impression=impression.pk, shown_in=impression.request_id, created=created)
    if created:
        metrics.click_stored(arm=impression.arm)
        # The reader's vector with this click, before their next feed (no retraining).
        reader_vector_refresh_quietly(reader_id=impression.reader_id)
    return ClickResult(click=click, created=created)


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
        allowed = profile_choices()[name]
        if value and value not in allowed:
            raise Rejected(f"Unknown {name} {value[:40]!r}; one of {', '.join(allowed)}, or empty.", field=name)
        if getattr(reader, name) != value:
            setattr(reader, name, value)
            fields.append(name)
    if fields:
        reader.save(update_fields=fields)
        reader_vector_refresh_quietly(reader_id=reader.pk)
    return reader
