"""The Redis client of the web side and the workers (the serving store, the catalog version,
the rate limit)."""

from __future__ import annotations

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

_clients: dict[str, redis.Redis] = {}


def redis_client() -> redis.Redis:
    """One client (and connection pool) per Redis URL and process.

    It fails fast: one immediate retry on a connection error or timeout (a pooled connection
    that a Redis restart left dead is replaced on the spot), not redis-py's default of ten
    retries with backoff, under which a Redis host that stops answering held every call of a
    feed request for ten connect timeouts. Callers on the request path catch RedisError and
    fall back (webapp.lookalike.serving, webapp.feed.ranking)."""
    url = settings.REDIS_URL
    if url not in _clients:
        _clients[url] = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2,
                                             health_check_interval=30, retry=Retry(NoBackoff(), 1))
    return _clients[url]
