from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
MOVIELENS_SMALL = ROOT.parent / "shared" / "data" / "movielens" / "ml-latest-small"


@pytest.fixture(scope="session", autouse=True)
def _empty_test_redis():
    """The tests' Redis database starts empty: the test database's ids start again at every
    run, so serving-store keys a previous run left (ralm:run:<id>:...) would be taken for
    this run's."""
    import redis

    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    yield


@pytest.fixture
def demo_db(db):
    """The demo corpus and population, loaded through the real command."""
    call_command("load_demo", verbosity=0)


@pytest.fixture
def celery_env(transactional_db) -> dict[str, str]:
    """Environment for processes of ours (web, worker, beat): the test database and the test Redis.
    The broker's queue starts empty: a task an earlier test left queued (a chained task whose
    worker was stopped) would otherwise run in this test's worker."""
    from workers.celery import app

    app.control.purge()
    db = connection.settings_dict
    return {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "REDIS_URL": settings.REDIS_URL, "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def spawn(tmp_path):
    """Start a process of ours; it is stopped (and its log shown on failure) at teardown."""
    procs: list[tuple[subprocess.Popen, Path]] = []

    def start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = tmp_path / f"proc{len(procs)}.log"
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
        procs.append((proc, log))
        return proc

    yield start
    for proc, log in procs:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        sys.stdout.write(f"--- {log.name}\n{log.read_text()[-3000:]}\n")


def wait_for(predicate, timeout: float, every: float = 0.3) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


@pytest.fixture
def trained(transactional_db, settings, tmp_path):
    """The demo world with a short simulated history and small models trained on it, serving
    from Redis; the runs' Redis keys are dropped afterwards."""
    settings.MODEL_DIR = tmp_path / "models"
    call_command("load_demo", verbosity=0)
    call_command("simulate", "--backfill-hours", "12", "--sessions", "900", "--seed", "4", verbosity=0)
    call_command("train", "--stage1-epochs", "3", "--stage2-epochs", "1", "--dim", "16", verbosity=0)
    from webapp.lookalike import store
    from webapp.lookalike.models import ModelRun

    yield
    r = store.client()
    for run in ModelRun.objects.all():
        store.run_drop(run_id=run.pk, r=r)
    r.delete(store.ACTIVE_TOWER_KEY, store.ACTIVE_LOOKALIKE_KEY)


@pytest.fixture(autouse=True)
def _fresh_process_caches():
    """The feed's per-process copies (catalog, models, serving store) start empty in every
    test: test databases are flushed between tests, ids are not reused consistently."""
    from webapp.lookalike import online, serving
    from webapp.news import ranking

    for c in (ranking.catalogs, ranking.models, serving.cache, online.towers):
        c.clear()
    yield
