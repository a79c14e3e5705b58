"""The live catalog's version: every web process keeps a copy of the catalog
(webapp.feed.catalog) and reloads it when this number moves. Whatever changes what the feed
may show (a story published, edited or deleted, a status flipped, the counts refreshed)
calls `catalog_changed`."""

from __future__ import annotations

import logging

import redis

from webapp.common.connections import redis_client

log = logging.getLogger(__name__)
CATALOG_VERSION_KEY = "ralm:catalog:version"


def catalog_changed() -> None:
    """Tell every web process to reload its copy of the live catalog."""
    try:
        redis_client().incr(CATALOG_VERSION_KEY)
    except redis.RedisError:
        log.warning("Redis unreachable: web processes pick up catalog changes within their TTL")
