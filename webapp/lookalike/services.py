"""Writes of look-alike state. The refresh jobs that rebuild seeds and centroids come with
the workers; a click only marks its item's seed set dirty."""

from __future__ import annotations

from collections.abc import Iterable

from django.utils import timezone

from webapp.lookalike.models import SeedSet


def seedset_mark_dirty(*, item_ids: Iterable[int]) -> None:
    """Flag the items' seed sets for the next refresh (creating empty ones as needed)."""
    now = timezone.now()
    SeedSet.objects.bulk_create(
        [SeedSet(item_id=i, dirty=True, updated_at=now) for i in set(item_ids)],
        update_conflicts=True,
        unique_fields=["item"],
        update_fields=["dirty"],
    )
