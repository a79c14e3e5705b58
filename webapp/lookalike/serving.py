"""Look-alike scoring on the hot path: no Postgres. The reader's E_u comes from Redis; item
states from a per-process copy of the serving store, kept in step with Redis by the run's
version key (only the items written since the copy's version are fetched).

Without the serving store the scores come from the durable copy: the process's last copy
of the item states (or, for a process that never had one, the active run's LookalikeState
rows from Postgres) and the reader's vector from Postgres (ReaderVector). While Redis cannot
be reached the request is marked degraded (webapp.common.degraded); the next request after Redis
returns uses it again. When Redis answers but lost its data (a restart: ours keeps nothing
on disk) the scores are the same from Postgres, not degraded, until the next refresh
rebuilds the store (workers.tasks.refresh_seeds). A look-alike model whose artifact cannot
be loaded scores nothing (the ranker's cold-start model scores every story, degraded), is
logged, and is tried again after a minute.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import redis

from recsys.artifacts import ArtifactError, load_lookalike
from recsys.clustering import pad_states
from recsys.serving import ItemState, LookalikeScorer
from webapp.common import degraded
from webapp.common.connections import redis_client
from webapp.lookalike import store
from webapp.lookalike.models import LookalikeState, ModelKind, ModelRun, ReaderVector
from webapp.news.models import Item, ItemStatus

log = logging.getLogger(__name__)
RETRY_BROKEN_MODEL_SECONDS = 60.0  # a run whose model failed to load is tried again after this
_ASK = object()  # "not read by the caller: ask Redis"


@dataclass
class _Copy:
    run: int | None = None
    version: int = 0
    states: dict[int, tuple[ItemState, bool]] = field(default_factory=dict)
    scorer: LookalikeScorer | None = None
    # The warm items' states padded into arrays once per version, so a request only gathers rows.
    row: dict[int, int] = field(default_factory=dict)
    cents: np.ndarray | None = None  # (W, k, h)
    sizes: np.ndarray | None = None  # (W, k)
    mask: np.ndarray | None = None  # (W, k)
    e_global: np.ndarray | None = None  # (W, h)
    ids_sorted: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    rows_sorted: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    error: str | None = None  # the run's model could not be loaded: no scores from this copy
    failed_at: float = 0.0
    durable: bool = False  # built from Postgres (no serving store), not from Redis

    def pad(self) -> None:
        warm = [(i, s) for i, (s, w) in self.states.items() if w and len(s.sizes)]
        self.row = {i: n for n, (i, _) in enumerate(warm)}
        ids = np.array([i for i, _ in warm], np.int64)
        order = np.argsort(ids)
        self.ids_sorted, self.rows_sorted = ids[order], order.astype(np.int64)
        if self.scorer is None:
            return
        cents, sizes, mask = pad_states([(s.centroids, s.sizes) for _, s in warm], self.scorer.k, self.scorer.dim)
        # float32, as stored: the scoring reads these megabytes per request, at half the cost of float64.
        self.cents, self.sizes, self.mask = cents.astype(np.float32), sizes.astype(np.float32), mask
        self.e_global = np.stack([s.e_global for _, s in warm]).astype(np.float32) if warm else \
            np.zeros((0, self.scorer.dim), np.float32)


class ServingCache:
    """Item states of the active look-alike run, per process."""

    def __init__(self) -> None:
        self._copy = _Copy()
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._copy = _Copy()

    def sync(self, r: redis.Redis, *, run: int | None | object = _ASK, version: bytes | None | object = _ASK) -> _Copy:
        """Two Redis round trips when nothing changed, none when the caller read the active
        `run` and its `version` key already (`warm_scores` does, in the request's pipeline);
        a full reload only when the run switches. Raises RedisError when Redis cannot be
        reached (see `durable`)."""
        run = store.active_lookalike_get(r=r) if run is _ASK else run
        with self._lock:
            copy = self._copy
            if run is None:  # no serving store in Redis (lost on a restart, or nothing trained)
                return self._durable()
            retry = copy.error is not None and time.monotonic() - copy.failed_at > RETRY_BROKEN_MODEL_SECONDS
            if run != copy.run or retry:
                # A new run: its model (loaded once) and every item state under it.
                copy = _with_model(run, ModelRun.objects.values_list("artifact_path", flat=True).filter(pk=run)
                                   .first())
            version = int((r.get(store.version_key(run)) if version is _ASK else version) or 0)
            if version != copy.version or copy.durable:
                # Copy on write: a request still holding the old copy keeps a consistent one. A
                # copy that served without the store reads every state again (a rebuilt store
                # counts its versions from 1 again).
                full = not copy.version or copy.durable
                copy = replace(copy, states=dict(copy.states), durable=False)
                ids = r.hkeys(store.items_key(run)) if full else \
                    r.zrangebyscore(store.changed_key(run), f"({copy.version}", version)
                for start in range(0, len(ids), 2000):
                    chunk = ids[start:start + 2000]
                    for key, raw in zip(chunk, r.hmget(store.items_key(run), chunk), strict=True):
                        if raw is not None:
                            copy.states[int(key)] = store.unpack_state(raw)
                copy.version = version
                copy.pad()
            self._copy = copy
            return copy

    def durable(self) -> _Copy:
        """The copy to score from while Redis cannot be reached (see `_durable`)."""
        with self._lock:
            return self._durable()

    def _durable(self) -> _Copy:
        """The lock held. The process's last copy when it has one (stale by at most the
        outage), else the active look-alike run's states from Postgres, kept for the next
        requests; a copy with no run when nothing is trained."""
        if self._copy.run is not None:
            if not self._copy.durable:  # from now on the reader's vector comes from Postgres too
                self._copy = replace(self._copy, durable=True)
            return self._copy
        run = ModelRun.objects.filter(kind=ModelKind.LOOKALIKE, is_active=True).values_list(
            "pk", "artifact_path").first()
        if run is None:
            return self._copy
        copy = _with_model(*run)
        warm = set(Item.objects.filter(status=ItemStatus.WARM, lookalike_states__model_run_id=run[0])
                   .values_list("pk", flat=True))
        for item_id, k, dim, cents, sizes, e_global in LookalikeState.objects.filter(model_run_id=run[0]).values_list(
                "item_id", "k", "dim", "centroids", "cluster_sizes", "global_embedding").iterator(chunk_size=2000):
            copy.states[item_id] = (ItemState(np.frombuffer(bytes(cents), "<f4").reshape(k, dim),
                                              np.asarray(sizes, np.float32), np.frombuffer(bytes(e_global), "<f4")),
                                    item_id in warm)
        copy.durable = True
        copy.pad()
        self._copy = copy
        log.warning("look-alike states of run %s loaded from Postgres (%d items): the serving store is not available",
                    run[0], len(copy.states))
        return copy


def _with_model(run: int, path: str | None) -> _Copy:
    """An empty copy for the run with its model loaded; on failure one with the error, logged."""
    try:
        if path is None:
            raise ArtifactError(f"model run {run} is not in the database")
        return _Copy(run=run, scorer=LookalikeScorer.from_model(load_lookalike(Path(path))))
    except ArtifactError as exc:
        log.error("look-alike model of run %s not loaded, warm stories are scored by the cold-start model: %s",
                  run, exc)
        return _Copy(run=run, error=str(exc), failed_at=time.monotonic())


def _durable_vector(reader_id: int) -> np.ndarray | None:
    """The reader's E_u under the active user tower, from Postgres."""
    raw = ReaderVector.objects.filter(reader_id=reader_id, model_run__kind=ModelKind.USER_TOWER,
                                      model_run__is_active=True).values_list("vector", flat=True).first()
    return None if raw is None else np.frombuffer(bytes(raw), dtype="<f4")


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


cache = ServingCache()
outage = _Outage()


def _redis_down(exc: redis.RedisError) -> _Copy:
    outage.down(exc)
    degraded.note(f"redis unreachable ({exc.__class__.__name__}): look-alike scores from the durable copy")
    return cache.durable()


@dataclass
class WarmScores:
    """RALM logits of one reader for the warm candidates among some item ids."""

    item_ids: np.ndarray  # (W,) the warm ones, in the order asked
    logits: np.ndarray  # (W,)
    rows: np.ndarray  # (W,) rows into the serving copy (for `why`)
    copy: _Copy | None = None
    e_u: np.ndarray | None = None

    def as_dict(self) -> dict[int, float]:
        return {int(i): float(v) for i, v in zip(self.item_ids, self.logits, strict=True)}

    def why(self, item_id: int) -> tuple[int, int] | None:
        """(seeds in the cluster the local attention weighted most, all seeds) for a scored item."""
        if self.copy is None or self.e_u is None or item_id not in self.copy.row:
            return None
        n = self.copy.row[item_id]
        sizes, mask = self.copy.sizes[n : n + 1], self.copy.mask[n : n + 1]
        w = self.copy.scorer.local_weights(self.e_u, self.copy.cents[n : n + 1], sizes, mask)[0]
        return int(round(float(sizes[0, int(np.argmax(w))]))), int(round(float(sizes[0][mask[0]].sum())))


def warm_scores(*, reader_id: int, item_ids: np.ndarray, r: redis.Redis | None = None,
                pointers: store.Pointers | None = None) -> WarmScores:
    """RALM logits of the reader for the warm items among `item_ids` that have a state (cold
    items, and everything when no model serves or the reader has no vector, are left out).
    `pointers`: the serving runs as the request read them (`store.pointers_get`); then the
    state version and the reader's vector come in one round trip."""
    r = r or redis_client()
    vector: tuple = ()  # (E_u or None,) once read with the version
    try:
        if pointers is not None and pointers.lookalike is not None and pointers.tower is not None:
            pipe = r.pipeline(transaction=False)
            pipe.get(store.version_key(pointers.lookalike))
            store.reader_vector_queue(pipe, reader_id=reader_id, run_id=pointers.tower)
            version, raw = pipe.execute()
            copy, vector = cache.sync(r, run=pointers.lookalike, version=version), (store.reader_vector_parse(raw),)
        else:
            copy = cache.sync(r)
        outage.up()
    except redis.RedisError as exc:
        copy = _redis_down(exc)
    if copy.error is not None:
        degraded.note(f"look-alike model unusable: {copy.error}")
    none = WarmScores(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64))
    if copy.scorer is None or not copy.row:
        return none
    try:
        e_u = _durable_vector(reader_id) if copy.durable else \
            vector[0] if vector else store.reader_vector_get(reader_id=reader_id, r=r)
    except redis.RedisError as exc:
        copy, e_u = _redis_down(exc), _durable_vector(reader_id)
    if e_u is None or copy.scorer is None or not copy.row:
        return none
    ids = np.asarray(item_ids, np.int64)
    pos = np.minimum(np.searchsorted(copy.ids_sorted, ids), len(copy.ids_sorted) - 1)
    keep = copy.ids_sorted[pos] == ids
    ids, rows = ids[keep], copy.rows_sorted[pos[keep]]
    if not len(ids):
        return none
    e_u = e_u.astype(np.float64)  # the reader side in float64, the centroids' side in their float32
    if 2 * len(rows) >= len(copy.row):
        # Most warm items are candidates: score them all in place rather than copy megabytes of centroids.
        logits = copy.scorer._score(e_u, copy.cents, copy.sizes, copy.mask, copy.e_global)[rows]
    else:
        logits = copy.scorer._score(e_u, copy.cents[rows], copy.sizes[rows], copy.mask[rows], copy.e_global[rows])
    return WarmScores(ids, logits, rows, copy, e_u)


def lookalike_scores(*, reader_id: int, item_ids: list[int], r: redis.Redis | None = None) -> dict[int, float]:
    """RALM logits of the reader for the *warm* items among `item_ids` that have a state."""
    return warm_scores(reader_id=reader_id, item_ids=np.asarray(item_ids, np.int64), r=r).as_dict()
