from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class FeedConfig(AppConfig):
    """The product's surface: the feed and its ranker, clicks, readers' pages, the JSON API,
    the simulator and the A/B reports. It reads and writes through the news and lookalike
    apps, which never import it."""

    name = "webapp.feed"
    label = "feed"
    verbose_name = "Feed"

    def ready(self) -> None:
        from recsys.arms import UnknownArm, arm
        from recsys.simulation import UnknownWorld, world_config
        from webapp.feed.ratelimit import rate_parse

        rate_parse(settings.CLICK_RATE_LIMIT)  # a bad value stops the process at start-up
        try:
            arm(settings.FEED_ARM)
        except UnknownArm as exc:
            raise ImproperlyConfigured(f"FEED_ARM: {exc}") from None
        try:
            world_config(settings.DEMO_WORLD)
        except UnknownWorld as exc:
            raise ImproperlyConfigured(f"DEMO_WORLD: {exc}") from None
