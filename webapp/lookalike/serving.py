"""Look-alike scoring on the hot path: no Postgres. The reader's E_u comes from Redis; item
states from a per-process copy of the serving store, kept in step with Redis by the run's
version key (only the items written since the copy's version are fetched)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import redis

from recsys.artifacts import load_lookalike
from recsys.clustering import pad_states
from recsys.serving import ItemState, LookalikeScorer
from webapp.lookalike import store
from webapp.lookalike.models import ModelRun


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

    def pad(self) -> None:
        warm = [(i, s) for i, (s, w) in self.states.items() if w and len(s.sizes)]
        self.row = {i: n for n, (i, _) in enumerate(warm)}
        ids = np.array([i for i, _ in warm], np.int64)
        order = np.argsort(ids)
        self.ids_sorted, self.rows_sorted = ids[order], order.astype(np.int64)
        if self.scorer is None:
            return
        cents, sizes, mask = pad_states([(s.centroids, s.sizes) for _, s in warm], self.scorer.k, self.scorer.dim)
        self.cents, self.sizes, self.mask = cents.astype(np.float64), sizes, mask
        self.e_global = np.stack([s.e_global for _, s in warm]).astype(np.float64) if warm else \
            np.zeros((0, self.scorer.dim))


class ServingCache:
    """Item states of the active look-alike run, per process."""

    def __init__(self) -> None:
        self._copy = _Copy()
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._copy = _Copy()

    def sync(self, r: redis.Redis) -> _Copy:
        """Two Redis round trips when nothing changed; a full reload only when the run switches."""
        run = store.active_lookalike_get(r=r)
        with self._lock:
            copy = self._copy
            if run is None:
                self._copy = _Copy()
                return self._copy
            if run != copy.run:
                # A new run: its model (loaded once) and every item state under it.
                path = ModelRun.objects.values_list("artifact_path", flat=True).get(pk=run)
                copy = _Copy(run=run, scorer=LookalikeScorer.from_model(load_lookalike(Path(path))))
            version = int(r.get(store.version_key(run)) or 0)
            if version != copy.version:
                # Copy on write: a request still holding the old copy keeps a consistent one.
                copy = replace(copy, states=dict(copy.states))
                ids = r.zrangebyscore(store.changed_key(run), f"({copy.version}", version) if copy.version else \
                    r.hkeys(store.items_key(run))
                for start in range(0, len(ids), 2000):
                    chunk = ids[start:start + 2000]
                    for key, raw in zip(chunk, r.hmget(store.items_key(run), chunk), strict=True):
                        if raw is not None:
                            copy.states[int(key)] = store.unpack_state(raw)
                copy.version = version
                copy.pad()
            self._copy = copy
            return copy


cache = ServingCache()


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


def warm_scores(*, reader_id: int, item_ids: np.ndarray, r: redis.Redis | None = None) -> WarmScores:
    """RALM logits of the reader for the warm items among `item_ids` that have a state (cold
    items, and everything when no model serves or the reader has no vector, are left out)."""
    r = r or store.client()
    copy = cache.sync(r)
    none = WarmScores(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64))
    if copy.scorer is None or not copy.row:
        return none
    e_u = store.reader_vector_get(reader_id=reader_id, r=r)
    if e_u is None:
        return none
    ids = np.asarray(item_ids, np.int64)
    pos = np.minimum(np.searchsorted(copy.ids_sorted, ids), len(copy.ids_sorted) - 1)
    keep = copy.ids_sorted[pos] == ids
    ids, rows = ids[keep], copy.rows_sorted[pos[keep]]
    if not len(ids):
        return none
    e_u = e_u.astype(np.float64)
    if 2 * len(rows) >= len(copy.row):
        # Most warm items are candidates: score them all in place rather than copy megabytes of centroids.
        logits = copy.scorer._score(e_u, copy.cents, copy.sizes, copy.mask, copy.e_global)[rows]
    else:
        logits = copy.scorer._score(e_u, copy.cents[rows], copy.sizes[rows], copy.mask[rows], copy.e_global[rows])
    return WarmScores(ids, logits, rows, copy, e_u)


def lookalike_scores(*, reader_id: int, item_ids: list[int], r: redis.Redis | None = None) -> dict[int, float]:
    """RALM logits of the reader for the *warm* items among `item_ids` that have a state."""
    return warm_scores(reader_id=reader_id, item_ids=np.asarray(item_ids, np.int64), r=r).as_dict()
