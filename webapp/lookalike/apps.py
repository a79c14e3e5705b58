from __future__ import annotations

from django.apps import AppConfig


class LookalikeConfig(AppConfig):
    name = "webapp.lookalike"
    label = "lookalike"
    verbose_name = "Look-alike model"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        post_migrate.connect(_sync_schedule, sender=self)


def _sync_schedule(**kwargs) -> None:
    """After migrate, the beat entries exist in the admin before beat ever runs."""
    from workers.schedule import schedule_sync

    schedule_sync()
