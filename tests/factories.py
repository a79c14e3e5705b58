from __future__ import annotations

from datetime import timedelta

import factory
from django.utils import timezone

from webapp.news.models import Click, Impression, Item, Reader, Source


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


class ClickFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Click

    reader = factory.SubFactory(ReaderFactory)
    item = factory.SubFactory(ItemFactory)
