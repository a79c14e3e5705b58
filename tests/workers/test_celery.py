"""A real Celery worker and beat (database scheduler), over the real Redis broker, against
the test database."""

from __future__ import annotations

import sys
from datetime import timedelta

from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

import workers.tasks  # noqa: F401  (registers the tasks, as a worker does)
from tests.conftest import wait_for
from tests.factories import ClickFactory, ItemFactory
from workers.celery import app
from workers.schedule import ENTRIES, schedule_sync

CELERY = [sys.executable, "-m", "celery", "-A", "workers"]


def test_schedule_is_declared_in_code_kept_in_the_database_and_expires(db, monkeypatch):
    assert app.conf.beat_schedule == {}  # nothing for the scheduler to overwrite the database with
    PeriodicTask.objects.all().delete()
    assert set(schedule_sync().values()) == {"created"}
    tasks = {t.name: t for t in PeriodicTask.objects.all()}
    assert set(tasks) == set(ENTRIES)
    for name, entry in ENTRIES.items():
        assert tasks[name].task == entry.task and entry.task in app.tasks
        if entry.seconds_setting:
            assert tasks[name].expire_seconds == tasks[name].interval.every > 0
    assert tasks["nightly-retrain"].crontab.hour == "3"
    # An admin's edit survives the next sync; an interval set in the environment wins.
    minute = IntervalSchedule.objects.create(every=300, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.filter(name="promote-items").update(interval=minute)
    assert schedule_sync()["promote-items"] == "kept"
    assert PeriodicTask.objects.get(name="promote-items").interval.every == 300
    monkeypatch.setenv("PROMOTE_REFRESH_SECONDS", "7")
    monkeypatch.setattr("django.conf.settings.PROMOTE_REFRESH_SECONDS", 7.0)
    assert schedule_sync()["promote-items"] == "updated"
    assert PeriodicTask.objects.get(name="promote-items").interval.every == 7


def test_worker_and_beat_refresh_popularity_with_no_manual_step(celery_env, spawn):
    item = ItemFactory()
    ClickFactory.create_batch(3, item=item, clicked_at=timezone.now() - timedelta(minutes=1))
    env = {**celery_env, "POPULARITY_REFRESH_SECONDS": "1"}
    spawn([*CELERY, "worker", "--pool", "solo", "--loglevel", "INFO", "--without-mingle", "--without-gossip"], env)
    spawn([*CELERY, "beat", "--loglevel", "INFO"], env)

    def refreshed() -> bool:
        item.refresh_from_db()
        return item.popularity > 2.9

    assert wait_for(refreshed, timeout=45), "beat + worker never refreshed the item's popularity"
    assert item.popularity <= 3.0


def test_schedules_are_in_the_admin_and_an_edit_there_takes_effect(celery_env, spawn, admin_client, tmp_path):
    """Beat runs with the popularity job every 61 s; an admin sets it to 1 s; the job runs
    within seconds, with no code change and no restart."""
    env = {**celery_env, "POPULARITY_REFRESH_SECONDS": "61"}
    item = ItemFactory()
    ClickFactory.create_batch(2, item=item, clicked_at=timezone.now() - timedelta(minutes=1))
    spawn([*CELERY, "worker", "--pool", "solo", "--loglevel", "INFO", "--without-mingle", "--without-gossip"], env)
    spawn([*CELERY, "beat", "--loglevel", "DEBUG"], env)
    beat_log = sorted(tmp_path.glob("proc*.log"))[-1]
    assert wait_for(lambda: "DatabaseScheduler: Schedule changed" in beat_log.read_text()
                    or "beat: Waking up" in beat_log.read_text(), timeout=30), beat_log.read_text()
    assert PeriodicTask.objects.filter(name="refresh-popularity", interval__every=61).exists()
    page = admin_client.get("/admin/django_celery_beat/periodictask/").content.decode()
    for name in ENTRIES:
        assert name in page
    item.refresh_from_db()
    assert item.popularity == 0  # the 61 s schedule has not run it
    schedule = PeriodicTask.objects.get(name="refresh-popularity").interval
    resp = admin_client.post(f"/admin/django_celery_beat/intervalschedule/{schedule.pk}/change/",
                             {"every": 1, "period": IntervalSchedule.SECONDS,
                              "periodictask_set-TOTAL_FORMS": 0, "periodictask_set-INITIAL_FORMS": 0})
    assert resp.status_code == 302

    def ran_again() -> bool:
        item.refresh_from_db()
        return item.popularity > 1.9

    assert wait_for(ran_again, timeout=20), "the admin's new interval never took effect"
