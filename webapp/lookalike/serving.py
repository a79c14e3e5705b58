"""The reader view: one reader's RALM logits on the hot path, with no Postgres. The reader's
E_u comes from Redis, the item states from the process's copy of the serving store
(webapp.lookalike.storecopy); while Redis cannot be reached, both from Postgres
(webapp.lookalike.outage). When Redis answers but lost its data (a restart: ours keeps
nothing on disk) the scores are the same from Postgres, not degraded, until the next refresh
rebuilds the store (workers.tasks.refresh_seeds). A look-alike model that cannot be loaded
scores nothing: the ranker's cold-start model scores every story, degraded.

The feed's "readers like you" line rests on a test that holds for the reader or is not made
(webapp.lookalike.closeness, `WarmScores.why`): the reader is close to a seed cluster of the story when
their leaning's cosine to its centroid's beats a bar calibrated on a fixed sample of readers,
so that few readers pass by chance. The sample is read from Postgres once per run and process;
a story's bars are set once per process for each set of centroids it has.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import redis

from recsys.recall import unit_rows
from recsys.serving import LookalikeScorer
from webapp.common import degraded
from webapp.common.connections import redis_client
from webapp.lookalike import store
from webapp.lookalike.closeness import Why, why_from
from webapp.lookalike.outage import durable_vector, outage, redis_down
from webapp.lookalike.storecopy import StoreCopy, cache, postgres_chunks, redis_chunks


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
    copy: StoreCopy | None = None  # the serving copy they came from (its closeness bars)
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
        reference, bars = self.copy.closeness.closeness_for(self.scorer, item_id, cents)
        if self.leaning is None:
            self.leaning = reference.leanings(self.scorer.transform(np.asarray(self.e_u, np.float64)))
        return why_from(reference.leanings(cents) @ self.leaning > bars, self.sizes[n][keep])


NO_SCORES = WarmScores(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64))


@dataclass
class ReaderView:
    """One reader against the serving copy of one request: their E_u read once for the
    recall and the scores."""

    copy: StoreCopy | None = None
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
        logits = copy.scorer.score_unchecked(self.e_u.astype(np.float64), copy.cents, copy.sizes, copy.mask,
                                             copy.e_global)
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
            logits = copy.scorer.score_unchecked(e_u, cents, sizes, mask, e_global)
            return WarmScores(ids, logits, np.arange(len(ids)), copy.scorer, e_u, cents, sizes, mask, copy)
        if 2 * len(rows) >= len(copy.row):
            # Most warm items are candidates: score them all in place rather than copy megabytes of centroids.
            logits = copy.scorer.score_unchecked(e_u, copy.cents, copy.sizes, copy.mask, copy.e_global)[rows]
        else:
            logits = copy.scorer.score_unchecked(e_u, copy.cents[rows], copy.sizes[rows], copy.mask[rows],
                                                 copy.e_global[rows])
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
                        fetched = [c for chunk in redis_chunks(self.r, copy.run, missing) for c in chunk]
                    except redis.RedisError as exc:
                        redis_down(exc)
                if fetched is None:
                    fetched = [c for chunk in postgres_chunks(copy.run, missing) for c in chunk]
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
        copy = redis_down(exc)
    if copy.error is not None:
        degraded.note(f"look-alike model unusable: {copy.error}", kind=degraded.LOOKALIKE_MODEL)
    if copy.scorer is None or not len(copy.ids_sorted):
        return ReaderView()
    try:
        e_u = durable_vector(reader_id) if copy.durable else \
            vector[0] if vector else store.reader_vector_get(reader_id=reader_id, r=r)
    except redis.RedisError as exc:
        copy, e_u = redis_down(exc), durable_vector(reader_id)
    return ReaderView(copy, e_u, r)

