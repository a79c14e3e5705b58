"""Restore the Redis serving store from Postgres (after a Redis restart or flush)."""

from __future__ import annotations

import redis
from django.core.management.base import BaseCommand, CommandError

from webapp.lookalike.refresh import serving_store_rebuild


class Command(BaseCommand):
    help = "Write the active runs' reader vectors and item states from Postgres into Redis."

    def handle(self, *args, **options) -> None:
        try:
            done = serving_store_rebuild()
        except redis.RedisError as exc:
            raise CommandError(f"Redis unreachable: {exc}") from None
        if options.get("verbosity", 1):
            self.stdout.write(f"restored {done['readers']} reader vectors and {done['items']} item states")
