from __future__ import annotations

from datetime import timedelta

import factory
import numpy as np
from django.utils import timezone

from webapp.feed.clients import address_key
from webapp.news.models import Click, Impression, Item, Reader, Source

# The client key of Django's test client (and of any request from 127.0.0.1 with no session).
TEST_CLIENT = address_key("127.0.0.1")


class ReaderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Reader

    source = Source.DEMO
    external_id = factory.Sequence(lambda n: f"t{n:05d}")
    name = factory.Sequence(lambda n: f"Reader {n}")
    region = "north"
    age_band = "25-34"
    device = "phone"


class ItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Item

    source = Source.DEMO
    external_id = factory.Sequence(lambda n: f"story-{n:05d}")
    title = factory.Sequence(lambda n: f"Story number {n}")
    abstract = "An abstract."
    category = "science"
    subcategory = "space"
    published_at = factory.LazyFunction(lambda: timezone.now() - timedelta(hours=1))


class ImpressionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Impression

    reader = factory.SubFactory(ReaderFactory)
    item = factory.SubFactory(ItemFactory)
    request_id = factory.Sequence(lambda n: f"req-{n}")
    position = 0
    client = TEST_CLIENT  # shown to Django's test client, which may click it


class ClickFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Click

    reader = factory.SubFactory(ReaderFactory)
    item = factory.SubFactory(ItemFactory)


def items_to_refresh(n: int, seeds: int = 200) -> list[Item]:
    """n new items whose look-alike states must be computed: `seeds` seeds each among the
    readers with a vector under the active user tower (trained fixture)."""
    from webapp.lookalike.models import ModelKind, ModelRun, ReaderVector, SeedSet

    tower = ModelRun.objects.get(kind=ModelKind.USER_TOWER, is_active=True)
    readers = np.array(ReaderVector.objects.filter(model_run=tower).values_list("reader_id", flat=True))
    rng = np.random.default_rng(0)
    items = Item.objects.bulk_create([Item(source=Source.DEMO, external_id=f"bulk-{k}", title=f"Bulk {k}",
                                           category="world", subcategory="europe") for k in range(n)])
    SeedSet.objects.bulk_create([SeedSet(item=i, seed_reader_ids=sorted(rng.choice(readers, seeds, replace=False)
                                                                       .tolist()), count=seeds, dirty=False,
                                         state_dirty=True) for i in items])
    return items
