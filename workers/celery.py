"""The Celery app: configured from Django settings (CELERY_*), Redis as broker, JSON only.
The beat schedule is declared here, with intervals from the environment."""

from __future__ import annotations

import os

from celery import Celery
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

app = Celery("ralm_feed")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"], related_name="tasks")


def _every(seconds: float, task: str) -> dict:
    # An entry expires after its period, so a backlog of missed runs never piles up.
    return {"task": task, "schedule": seconds, "options": {"expires": seconds}}


app.conf.beat_schedule = {
    "refresh-popularity": _every(settings.POPULARITY_REFRESH_SECONDS, "workers.tasks.refresh_popularity"),
    # Catches any item whose embedding task was lost (the admin queues one per new item).
    "embed-missing-items": _every(settings.EMBED_REFRESH_SECONDS, "workers.tasks.embed_items"),
    "promote-items": _every(settings.PROMOTE_REFRESH_SECONDS, "workers.tasks.promote_items"),
}
