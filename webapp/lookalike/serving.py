"""Look-alike scoring on the hot path: no Postgres. The reader's E_u comes from Redis; item
states from a per-process copy of the serving store, kept in step with Redis by the run's
version key (only the items written since the copy's version are fetched).

A serving store of up to FEED_RECALL_ABOVE states is copied whole, padded once per version,
and a request scores its candidates in place. A larger one is not held by any web process:
the copy keeps the warm items' ids and a compressed index of their E_global
(recsys.recall.VectorIndex, for recall: `ReaderView.recall`), and a request fetches the states
of its candidates (at most about a thousand) from Redis, through a bounded per-process slab of
the most recently used ones (STATE_CACHE_ITEMS).

Without the serving store the scores come from the durable copy: the process's last copy
of the item states (or, for a process that never had one, the active run's LookalikeState
rows from Postgres) and the reader's vector from Postgres (ReaderVector). While Redis cannot
be reached the request is marked degraded (webapp.common.degraded); the next request after Redis
returns uses it again. When Redis answers but lost its data (a restart: ours keeps nothing
on disk) the scores are the same from Postgres, not degraded, until the next refresh
rebuilds the store (workers.tasks.refresh_seeds). A look-alike model whose artifact cannot
be loaded scores nothing (the ranker's cold-start model scores every story, degraded), is
logged, and is tried again after a minute.

The feed's "readers like you" line rests on a test that holds for the reader or is not made
(webapp.lookalike.closeness, `WarmScores.why`): the reader is close to a seed cluster of the story when
their leaning's cosine to its centroid's beats a bar calibrated on a fixed sample of readers,
so that few readers pass by chance. The sample is read from Postgres once per run and process;
a story's bars are set once per process for each set of centroids it has.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import redis
from django.conf import settings

from recsys.artifacts import ArtifactError, load_lookalike
from recsys.clustering import pad_states
from recsys.recall import VectorIndex, unit_rows
from recsys.serving import ItemState, LookalikeScorer
from webapp.common import degraded
from webapp.common.connections import redis_client
from webapp.lookalike import store
from webapp.lookalike.closeness import Reference, Why, closeness_bars, reference_readers, why_from
from webapp.lookalike.models import LookalikeState, ModelKind, ModelRun, ReaderVector
from webapp.news.models import Item, ItemStatus

log = logging.getLogger(__name__)
RETRY_BROKEN_MODEL_SECONDS = 60.0  # a run whose model failed to load is tried again after this
_ASK = object()  # "not read by the caller: ask Redis"
STATE_CACHE_ITEMS = 20_000  # states a process keeps of a store too large to copy (100 MB at k = 20, h = 64)
TRAINING_VECTORS = 60_000  # vectors the recall index is trained on (the first ones read)
CHUNK = 2000  # states per Redis or Postgres read
BARS_KEPT = 2 * STATE_CACHE_ITEMS  # items whose bars a process keeps


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
    # A store larger than FEED_RECALL_ABOVE: the recall index and the states last used, no padded arrays.
    index: VectorIndex | None = None
    warm_ids: set[int] = field(default_factory=set)
    used: _Slab | None = None
    # The "readers like you" test: its reference readers, and each item's bars with a digest of
    # the centroids they were set for. Both dicts are per run and shared by every version's copy,
    # so a refresh that leaves a story's centroids as they were keeps its bars.
    reference: dict[str, Reference] = field(default_factory=dict)
    bars: dict[int, tuple[bytes, np.ndarray]] = field(default_factory=dict)

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

    def closeness_for(self, item_id: int, cents: np.ndarray) -> tuple[Reference, np.ndarray]:
        """The reference readers and the item's closeness bars (`closeness_bars`) for its
        centroids `cents` (k, h), computed at the first "why" that meets these centroids. The
        reference readers are read from Postgres at the run's first "why" in this process (a
        lost connection is the request's, as for its other database work)."""
        reference = self.reference.get("readers")
        if reference is None:
            reference = self.reference["readers"] = reference_readers(self.scorer)
        digest = hashlib.blake2b(np.ascontiguousarray(cents).tobytes(), digest_size=16).digest()
        kept = self.bars.get(item_id)
        if kept is not None and kept[0] == digest:
            return reference, kept[1]
        if len(self.bars) >= BARS_KEPT:  # items gone or changed long ago: start again
            self.bars.clear()
        bars = closeness_bars(reference, cents)
        self.bars[item_id] = (digest, bars)
        return reference, bars

    @staticmethod
    def vectors(state: ItemState) -> np.ndarray:
        """What the recall index holds of an item: its E_global, unit length. (The nearest of
        its centroids as well finds the items RALM scores highest far less often: the local
        attention mixes the centroids, it does not pick one; docs/scaling.md.)"""
        return unit_rows(state.e_global[None])

    def index_build(self, chunks: Iterable[list[tuple[int, ItemState, bool]]]) -> None:
        """The recall index of every warm state in `chunks`, trained on the first vectors read."""
        self.index, self.warm_ids, pending = None, set(), ([], [])
        self.used = _Slab(STATE_CACHE_ITEMS, self.scorer.k, self.scorer.dim)
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


class _Slab:
    """The states a process last used of a store too large to copy, padded in place: at most
    `capacity` items, the least recently used one's slot going to the next. The arrays are
    allocated whole but their pages are only taken as slots fill."""

    def __init__(self, capacity: int, k: int, dim: int) -> None:
        self.k = k
        self.cents = np.zeros((capacity, k, dim), np.float32)
        self.sizes = np.zeros((capacity, k), np.float32)
        self.mask = np.zeros((capacity, k), bool)
        self.e_global = np.zeros((capacity, dim), np.float32)
        self.slot: OrderedDict[int, int] = OrderedDict()
        self.free = list(range(capacity - 1, -1, -1))
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.slot)

    def put(self, item: int, state: ItemState) -> int:
        """The lock held: the item's state in a slot (a free one, else the least recently used)."""
        slot = self.slot.pop(item, None)
        if slot is None:
            slot = self.free.pop() if self.free else self.slot.popitem(last=False)[1]
        n = min(len(state.sizes), self.k)
        self.cents[slot], self.sizes[slot], self.mask[slot] = 0.0, 0.0, False
        self.cents[slot, :n], self.sizes[slot, :n], self.mask[slot, :n] = state.centroids[:n], state.sizes[:n], True
        self.e_global[slot] = state.e_global
        self.slot[item] = slot
        return slot

    def drop(self, item: int) -> None:
        """The lock held."""
        slot = self.slot.pop(item, None)
        if slot is not None:
            self.free.append(slot)


def _redis_chunks(r: redis.Redis, run: int, ids: list) -> Iterator[list[tuple[int, ItemState, bool]]]:
    """The states of these items in the serving store, CHUNK at a time (missing ones left out)."""
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        yield [(int(key), *store.unpack_state(raw)) for key, raw in
               zip(chunk, r.hmget(store.items_key(run), chunk), strict=True) if raw is not None]


def _postgres_chunks(run: int, ids: Iterable[int] | None = None) -> Iterator[list[tuple[int, ItemState, bool]]]:
    """The states of the run in Postgres (all, or these items'), CHUNK at a time: the durable
    copy of the serving store. Warm: the item's status."""
    rows = LookalikeState.objects.filter(model_run_id=run)
    warm = Item.objects.filter(status=ItemStatus.WARM, lookalike_states__model_run_id=run)
    if ids is not None:
        ids = list(ids)
        rows, warm = rows.filter(item_id__in=ids), warm.filter(pk__in=ids)
    warm = set(warm.values_list("pk", flat=True))
    chunk = []
    for item_id, k, dim, cents, sizes, e_global in rows.values_list(
            "item_id", "k", "dim", "centroids", "cluster_sizes", "global_embedding").iterator(chunk_size=CHUNK):
        chunk.append((item_id, ItemState(np.frombuffer(bytes(cents), "<f4").reshape(k, dim),
                                         np.asarray(sizes, np.float32), np.frombuffer(bytes(e_global), "<f4")),
                      item_id in warm))
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


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
                chunks = _redis_chunks(r, run, ids)
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
        if copy.scorer is not None and LookalikeState.objects.filter(model_run_id=run[0]).count() > \
                settings.FEED_RECALL_ABOVE:
            copy.index_build(_postgres_chunks(run[0]))
        else:
            copy.states.update((item, (state, warm)) for chunk in _postgres_chunks(run[0])
                               for item, state, warm in chunk)
        copy.durable = True
        copy.pad()
        self._copy = copy
        log.warning("look-alike states of run %s loaded from Postgres (%d warm items): the serving store is not "
                    "available", run[0], len(copy.ids_sorted))
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
    degraded.note(f"redis unreachable ({exc.__class__.__name__}): look-alike scores from the durable copy",
                  kind=degraded.REDIS)
    return cache.durable()


@dataclass
class WarmScores:
    """RALM logits of one reader for the warm candidates among some item ids."""

    item_ids: np.ndarray  # (W,) the warm ones, in the order asked
    logits: np.ndarray  # (W,)
    rows: np.ndarray  # (W,) rows into `cents`, `sizes` and `mask` (for `why`)
    scorer: LookalikeScorer | None = None
    e_u: np.ndarray | None = None
    cents: np.ndarray | None = None  # (R, k, h) the padded states the logits came from
    sizes: np.ndarray | None = None
    mask: np.ndarray | None = None
    copy: _Copy | None = None  # the serving copy they came from (its closeness bars)
    leaning: np.ndarray | None = field(default=None, repr=False)  # the reader's (`Reference`), at the first why

    def as_dict(self) -> dict[int, float]:
        return {int(i): float(v) for i, v in zip(self.item_ids, self.logits, strict=True)}

    def why(self, item_id: int) -> Why | None:
        """What the reader's "why" line may claim of a scored item: its seeds, and those in the
        clusters the reader is close to by the story's calibrated test (`closeness_bars`).
        Computed only for the page's stories: one (k, h) product each (`why_of`'s, with the
        reader's leaning computed once), the bars once per process for the story's centroids."""
        found = np.flatnonzero(self.item_ids == item_id)
        if self.scorer is None or self.e_u is None or self.copy is None or not len(found):
            return None
        n = int(self.rows[found[0]])
        keep = self.mask[n]
        cents = self.cents[n][keep]  # as stored (float32): the digest reads half the bytes
        reference, bars = self.copy.closeness_for(item_id, cents)
        if self.leaning is None:
            self.leaning = reference.leanings(self.scorer.transform(np.asarray(self.e_u, np.float64)))
        return why_from(reference.leanings(cents) @ self.leaning > bars, self.sizes[n][keep])


NO_SCORES = WarmScores(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64))


@dataclass
class ReaderView:
    """One reader against the serving copy of one request: their E_u read once for the
    recall and the scores."""

    copy: _Copy | None = None
    e_u: np.ndarray | None = None
    r: redis.Redis | None = None

    @property
    def usable(self) -> bool:
        return self.copy is not None and self.copy.scorer is not None and self.e_u is not None \
            and bool(len(self.copy.ids_sorted))

    def recall(self, n: int) -> np.ndarray:
        """The ids of (about) the n warm items RALM scores highest for the reader: through the
        recall index when the store is too large to copy, else by scoring every copied one."""
        if not self.usable or n < 1:
            return np.zeros(0, np.int64)
        copy = self.copy
        if copy.index is not None:
            return copy.index.search(unit_rows(copy.scorer.transform(self.e_u.astype(np.float64))), n)
        logits = copy.scorer._score(self.e_u.astype(np.float64), copy.cents, copy.sizes, copy.mask, copy.e_global)
        best = np.argsort(-logits, kind="stable")[:n]
        return copy.ids_sorted[np.argsort(copy.rows_sorted)][best]

    def scores(self, item_ids: np.ndarray) -> WarmScores:
        """RALM logits for the warm items among `item_ids` that have a state."""
        if not self.usable:
            return NO_SCORES
        copy = self.copy
        ids = np.asarray(item_ids, np.int64)
        pos = np.minimum(np.searchsorted(copy.ids_sorted, ids), len(copy.ids_sorted) - 1)
        keep = copy.ids_sorted[pos] == ids
        ids, rows = ids[keep], copy.rows_sorted[pos[keep]]
        if not len(ids):
            return NO_SCORES
        e_u = self.e_u.astype(np.float64)  # the reader side in float64, the centroids' side in their float32
        if copy.index is not None:
            ids, cents, sizes, mask, e_global = self._states(ids)
            logits = copy.scorer._score(e_u, cents, sizes, mask, e_global)
            return WarmScores(ids, logits, np.arange(len(ids)), copy.scorer, e_u, cents, sizes, mask, copy)
        if 2 * len(rows) >= len(copy.row):
            # Most warm items are candidates: score them all in place rather than copy megabytes of centroids.
            logits = copy.scorer._score(e_u, copy.cents, copy.sizes, copy.mask, copy.e_global)[rows]
        else:
            logits = copy.scorer._score(e_u, copy.cents[rows], copy.sizes[rows], copy.mask[rows], copy.e_global[rows])
        return WarmScores(ids, logits, rows, copy.scorer, e_u, copy.cents, copy.sizes, copy.mask, copy)

    def _states(self, ids: np.ndarray) -> tuple[np.ndarray, ...]:
        """The items' padded states (ids that have one, centroids, sizes, mask, E_global): the
        process's used ones, the rest fetched (from Redis, or from Postgres without it). The
        fetch runs under the used states' lock, so a sync that drops a changed item's state
        cannot be undone by a fetch that read it before."""
        copy, used = self.copy, self.copy.used
        with used.lock:
            slots, missing = {}, []
            for i in ids.tolist():
                slot = used.slot.get(i)
                if slot is None:
                    missing.append(i)
                else:
                    used.slot.move_to_end(i)
                    slots[i] = slot
            if missing:
                fetched = None
                if not copy.durable and self.r is not None:
                    try:
                        fetched = [c for chunk in _redis_chunks(self.r, copy.run, missing) for c in chunk]
                    except redis.RedisError as exc:
                        _redis_down(exc)
                if fetched is None:
                    fetched = [c for chunk in _postgres_chunks(copy.run, missing) for c in chunk]
                # A request never evicts its own states: beyond the slab's room only the first are scored.
                fetched = fetched[:max(len(used.cents) - len(slots), 0)]
                for item, state, _warm in fetched:
                    slots[item] = used.put(item, state)
            have = np.array([i for i in ids.tolist() if i in slots], np.int64)
            at = np.array([slots[i] for i in have.tolist()], np.int64)
            return have, used.cents[at], used.sizes[at], used.mask[at], used.e_global[at]


def reader_view(*, reader_id: int, r: redis.Redis | None = None,
                pointers: store.Pointers | None = None) -> ReaderView:
    """The reader's E_u and the serving copy, for `ReaderView.recall` and `.scores`.
    `pointers`: the serving runs as the request read them (`store.pointers_get`); then the
    state version and the reader's vector come in one round trip. An empty view (no scores)
    when no model serves or the reader has no vector."""
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
        degraded.note(f"look-alike model unusable: {copy.error}", kind=degraded.LOOKALIKE_MODEL)
    if copy.scorer is None or not len(copy.ids_sorted):
        return ReaderView()
    try:
        e_u = _durable_vector(reader_id) if copy.durable else \
            vector[0] if vector else store.reader_vector_get(reader_id=reader_id, r=r)
    except redis.RedisError as exc:
        copy, e_u = _redis_down(exc), _durable_vector(reader_id)
    return ReaderView(copy, e_u, r)


def warm_scores(*, reader_id: int, item_ids: np.ndarray, r: redis.Redis | None = None,
                pointers: store.Pointers | None = None) -> WarmScores:
    """RALM logits of the reader for the warm items among `item_ids` that have a state (cold
    items, and everything when no model serves or the reader has no vector, are left out)."""
    return reader_view(reader_id=reader_id, r=r, pointers=pointers).scores(item_ids)


def lookalike_scores(*, reader_id: int, item_ids: list[int], r: redis.Redis | None = None) -> dict[int, float]:
    """RALM logits of the reader for the *warm* items among `item_ids` that have a state."""
    return warm_scores(reader_id=reader_id, item_ids=np.asarray(item_ids, np.int64), r=r).as_dict()
