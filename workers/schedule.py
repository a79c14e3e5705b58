"""The beat schedule, declared here and kept in the database (django-celery-beat), where
admins see and edit it. `schedule_sync` creates missing entries; an interval set explicitly
in the environment wins over the database, otherwise an admin's edit stays."""

from __future__ import annotations

import os
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction


@dataclass(frozen=True)
class Entry:
    task: str
    seconds_setting: str | None = None  # an interval entry, from this setting (and env var)
    at_setting: str | None = None  # or a daily entry at "HH:MM" UTC from this setting


ENTRIES = {
    "refresh-popularity": Entry("workers.tasks.refresh_popularity", "POPULARITY_REFRESH_SECONDS"),
    "embed-missing-items": Entry("workers.tasks.embed_items", "EMBED_REFRESH_SECONDS"),
    "refresh-seeds": Entry("workers.tasks.refresh_seeds", "LOOKALIKE_REFRESH_SECONDS"),
    "refresh-lookalike-state": Entry("workers.tasks.refresh_states", "LOOKALIKE_REFRESH_SECONDS"),
    "promote-items": Entry("workers.tasks.promote_items", "PROMOTE_REFRESH_SECONDS"),
    "nightly-retrain": Entry("workers.tasks.retrain", at_setting="RETRAIN_AT"),
}


def schedule_sync() -> dict[str, str]:
    """Create missing entries; apply intervals that the environment sets explicitly.
    Returns what happened to each entry."""
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    done = {}
    with transaction.atomic():
        for name, entry in ENTRIES.items():
            existing = PeriodicTask.objects.filter(name=name).first()
            explicit = entry.seconds_setting is not None and entry.seconds_setting in os.environ
            if existing is not None and not explicit:
                done[name] = "kept"
                continue
            fields = {"task": entry.task, "one_off": False}
            if entry.seconds_setting:
                seconds = max(1, round(getattr(settings, entry.seconds_setting)))
                every, _ = IntervalSchedule.objects.get_or_create(every=seconds, period=IntervalSchedule.SECONDS)
                fields.update(interval=every, crontab=None, expire_seconds=seconds)
            else:
                hour, minute = getattr(settings, entry.at_setting).split(":")
                cron, _ = CrontabSchedule.objects.get_or_create(minute=str(int(minute)), hour=str(int(hour)),
                                                               day_of_week="*", day_of_month="*",
                                                               month_of_year="*", timezone="UTC")
                fields.update(crontab=cron, interval=None, expire_seconds=3600)
            PeriodicTask.objects.update_or_create(name=name, defaults=fields)
            done[name] = "updated" if existing else "created"
    return done
