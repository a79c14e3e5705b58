"""The feed's reads: a reader with their recent history in one round trip, the baseline's
candidates, a reader's profile page, the exposure that fixes the long tail. Nothing here
writes."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.db import connection
from django.db.models import Count

from webapp.common.db import reconnecting
from webapp.lookalike.selectors import reader_vector_computed_at
from webapp.news.models import Click, Impression, Item, Reader
from webapp.news.selectors import catalog_for, reader_get, reader_recent_clicks

SEEN_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Candidates:
    """Feed candidates as parallel arrays, each of shape (N,)."""

    item_ids: np.ndarray  # int64
    popularity: np.ndarray  # float64, decayed click count
    age_hours: np.ndarray  # float64, hours since published
    times_shown: np.ndarray  # int64, impressions to this reader in the last SEEN_WINDOW


def feed_candidates_for(*, reader: Reader, now: datetime, clicked: list[int], shown: dict[int, int]) -> Candidates:
    """Live items of the reader's catalog that the reader has not clicked (`clicked` and
    `shown` as reader_history returns them)."""
    rows = list(
        Item.objects.filter(source=catalog_for(reader=reader), published_at__lte=now)
        .exclude(pk__in=clicked)
        .values_list("pk", "popularity", "published_at")
    )
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    return Candidates(
        item_ids=ids,
        popularity=np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows)),
        age_hours=np.fromiter(
            ((now - r[2]).total_seconds() / 3600.0 for r in rows), dtype=np.float64, count=len(rows)
        ),
        times_shown=np.fromiter((shown.get(i, 0) for i in ids), dtype=np.int64, count=len(rows)),
    )


_HISTORY_SQL = """
    SELECT 0 AS kind, item_id, 1 AS n, clicked_at AS t FROM news_click WHERE reader_id = %(reader)s
    UNION ALL
    SELECT 1, item_id, COUNT(*), MAX(shown_at) FROM news_impression
    WHERE reader_id = %(reader)s AND shown_at > %(since)s AND shown_at <= %(now)s GROUP BY item_id
    ORDER BY kind, t DESC
"""


@reconnecting
def reader_history(*, reader: Reader, now: datetime) -> tuple[list[int], dict[int, int]]:
    """In one round trip: the items the reader clicked (newest first) and the impressions of
    each item to them within SEEN_WINDOW."""
    with connection.cursor() as cur:
        cur.execute(_HISTORY_SQL, {"reader": reader.pk, "since": now - SEEN_WINDOW, "now": now})
        return _history_rows(cur.fetchall())


@reconnecting
def reader_with_history(*, reader_id: int, now: datetime) -> tuple[Reader | None, list[int], dict[int, int]]:
    """The reader (None if there is none) and their history as reader_history gives it, in
    one round trip: the two SELECTs go to Postgres as one message (the feed's first third of
    a millisecond)."""
    fields, columns = _reader_columns()
    with connection.cursor() as cur:
        cur.execute(f"SELECT {columns} FROM news_reader WHERE id = %(reader)s; {_HISTORY_SQL}",  # noqa: S608
                    {"reader": reader_id, "since": now - SEEN_WINDOW, "now": now})
        row = cur.fetchone()
        cur.nextset()
        clicked, shown = _history_rows(cur.fetchall())
    if row is None:
        return None, [], {}
    return Reader.from_db(connection.alias, [f.attname for f in fields], row), clicked, shown


@functools.cache
def _reader_columns() -> tuple[list, str]:
    fields = Reader._meta.concrete_fields
    return fields, ", ".join(connection.ops.quote_name(f.column) for f in fields)


def _history_rows(rows: list[tuple]) -> tuple[list[int], dict[int, int]]:
    clicked: list[int] = []
    shown: dict[int, int] = {}
    for kind, item_id, n, _ in rows:
        if kind == 0:
            clicked.append(item_id)
        else:
            shown[item_id] = n
    return clicked, shown


def reader_profile(*, reader_id: int, recent: int = 5) -> dict | None:
    """What the API and the reader page show of a reader: clicks by category, the latest
    stories, and when the serving reader vector was computed."""
    reader = reader_get(reader_id=reader_id)
    if reader is None:
        return None
    by_category = dict(Click.objects.filter(reader=reader).values("item__category").annotate(n=Count("id"))
                       .order_by("-n").values_list("item__category", "n"))
    return {"reader": reader, "clicks": sum(by_category.values()),
            "impressions": Impression.objects.filter(reader=reader).count(), "categories": by_category,
            "recent": [c.item for c in reader_recent_clicks(reader=reader, limit=recent)],
            "vector_computed_at": reader_vector_computed_at(reader_id=reader.pk)}


TAIL_WINDOW = timedelta(hours=24)  # the long tail: outside the most shown over the trailing day


def exposure_before(*, catalog: np.ndarray, before: datetime, source: str | None = None) -> np.ndarray:
    """Impressions of each catalog item (sorted ids) over the TAIL_WINDOW before a time: the
    popularity that fixes the long tail before the traffic being compared
    (recsys.abtest.tail_mask), as the closed loop fixes it (webapp.feed.closedloop)."""
    rows = Impression.objects.filter(shown_at__lt=before, shown_at__gte=before - TAIL_WINDOW)
    if source is not None:
        rows = rows.filter(item__source=source)
    counts = dict(rows.values("item_id").annotate(n=Count("id")).values_list("item_id", "n"))
    return np.array([counts.get(int(i), 0) for i in catalog], np.int64)
