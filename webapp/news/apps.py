from __future__ import annotations

from django.apps import AppConfig


class NewsConfig(AppConfig):
    """Stories, readers, impressions and clicks: the data, its importers and the demo corpus."""

    name = "webapp.news"
    label = "news"
    verbose_name = "News feed"
    default_auto_field = "django.db.models.BigAutoField"
