"""Thin task adapters: each calls one webapp service and returns a small summary."""

from __future__ import annotations

from celery import shared_task

from webapp.news import services


@shared_task(name="workers.tasks.refresh_popularity")
def refresh_popularity() -> dict:
    return {"items_updated": services.item_popularity_refresh()}
