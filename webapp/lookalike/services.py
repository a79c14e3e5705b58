"""Writes of look-alike state. The refresh jobs that rebuild seeds and centroids come with
the workers; a click only marks its item's seed set dirty."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from recsys.calibration import item_status
from webapp.common import metrics
from webapp.common.catalog import catalog_changed
from webapp.lookalike import store
from webapp.lookalike.models import LookalikeState, ModelKind, ModelRun, SeedSet
from webapp.news.models import Click, Item, ItemStatus

_MARK_DIRTY_SQL = f"""
INSERT INTO {SeedSet._meta.db_table} (item_id, seed_reader_ids, seed_clicked_at, count, rebuild, seeds_changed, dirty,
                                      state_dirty, dirty_since, updated_at)
SELECT item_id, '{{}}', '{{}}', 0, true, 0, true, false, %(now)s, %(now)s FROM unnest(%(items)s::bigint[]) AS t(item_id)
ORDER BY item_id
ON CONFLICT (item_id) DO UPDATE SET dirty = true,
    dirty_since = COALESCE({SeedSet._meta.db_table}.dirty_since, EXCLUDED.dirty_since)
"""  # noqa: S608 -- a model's table name


def seedset_mark_dirty(*, item_ids: Iterable[int]) -> None:
    """Flag the items' seed sets for the next refresh (creating empty ones as needed); a set
    that had nothing waiting starts its wait now (SeedSet.dirty_since)."""
    ids = sorted(set(item_ids))
    if ids:
        with connection.cursor() as cur:
            cur.execute(_MARK_DIRTY_SQL, {"now": timezone.now(), "items": ids})


def _threshold_reached(*, item_ids: list[int], threshold: int) -> dict[int, datetime]:
    """When each item got its `threshold`-th distinct clicker (its first click counted): the
    moment it became warm, whether the clicks came live or from a backfill or an import."""
    if not item_ids:
        return {}
    sql = f"""
        SELECT item_id, t FROM (
            SELECT item_id, t, ROW_NUMBER() OVER (PARTITION BY item_id ORDER BY t) AS n
            FROM (SELECT item_id, reader_id, MIN(clicked_at) AS t FROM {Click._meta.db_table}
                  WHERE item_id = ANY(%s) GROUP BY item_id, reader_id) firsts
        ) ranked WHERE n = %s"""  # noqa: S608 (a model's table name)
    with connection.cursor() as cur:
        cur.execute(sql, [list(item_ids), max(threshold, 1)])
        return dict(cur.fetchall())


def item_status_refresh(*, item_ids: Iterable[int] | None = None) -> dict[str, int]:
    """Apply the cold/warm policy (recsys.calibration.item_status) to items from their seed
    counts (SeedSet.count: distinct clickers with a reader vector), in Postgres and in the
    serving store. Under an active look-alike run an item counts only the seeds its state
    was computed from: the refresh's partitions run apart, and a story turns warm when RALM
    scores it from its seeds, not while its state still lags behind them."""
    seeds = SeedSet.objects.all() if item_ids is None else SeedSet.objects.filter(item_id__in=list(item_ids))
    counts = dict(seeds.values_list("item_id", "count"))
    run = ModelRun.objects.filter(kind=ModelKind.LOOKALIKE, is_active=True).first()
    if run is not None:
        computed = dict(LookalikeState.objects.filter(model_run=run, item_id__in=list(counts))
                        .values_list("item_id", "seed_count"))
        counts = {pk: min(n, computed.get(pk, 0)) for pk, n in counts.items()}
    items = Item.objects.filter(pk__in=list(counts)) if item_ids is None else Item.objects.filter(pk__in=list(item_ids))
    changed: dict[int, bool] = {}
    for pk, status in items.values_list("pk", "status"):
        warm = status == ItemStatus.WARM
        now_warm = item_status(warm=warm, seeds=counts.get(pk, 0), threshold=settings.SEED_THRESHOLD,
                               demote_below=settings.SEED_DEMOTE_BELOW)
        if now_warm != warm:
            changed[pk] = now_warm
    with transaction.atomic():
        promoted = [i for i, w in changed.items() if w]
        reached = _threshold_reached(item_ids=promoted, threshold=settings.SEED_THRESHOLD)
        now = timezone.now()
        Item.objects.bulk_update([Item(pk=i, status=ItemStatus.WARM, warm_since=min(reached.get(i, now), now))
                                  for i in promoted], ["status", "warm_since"], batch_size=1000)
        Item.objects.filter(pk__in=[i for i, w in changed.items() if not w]).update(status=ItemStatus.COLD,
                                                                                   warm_since=None)
        if changed and run is not None:
            store.item_status_set(run_id=run.pk, warm=changed)
    if changed:
        catalog_changed()  # the badges on the pages
    promoted, demoted = sum(changed.values()), sum(not w for w in changed.values())
    metrics.status_changed(promoted=promoted, demoted=demoted)
    return {"promoted": promoted, "demoted": demoted}
