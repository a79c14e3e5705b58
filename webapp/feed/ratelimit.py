"""A fixed-window rate limit kept in Redis: one counter per key and window (INCR, with an
EXPIRE so old windows go away). It fails open: when Redis cannot be reached the request is
allowed (a Redis outage must not cost readers their clicks), and a warning is logged."""

from __future__ import annotations

import functools
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from django.core.exceptions import ImproperlyConfigured

from webapp.common import metrics
from webapp.common.connections import redis_client
from webapp.lookalike.store import PREFIX

logger = logging.getLogger(__name__)
PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|sec|s|minute|min|m|hour|h|day|d)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: int
    text: str  # as configured, e.g. "30/minute"


@functools.lru_cache(maxsize=16)
def rate_parse(text: str) -> Rate | None:
    """"30/minute" (or 30/min, 30/m; second, hour, day likewise) -> Rate; "off" or "" -> None."""
    if text.strip().lower() in ("", "off"):
        return None
    match = _RATE.match(text)
    if match is None or int(match.group(1)) < 1:
        raise ImproperlyConfigured(f"bad rate {text!r}: expected N/second, N/minute, N/hour or N/day, or 'off'")
    return Rate(int(match.group(1)), PERIODS[match.group(2)[0].lower()], text.strip())


class Limiter:
    """Fixed windows timed by `clock` (seconds since the epoch, as time.time gives them)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock

    def hit(self, *, scope: str, key: str | int, rate: Rate) -> int | None:
        """Count one event for `key` in the current window. None if it is within the rate,
        else the seconds until the window ends (for Retry-After)."""
        now = self.clock()
        window = int(now // rate.seconds)
        name = f"{PREFIX}:rate:{scope}:{key}:{window}"
        try:
            pipe = redis_client().pipeline(transaction=True)
            pipe.incr(name)
            pipe.expire(name, rate.seconds + 10)
            count, _ = pipe.execute()
        except redis.RedisError as exc:
            logger.warning("rate limit %s not checked, Redis unreachable (%s): allowed", scope,
                           exc.__class__.__name__)
            return None
        if count <= rate.count:
            return None
        metrics.rate_limited(limit=scope)
        return max(1, math.ceil((window + 1) * rate.seconds - now))


limiter = Limiter()  # the process's, on the real time; tests pin its clock


def hit(*, scope: str, key: str | int, rate: Rate) -> int | None:
    """Count one event on the process's limiter (Limiter.hit)."""
    return limiter.hit(scope=scope, key=key, rate=rate)
