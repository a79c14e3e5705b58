"""Writing a parsed dataset (recsys.datasets) into Postgres: bulk inserts in one
transaction, idempotent on natural keys, so a re-import adds nothing. Stories and readers
go through the ORM; impressions and clicks, a log's millions of rows, by COPY into a
staging table."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

from django.db import connection, transaction

from recsys.datasets import Dataset
from webapp.common.bulk import copy_columns, copy_text
from webapp.news.models import Click, Impression, Item, Reader

BATCH = 5000
STAGE_ROWS = 200_000  # rows per COPY of a log: the progress bar moves between them


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


def _staged(model, columns: dict[str, list], n: int, progress: Callable[[int], object]) -> int:
    """n rows (webapp.common.bulk.copy_columns' columns) COPYed into a staging copy of the
    model's table, then INSERTed in one statement that skips any row already there (a
    re-import): a log's millions of rows without a model object each. The new rows' count."""
    table = model._meta.db_table
    names = ", ".join(f.column for f in model._meta.concrete_fields if not f.primary_key)
    with connection.cursor() as cur:
        # The staged rows have no id: the table's own identity numbers them as they go in.
        cur.execute(f"CREATE TEMP TABLE import_stage (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP; "
                    f"ALTER TABLE import_stage ALTER COLUMN {model._meta.pk.column} DROP NOT NULL")
        for lo in range(0, n, STAGE_ROWS):
            hi = min(n, lo + STAGE_ROWS)
            copy_columns(cur, model, {k: v[lo:hi] for k, v in columns.items()}, hi - lo, table="import_stage")
            progress(hi - lo)
        cur.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM import_stage "  # noqa: S608 (model names)
                    "ON CONFLICT DO NOTHING")
        created = cur.rowcount
        cur.execute("DROP TABLE import_stage")
    return created


def _impressions_store(dataset: Dataset, reader_id: dict, item_id: dict, progress) -> int:
    shown = {}  # request -> (its id, its time) in COPY text: each is shared by a whole list
    for i in dataset.impressions:
        if i.request_id not in shown:
            shown[i.request_id] = (copy_text(i.request_id), copy_text(i.shown_at))
    rows = dataset.impressions
    return _staged(Impression, {
        "reader": [reader_id[i.reader] for i in rows], "item": [item_id[i.item] for i in rows],
        "request_id": [shown[i.request_id][0] for i in rows], "position": [i.position for i in rows],
        "shown_at": [shown[i.request_id][1] for i in rows], "arm": ["logged"] * len(rows)}, len(rows), progress)


def _impression_ids(pairs: set[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """The ids of the impressions (request id, item id) that clicks belong to."""
    out: dict[tuple[str, int], int] = {}
    pairs = sorted(pairs)
    with connection.cursor() as cur:
        for chunk in _chunks(pairs, 50_000):
            cur.execute("SELECT i.request_id, i.item_id, i.id FROM news_impression i "
                        "JOIN unnest(%s::varchar[], %s::bigint[]) AS k(request_id, item_id) "
                        "ON i.request_id = k.request_id AND i.item_id = k.item_id",
                        [[p[0] for p in chunk], [p[1] for p in chunk]])
            out.update(((rid, iid), pk) for rid, iid, pk in cur.fetchall())
    return out


def _clicks_store(dataset: Dataset, reader_id: dict, item_id: dict, progress) -> int:
    rows = dataset.clicks
    impression_id = _impression_ids({(c.request_id, item_id[c.item]) for c in rows if c.request_id})
    return _staged(Click, {
        "reader": [reader_id[c.reader] for c in rows], "item": [item_id[c.item] for c in rows],
        "clicked_at": [c.clicked_at.isoformat() for c in rows],
        "impression": [str(impression_id[(c.request_id, item_id[c.item])]) if c.request_id else "\\N"
                       for c in rows]}, len(rows), progress)


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
        impressions_created = _impressions_store(dataset, reader_id, item_id, progress)
        clicks_created = _clicks_store(dataset, reader_id, item_id, progress)
    return ImportReport(
        items=len(dataset.items), readers=len(dataset.readers), impressions=len(dataset.impressions),
        clicks=len(dataset.clicks), items_created=items_created, readers_created=readers_created,
        impressions_created=impressions_created, clicks_created=clicks_created,
        clicked_items=frozenset(item_id[c.item] for c in dataset.clicks) if clicks_created else frozenset(),
    )
