"""Writes of look-alike state. The refresh jobs that rebuild seeds and centroids come with
the workers; a click only marks its item's seed set dirty."""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from recsys.calibration import item_status
from webapp.lookalike.models import SeedSet
from webapp.lookalike.selectors import seed_counts
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
    counts: distinct clickers that have a reader vector under the active user tower."""
    counts = seed_counts(item_ids=item_ids)
    promoted, demoted = [], []
    items = Item.objects.all() if item_ids is None else Item.objects.filter(pk__in=list(item_ids))
    for pk, status in items.values_list("pk", "status"):
        warm = status == ItemStatus.WARM
        now_warm = item_status(warm=warm, seeds=counts.get(pk, 0), threshold=settings.SEED_THRESHOLD,
                               demote_below=settings.SEED_DEMOTE_BELOW)
        if now_warm and not warm:
            promoted.append(pk)
        elif warm and not now_warm:
            demoted.append(pk)
    with transaction.atomic():
        Item.objects.filter(pk__in=promoted).update(status=ItemStatus.WARM)
        Item.objects.filter(pk__in=demoted).update(status=ItemStatus.COLD)
    return {"promoted": len(promoted), "demoted": len(demoted)}
