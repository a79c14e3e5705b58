"""The look-alike refresh with the real Redis broker, real worker and beat processes, and a
model trained on a small demo history."""

from __future__ import annotations

import signal
import sys
import time
import uuid

import numpy as np
from django.utils import timezone

from tests.conftest import wait_for
from tests.factories import items_to_refresh
from webapp.lookalike import store
from webapp.lookalike.models import LookalikeState, ModelKind, ModelRun, SeedSet
from webapp.lookalike.refresh import job_lock, seeds_refresh, states_refresh
from webapp.lookalike.serving import lookalike_scores
from webapp.news import services
from webapp.news.models import Impression, Item, ItemStatus, Reader

CELERY = [sys.executable, "-m", "celery", "-A", "workers"]
N = 8000  # items in the refresh that gets killed


def _click(item: Item, readers: list[Reader]) -> None:
    """Each reader is shown the item (an impression as the feed logs it) and clicks it."""
    for reader in readers:
        shown = Impression.objects.create(reader=reader, item=item, request_id=uuid.uuid4().hex, position=0)
        services.click_record(impression_id=shown.pk, reader_id=reader.pk)


def test_a_new_item_clicked_by_25_readers_turns_warm_and_is_scored_by_ralm(trained, celery_env, spawn):
    period = 2
    env = {**celery_env, "LOOKALIKE_REFRESH_SECONDS": str(period), "PROMOTE_REFRESH_SECONDS": str(period),
           "SEED_THRESHOLD": "20", "MODEL_DIR": str(ModelRun.objects.get(kind="lookalike", is_active=True)
                                                     .artifact_path).rsplit("/", 2)[0]}
    worker = spawn([*CELERY, "worker", "--pool", "solo", "--without-mingle", "--without-gossip",
                    "--loglevel", "INFO"], env)
    spawn([*CELERY, "beat", "--loglevel", "INFO"], env)
    time.sleep(4)  # worker and beat up
    assert worker.poll() is None
    item = Item.objects.create(source="demo", external_id="breaking-001", title="Flood barrier holds on the river",
                               abstract="Engineers said the new gates kept the water out overnight.",
                               category="environment", subcategory="climate", published_at=timezone.now())
    readers = list(Reader.objects.filter(source="demo", vectors__model_run__is_active=True)[:25])
    _click(item, readers)
    clicked = time.monotonic()

    def warm_and_scored() -> bool:
        item.refresh_from_db()
        return item.status == ItemStatus.WARM and item.pk in lookalike_scores(reader_id=readers[0].pk,
                                                                               item_ids=[item.pk])

    assert wait_for(warm_and_scored, timeout=30, every=0.2), "never turned warm and scored"
    elapsed = time.monotonic() - clicked
    print(f"warm and scored by RALM {elapsed:.1f} s after the 25th click (period {period} s)")
    # Within a few beat periods (two, plus the work itself and room for a loaded machine; the
    # default period is a minute, which the 30 s wait above would not see through).
    assert elapsed <= 4 * period + 2.0
    state = LookalikeState.objects.get(item=item, model_run__is_active=True)
    assert state.seed_count == 25 and SeedSet.objects.get(item=item).count == 25


def test_refresh_is_idempotent_and_locked(trained):
    SeedSet.objects.update(dirty=True)
    first = seeds_refresh()
    assert first["items"] > 0 and not first["remaining"]
    assert seeds_refresh() == {"items": 0, "remaining": False}  # nothing left: a second run is a no-op
    states_refresh()
    run = ModelRun.objects.get(kind=ModelKind.LOOKALIKE, is_active=True)
    before = {s.item_id: bytes(s.centroids) for s in LookalikeState.objects.filter(model_run=run)}
    version = int(store.client().get(store.version_key(run.pk)))
    SeedSet.objects.update(state_dirty=True)  # recompute everything: the same state again
    states_refresh()
    after = {s.item_id: bytes(s.centroids) for s in LookalikeState.objects.filter(model_run=run)}
    assert after == before
    assert int(store.client().get(store.version_key(run.pk))) == version + 1
    SeedSet.objects.update(state_dirty=True)
    with job_lock("refresh_states") as held:
        assert held
        from workers.tasks import refresh_states

        assert refresh_states() == {"skipped": "another run holds the lock"}
    assert SeedSet.objects.filter(state_dirty=True).exists()  # untouched while locked


def test_seeds_are_the_latest_clickers_with_a_vector_capped(trained, settings):
    settings.SEED_CAP = 5
    item = Item.objects.filter(source="demo", published_at__isnull=False).first()
    readers = list(Reader.objects.filter(source="demo", vectors__model_run__is_active=True).order_by("pk")[:8])
    _click(item, readers)
    seeds_refresh()
    seeds = SeedSet.objects.get(item=item)
    assert seeds.seed_reader_ids == [r.pk for r in readers[::-1][:5]] and seeds.count == 5 and not seeds.dirty
    assert seeds.state_dirty


def test_killing_the_worker_mid_refresh_leaves_consistent_state(trained, celery_env, spawn, tmp_path):
    """Thousands of items to refresh; the worker is killed while it works; a new worker
    finishes the job, and Redis and Postgres agree on every item."""
    run = ModelRun.objects.get(kind=ModelKind.LOOKALIKE, is_active=True)
    items = items_to_refresh(N)
    env = {**celery_env, "LOOKALIKE_REFRESH_BATCH": str(N)}
    worker = spawn([*CELERY, "worker", "--pool", "solo", "--without-mingle", "--without-gossip",
                    "--loglevel", "INFO"], env)
    time.sleep(4)
    r = store.client()
    version = int(r.get(store.version_key(run.pk)) or 0)
    from workers.tasks import refresh_states

    refresh_states.delay()
    log = sorted(tmp_path.glob("proc*.log"))[-1]
    assert wait_for(lambda: "refresh_states" in log.read_text() and "received" in log.read_text(), timeout=30)
    time.sleep(1.0)  # well inside the job (it takes several seconds for these items)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert "succeeded" not in log.read_text()  # killed while it worked

    def lock_free() -> bool:
        with job_lock("refresh_states") as free:
            return free

    assert wait_for(lock_free, timeout=10)  # the killed holder's lock went with its connection
    # Killed before its transaction committed: the flags are still set, nothing half-written.
    assert SeedSet.objects.filter(state_dirty=True).count() == N
    for raw in r.hmget(store.items_key(run.pk), [str(i.pk) for i in items[:200]]):
        assert raw is None or store.unpack_state(raw)[0].centroids.shape[1] == 16
    spawn([*CELERY, "worker", "--pool", "solo", "--without-mingle", "--without-gossip", "--loglevel", "INFO"], env)
    time.sleep(4)
    refresh_states.delay()
    assert wait_for(lambda: not SeedSet.objects.filter(state_dirty=True).exists(), timeout=120)
    assert int(r.get(store.version_key(run.pk))) > version
    rows = {s.item_id: s for s in LookalikeState.objects.filter(model_run=run, item__in=items)}
    assert len(rows) == N
    for item in items[:300]:
        state, _ = store.unpack_state(r.hget(store.items_key(run.pk), str(item.pk)))
        assert bytes(rows[item.pk].centroids) == np.asarray(state.centroids, "<f4").tobytes()
