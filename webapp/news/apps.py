from __future__ import annotations

from django.apps import AppConfig


class NewsConfig(AppConfig):
    name = "webapp.news"
    label = "news"
    verbose_name = "News feed"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db import transaction
        from django.db.models.signals import post_save

        from webapp.news.models import Item

        def item_saved(sender, instance, **kwargs) -> None:
            if instance.published_at is not None:  # a live story changed: web processes reload their catalog
                from webapp.news.services import catalog_changed

                transaction.on_commit(catalog_changed)

        post_save.connect(item_saved, sender=Item, dispatch_uid="news.item_saved.catalog")
