"""Writes of stories and readers: publishing, an admin's edit, the minute's counts, new web
readers and their accounts. The feed's own writes (pages, clicks, profile changes) are in
webapp.feed.services."""

from __future__ import annotations

import logging
import math
import uuid
from datetime import datetime

from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from webapp.common.catalog import catalog_changed
from webapp.news.models import Item, Reader, Source

logger = logging.getLogger(__name__)
READER_PROFILE_FIELDS = ("region", "age_band", "device")


def item_embed_later(*, item_id: int) -> None:
    """Queue the item's text embedding once the current transaction commits (by task name:
    the workers app registers the Celery app in every Django process). If the broker is
    down, the periodic sweep (or `manage.py embed_items`) picks the item up later."""
    def enqueue() -> None:
        try:
            current_app.send_task("workers.tasks.embed_items", args=[[item_id]])
        except Exception as exc:  # noqa: BLE001 -- any broker failure: leave it to the sweep
            logger.warning("could not queue embedding of item %s (%s); the sweep will", item_id, exc)

    transaction.on_commit(enqueue)


def item_edited(*, item: Item, text_changed: bool) -> None:
    """After an admin saved or deleted a story: a changed text is embedded again, and a live
    story's change reaches every web process's catalog copy once the transaction commits."""
    if text_changed and item.pk is not None:
        item_embed_later(item_id=item.pk)
    if item.published_at is not None:
        transaction.on_commit(catalog_changed)


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


_POPULARITY_SQL = """
    WITH recent AS (
        SELECT item_id, SUM(EXP(-%(decay)s * EXTRACT(EPOCH FROM (%(now)s - clicked_at)))) AS pop
        FROM news_click
        WHERE clicked_at > %(now)s - make_interval(secs => %(window)s) AND clicked_at <= %(now)s
        GROUP BY item_id
    )
    UPDATE news_item AS i
    SET popularity = COALESCE(r.pop, 0)
    FROM news_item AS j LEFT JOIN recent AS r ON r.item_id = j.id
    WHERE i.id = j.id AND i.popularity IS DISTINCT FROM COALESCE(r.pop, 0)
"""

# Per item, impressions and clicks (the CTR model's item CTR and exposure): the rows the
# triggers wrote since the last run (news.ItemCountDelta) added in and taken away, in one
# statement. A writer's rows that are not committed yet stay for the next run.
_COUNTS_SQL = """
    WITH taken AS (DELETE FROM news_itemcountdelta RETURNING item_id, shown, clicked),
    delta AS (SELECT item_id, SUM(shown) AS shown, SUM(clicked) AS clicked FROM taken GROUP BY item_id)
    UPDATE news_item AS i
    SET shown_count = GREATEST(0, i.shown_count + d.shown), click_count = GREATEST(0, i.click_count + d.clicked)
    FROM delta AS d
    WHERE i.id = d.item_id AND (d.shown <> 0 OR d.clicked <> 0)
"""


def item_popularity_refresh(*, now: datetime | None = None, half_life_hours: float | None = None) -> int:
    """Recompute every item's decayed click count (clicks older than ten half-lives, weight
    < 0.001, are ignored) and add the impressions and clicks logged since the last run into
    its counts, in two statements. Returns the number of items whose popularity changed."""
    now = now or timezone.now()
    half_life = half_life_hours or settings.POPULARITY_HALF_LIFE_HOURS
    decay = math.log(2) / (half_life * 3600.0)
    with connection.cursor() as cur:
        cur.execute(_POPULARITY_SQL, {"decay": decay, "now": now, "window": 10 * half_life * 3600.0})
        updated = cur.rowcount
        cur.execute(_COUNTS_SQL)
    catalog_changed()
    return updated


def reader_start(*, now: datetime | None = None) -> Reader:
    """A new web reader ("start reading"): no profile, no topics, no clicks yet."""
    now = now or timezone.now()
    key = uuid.uuid4().hex
    return Reader.objects.create(source=Source.WEB, external_id=key, name=f"Reader {key[:6]}", created_at=now)


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
