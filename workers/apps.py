from __future__ import annotations

from django.apps import AppConfig


class WorkersConfig(AppConfig):
    """The Celery app and its beat schedule, as a Django app: after `migrate` the beat entries
    exist in the admin before beat ever runs, and a web process can queue a task by name
    (celery.current_app) without importing this package."""

    name = "workers"
    label = "workers"
    verbose_name = "Workers"

    def ready(self) -> None:
        from django.apps import apps
        from django.db.models.signals import post_migrate

        # Sent per app with models: once django_celery_beat's tables exist, ours are filled.
        post_migrate.connect(_sync_schedule, sender=apps.get_app_config("django_celery_beat"))


def _sync_schedule(**kwargs) -> None:
    from workers.schedule import schedule_sync

    schedule_sync()
