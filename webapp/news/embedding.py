"""Item text vectors in Postgres: every item gets one on import, demo load, creation in the
admin (a Celery task after commit) or, as a fallback, `manage.py embed_items`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from django.db import transaction
from tqdm import tqdm

from recsys.text import DIM, shared_encoder
from webapp.news.models import Item

R = TypeVar("R")


def item_text(item: Item) -> str:
    return f"{item.title}. {item.abstract}".strip()


def stored_then_embedded(store: Callable[[Callable[[int], object]], R], *, rows: int, desc: str,
                         verbosity: int) -> tuple[R, int]:
    """What a loading command does: `store(progress)` writes `rows` rows under a progress bar
    (hidden at verbosity 0), then every item still without a text vector gets one, outside
    the store's transaction (a failure there leaves the rows; `embed_items` retries). Returns
    what `store` returned and how many items were embedded."""
    with tqdm(total=rows, desc=desc, unit="row", disable=verbosity == 0) as bar:
        result = store(bar.update)
    return result, items_embed(progress=verbosity > 0)


def items_embed(*, item_ids: Iterable[int] | None = None, batch: int = 512, progress: bool = True) -> int:
    """Embed the given items (default: every item still without a vector); returns how many."""
    qs = Item.objects.filter(pk__in=list(item_ids)) if item_ids is not None else \
        Item.objects.filter(text_vector__isnull=True)
    todo = list(qs.order_by("pk").values_list("pk", "title", "abstract"))
    if not todo:
        return 0
    encoder = shared_encoder()
    done = 0
    bar = tqdm(total=len(todo), desc="embed items", unit="item", disable=not progress)
    for start in range(0, len(todo), batch):
        chunk = todo[start:start + batch]
        vectors = encoder.encode([f"{t}. {a}".strip() for _, t, a in chunk], progress=False)
        assert vectors.shape == (len(chunk), DIM)
        rows = [Item(pk=pk, text_vector=v.astype("<f4").tobytes()) for (pk, _, _), v in zip(chunk, vectors,
                                                                                           strict=True)]
        with transaction.atomic():
            Item.objects.bulk_update(rows, ["text_vector"], batch_size=500)
        done += len(chunk)
        bar.update(len(chunk))
    bar.close()
    return done
