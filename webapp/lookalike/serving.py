"""Look-alike scoring on the hot path: no Postgres. The reader's E_u comes from Redis; item
states from a per-process copy of the serving store, kept in step with Redis by the run's
version key (only the items written since the copy's version are fetched)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
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


class ServingCache:
    """Item states of the active look-alike run, per process."""

    def __init__(self) -> None:
        self._copy = _Copy()
        self._lock = threading.Lock()

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
                ids = r.zrangebyscore(store.changed_key(run), f"({copy.version}", version) if copy.version else \
                    r.hkeys(store.items_key(run))
                for start in range(0, len(ids), 2000):
                    chunk = ids[start:start + 2000]
                    for key, raw in zip(chunk, r.hmget(store.items_key(run), chunk), strict=True):
                        if raw is not None:
                            copy.states[int(key)] = store.unpack_state(raw)
                copy.version = version
            self._copy = copy
            return copy


cache = ServingCache()


def lookalike_scores(*, reader_id: int, item_ids: list[int], r: redis.Redis | None = None) -> dict[int, float]:
    """RALM logits of the reader for the *warm* items among `item_ids` that have a state
    (cold items, and everything when no model serves, are left out)."""
    r = r or store.client()
    copy = cache.sync(r)
    e_u = store.reader_vector_get(reader_id=reader_id, r=r)
    if copy.scorer is None or e_u is None:
        return {}
    warm = [(i, copy.states[i][0]) for i in item_ids if i in copy.states and copy.states[i][1]]
    if not warm:
        return {}
    cents, sizes, mask = pad_states([(s.centroids, s.sizes) for _, s in warm], copy.scorer.k, copy.scorer.dim)
    e_global = np.stack([s.e_global for _, s in warm])
    scores = copy.scorer.score(e_u.astype(np.float64), cents, sizes, mask, e_global)
    return {i: float(v) for (i, _), v in zip(warm, scores, strict=True)}
