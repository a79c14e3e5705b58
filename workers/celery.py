"""The Celery app: configured from Django settings (CELERY_*), Redis as broker, JSON only,
time limits from the settings. The beat schedule: workers/schedule.py."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import beat_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

app = Celery("ralm_feed")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"], related_name="tasks")


# The schedule lives in the database (see workers/schedule.py), not in app.conf: the
# DatabaseScheduler would otherwise rewrite every entry from code at each start.
app.conf.beat_schedule = {}


@beat_init.connect
def _sync_schedule(**_kwargs) -> None:
    from workers.schedule import schedule_sync

    schedule_sync()
