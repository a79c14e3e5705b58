"""The process's copy of the serving store, kept in step with Redis by the run's version key
(only the items written since the copy's version are fetched).

Two modes. A serving store of up to FEED_RECALL_ABOVE states is copied whole and padded once
per version, and a request scores its candidates in place. A larger one is not held by any
web process: the copy keeps the warm items' ids and a compressed index of their E_global
(recsys.recall.VectorIndex, for recall), and a request fetches the states of its candidates
from Redis through the recently-used slab (webapp.lookalike.slab, STATE_CACHE_ITEMS).

Without the serving store the copy is built from Postgres (the durable copy: the active
run's LookalikeState rows), or the process keeps its last copy while Redis cannot be reached.
A look-alike model whose artifact cannot be loaded scores nothing, is logged, and is tried
again after a minute.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import redis
from django.conf import settings

from recsys.artifacts import ArtifactError
from recsys.clustering import pad_states
from recsys.recall import VectorIndex, unit_rows
from recsys.serving import ItemState, LookalikeScorer
from webapp.lookalike import store
from webapp.lookalike.closeness import Reference, closeness_bars, reference_readers
from webapp.lookalike.models import LookalikeState, ModelKind, ModelRun
from webapp.lookalike.registry import lookalike_scorer, registry
from webapp.lookalike.slab import Slab
from webapp.news.models import Item, ItemStatus

log = logging.getLogger(__name__)
RETRY_BROKEN_MODEL_SECONDS = 60.0  # a run whose model failed to load is tried again after this
_ASK = object()  # "not read by the caller: ask Redis"
STATE_CACHE_ITEMS = 20_000  # states a process keeps of a store too large to copy (100 MB at k = 20, h = 64)
TRAINING_VECTORS = 60_000  # vectors the recall index is trained on (the first ones read)
CHUNK = 2000  # states per Redis or Postgres read
BARS_KEPT = 2 * STATE_CACHE_ITEMS  # items whose bars a process keeps


class RunCloseness:
    """The "readers like you" test of one run in this process: its reference readers, and
    each item's bars with a digest of the centroids they were set for."""

    def __init__(self) -> None:
        self.reference: Reference | None = None
        self.bars: dict[int, tuple[bytes, np.ndarray]] = {}

    def closeness_for(self, scorer: LookalikeScorer, item_id: int, cents: np.ndarray) -> tuple[Reference, np.ndarray]:
        """The reference readers and the item's closeness bars (`closeness_bars`) for its
        centroids `cents` (k, h), computed at the first "why" that meets these centroids. The
        reference readers are read from Postgres at the run's first "why" in this process (a
        lost connection is the request's, as for its other database work)."""
        reference = self.reference
        if reference is None:
            reference = self.reference = reference_readers(scorer)
        digest = hashlib.blake2b(np.ascontiguousarray(cents).tobytes(), digest_size=16).digest()
        kept = self.bars.get(item_id)
        if kept is not None and kept[0] == digest:
            return reference, kept[1]
        if len(self.bars) >= BARS_KEPT:  # items gone or changed long ago: start again
            self.bars.clear()
        bars = closeness_bars(reference, cents)
        self.bars[item_id] = (digest, bars)
        return reference, bars


@dataclass
class StoreCopy:
    """One version of the serving store as this process holds it: copied whole and padded,
    or (above FEED_RECALL_ABOVE) a recall index with the recently-used slab."""

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
    # A store larger than FEED_RECALL_ABOVE: the recall index and the states last used, no padded arrays.
    index: VectorIndex | None = None
    warm_ids: set[int] = field(default_factory=set)
    used: Slab | None = None
    # Per run, shared by every version's copy: a refresh that leaves a story's centroids as
    # they were keeps its bars.
    closeness: RunCloseness = field(default_factory=RunCloseness)

    def pad(self) -> None:
        if self.index is not None:
            ids = np.fromiter(self.warm_ids, np.int64, count=len(self.warm_ids))
            ids.sort()
            self.ids_sorted, self.rows_sorted = ids, np.arange(len(ids), dtype=np.int64)
            return
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

    @staticmethod
    def vectors(state: ItemState) -> np.ndarray:
        """What the recall index holds of an item: its E_global, unit length. (The nearest of
        its centroids as well finds the items RALM scores highest far less often: the local
        attention mixes the centroids, it does not pick one; docs/scaling.md.)"""
        return unit_rows(state.e_global[None])

    def index_build(self, chunks: Iterable[list[tuple[int, ItemState, bool]]]) -> None:
        """The recall index of every warm state in `chunks`, trained on the first vectors read."""
        self.index, self.warm_ids, pending = None, set(), ([], [])
        self.used = Slab(STATE_CACHE_ITEMS, self.scorer.k, self.scorer.dim)
        for chunk in chunks:
            for item, state, warm in chunk:
                if warm and len(state.sizes):
                    self.warm_ids.add(item)
                    vecs = self.vectors(state)
                    if self.index is None:
                        pending[0].append(np.full(len(vecs), item, np.int64))
                        pending[1].append(vecs)
                    else:
                        self.index.add(np.full(len(vecs), item, np.int64), vecs)
            if self.index is None and sum(map(len, pending[0])) >= TRAINING_VECTORS:
                self._index_start(pending)
        if self.index is None:
            self._index_start(pending)

    def _index_start(self, pending: tuple[list, list]) -> None:
        vecs = np.vstack(pending[1]) if pending[1] else np.zeros((0, self.scorer.dim), np.float32)
        self.index = VectorIndex(self.scorer.dim, vecs)
        if pending[0]:
            self.index.add(np.concatenate(pending[0]), vecs)

    def index_update(self, chunks: Iterable[list[tuple[int, ItemState, bool]]]) -> None:
        """The changed states in: out of the index and the used states, back in if warm."""
        for chunk in chunks:
            ids = np.array([item for item, _, _ in chunk], np.int64)
            self.index.remove(ids)
            with self.used.lock:
                for item, state, warm in chunk:
                    self.used.drop(item)
                    self.warm_ids.discard(item)
                    if warm and len(state.sizes):
                        self.warm_ids.add(item)
                        vecs = self.vectors(state)
                        self.index.add(np.full(len(vecs), item, np.int64), vecs)



def redis_chunks(r: redis.Redis, run: int, ids: list) -> Iterator[list[tuple[int, ItemState, bool]]]:
    """The states of these items in the serving store, CHUNK at a time (missing ones left out)."""
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        yield [(int(key), *store.unpack_state(raw)) for key, raw in
               zip(chunk, r.hmget(store.items_key(run), chunk), strict=True) if raw is not None]


def postgres_chunks(run: int, ids: Iterable[int] | None = None) -> Iterator[list[tuple[int, ItemState, bool]]]:
    """The states of the run in Postgres (all, or these items'), CHUNK at a time: the durable
    copy of the serving store. Warm: the item's status."""
    rows = LookalikeState.objects.filter(model_run_id=run)
    warm = Item.objects.filter(status=ItemStatus.WARM, lookalike_states__model_run_id=run)
    if ids is not None:
        ids = list(ids)
        rows, warm = rows.filter(item_id__in=ids), warm.filter(pk__in=ids)
    warm = set(warm.values_list("pk", flat=True))
    chunk = []
    for item_id, *fields in rows.values_list("item_id", *LookalikeState.STATE_FIELDS).iterator(chunk_size=CHUNK):
        chunk.append((item_id, LookalikeState.state_from(*fields), item_id in warm))
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class ServingCache:
    """Item states of the active look-alike run, per process."""

    def __init__(self) -> None:
        self._copy = StoreCopy()
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._copy = StoreCopy()

    def sync(self, r: redis.Redis, *, run: int | None | object = _ASK,
             version: bytes | None | object = _ASK) -> StoreCopy:
        """Two Redis round trips when nothing changed, none when the caller read the active
        `run` and its `version` key already (`reader_view` does, in the request's pipeline);
        a full reload only when the run switches (or a copied store outgrows
        FEED_RECALL_ABOVE). Raises RedisError when Redis cannot be reached (see `durable`)."""
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
                full = not copy.version or copy.durable or (
                    copy.index is None and len(copy.states) > settings.FEED_RECALL_ABOVE)
                ids = r.hkeys(store.items_key(run)) if full else \
                    r.zrangebyscore(store.changed_key(run), f"({copy.version}", version)
                chunks = redis_chunks(r, run, ids)
                if full:
                    copy = replace(copy, states={}, durable=False, index=None, warm_ids=set(), used=None)
                    if len(ids) > settings.FEED_RECALL_ABOVE and copy.scorer is not None:
                        copy.index_build(chunks)
                    else:
                        copy.states.update((item, (state, warm)) for chunk in chunks for item, state, warm in chunk)
                elif copy.index is not None:  # the index and the used states are shared, updated in place
                    copy = replace(copy, durable=False)
                    copy.index_update(chunks)
                else:
                    copy = replace(copy, states=dict(copy.states), durable=False)
                    copy.states.update((item, (state, warm)) for chunk in chunks for item, state, warm in chunk)
                copy.version = version
                copy.pad()
            self._copy = copy
            return copy

    def durable(self) -> StoreCopy:
        """The copy to score from while Redis cannot be reached (see `_durable`)."""
        with self._lock:
            return self._durable()

    def _durable(self) -> StoreCopy:
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
        if copy.scorer is not None and LookalikeState.objects.filter(model_run_id=run[0]).count() > \
                settings.FEED_RECALL_ABOVE:
            copy.index_build(postgres_chunks(run[0]))
        else:
            copy.states.update((item, (state, warm)) for chunk in postgres_chunks(run[0])
                               for item, state, warm in chunk)
        copy.durable = True
        copy.pad()
        self._copy = copy
        log.warning("look-alike states of run %s loaded from Postgres (%d warm items): the serving store is not "
                    "available", run[0], len(copy.ids_sorted))
        return copy


def _with_model(run: int, path: str | None) -> StoreCopy:
    """An empty copy for the run with its model (from the registry); on failure one with the error, logged."""
    try:
        if path is None:
            raise ArtifactError(f"model run {run} is not in the database")
        return StoreCopy(run=run, scorer=lookalike_scorer(run, path))
    except ArtifactError as exc:
        log.error("look-alike model of run %s not loaded, warm stories are scored by the cold-start model: %s",
                  run, exc)
        return StoreCopy(run=run, error=str(exc), failed_at=time.monotonic())



cache = ServingCache()
registry.on_clear(cache.clear)  # the copy holds a model: forgotten with it
