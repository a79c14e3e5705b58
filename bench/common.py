"""Shared by the benchmarks: the list of them, a throwaway database, the demo world trained as
`make demo` trains it, and results.json where each script updates only its own key.

Tiny mode (BENCH_TINY=1, set by `python bench/run.py --tiny`): every script runs its own code
path at small sizes (`sized`), against databases and a Redis database of its own, and saves
into BENCH_RESULTS instead of bench/results.json, so `make test` runs every benchmark
without touching the committed results."""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
TINY = os.environ.get("BENCH_TINY") == "1"
RESULTS = Path(os.environ.get("BENCH_RESULTS") or ROOT / "bench" / "results.json")
# Redis databases: tests use 15; a full `make bench` 14 (its load test and the closed loop's
# second copy 13); tiny runs 11 and 10; `ab_report --closed-loop` 8 and 9; bench/scale.py 12,
# bench/mind.py 7.
REDIS_URL = "redis://127.0.0.1:6379/11" if TINY else "redis://127.0.0.1:6379/14"
LOAD_REDIS_URL = "redis://127.0.0.1:6379/10" if TINY else "redis://127.0.0.1:6379/13"
sys.path.insert(0, str(ROOT))
T = TypeVar("T")
# Every benchmark, in the order bench/run.py runs them and bench/report.py lists their times.
SCRIPTS = ["bench/importer.py", "bench/refresh.py", "bench/feed.py", "bench/readers.py", "bench/load.py",
           "bench/soak.py", "bench/scale.py", "bench/ab.py", "bench/audience.py", "bench/evaluate.py"]


def sized(full: T, tiny: T) -> T:
    """The benchmark's size: `full` for `make bench`, `tiny` in tiny mode."""
    return tiny if TINY else full


@contextmanager
def scratch_database(name: str = "ralm_feed_bench"):
    """Point Django at a fresh database of its own, migrated; drop it afterwards."""
    import psycopg
    from psycopg import sql

    name = f"{name}_tiny" if TINY else name
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{name}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    with psycopg.connect("dbname=postgres user=postgres host=127.0.0.1", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    import django
    from django.core.management import call_command
    from django.db import connections

    django.setup()
    call_command("migrate", verbosity=0)
    try:
        yield
    finally:
        connections.close_all()
        with psycopg.connect("dbname=postgres user=postgres host=127.0.0.1", autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def demo_world(*, sessions: int, hours: float, seed: int, world: str | None = None):
    """In the scratch database: the demo corpus, `sessions` simulated sessions over the last
    `hours` (through the feed service, as `make demo` writes its history), and the models
    trained on them as `manage.py train` trains them. Returns the seconds of each step and the
    training's report.

    Tiny mode builds one small world (TINY_WORLD, whatever is asked) with small models, and
    when BENCH_WORLD_DIR is set (bench/run.py --tiny sets it) keeps its rows there for the
    next script, which copies them in and rebuilds the serving store: the same world, built once.
    `world`: the demo world the readers click by (default DEMO_WORLD); only the default one is
    kept for the next script."""
    from django.conf import settings
    from django.core.management import call_command

    from webapp.lookalike.training import model_train

    if TINY:
        sessions, hours, seed = TINY_WORLD
    world = world or settings.DEMO_WORLD
    cache = Path(os.environ["BENCH_WORLD_DIR"]) if TINY and os.environ.get("BENCH_WORLD_DIR") \
        and world == settings.DEMO_WORLD else None
    if cache is not None and (cache / "world.json").exists():
        return _world_restore(cache)
    seconds, started = {}, time.perf_counter()
    call_command("load_demo", verbosity=0)
    seconds["load_demo"] = round(time.perf_counter() - started, 1)
    call_command("simulate", "--backfill-hours", str(hours), "--sessions", str(sessions), "--seed", str(seed),
                 "--world", world, verbosity=0)
    seconds["backfill"] = round(time.perf_counter() - started - seconds["load_demo"], 1)
    report = model_train(**({"stage1_epochs": 2, "stage2_epochs": 1, "dim": 16} if TINY else {}))
    seconds["train"] = round(time.perf_counter() - started - seconds["load_demo"] - seconds["backfill"], 1)
    if cache is not None:
        from fixtures.world import tables_dump

        for table_name, rows in tables_dump().items():
            (cache / f"{table_name}.copy").write_bytes(rows)
        (cache / "world.json").write_text(json.dumps({"seconds": seconds, "train": report.seconds}))
    return seconds, report


TINY_WORLD = (300, 24.0, 1)  # sessions, hours, seed of the one world tiny mode builds


def _world_restore(cache: Path):
    """The kept world in this scratch database and its serving store (from Postgres, as
    `rebuild_serving_store` does); its report rebuilt from the model runs' rows."""
    from types import SimpleNamespace

    from fixtures.world import WORLD_TABLES, tables_restore
    from webapp.lookalike.models import ModelKind, ModelRun
    from webapp.lookalike.refresh import serving_store_rebuild
    from webapp.news.models import Reader

    tables_restore({t: (cache / f"{t}.copy").read_bytes() for t in WORLD_TABLES})
    serving_store_rebuild()
    kept = json.loads((cache / "world.json").read_text())
    runs = {r.kind: r for r in ModelRun.objects.filter(is_active=True)}
    report = SimpleNamespace(readers=Reader.objects.filter(source="demo").count(), seconds=kept["train"],
                             tower_run=runs[ModelKind.USER_TOWER], lookalike_run=runs[ModelKind.LOOKALIKE])
    return kept["seconds"], report


def clicked_world(models: Path, *, readers: int, items: int, clicked: int, seeds: int, dim: int,
                  rng) -> None:
    """In the scratch database, what the seed and state refresh read: a user tower run with a
    random vector per reader, a look-alike run with an untrained model of that size, `items`
    stories, and `seeds` distinct clicking readers on each of the first `clicked`. The
    refresh's cost does not depend on what the models learned."""
    from django.db import connection, transaction
    from django.utils import timezone

    from recsys.artifacts import save_lookalike
    from recsys.lookalike import LookalikeConfig, LookalikeModel
    from webapp.common.bulk import copy_rows
    from webapp.lookalike.models import ModelKind, ModelRun, ReaderVector
    from webapp.news.models import Click, Item, Reader

    save_lookalike(models / "lookalike", LookalikeModel(LookalikeConfig(dim=dim, k=20)))
    tower = ModelRun.objects.create(kind=ModelKind.USER_TOWER, version="bench", is_active=True)
    ModelRun.objects.create(kind=ModelKind.LOOKALIKE, version="bench", is_active=True,
                            artifact_path=str(models / "lookalike"))
    now = timezone.now()
    with connection.cursor() as cur, transaction.atomic():
        copy_rows(cur, Reader, ({"id": r, "external_id": f"b{r}", "name": f"Reader {r}", "created_at": now}
                                for r in range(1, readers + 1)))
        vecs = rng.standard_normal((readers, dim)).astype("<f4")
        copy_rows(cur, ReaderVector, ({"reader_id": r + 1, "model_run_id": tower.pk, "dim": dim,
                                       "vector": vecs[r].tobytes(), "computed_at": now} for r in range(readers)))
        copy_rows(cur, Item, ({"id": i, "external_id": f"i{i}", "title": f"Item {i}", "category": "news",
                               "created_at": now} for i in range(1, items + 1)))
        copy_rows(cur, Click, ({"reader_id": int(r), "item_id": i, "clicked_at": now} for i in range(1, clicked + 1)
                               for r in rng.choice(readers, seeds, replace=False) + 1))
    with connection.cursor() as cur:
        cur.execute("ANALYZE")


def load() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def save(key: str, value: dict) -> None:
    results = load()
    results[key] = value
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def table(rows: list[tuple], header: tuple) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    line = lambda r: "| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])
