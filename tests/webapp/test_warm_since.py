"""warm_since is when a story got its threshold-th distinct clicker, from the click history:
the same for a backfilled or imported history as for live clicks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import ClickFactory, ItemFactory, ReaderFactory
from webapp.lookalike.models import SeedSet
from webapp.lookalike.services import item_status_refresh
from webapp.news.models import Item, ItemStatus

pytestmark = pytest.mark.django_db


def test_warm_since_is_the_time_of_the_threshold_th_distinct_clicker(settings):
    settings.SEED_THRESHOLD, settings.SEED_DEMOTE_BELOW = 5, 2
    start = timezone.now() - timedelta(hours=5)
    item, other = ItemFactory(published_at=start), ItemFactory(published_at=start)
    readers = ReaderFactory.create_batch(7)
    # The first reader clicks three times (one distinct clicker); then one reader every 10 minutes.
    for n in range(3):
        ClickFactory(reader=readers[0], item=item, clicked_at=start + timedelta(minutes=n))
    for n, reader in enumerate(readers[1:], start=1):
        ClickFactory(reader=reader, item=item, clicked_at=start + timedelta(minutes=10 * n))
    ClickFactory(reader=readers[0], item=other, clicked_at=start)
    SeedSet.objects.create(item=item, seed_reader_ids=[r.pk for r in readers], count=7, dirty=False)
    SeedSet.objects.create(item=other, seed_reader_ids=[readers[0].pk], count=1, dirty=False)
    assert item_status_refresh() == {"promoted": 1, "demoted": 0}
    item.refresh_from_db()
    assert item.status == ItemStatus.WARM
    assert item.warm_since == start + timedelta(minutes=40)  # the 5th distinct clicker: readers[4]
    assert Item.objects.get(pk=other.pk).warm_since is None
