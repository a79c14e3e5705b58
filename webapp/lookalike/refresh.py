"""The every-minute refresh: seeds of the items clicked since the last run
(webapp.lookalike.seeds), then their look-alike states (k-means centroids and E_global under
the active model, batched across items), written to Postgres and to the Redis serving store.

Safe to run twice and safe to miss: work is found by flags (SeedSet.dirty, .state_dirty),
taken in bounded batches under `select_for_update(skip_locked)`, optionally of one partition
of the items (workers.tasks fans the runs out), and a Postgres advisory lock (`job_lock`)
keeps two runs of one job's partition from interleaving. Redis is written before the flags
are cleared in the same transaction: a worker killed half-way leaves the flags set, its lock
goes with its connection, and the next run redoes the batch; each item's state is one Redis
value, so no item is ever half-updated there.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, F, When
from django.utils import timezone

from recsys.artifacts import ArtifactError
from recsys.serving import LookalikeScorer
from webapp.common import metrics
from webapp.lookalike import store
from webapp.lookalike.models import LookalikeState, ModelKind, ModelRun, ReaderVector, SeedSet
from webapp.lookalike.registry import lookalike_scorer
from webapp.lookalike.seeds import SEEDS_SQL, Part, seedsets
from webapp.lookalike.selectors import active_run
from webapp.news.models import Item, ItemStatus

log = logging.getLogger(__name__)


# A state whose seeds changed by at most this share (entered plus left, of the seeds) is
# re-clustered from its previous centroids in at most WARM_ITERS Lloyd iterations: a few
# readers move a local optimum a little, and Lloyd's from there reaches the nearby fixed
# point; a larger change is clustered afresh, as a new story is.
WARM_START_SHARE = 0.1
WARM_ITERS = 5


def scorer_for(run: ModelRun) -> LookalikeScorer:
    """The run's look-alike model, loaded once per process (webapp.lookalike.registry)."""
    return lookalike_scorer(run.pk, run.artifact_path)


def _vectors(run: ModelRun, reader_ids: np.ndarray) -> dict[int, np.ndarray]:
    """The readers' vectors under the run. The ids go as one array parameter: an IN list of
    100,000 placeholders costs more to build and parse than the rows cost to read."""
    with connection.cursor() as cur:
        cur.execute(f"SELECT reader_id, vector FROM {ReaderVector._meta.db_table} "  # noqa: S608 (a model's table)
                    "WHERE model_run_id = %s AND reader_id = ANY(%s)", [run.pk, reader_ids.tolist()])
        return {reader_id: ReaderVector.vector_from(raw) for reader_id, raw in cur.fetchall()}


def states_compute(*, items: list[tuple[int, list[int]]], tower: ModelRun, lookalike: ModelRun,
                   init: dict[int, np.ndarray] | None = None, seed: int = 0) -> dict:
    """item id -> ItemState for (item id, seed reader ids) pairs, batched across items; an
    item in `init` is clustered from those centroids (LookalikeScorer.item_states)."""
    scorer = scorer_for(lookalike)
    lengths = np.array([len(seeds) for _, seeds in items], dtype=np.int64)
    flat = np.concatenate([np.asarray(seeds, dtype=np.int64) for _, seeds in items]) if len(items) else \
        np.zeros(0, np.int64)
    readers = np.unique(flat)
    vectors = _vectors(tower, readers)
    known = np.array(sorted(vectors), dtype=np.int64)
    matrix = scorer.transform(np.stack([vectors[r] for r in known]).astype(np.float64)).astype(np.float32) \
        if len(known) else np.zeros((0, scorer.dim), np.float32)
    pos = np.searchsorted(known, flat)
    has = (pos < len(known)) & (known[np.minimum(pos, max(len(known) - 1, 0))] == flat) if len(known) else \
        np.zeros(len(flat), bool)
    owner = np.repeat(np.arange(len(items)), lengths)
    rows = np.split(pos[has], np.cumsum(np.bincount(owner[has], minlength=len(items)))[:-1])
    starts = [init.get(item_id) for item_id, _ in items] if init else None
    states = scorer.item_states(rows, matrix=matrix, init=starts, warm_iters=WARM_ITERS, seed=seed)
    return {item_id: state for (item_id, _), state in zip(items, states, strict=True)}


def states_refresh(*, batch: int | None = None, part: Part | None = None) -> dict:
    """Recompute the look-alike state of up to `batch` items whose seeds changed (of the
    partition `part`), under the active runs; write Redis, then Postgres, then clear their
    flags."""
    batch = batch or settings.LOOKALIKE_REFRESH_BATCH
    tower, lookalike = active_run(kind=ModelKind.USER_TOWER), active_run(kind=ModelKind.LOOKALIKE)
    if tower is None or lookalike is None:
        return {"items": 0, "remaining": False, "skipped": "no active model"}
    try:
        scorer_for(lookalike)
    except ArtifactError as exc:
        log.error("look-alike refresh skipped: %s", exc)
        return {"items": 0, "remaining": False, "skipped": f"model artifact unusable: {exc}"}
    start = time.perf_counter()
    with transaction.atomic():
        rows = list(seedsets(part, state_dirty=True).select_for_update(skip_locked=True)
                    .order_by("item_id").values_list("item_id", "seed_reader_ids", "seeds_changed")[:batch])
        if not rows:
            return {"items": 0, "remaining": False}
        init = _previous_centroids(rows, lookalike=lookalike)
        written = states_write(items=[(i, list(s or [])) for i, s, _ in rows], tower=tower, lookalike=lookalike,
                               init=init)
        # Served as of this batch: nothing waits, unless a click came after the seeds this state
        # was made from (then it waits since at most that seed rebuild).
        SeedSet.objects.filter(item_id__in=[r[0] for r in rows]).update(
            state_dirty=False, seeds_changed=0,
            dirty_since=Case(When(dirty=True, then=F("updated_at")), default=None))
    metrics.refresh_batch(step="states", seconds=time.perf_counter() - start, items=len(rows))
    remaining = seedsets(part, state_dirty=True).exists()
    return {"items": len(rows), "version": written, "warm_started": len(init), "remaining": remaining}


def _previous_centroids(rows: list[tuple[int, list[int], int]], *, lookalike: ModelRun) -> dict[int, np.ndarray]:
    """item id -> its state's centroids under `lookalike`, for the items whose seeds changed
    by at most WARM_START_SHARE since (rows: item id, seed ids, seeds changed)."""
    near = [i for i, seeds, changed in rows if seeds and changed <= WARM_START_SHARE * len(seeds)]
    if not near:
        return {}
    with connection.cursor() as cur:
        cur.execute(f"SELECT item_id, k, dim, centroids FROM {LookalikeState._meta.db_table} "  # noqa: S608 (a model's table)
                    "WHERE model_run_id = %s AND item_id = ANY(%s) AND k > 0", [lookalike.pk, near])
        return {i: np.frombuffer(bytes(c), "<f4").reshape(k, dim) for i, k, dim, c in cur.fetchall()}


def _states_to_redis(states: dict, *, lookalike: ModelRun) -> int:
    warm = set(Item.objects.filter(pk__in=list(states), status=ItemStatus.WARM).values_list("pk", flat=True))
    return store.item_states_write(run_id=lookalike.pk, states={
        i: store.pack_state(s, warm=i in warm) for i, s in states.items()})


_STATES_UPSERT_SQL = """
INSERT INTO lookalike_lookalikestate (item_id, model_run_id, k, dim, centroids, cluster_sizes, global_embedding,
                                      seed_count, computed_at)
SELECT item_id, %(run)s, k, dim, centroids, cluster_sizes, global_embedding, seed_count, %(now)s FROM state_in
ON CONFLICT (item_id, model_run_id) DO UPDATE SET k = EXCLUDED.k, dim = EXCLUDED.dim,
    centroids = EXCLUDED.centroids, cluster_sizes = EXCLUDED.cluster_sizes,
    global_embedding = EXCLUDED.global_embedding, seed_count = EXCLUDED.seed_count, computed_at = EXCLUDED.computed_at
"""


def _states_to_db(states: dict, *, lookalike: ModelRun) -> None:
    """The states as LookalikeState rows: COPY into a temporary table, then one upsert (a
    statement per row costs several times more for thousands of items)."""
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS state_in (item_id bigint, k integer, dim integer, "
                    "centroids bytea, cluster_sizes integer[], global_embedding bytea, seed_count integer) "
                    "ON COMMIT DROP")
        cur.execute("TRUNCATE state_in")
        with cur.copy("COPY state_in FROM STDIN") as copy:
            for i, s in states.items():
                copy.write_row((i, len(s.sizes), len(s.e_global), np.asarray(s.centroids, "<f4").tobytes(),
                                [int(x) for x in s.sizes], np.asarray(s.e_global, "<f4").tobytes(),
                                int(s.sizes.sum())))
        cur.execute(_STATES_UPSERT_SQL, {"run": lookalike.pk, "now": timezone.now()})


def states_write(*, items: list[tuple[int, list[int]]], tower: ModelRun, lookalike: ModelRun,
                 init: dict[int, np.ndarray] | None = None) -> int:
    """Compute and store the states of these items under `lookalike`: Redis first (one value
    per item, published by one version bump), then the durable LookalikeState rows."""
    states = states_compute(items=items, tower=tower, lookalike=lookalike, init=init)
    version = _states_to_redis(states, lookalike=lookalike)
    _states_to_db(states, lookalike=lookalike)
    return version


def serving_switch(*, runs: list[ModelRun], tower: ModelRun, lookalike: ModelRun) -> dict:
    """Make freshly trained runs the serving ones: recompute every item's seeds (readers with
    a vector under the new tower) and state (under the new look-alike model), store them,
    flip the active flags, then write Redis under the new run keys and move both pointers in
    one MULTI. Until that MULTI the old runs keep serving. A Redis outage leaves the new runs
    active in Postgres; `manage.py rebuild_serving_store` brings Redis up to date."""
    with transaction.atomic():
        rows = list(SeedSet.objects.select_for_update().values_list("item_id", flat=True))
        with connection.cursor() as cur:
            cur.execute(SEEDS_SQL, {"run": tower.pk, "items": rows, "cap": settings.SEED_CAP})
            seeds = {i: (list(s), list(at)) for i, s, at in cur.fetchall()}  # ids and their latest clicks
            cur.executemany("UPDATE lookalike_seedset SET seed_reader_ids = %s, seed_clicked_at = %s, count = %s,"
                            " rebuild = false, seeds_changed = 0, dirty = false, state_dirty = false,"
                            " dirty_since = NULL, updated_at = now() WHERE item_id = %s",
                            [(ids, ats, len(ids), i) for i in rows for ids, ats in [seeds.get(i, ([], []))]])
        states = states_compute(items=[(i, s) for i, (s, _) in seeds.items()], tower=tower, lookalike=lookalike) \
            if seeds else {}
        _states_to_db(states, lookalike=lookalike)
        for run in runs:
            ModelRun.objects.filter(kind=run.kind, is_active=True).exclude(pk=run.pk).update(is_active=False)
            ModelRun.objects.filter(pk=run.pk).update(is_active=True)
            run.is_active = True
    try:
        _states_to_redis(states, lookalike=lookalike)
        store.active_runs_set(tower_run=tower.pk, lookalike_run=lookalike.pk)
        redis_ok = True
    except redis.RedisError as exc:
        log.error("serving store not switched (%s): run rebuild_serving_store", exc)
        redis_ok = False
    return {"items": len(states), "redis": redis_ok}


def serving_store_heal() -> bool:
    """Rebuild the Redis serving store if Redis lost it (our Redis keeps nothing on disk, so a
    restart empties it): the active pointers are gone while Postgres has active runs. Until
    then the web scores from the durable copy (webapp.lookalike.serving). True if rebuilt;
    False when there was nothing to do or Redis cannot be reached."""
    try:
        if store.active_tower_get() is not None or active_run(kind=ModelKind.USER_TOWER) is None:
            return False
        log.warning("the Redis serving store is empty (Redis restarted?): rebuilding it from Postgres")
        done = serving_store_rebuild()
    except redis.RedisError as exc:
        log.warning("serving store not checked, Redis unreachable: %s", exc.__class__.__name__)
        return False
    log.warning("serving store rebuilt: %d reader vectors, %d item states", done["readers"], done["items"])
    return True


def serving_store_rebuild() -> dict:
    """Restore Redis from Postgres: the active runs' reader vectors and item states."""
    tower, lookalike = active_run(kind=ModelKind.USER_TOWER), active_run(kind=ModelKind.LOOKALIKE)
    if tower is None:
        return {"readers": 0, "items": 0}
    vectors = ReaderVector.objects.filter(model_run=tower).values_list("reader_id", "vector")
    n_readers = store.reader_vectors_write(run_id=tower.pk, vectors=(
        (r, ReaderVector.vector_from(v)) for r, v in vectors.iterator(chunk_size=5000)))
    n_items = 0
    if lookalike is not None:
        rows = LookalikeState.objects.filter(model_run=lookalike).values_list("item_id", *LookalikeState.STATE_FIELDS)
        states = {item_id: LookalikeState.state_from(*fields) for item_id, *fields in rows.iterator(chunk_size=2000)}
        _states_to_redis(states, lookalike=lookalike)
        n_items = len(states)
    store.active_runs_set(tower_run=tower.pk, lookalike_run=lookalike.pk if lookalike else None)
    return {"readers": n_readers, "items": n_items}
