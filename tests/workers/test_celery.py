"""A real Celery worker and beat, over the real Redis broker, against the test database."""

from __future__ import annotations

import sys
from datetime import timedelta

from django.utils import timezone

from tests.conftest import wait_for
from tests.factories import ClickFactory, ItemFactory
from workers import tasks
from workers.celery import app

CELERY = [sys.executable, "-m", "celery", "-A", "workers"]


def test_beat_schedule_is_declared_with_expiry():
    schedule = app.conf.beat_schedule
    assert {e["task"] for e in schedule.values()} == {
        tasks.refresh_popularity.name, tasks.embed_items.name, tasks.promote_items.name}
    for entry in schedule.values():
        assert entry["options"]["expires"] == entry["schedule"] > 0
        assert entry["task"] in app.tasks


def test_worker_and_beat_refresh_popularity_with_no_manual_step(celery_env, spawn, tmp_path):
    item = ItemFactory()
    ClickFactory.create_batch(3, item=item, clicked_at=timezone.now() - timedelta(minutes=1))
    env = {**celery_env, "POPULARITY_REFRESH_SECONDS": "1"}
    spawn([*CELERY, "worker", "--pool", "solo", "--loglevel", "INFO", "--without-mingle",
           "--without-gossip"], env)
    spawn([*CELERY, "beat", "--loglevel", "INFO", "--schedule", str(tmp_path / "beat-schedule")], env)

    def refreshed() -> bool:
        item.refresh_from_db()
        return item.popularity > 2.9

    assert wait_for(refreshed, timeout=45), "beat + worker never refreshed the item's popularity"
    assert item.popularity <= 3.0
