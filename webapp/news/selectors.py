"""Reads of stories and readers. Nothing here writes."""

from __future__ import annotations

from django.db.models import Count
from django.utils import timezone

from webapp.news.models import Click, Item, Reader, Source

# Which items a reader's feed draws from: imported datasets stay in their own catalog;
# readers who signed up on the web read the demo corpus.
_CATALOG = {Source.WEB: Source.DEMO}


def reader_get(*, reader_id: int) -> Reader | None:
    return Reader.objects.filter(pk=reader_id).first()


def catalog_for(*, reader: Reader) -> str:
    return _CATALOG.get(reader.source, reader.source)


def reader_recent_clicks(*, reader: Reader, limit: int = 5) -> list[Click]:
    return list(
        Click.objects.filter(reader=reader).select_related("item").order_by("-clicked_at")[:limit]
    )


def readers_for_picker(*, limit: int = 24) -> list[Reader]:
    """A few demo readers to choose from on the home page, with their click counts."""
    return list(
        Reader.objects.filter(source=Source.DEMO)
        .annotate(n_clicks=Count("clicks"))
        .order_by("external_id")[:limit]
    )


def reader_topics_choices(*, reader: Reader) -> list[str]:
    """The categories a reader can pick as topics: those of their catalog."""
    return sorted(Item.objects.filter(source=catalog_for(reader=reader)).values_list("category", flat=True)
                  .distinct())


def profile_choices() -> dict[str, list[str]]:
    """Values a web reader can give each profile field: those the demo population has (the
    user tower knows them; an unknown value would be left out of the reader's vector)."""
    demo = Reader.objects.filter(source=Source.DEMO)
    return {f: sorted(v for v in demo.values_list(f, flat=True).distinct() if v)
            for f in ("region", "age_band", "device")}


def item_get(*, item_id: int, unpublished: bool = False) -> Item | None:
    """The item, if it is published by now (held-back stories only with `unpublished`, for
    staff): a story that is not out yet does not exist for readers."""
    items = Item.objects.filter(pk=item_id)
    if not unpublished:
        items = items.filter(published_at__isnull=False, published_at__lte=timezone.now())
    return items.first()
