from __future__ import annotations

from django.apps import AppConfig


class NewsConfig(AppConfig):
    name = "webapp.news"
    label = "news"
    verbose_name = "News feed"
    default_auto_field = "django.db.models.BigAutoField"
