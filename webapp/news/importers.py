"""Writing a parsed dataset (recsys.datasets) into Postgres: bulk inserts in one
transaction, idempotent on natural keys, so a re-import adds nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

from django.db import transaction

from recsys.datasets import Dataset
from webapp.news.models import Click, Impression, Item, Reader

BATCH = 5000


@dataclass(frozen=True)
class ImportReport:
    items: int
    readers: int
    impressions: int
    clicks: int
    items_created: int
    readers_created: int
    impressions_created: int
    clicks_created: int
    clicked_items: frozenset[int] = frozenset()  # items with new clicks: their seed sets are stale

    def __str__(self) -> str:
        return ", ".join(f"{name} {getattr(self, name)} ({getattr(self, f'{name}_created')} new)"
                         for name in ("items", "readers", "impressions", "clicks"))


def _chunks(rows: list, size: int = BATCH) -> Iterator[list]:
    it = iter(rows)
    while chunk := list(islice(it, size)):
        yield chunk


def _ids(model, source: str, keys: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for chunk in _chunks(list(keys), 20_000):
        out.update(model.objects.filter(source=source, external_id__in=chunk).values_list("external_id", "pk"))
    return out


def _insert(model, objs: list, progress: Callable[[int], object]) -> int:
    """INSERT ... ON CONFLICT DO NOTHING in batches; returns the number of new rows."""
    before = model.objects.count()
    for chunk in _chunks(objs):
        model.objects.bulk_create(chunk, ignore_conflicts=True)
        progress(len(chunk))
    return model.objects.count() - before


def dataset_import(
    *, dataset: Dataset, source: str, progress: Callable[[int], object] = lambda n: None
) -> ImportReport:
    with transaction.atomic():
        before_items = Item.objects.filter(source=source).count()
        for chunk in _chunks(dataset.items):
            Item.objects.bulk_create(
                [Item(source=source, external_id=r.external_id, title=r.title, abstract=r.abstract,
                      category=r.category, subcategory=r.subcategory, url=r.url,
                      published_at=r.published_at) for r in chunk],
                update_conflicts=True, unique_fields=["source", "external_id"],
                update_fields=["title", "abstract", "category", "subcategory", "url"],
            )
            progress(len(chunk))
        items_created = Item.objects.filter(source=source).count() - before_items
        readers_created = _insert(
            Reader, [Reader(source=source, external_id=r, name=f"{dataset.name} user {r}")
                     for r in dataset.readers], progress)
        item_id = _ids(Item, source, (r.external_id for r in dataset.items))
        reader_id = _ids(Reader, source, dataset.readers)

        impressions_created = _insert(Impression, [
            Impression(reader_id=reader_id[i.reader], item_id=item_id[i.item], request_id=i.request_id,
                       position=i.position, shown_at=i.shown_at, arm="logged")
            for i in dataset.impressions], progress)
        impression_id: dict[tuple[str, int], int] = {}
        requests = sorted({i.request_id for i in dataset.impressions})
        for chunk in _chunks(requests, 20_000):
            for rid, iid, pk in Impression.objects.filter(request_id__in=chunk).values_list(
                    "request_id", "item_id", "pk"):
                impression_id[(rid, iid)] = pk

        clicks_created = _insert(Click, [
            Click(reader_id=reader_id[c.reader], item_id=item_id[c.item], clicked_at=c.clicked_at,
                  impression_id=impression_id[(c.request_id, item_id[c.item])] if c.request_id else None)
            for c in dataset.clicks], progress)
    return ImportReport(
        items=len(dataset.items), readers=len(dataset.readers), impressions=len(dataset.impressions),
        clicks=len(dataset.clicks), items_created=items_created, readers_created=readers_created,
        impressions_created=impressions_created, clicks_created=clicks_created,
        clicked_items=frozenset(item_id[c.item] for c in dataset.clicks) if clicks_created else frozenset(),
    )
