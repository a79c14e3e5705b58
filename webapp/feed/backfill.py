"""A past reading history for the demo readers, written in bulk: sessions over the last
hours drawn by recsys.history (the hidden click model, an exploring logging policy), stored
by COPY as impressions and clicks like the feed's own, then the counts and the seed sets'
dirty flags as the click path leaves them.

The history is what the models first learn from, so it holds tens of clicks per reader and
pages that were not ranked by any of the arms being compared (arm "explore"); the live
simulator then reads through the real feed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.db import connection, transaction
from django.utils import timezone
from tqdm import tqdm

from fixtures.corpus import DemoReader
from recsys.history import LoggingPolicy, TruthMatrix, session_times, simulate_history
from recsys.simulation import ClickModel, item_truth
from webapp.common.bulk import copy_columns, timestamps_text
from webapp.lookalike.services import seedset_mark_dirty
from webapp.news.models import Click, Impression, Item, Reader, Source
from webapp.news.services import item_popularity_refresh

ARM = "explore"  # the impressions' arm: the logging policy, not a ranker arm


@dataclass(frozen=True)
class BackfillReport:
    sessions: int
    impressions: int
    clicks: int
    readers: int

    @property
    def ctr(self) -> float:
        return self.clicks / self.impressions if self.impressions else 0.0

    def __str__(self) -> str:
        return (f"{self.sessions} sessions, {self.impressions} impressions, {self.clicks} clicks "
                f"(CTR {self.ctr:.3f}, {self.clicks / max(self.readers, 1):.1f} per reader)")


def history_backfill(*, readers: list[DemoReader], click_model: ClickModel, hours: float, sessions: int,
                     seed: int = 0, feed_size: int = 10, now: datetime | None = None,
                     session_hours: np.ndarray | None = None, policy: LoggingPolicy | None = None,
                     progress: bool = True) -> BackfillReport:
    """`sessions` sessions of the demo readers (drawn by activity) over the `hours` before
    `now`, on the demo stories published by then; busier by day than by night, or at
    `session_hours` (hours after the start, one per session) when given."""
    now = now or timezone.now()
    by_ext = dict(Reader.objects.filter(source=Source.DEMO).values_list("external_id", "pk"))
    people = [r for r in readers if r.id in by_ext]
    items = list(Item.objects.filter(source=Source.DEMO, published_at__isnull=False, published_at__lte=now)
                 .order_by("pk").values_list("pk", "external_id", "category", "subcategory", "published_at"))
    if not people or not items:
        raise ValueError("no demo readers or published demo stories: run load_demo first")
    rng = np.random.default_rng(seed)
    start = now - timedelta(hours=hours)
    truths = [item_truth(external_id=e, category=c, subcategory=s, config=click_model.config)
              for _, e, c, s, _ in items]
    categories = sorted({c for _, _, c, _, _ in items} | set(click_model.taxonomy))
    weights = np.array([r.truth.activity for r in people])
    who = rng.choice(len(people), size=sessions, p=weights / weights.sum())
    when = np.sort(np.asarray(session_hours, np.float64)) if session_hours is not None else \
        session_times(hours=hours, sessions=sessions, end_hour_of_day=now.hour + now.minute / 60, rng=rng)
    with tqdm(total=sessions, desc="backfill", unit="session", disable=not progress) as bar:
        def step(n_sessions: int, n_impressions: int, n_clicks: int) -> None:
            bar.update(n_sessions)

        history = simulate_history(
            model=click_model, truth=TruthMatrix.build(click_model, [r.truth for r in people], truths),
            item_category=np.array([categories.index(c) for _, _, c, _, _ in items]),
            published=np.array([(p - start).total_seconds() / 3600.0 for *_, p in items]),
            session_reader=who, session_time=when, feed_size=feed_size, n_categories=len(categories),
            rng=rng, policy=policy, progress=step)
    _write(history, reader_ids=np.array([by_ext[r.id] for r in people]), item_ids=np.array([i[0] for i in items]),
           start=start)
    item_popularity_refresh(now=now)
    return BackfillReport(sessions=len(history.session_time), impressions=len(history.item),
                          clicks=int(history.clicked.sum()), readers=len(people))


def _write(history, *, reader_ids: np.ndarray, item_ids: np.ndarray, start: datetime) -> None:
    n = len(history.item)
    shown_at = start.timestamp() + history.time * 3600.0
    request = [uuid.UUID(bytes=b.tobytes()).hex for b in
               np.random.default_rng().integers(0, 256, (len(history.session_time), 16), dtype=np.uint8)]
    with transaction.atomic(), connection.cursor() as cur:
        # Explicit ids, so the clicks can name their impressions; the lock keeps the range ours.
        cur.execute(f"LOCK TABLE {Impression._meta.db_table} IN EXCLUSIVE MODE")  # noqa: S608 (model name)
        cur.execute(f"SELECT COALESCE(MAX(id), 0) FROM {Impression._meta.db_table}")  # noqa: S608
        first = int(cur.fetchone()[0]) + 1
        ids = np.arange(first, first + n)
        copy_columns(cur, Impression, {
            "id": ids, "reader": reader_ids[history.reader], "item": item_ids[history.item],
            "request_id": [request[s] for s in history.session.tolist()], "position": history.position,
            "shown_at": timestamps_text(shown_at), "arm": [ARM] * n, "score": np.zeros(n),
        }, n)
        cur.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [Impression._meta.db_table, first + n])
        c = np.flatnonzero(history.clicked)
        # The live simulator clicks 5 s after a page loads, 10 s more per position.
        copy_columns(cur, Click, {
            "reader": reader_ids[history.reader[c]], "item": item_ids[history.item[c]], "impression": ids[c],
            "clicked_at": timestamps_text(shown_at[c] + 5 + 10 * history.position[c]),
        }, len(c))
    seedset_mark_dirty(item_ids=item_ids[np.unique(history.item[history.clicked])].tolist())
