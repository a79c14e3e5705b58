"""Loading the demo corpus and population into Postgres (idempotent upserts)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from fixtures.corpus import DemoReader, Story, is_held_back, stable_fraction
from webapp.news.models import Item, Reader, Source

# Stories live at the first load are spread over the hours before it.
LIVE_SPREAD_HOURS = 36.0
TEXT_FIELDS = ("title", "abstract", "category", "subcategory", "url")
PROFILE_FIELDS = ("name", "region", "age_band", "device")


@dataclass(frozen=True)
class LoadReport:
    stories: int
    stories_created: int
    stories_updated: int
    held_back: int
    readers: int
    readers_created: int
    readers_updated: int

    def __str__(self) -> str:
        return (f"stories: {self.stories} ({self.stories_created} new, {self.stories_updated} updated, "
                f"{self.held_back} held back); readers: {self.readers} ({self.readers_created} new, "
                f"{self.readers_updated} updated)")


def _story_item(story: Story, *, now: datetime, held_back_share: float) -> Item:
    published = None
    if not is_held_back(story.id, held_back_share):
        published = now - timedelta(hours=LIVE_SPREAD_HOURS * stable_fraction(f"age:{story.id}"))
    return Item(
        source=Source.DEMO, external_id=story.id, title=story.title, abstract=story.abstract,
        category=story.category, subcategory=story.subcategory,
        url=f"https://news.example.com/{story.category}/{story.id}", published_at=published,
    )


def _upsert(model, rows: list, fields: Iterable[str], progress: Callable) -> tuple[int, int]:
    """Insert rows missing by (source, external_id); update changed fields of the others.
    Publication time and status of existing items are never touched."""
    existing = {
        (o.source, o.external_id): o
        for o in model.objects.filter(external_id__in=[r.external_id for r in rows],
                                      source__in={r.source for r in rows})
    }
    new, changed = [], []
    for row in rows:
        old = existing.get((row.source, row.external_id))
        if old is None:
            new.append(row)
        elif any(getattr(old, f) != getattr(row, f) for f in fields):
            for f in fields:
                setattr(old, f, getattr(row, f))
            changed.append(old)
        progress(1)
    model.objects.bulk_create(new, batch_size=1000)
    if changed:
        model.objects.bulk_update(changed, list(fields), batch_size=1000)
    return len(new), len(changed)


def demo_load(
    *, stories: list[Story], readers: list[DemoReader], held_back_share: float,
    progress: Callable[[int], object] = lambda n: None, now: datetime | None = None,
) -> LoadReport:
    now = now or timezone.now()
    items = [_story_item(s, now=now, held_back_share=held_back_share) for s in stories]
    people = [
        Reader(source=Source.DEMO, external_id=r.id, name=r.name, region=r.region,
               age_band=r.age_band, device=r.device)
        for r in readers
    ]
    with transaction.atomic():
        s_new, s_upd = _upsert(Item, items, TEXT_FIELDS, progress)
        r_new, r_upd = _upsert(Reader, people, PROFILE_FIELDS, progress)
    held = Item.objects.filter(source=Source.DEMO, published_at__isnull=True).count()
    return LoadReport(len(items), s_new, s_upd, held, len(people), r_new, r_upd)
