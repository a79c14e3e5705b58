from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from tests.procs import wait_for  # noqa: F401 (the tests import it from here)
from tests.world import tables_clear, tables_dump, tables_restore

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


@dataclass
class World:
    """A demo world kept once per test session and put back for each test that asks for it:
    its rows (tests.world), the test Redis's keys, the model folder."""

    tables: dict[str, bytes]
    redis: dict[bytes, bytes]
    models: Path | None = None  # the pristine artifacts; tests get a copy at `models_live`
    models_live: Path | None = None

    @classmethod
    def take(cls, *, models: Path | None = None, models_live: Path | None = None) -> World:
        import redis

        tables = tables_dump()
        r = redis.Redis.from_url(settings.REDIS_URL)
        return cls(tables, {k: r.dump(k) for k in r.keys("*")}, models, models_live)

    def restore(self) -> None:
        """The world's rows in place of what the tables hold (inside the test's transaction,
        if it has one), sequences past them; Redis and the model folder as they were."""
        import redis

        tables_restore(self.tables)
        r = redis.Redis.from_url(settings.REDIS_URL)
        r.flushdb()
        for key, value in self.redis.items():
            r.restore(key, 0, value, replace=True)
        if self.models is not None:
            shutil.rmtree(self.models_live, ignore_errors=True)
            shutil.copytree(self.models, self.models_live)


def _world_clear() -> None:
    import redis

    tables_clear()
    redis.Redis.from_url(settings.REDIS_URL).flushdb()


def demo_history(*, sessions: int, hours: float, seed: int, world: str | None = None) -> None:
    """A simulated history of the demo readers over the last `hours`, sessions spread evenly
    over them (the demo's day-and-night curve would make it depend on the hour the tests run)."""
    from django.utils import timezone

    from fixtures.corpus import click_model, load_readers
    from webapp.feed.backfill import history_backfill

    history_backfill(readers=load_readers(), click_model=click_model(world or settings.DEMO_WORLD),
                     hours=hours, sessions=sessions, seed=seed, now=timezone.now(), progress=False,
                     session_hours=np.random.default_rng(seed).uniform(0.0, hours, sessions))


@pytest.fixture(scope="session")
def _demo_world(django_db_setup, django_db_blocker) -> World:
    """The demo corpus and population, loaded once through the real command."""
    with django_db_blocker.unblock():
        _world_clear()
        call_command("load_demo", verbosity=0)
        world = World.take()
        _world_clear()
    return world


@pytest.fixture
def demo_db(_demo_world, db):
    """The demo corpus and population (loaded by `load_demo` once per session)."""
    _demo_world.restore()


@pytest.fixture(scope="session")
def _trained_world(_demo_world, django_db_setup, django_db_blocker, tmp_path_factory) -> World:
    """The demo world with a short simulated history and small models trained on it, serving
    from Redis: built once per session."""
    pristine, live = tmp_path_factory.mktemp("models-pristine"), tmp_path_factory.mktemp("models")
    before = settings.MODEL_DIR
    settings.MODEL_DIR = live
    try:
        with django_db_blocker.unblock():
            _demo_world.restore()
            demo_history(sessions=8000, hours=12, seed=4)
            call_command("train", "--stage1-epochs", "3", "--stage2-epochs", "1", "--dim", "16", verbosity=0)
            shutil.rmtree(pristine)
            shutil.copytree(live, pristine)
            world = World.take(models=pristine, models_live=live)
            _world_clear()
    finally:
        settings.MODEL_DIR = before
    return world


@pytest.fixture
def trained(_trained_world, transactional_db, settings):
    """The demo world with a short simulated history and small models trained on it, serving
    from Redis (trained once per session, restored for each test)."""
    settings.MODEL_DIR = _trained_world.models_live
    _trained_world.restore()
    yield


@pytest.fixture
def celery_env(transactional_db) -> dict[str, str]:
    """Environment for processes of ours (web, worker, beat): the test database and the test Redis.
    The broker's queue starts empty: a task an earlier test left queued (a chained task whose
    worker was stopped) would otherwise run in this test's worker."""
    from workers.celery import app

    app.control.purge()
    db = connection.settings_dict
    return {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "REDIS_URL": settings.REDIS_URL, "MODEL_DIR": str(settings.MODEL_DIR), "PYTHONUNBUFFERED": "1"}


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


@pytest.fixture(autouse=True)
def _fresh_process_caches():
    """The feed's per-process copies (catalog, models, serving store, loaded scorers) start
    empty in every test: test databases are flushed between tests, ids are not reused
    consistently."""
    from webapp.feed.catalog import catalogs
    from webapp.lookalike import registry

    catalogs.clear()
    registry.clear()
    _dashboard_cache_clear()
    yield


def _dashboard_cache_clear() -> None:
    """The dashboard's figures are shared through Redis for half a minute; a test sees its own."""
    import redis
    from django.core.cache import cache

    from webapp.feed.dashboard import CACHE_KEY

    try:
        cache.delete_many([CACHE_KEY, f"{CACHE_KEY}:lock"])
    except redis.RedisError:
        pass
