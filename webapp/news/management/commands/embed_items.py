"""Give every item still without a text vector one (the fallback of the embedding task)."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from webapp.news.embedding import items_embed
from webapp.news.models import Item


class Command(BaseCommand):
    help = "Embed the title and abstract of every item that has no text vector yet (all-MiniLM-L6-v2)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--all", action="store_true", help="re-embed every item, not only the missing ones")

    def handle(self, *args, **options) -> None:
        started = time.perf_counter()
        ids = list(Item.objects.values_list("pk", flat=True)) if options["all"] else None
        try:
            n = items_embed(item_ids=ids, progress=options.get("verbosity", 1) > 0)
        except OSError as exc:
            raise CommandError(f"cannot load the text encoder: {exc}") from None
        if options.get("verbosity", 1):
            self.stdout.write(f"embedded {n} items in {time.perf_counter() - started:.1f}s")
