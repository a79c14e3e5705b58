"""While Redis cannot be reached: the outage logged once at each end, the request marked
degraded (webapp.common.degraded), the scores from the durable copy, and the reader's vector
from Postgres (ReaderVector). The next request after Redis returns uses it again."""

from __future__ import annotations

import logging
import time

import numpy as np
import redis

from webapp.common import degraded
from webapp.lookalike.models import ModelKind, ReaderVector
from webapp.lookalike.storecopy import StoreCopy, cache

log = logging.getLogger(__name__)


def durable_vector(reader_id: int) -> np.ndarray | None:
    """The reader's E_u under the active user tower, from Postgres."""
    raw = ReaderVector.objects.filter(reader_id=reader_id, model_run__kind=ModelKind.USER_TOWER,
                                      model_run__is_active=True).values_list("vector", flat=True).first()
    return None if raw is None else ReaderVector.vector_from(raw)


class _Outage:
    """Logs the start and the end of a Redis outage once each, not on every request."""

    def __init__(self) -> None:
        self.since: float | None = None

    def down(self, exc: Exception) -> None:
        if self.since is None:
            self.since = time.monotonic()
            log.warning("Redis unreachable (%s: %s): look-alike scores from the durable copy until it returns",
                        exc.__class__.__name__, exc)

    def up(self) -> None:
        if self.since is not None:
            log.warning("Redis reachable again after %.1f s: scoring from the serving store",
                        time.monotonic() - self.since)
            self.since = None


outage = _Outage()


def redis_down(exc: redis.RedisError) -> StoreCopy:
    outage.down(exc)
    degraded.note(f"redis unreachable ({exc.__class__.__name__}): look-alike scores from the durable copy",
                  kind=degraded.REDIS)
    return cache.durable()
