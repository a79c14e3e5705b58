"""Writes of look-alike state. The refresh jobs that rebuild seeds and centroids come with
the workers; a click only marks its item's seed set dirty."""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from recsys.calibration import item_status
from webapp.common.catalog import catalog_changed
from webapp.lookalike import store
from webapp.lookalike.models import ModelKind, ModelRun, SeedSet
from webapp.news.models import Item, ItemStatus


def seedset_mark_dirty(*, item_ids: Iterable[int]) -> None:
    """Flag the items' seed sets for the next refresh (creating empty ones as needed)."""
    now = timezone.now()
    SeedSet.objects.bulk_create(
        [SeedSet(item_id=i, dirty=True, updated_at=now) for i in set(item_ids)],
        update_conflicts=True,
        unique_fields=["item"],
        update_fields=["dirty"],
    )


def item_status_refresh(*, item_ids: Iterable[int] | None = None) -> dict[str, int]:
    """Apply the cold/warm policy (recsys.calibration.item_status) to items from their seed
    counts (SeedSet.count: distinct clickers with a reader vector), in Postgres and in the
    serving store."""
    seeds = SeedSet.objects.all() if item_ids is None else SeedSet.objects.filter(item_id__in=list(item_ids))
    counts = dict(seeds.values_list("item_id", "count"))
    items = Item.objects.filter(pk__in=list(counts)) if item_ids is None else Item.objects.filter(pk__in=list(item_ids))
    changed: dict[int, bool] = {}
    for pk, status in items.values_list("pk", "status"):
        warm = status == ItemStatus.WARM
        now_warm = item_status(warm=warm, seeds=counts.get(pk, 0), threshold=settings.SEED_THRESHOLD,
                               demote_below=settings.SEED_DEMOTE_BELOW)
        if now_warm != warm:
            changed[pk] = now_warm
    with transaction.atomic():
        Item.objects.filter(pk__in=[i for i, w in changed.items() if w]).update(status=ItemStatus.WARM,
                                                                               warm_since=timezone.now())
        Item.objects.filter(pk__in=[i for i, w in changed.items() if not w]).update(status=ItemStatus.COLD,
                                                                                   warm_since=None)
        run = ModelRun.objects.filter(kind=ModelKind.LOOKALIKE, is_active=True).first()
        if changed and run is not None:
            store.item_status_set(run_id=run.pk, warm=changed)
    if changed:
        catalog_changed()  # the badges on the pages
    return {"promoted": sum(changed.values()), "demoted": sum(not w for w in changed.values())}
