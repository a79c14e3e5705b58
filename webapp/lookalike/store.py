"""The Redis serving store, keyed by model run so that a new run switches atomically:

    ralm:run:{tower}:eu              hash  reader id -> E_u (float32 bytes)
    ralm:run:{lookalike}:items       hash  item id -> packed state (status, centroids, sizes, E_global)
    ralm:run:{lookalike}:changed     zset  item id scored by the version that last wrote it
    ralm:run:{lookalike}:version     int   bumped by every write of item states
    ralm:active:user_tower / ralm:active:lookalike   the serving runs (set together)

Everything is written under the new run's keys first; one MULTI moves the pointers.
Postgres (ReaderVector, LookalikeState, Item.status) keeps the durable copy, and
`manage.py rebuild_serving_store` restores Redis from it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import redis

from recsys.serving import ItemState
from webapp.common.catalog import CATALOG_VERSION_KEY
from webapp.common.connections import redis_client

PREFIX = "ralm"
ACTIVE_TOWER_KEY = f"{PREFIX}:active:user_tower"
ACTIVE_LOOKALIKE_KEY = f"{PREFIX}:active:lookalike"
_HEADER = struct.Struct("<BHH")  # warm flag, clusters, dim


def vectors_key(run_id: int) -> str:
    return f"{PREFIX}:run:{run_id}:eu"


def items_key(run_id: int) -> str:
    return f"{PREFIX}:run:{run_id}:items"


def changed_key(run_id: int) -> str:
    return f"{PREFIX}:run:{run_id}:changed"


def version_key(run_id: int) -> str:
    return f"{PREFIX}:run:{run_id}:version"


def pack_state(state: ItemState, *, warm: bool) -> bytes:
    k, h = state.centroids.shape if len(state.sizes) else (0, len(state.e_global))
    return _HEADER.pack(int(warm), k, h) + np.asarray(state.centroids, "<f4").tobytes() + \
        np.asarray(state.sizes, "<f4").tobytes() + np.asarray(state.e_global, "<f4").tobytes()


def unpack_state(raw: bytes) -> tuple[ItemState, bool]:
    warm, k, h = _HEADER.unpack_from(raw)
    body = np.frombuffer(raw, "<f4", offset=_HEADER.size)
    cents = body[: k * h].reshape(k, h)
    return ItemState(cents, body[k * h: k * h + k], body[k * h + k: k * h + k + h]), bool(warm)


def reader_vectors_write(*, run_id: int, vectors: Iterable[tuple[int, np.ndarray]], r: redis.Redis | None = None,
                         chunk: int = 1000) -> int:
    """HSET reader id -> float32 bytes under the run's key; returns how many were written."""
    r = r or redis_client()
    key, n, pipe = vectors_key(run_id), 0, None
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


def item_states_write(*, run_id: int, states: dict[int, bytes], r: redis.Redis | None = None,
                      chunk: int = 2000) -> int:
    """Write packed item states, then record them as changed at a new version and publish
    that version in one MULTI. A reader who sees version V finds every state written up to
    V. Returns the new version."""
    r = r or redis_client()
    items = list(states.items())
    for start in range(0, len(items), chunk):
        r.hset(items_key(run_id), mapping={str(i): v for i, v in items[start:start + chunk]})
    with r.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(version_key(run_id))
                version = int(pipe.get(version_key(run_id)) or 0) + 1
                pipe.multi()
                if items:
                    pipe.zadd(changed_key(run_id), {str(i): version for i, _ in items})
                pipe.set(version_key(run_id), version)
                pipe.execute()
                return version
            except redis.WatchError:
                continue


def item_status_set(*, run_id: int, warm: dict[int, bool], r: redis.Redis | None = None) -> int:
    """Flip the warm flag of items that have a state under the run (others have nothing to
    serve yet: their first state will carry the flag)."""
    r = r or redis_client()
    ids = list(warm)
    raws = r.hmget(items_key(run_id), [str(i) for i in ids]) if ids else []
    states = {i: bytes([int(warm[i])]) + raw[1:] for i, raw in zip(ids, raws, strict=True) if raw is not None}
    return item_states_write(run_id=run_id, states=states, r=r) if states else 0


def active_runs_set(*, tower_run: int, lookalike_run: int | None, r: redis.Redis | None = None) -> None:
    pipe = (r or redis_client()).pipeline(transaction=True)
    pipe.set(ACTIVE_TOWER_KEY, tower_run)
    if lookalike_run is not None:
        pipe.set(ACTIVE_LOOKALIKE_KEY, lookalike_run)
    pipe.execute()


def active_tower_get(*, r: redis.Redis | None = None) -> int | None:
    value = (r or redis_client()).get(ACTIVE_TOWER_KEY)
    return int(value) if value is not None else None


@dataclass(frozen=True)
class Pointers:
    """What a feed request needs to know first, in one round trip (`pointers_get`): the
    catalog's version and the serving runs."""

    catalog_version: int
    lookalike: int | None
    tower: int | None


def pointers_get(*, r: redis.Redis | None = None) -> Pointers:
    catalog, lookalike, tower = (r or redis_client()).mget(CATALOG_VERSION_KEY, ACTIVE_LOOKALIKE_KEY, ACTIVE_TOWER_KEY)
    return Pointers(int(catalog or 0), int(lookalike) if lookalike is not None else None,
                    int(tower) if tower is not None else None)


def reader_vector_queue(pipe: redis.client.Pipeline, *, reader_id: int, run_id: int) -> None:
    """Queue the reader's E_u under `run_id` on a pipeline (`reader_vector_parse` reads the answer)."""
    pipe.hget(vectors_key(run_id), str(reader_id))


def reader_vector_parse(raw: bytes | None) -> np.ndarray | None:
    return None if raw is None else np.frombuffer(raw, dtype="<f4")


def active_lookalike_get(*, r: redis.Redis | None = None) -> int | None:
    value = (r or redis_client()).get(ACTIVE_LOOKALIKE_KEY)
    return int(value) if value is not None else None


def reader_vector_get(*, reader_id: int, run_id: int | None = None, r: redis.Redis | None = None) -> np.ndarray | None:
    r = r or redis_client()
    run_id = run_id if run_id is not None else active_tower_get(r=r)
    if run_id is None:
        return None
    return reader_vector_parse(r.hget(vectors_key(run_id), str(reader_id)))
