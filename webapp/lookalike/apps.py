from __future__ import annotations

from django.apps import AppConfig


class LookalikeConfig(AppConfig):
    name = "webapp.lookalike"
    label = "lookalike"
    verbose_name = "Look-alike model"
    default_auto_field = "django.db.models.BigAutoField"
