"""Thin task adapters: each calls one webapp service and returns a small summary."""

from __future__ import annotations

from celery import shared_task

from webapp.lookalike.services import item_status_refresh
from webapp.news import services
from webapp.news.embedding import items_embed


@shared_task(name="workers.tasks.refresh_popularity")
def refresh_popularity() -> dict:
    return {"items_updated": services.item_popularity_refresh()}


@shared_task(name="workers.tasks.embed_items")
def embed_items(item_ids: list[int] | None = None) -> dict:
    """Text vectors for the given items, or for every item still without one."""
    return {"embedded": items_embed(item_ids=item_ids, progress=False)}


@shared_task(name="workers.tasks.promote_items")
def promote_items() -> dict:
    """Cold items that reached the seed threshold turn warm (and back only far below it)."""
    return item_status_refresh()
