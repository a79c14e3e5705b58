"""The Redis serving store for reader vectors, keyed by model run so a new run switches
atomically: vectors are written under the new run's key first, then one SET moves the
`active` pointer. Postgres (ReaderVector) keeps the durable copy."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import redis
from django.conf import settings

PREFIX = "ralm"


def client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2)


def _vectors_key(run_id: int) -> str:
    return f"{PREFIX}:run:{run_id}:eu"


ACTIVE_TOWER_KEY = f"{PREFIX}:active:user_tower"


def reader_vectors_write(*, run_id: int, vectors: Iterable[tuple[int, np.ndarray]], r: redis.Redis | None = None,
                         chunk: int = 1000) -> int:
    """HSET reader id -> float32 bytes under the run's key; returns how many were written."""
    r = r or client()
    key, n, pipe = _vectors_key(run_id), 0, None
    for reader_id, vec in vectors:
        if pipe is None:
            pipe = r.pipeline(transaction=False)
        pipe.hset(key, str(reader_id), np.asarray(vec, dtype="<f4").tobytes())
        n += 1
        if n % chunk == 0:
            pipe.execute()
            pipe = None
    if pipe is not None:
        pipe.execute()
    return n


def active_tower_set(*, run_id: int, r: redis.Redis | None = None) -> None:
    (r or client()).set(ACTIVE_TOWER_KEY, run_id)


def active_tower_get(*, r: redis.Redis | None = None) -> int | None:
    value = (r or client()).get(ACTIVE_TOWER_KEY)
    return int(value) if value is not None else None


def reader_vector_get(*, reader_id: int, run_id: int | None = None, r: redis.Redis | None = None) -> np.ndarray | None:
    r = r or client()
    run_id = run_id if run_id is not None else active_tower_get(r=r)
    if run_id is None:
        return None
    raw = r.hget(_vectors_key(run_id), str(reader_id))
    return None if raw is None else np.frombuffer(raw, dtype="<f4")


def run_drop(*, run_id: int, r: redis.Redis | None = None) -> None:
    (r or client()).delete(_vectors_key(run_id))
