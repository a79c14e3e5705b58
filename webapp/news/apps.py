from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings


class NewsConfig(AppConfig):
    name = "webapp.news"
    label = "news"
    verbose_name = "News feed"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db import transaction
        from django.db.models.signals import post_save

        from webapp.news.models import Item
        from webapp.news.ratelimit import rate_parse

        rate_parse(settings.CLICK_RATE_LIMIT)  # a bad value stops the process at start-up

        def item_saved(sender, instance, **kwargs) -> None:
            if instance.published_at is not None:  # a live story changed: web processes reload their catalog
                from webapp.news.services import catalog_changed

                transaction.on_commit(catalog_changed)

        post_save.connect(item_saved, sender=Item, dispatch_uid="news.item_saved.catalog")
