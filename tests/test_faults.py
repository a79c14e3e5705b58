"""Fault tolerance, with the real parts failing: a private Redis server stopped and started
again under a running web process, Postgres connections of a running web process
terminated, a real Celery worker killed in the middle of a refresh, two refresh runs on two
real workers at once, broken model artifacts under the feed.

The shared Redis (127.0.0.1:6379) and Postgres are never stopped: the Redis that fails is a
`redis-server` of this test's own on a free port, and only this test's connections and
processes are terminated."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import OperationalError, connection, transaction
from django.db.models import Q
from django.test import override_settings
from django.utils import timezone

from tests.factories import ItemFactory, ReaderFactory, items_to_refresh
from tests.procs import PrivateRedis, free_port, wait_for
from webapp.common.connections import redis_client
from webapp.common.db import connection_lost
from webapp.common.locks import job_lock_key
from webapp.feed import ranking, selectors, services
from webapp.lookalike import registry, store
from webapp.lookalike.models import LookalikeState, ModelKind, ModelRun, ReaderVector, SeedSet
from webapp.lookalike.refresh import serving_store_heal
from webapp.news.models import Click, Impression, Item, ItemStatus, Reader, Source
from workers.celery import app

CELERY = [sys.executable, "-m", "celery", "-A", "workers"]
WORKER = ["worker", "--pool", "solo", "--without-mingle", "--without-gossip", "--prefetch-multiplier", "1",
          "--loglevel", "INFO"]
N = 3000  # items of the refresh that is killed or run twice: a few seconds of work
# A page of every candidate, so the warm stories (and their RALM scores) are always on it.
WHOLE_PAGE = {"FEED_MAX_LIMIT": "400"}


# --- fixtures and helpers -------------------------------------------------------------------

@pytest.fixture
def small_trained(trained):
    """The `trained` world where every item with a look-alike state is warm, so RALM scores
    show on the pages."""
    look = ModelRun.objects.get(kind=ModelKind.LOOKALIKE, is_active=True)
    Item.objects.filter(lookalike_states__model_run=look).update(status=ItemStatus.WARM)
    call_command("rebuild_serving_store", verbosity=0)


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path)
    yield server
    if server.proc is not None:
        server.stop()


def _http(url: str, body: dict | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _json(url: str, body: dict | None = None) -> tuple[int, dict]:
    status, raw = _http(url, body)
    return status, json.loads(raw)


def _answers(url: str) -> bool:
    try:
        _http(url)
        return True
    except OSError:
        return False


def _web(spawn, env: dict[str, str]) -> str:
    """The web process as the Procfile runs it (gunicorn, threads), on a free port."""
    port = free_port()
    spawn([sys.executable, "-m", "gunicorn", "webapp.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1",
           "--threads", "2", "--timeout", "60", "--no-control-socket"], env)
    base = f"http://127.0.0.1:{port}"
    assert wait_for(lambda: _answers(f"{base}/healthz"), timeout=60), "the web process never answered"
    return base


def _ralm(page: dict) -> dict[int, float]:
    """Item id -> RALM logit of the page's stories scored by the look-alike model."""
    return {e["item"]["id"]: e["score_parts"]["ralm_logit"] for e in page["items"]
            if e["score_parts"].get("ralm_logit") is not None}


def _refresh_lock_holders(job: str) -> int:
    """Sessions holding a partition's lock of the refresh job (workers.tasks)."""
    parts = settings.LOOKALIKE_REFRESH_PARTITIONS
    return sum(_lock_holders(f"{job}:{n}/{parts}" if parts > 1 else job) for n in range(parts))


def _lock_holders(name: str) -> int:
    """Sessions holding the job's advisory lock in the test database."""
    classid, objid = job_lock_key(name)
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND classid::bigint = %s AND objid::bigint = %s"
                    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                    [classid, objid & 0xFFFFFFFF])
        return cur.fetchone()[0]


def _consistent(items: list[Item]) -> None:
    """Every item has its state under the active run in Postgres, and Redis holds the same."""
    run = ModelRun.objects.get(kind=ModelKind.LOOKALIKE, is_active=True)
    rows = {s.item_id: s for s in LookalikeState.objects.filter(model_run=run, item__in=items)}
    assert len(rows) == len(items)
    r = redis_client()
    for item in items[:: max(1, len(items) // 300)]:
        state, _ = store.unpack_state(r.hget(store.items_key(run.pk), str(item.pk)))
        assert bytes(rows[item.pk].centroids) == np.asarray(state.centroids, "<f4").tobytes()
        assert rows[item.pk].seed_count == 200


# --- 1. Redis stopped while serving -----------------------------------------------------------

def test_redis_down_the_feed_degrades_keeps_clicks_and_recovers(small_trained, celery_env, spawn, private_redis):
    """A web process on a Redis of its own; Redis is killed: the JSON feed answers fast, marked
    degraded, RALM still scoring from the durable copy; the HTML feed renders; a click is
    stored in Postgres. Redis comes back (empty, as ours keep nothing on disk): the next
    request is not degraded, and the refresh's heal restores the store from Postgres."""
    private_redis.start()
    with override_settings(REDIS_URL=private_redis.url):
        call_command("rebuild_serving_store", verbosity=0)
    base = _web(spawn, {**celery_env, "REDIS_URL": private_redis.url, **WHOLE_PAGE})
    tower = ModelRun.objects.get(kind=ModelKind.USER_TOWER, is_active=True)
    reader = Reader.objects.filter(source=Source.DEMO, vectors__model_run=tower).order_by("pk").first()
    feed = f"{base}/api/feed?reader={reader.pk}&limit=400"

    status, up = _json(feed)
    assert status == 200 and up["degraded"] is False and up["degraded_reasons"] == []
    assert _ralm(up), "the page should have warm stories scored by RALM"

    private_redis.stop()
    started = time.monotonic()
    status, down = _json(feed)
    assert status == 200 and time.monotonic() - started < 5, "the feed must not wait on a dead Redis"
    assert down["degraded"] is True and len(down["items"]) >= 10
    assert any(r.startswith("redis unreachable") for r in down["degraded_reasons"]), down["degraded_reasons"]
    scored_up, scored_down = _ralm(up), _ralm(down)
    assert scored_down, "RALM keeps scoring from the durable copy"
    shared = set(scored_up) & set(scored_down)
    assert shared and all(abs(scored_up[i] - scored_down[i]) < 1e-3 for i in shared)
    status, html = _http(f"{base}/feed/?reader={reader.pk}")
    assert status == 200 and b'data-degraded="true"' in html and html.count(b'class="card"') >= 5
    assert _http(f"{base}/healthz")[0] == 503

    # A click while Redis is down: stored in Postgres, acknowledged as usual, the reader's
    # vector recomputed into Postgres, the story's seeds marked for the next refresh.
    entry = down["items"][0]
    vector_at = ReaderVector.objects.get(reader=reader, model_run=tower).computed_at
    status, click = _json(f"{base}/api/clicks", {"impression": entry["impression"]})
    assert status == 201 and click["created"] is True, click
    assert Click.objects.filter(impression_id=entry["impression"], reader=reader).count() == 1
    assert SeedSet.objects.get(item_id=entry["item"]["id"]).dirty
    stored = ReaderVector.objects.get(reader=reader, model_run=tower)
    assert stored.computed_at > vector_at
    status, again = _json(f"{base}/api/clicks", {"impression": entry["impression"]})
    assert status == 200 and again["click"] == click["click"]  # a repeated click stays one click

    # Redis returns, empty. Same web process, no restart: the next request is not degraded
    # and RALM scores from Postgres until the refresh rebuilds the store.
    private_redis.start()
    status, back = _json(feed)
    assert status == 200 and back["degraded"] is False and back["degraded_reasons"] == []
    assert _ralm(back)
    status, html = _http(f"{base}/feed/?reader={reader.pk}")
    assert status == 200 and b'data-degraded="false"' in html
    with override_settings(REDIS_URL=private_redis.url):  # what refresh_seeds does first on every beat run
        assert serving_store_heal() is True
        assert serving_store_heal() is False  # once
        in_redis = store.reader_vector_get(reader_id=reader.pk)
    assert np.array_equal(in_redis, np.frombuffer(bytes(stored.vector), "<f4"))  # the outage's click is in
    status, healed = _json(feed)
    assert status == 200 and healed["degraded"] is False and _ralm(healed)


# --- 2. Postgres connections dropped -----------------------------------------------------------

def test_terminated_postgres_connections_the_next_request_succeeds(celery_env, spawn):
    """pg_terminate_backend on every connection of a running web process (persistent
    connections, CONN_MAX_AGE): its next requests, feed, click and page, all succeed."""
    reader = ReaderFactory()
    ItemFactory.create_batch(12)
    name = f"ralm-faults-web-{uuid.uuid4().hex[:8]}"
    base = _web(spawn, {**celery_env, "DATABASE_URL": f"{celery_env['DATABASE_URL']}?application_name={name}"})
    feed = f"{base}/api/feed?reader={reader.pk}&limit=5"
    for _ in range(4):  # its threads open their (persistent) connections
        assert _json(feed)[0] == 200

    def backends() -> set[int]:
        with connection.cursor() as cur:
            cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                        " AND application_name = %s", [name])
            return {pid for (pid,) in cur.fetchall()}

    before = backends()
    assert before, "the web process should keep its connections open"
    with connection.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND application_name = %s", [name])
        assert all(ok for (ok,) in cur.fetchall())
    assert wait_for(lambda: not (backends() & before), timeout=10)

    for _ in range(4):
        status, page = _json(feed)
        assert status == 200 and len(page["items"]) == 5
    status, click = _json(f"{base}/api/clicks", {"impression": page["items"][0]["impression"]})
    assert status == 201 and Click.objects.filter(pk=click["click"]).exists()
    assert _http(f"{base}/feed/?reader={reader.pk}")[0] == 200
    assert backends() and not (backends() & before)  # new connections replaced the terminated ones


def _cut_own_connection() -> None:
    """pg_terminate_backend on this process's connection, from another one."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    db = connection.settings_dict
    with psycopg.connect(dbname=db["NAME"], user=db["USER"], host=db["HOST"], port=db["PORT"],
                         autocommit=True) as other:
        assert other.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()[0]
        assert wait_for(lambda: not other.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchall(),
                        timeout=10)


def test_a_connection_cut_under_a_request_is_replaced_and_the_work_done_once(transactional_db, caplog):
    """Postgres drops the connection while a request is between its statements: the feed's
    read, its page and a click run again on a new connection (not a 500), and the click is
    stored once. Inside a caller's transaction nothing is retried: the error is raised."""
    reader = ReaderFactory()
    ItemFactory.create_batch(12)
    now = timezone.now()
    _cut_own_connection()
    with caplog.at_level(logging.WARNING, logger="webapp.common.db"):
        found, clicked, shown = selectors.reader_with_history(reader_id=reader.pk, now=now)
    assert found == reader and clicked == [] and shown == {}
    assert "the Postgres connection was lost" in caplog.text
    _cut_own_connection()
    page = services.feed_build(reader=reader, limit=5)
    assert len(page.entries) == 5 and Impression.objects.filter(reader=reader).count() == 5
    _cut_own_connection()
    result = services.click_record(impression_id=page.entries[0].impression_id)
    assert result.created and Click.objects.filter(impression_id=page.entries[0].impression_id).count() == 1
    _cut_own_connection()
    with pytest.raises(OperationalError), transaction.atomic():
        services.click_record(impression_id=page.entries[1].impression_id)
    assert not Click.objects.filter(impression_id=page.entries[1].impression_id).exists()
    with pytest.raises(OperationalError) as timed_out, transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL statement_timeout = 1")
        cur.execute("SELECT pg_sleep(1)")
    assert not connection_lost(timed_out.value)  # a statement that failed is no lost connection


def test_a_connection_cut_inside_the_clicks_transaction_is_retried(transactional_db):
    """The cut lands inside the click's transaction (its INSERT waits on a lock another
    session holds): the transaction dies with its connection, and the click is stored once,
    on a new connection, instead of a 500."""
    reader = ReaderFactory()
    ItemFactory.create_batch(6)
    entry = services.feed_build(reader=reader, limit=3).entries[0]
    db = connection.settings_dict
    outcome: dict = {}

    def click() -> None:
        try:
            outcome["result"] = services.click_record(impression_id=entry.impression_id)
        except Exception as exc:  # noqa: BLE001 -- reported by the assertion below
            outcome["error"] = exc
        finally:
            connection.close()

    params = {"dbname": db["NAME"], "user": db["USER"], "host": db["HOST"], "port": db["PORT"], "autocommit": True}
    # pg_stat_activity is read outside the lock's transaction, which would keep its first snapshot.
    with psycopg.connect(**params) as blocker, psycopg.connect(**params) as watcher:
        waiting = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        with blocker.transaction():
            blocker.execute("LOCK TABLE news_click IN EXCLUSIVE MODE")
            thread = threading.Thread(target=click)
            thread.start()
            assert wait_for(lambda: watcher.execute(waiting).fetchall(), timeout=10), "the click never waited"
            (pid,), = watcher.execute(waiting).fetchall()
            watcher.execute("SELECT pg_terminate_backend(%s)", [pid])
        thread.join(timeout=30)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].created
    assert Click.objects.filter(impression_id=entry.impression_id).count() == 1


# --- 3. the worker killed mid-refresh ----------------------------------------------------------

def test_worker_killed_mid_refresh_the_next_beat_run_finishes(small_trained, celery_env, spawn, tmp_path):
    """Beat every 2 s, a worker killed (SIGKILL) while it refreshes thousands of states: its
    lock goes with it at once, nothing is half-written, and with a new worker the next beat
    runs finish the work: no dirty seed set left, Postgres and Redis agree. (The Redis lock
    this replaces kept a killed worker's lock for CELERY_TASK_TIME_LIMIT, 300 s.)"""
    items = items_to_refresh(N)
    SeedSet.objects.exclude(item__in=items).update(dirty=True)  # the demo's seeds are due as well
    app.control.purge()  # nothing left in the test broker by another test
    env = {**celery_env, "LOOKALIKE_REFRESH_SECONDS": "2", "PROMOTE_REFRESH_SECONDS": "2",
           "POPULARITY_REFRESH_SECONDS": "3600", "EMBED_REFRESH_SECONDS": "3600",
           "LOOKALIKE_REFRESH_BATCH": str(2 * N), "CELERY_TASK_TIME_LIMIT": "300"}
    worker = spawn([*CELERY, *WORKER, "-n", "first@%h"], env)
    spawn([*CELERY, "beat", "--loglevel", "INFO"], env)
    log = tmp_path / "proc0.log"
    assert wait_for(lambda: any("refresh_states[" in line and "received" in line
                                for line in log.read_text().splitlines()), timeout=90), "no state refresh started"
    assert wait_for(lambda: _refresh_lock_holders("refresh_states") == 1, timeout=30)  # inside (seconds of work)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    assert not any("refresh_states" in line and "succeeded" in line and "'items':" in line  # no partition's run
                   for line in log.read_text().splitlines())
    assert SeedSet.objects.filter(item__in=items, state_dirty=True).count() == N  # killed before it committed
    run = ModelRun.objects.get(kind=ModelKind.LOOKALIKE, is_active=True)
    for raw in redis_client().hmget(store.items_key(run.pk), [str(i.pk) for i in items[:300]]):
        assert raw is None or store.unpack_state(raw)[0].centroids.shape[1] == 16  # each state whole, or none
    assert wait_for(lambda: _refresh_lock_holders("refresh_states") == 0, timeout=10), "the dead worker's lock stayed"

    started = time.monotonic()
    spawn([*CELERY, *WORKER, "-n", "second@%h"], env)
    assert wait_for(lambda: not SeedSet.objects.filter(Q(dirty=True) | Q(state_dirty=True)).exists(),
                    timeout=120), "the next beat runs did not finish the work"
    print(f"work finished {time.monotonic() - started:.1f} s after the new worker started")
    _consistent(items)
    assert all(s.count == len(s.seed_reader_ids or []) for s in SeedSet.objects.all())


# --- 4. two refresh runs at once -----------------------------------------------------------------

def test_two_refresh_runs_at_once_one_skips_and_the_state_is_consistent(small_trained, celery_env, spawn, tmp_path):
    """Two real workers; a second state refresh of the same partition is sent while the first
    is running: it skips (the partition's lock); the other partition's run goes ahead beside
    the first. Each publishes a version of its own, and the states are consistent."""
    items = items_to_refresh(N)
    app.control.purge()
    env = {**celery_env, "LOOKALIKE_REFRESH_BATCH": str(2 * N), "LOOKALIKE_REFRESH_PARTITIONS": "2"}
    spawn([*CELERY, *WORKER, "-n", "one@%h"], env)
    spawn([*CELERY, *WORKER, "-n", "two@%h"], env)
    logs = [tmp_path / "proc0.log", tmp_path / "proc1.log"]
    assert wait_for(lambda: all(" ready." in p.read_text() for p in logs), timeout=90), "workers not ready"
    run = ModelRun.objects.get(kind=ModelKind.LOOKALIKE, is_active=True)
    version = int(redis_client().get(store.version_key(run.pk)) or 0)
    from workers.tasks import refresh_states

    first = refresh_states.delay(part=0)
    assert wait_for(lambda: _lock_holders("refresh_states:0/2") == 1, timeout=60)
    second = refresh_states.delay(part=0)  # the first worker is busy: the other one takes it
    assert second.get(timeout=60) == {"skipped": "another run holds the lock"}
    assert not first.ready(), "the second run should have come while the first was working"
    other = refresh_states.delay(part=1)
    done, done_other = first.get(timeout=120), other.get(timeout=120)
    assert done["items"] + done_other["items"] >= N and not done["remaining"] and not done_other["remaining"]
    assert {done["version"], done_other["version"]} == {version + 1, version + 2}
    assert not SeedSet.objects.filter(state_dirty=True).exists()
    _consistent(items)


# --- 5. missing or corrupt model artifacts -----------------------------------------------------

def _damage(path: Path, how: str) -> None:
    if how == "missing":
        path.unlink()
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(b"not a model at all\n" * 8)


_BASELINE = "ranker models not loaded, the feed falls back to the baseline: cannot load the"
_COLD = "not loaded, warm stories are scored by the cold-start model: cannot load the look-alike model"
BROKEN = [  # (model, file, damage, the ERROR line's words)
    (ModelKind.COLDSTART, "model.joblib", "missing", f"{_BASELINE} cold-start model"),
    (ModelKind.CTR, "model.joblib", "truncated", f"{_BASELINE} CTR model"),
    (ModelKind.COLDSTART, "model.joblib", "garbage", f"{_BASELINE} cold-start model"),
    (ModelKind.LOOKALIKE, "weights.pt", "garbage", _COLD),
    (ModelKind.LOOKALIKE, "config.json", "missing", _COLD),
    (ModelKind.USER_TOWER, "weights.pt", "truncated",
     "vector not recomputed, the user tower cannot be loaded: cannot load the user tower"),
]


def test_a_broken_model_artifact_is_logged_and_the_feed_falls_back(small_trained, client, caplog, settings):
    """For each model, a process that starts with one of its files missing or corrupt: a
    clear ERROR line naming the folder, the feed from the fallback (popularity and freshness
    without the ranker's models, the cold-start model without the look-alike model), never a
    500: the JSON feed, the HTML page and a click all answer."""
    for name, value in WHOLE_PAGE.items():
        setattr(settings, name, int(value))
    tower = ModelRun.objects.get(kind=ModelKind.USER_TOWER, is_active=True)
    reader = Reader.objects.filter(source=Source.DEMO, vectors__model_run=tower).order_by("pk").first()
    healthy = client.get("/api/feed", {"reader": reader.pk, "limit": 400}).json()
    assert healthy["degraded"] is False and healthy["arm"] == settings.FEED_ARM and _ralm(healthy)
    for kind, filename, how, error in BROKEN:
        path = Path(ModelRun.objects.get(kind=kind, is_active=True).artifact_path) / filename
        backup = path.with_name(path.name + ".bak")
        shutil.copyfile(path, backup)
        try:
            _damage(path, how)
            for cache in (ranking.catalogs, ranking.models, registry):  # a process starting now
                cache.clear()
            caplog.clear()
            with caplog.at_level(logging.ERROR):
                resp = client.get("/api/feed", {"reader": reader.pk, "limit": 400})
                assert resp.status_code == 200, (kind, how)
                page = resp.json()
                html = client.get("/feed/", {"reader": reader.pk})
                assert html.status_code == 200 and html.content.count(b'class="card"') >= 5, (kind, how)
                clicked = client.post("/api/clicks", {"impression": page["items"][0]["impression"]},
                                      content_type="application/json")
                assert clicked.status_code == 201, (kind, how)
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            assert any(error in m and str(path.parent) in m for m in errors), (kind, how, errors)
            assert len(page["items"]) >= 10
            if kind in (ModelKind.COLDSTART, ModelKind.CTR):  # popularity and freshness
                assert page["arm"] == "baseline" and page["degraded"] is True, (kind, how)
                assert set(page["items"][0]["score_parts"]) == {"popularity", "recency", "novelty"}
                assert b'data-degraded="true"' in html.content
            elif kind == ModelKind.LOOKALIKE:  # the cold-start model scores every story
                assert page["arm"] == settings.FEED_ARM and page["degraded"] is True and not _ralm(page), how
                assert any(r.startswith("look-alike model unusable") for r in page["degraded_reasons"])
            else:  # the feed does not need the tower; the click is stored, the vector waits
                assert page["arm"] == settings.FEED_ARM and page["degraded"] is False
                assert Click.objects.filter(impression_id=page["items"][0]["impression"]).exists()
        finally:
            shutil.move(backup, path)
