"""The closed loop's copies: each arm's run of the world in a database of its own (Postgres
`CREATE DATABASE ... TEMPLATE` of a snapshot; `snapshot_make` takes one of a database in use)
with a Redis database of its own, run by a process of its own (`python -m
webapp.feed.loopcopy SPEC`), as many at once as there are Redis databases given and cores.
webapp.feed.closedloop holds what each copy runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from django.conf import settings
from django.db import connection
from tqdm import tqdm

from webapp.feed.closedloop import Plan

# Redis databases `manage.py ab_report --closed-loop` runs its copies in (tests use 15, the
# benchmarks 10 to 14, the demo REDIS_URL's own).
REDIS_DBS = (8, 9)


# The tables a copy needs from a snapshot taken of a database in use, parents first (a COPY
# checks its foreign keys at once); the triggers' deltas (counts, seeds) last.
SNAPSHOT_TABLES = ("auth_user", "news_reader", "news_item", "news_impression", "news_click", "lookalike_modelrun",
                   "lookalike_seedset", "lookalike_lookalikestate", "lookalike_readervector", "news_itemcountdelta",
                   "lookalike_seeddelta")


def _admin():
    import psycopg

    d = connection.settings_dict
    return psycopg.connect(dbname="postgres", user=d["USER"], password=d["PASSWORD"] or None, host=d["HOST"] or None,
                           port=d["PORT"] or None, autocommit=True)


def database_drop(name: str) -> None:
    from psycopg import sql

    with _admin() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def database_clone(template: str, name: str) -> None:
    """A new database `name`, a copy of `template`'s files (which must have no connections)."""
    from psycopg import sql

    database_drop(name)
    with _admin() as conn:  # FILE_COPY: far faster than the default WAL_LOG for a world this size
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
            sql.Identifier(name), sql.Identifier(template)))


def database_url(name: str) -> str:
    """The URL of database `name` on the server Django uses."""
    from urllib.parse import quote

    d = connection.settings_dict
    auth = quote(d["USER"], safe="") + (f":{quote(d['PASSWORD'], safe='')}" if d["PASSWORD"] else "")
    return f"postgres://{auth}@{d['HOST'] or '127.0.0.1'}:{d['PORT'] or 5432}/{quote(name, safe='')}"


def snapshot_make(name: str) -> None:
    """A database `name` holding the current rows of SNAPSHOT_TABLES of the database Django
    uses, which may be serving (a template must have no connections; a snapshot of it can)."""
    import psycopg
    from psycopg import sql

    database_drop(name)
    with _admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    env = {**os.environ, "DATABASE_URL": database_url(name)}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=settings.BASE_DIR, env=env,
                   check=True)
    d = connection.settings_dict
    connection.ensure_connection()
    with psycopg.connect(dbname=name, user=d["USER"], password=d["PASSWORD"] or None, host=d["HOST"] or None,
                         port=d["PORT"] or None) as target, connection.connection.cursor() as src, \
            target.cursor() as dst:
        dst.execute(f"TRUNCATE {', '.join(SNAPSHOT_TABLES)} CASCADE")
        for t in SNAPSHOT_TABLES:
            if t in ("news_itemcountdelta", "lookalike_seeddelta"):  # the triggers saw the rows above
                dst.execute(f"TRUNCATE {t}")  # come in: keep the source's own
            with src.copy(f"COPY {t} TO STDOUT") as out, dst.copy(f"COPY {t} FROM STDIN") as into:
                for chunk in out:
                    into.write(chunk)
            seq = dst.execute("SELECT pg_get_serial_sequence(%s, 'id')", (t,)).fetchone()[0]
            if seq:
                dst.execute(f"SELECT setval(%s, (SELECT COALESCE(MAX(id), 0) + 1 FROM {t}), false)", (seq,))  # noqa: S608
        dst.execute("ANALYZE")


def copies_run(*, template: str, jobs: list[dict], redis_dbs: Sequence[int], workers: int | None = None,
               progress: bool = True) -> list[dict]:
    """Run each job ({"arm", "world", "plan": Plan.to_json(), "model_dir"}) in a copy of
    `template` (no connections allowed), each in a process of its own with one of
    `redis_dbs` (on the server of REDIS_URL), at most `workers` at once (default: the cores);
    returns each job's LoopResult as JSON, in job order. Copies are dropped when done."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(redis_dbs)))
    scratch = Path(tempfile.mkdtemp(prefix="ralm-loop-"))
    pending = list(enumerate(jobs))
    running: dict[int, tuple[subprocess.Popen, str, int, Path]] = {}
    results: dict[int, dict] = {}
    redis_base = settings.REDIS_URL.rsplit("/", 1)[0] if settings.REDIS_URL.count("/") > 2 else settings.REDIS_URL
    bar = tqdm(total=len(jobs), desc="closed-loop copies", unit="copy", disable=not progress)
    try:
        while pending or running:
            free = [d for d in redis_dbs[:workers] if d not in {r[2] for r in running.values()}]
            while pending and free:
                n, job = pending.pop(0)
                name, redis_db = f"{template}_copy{n}", free.pop(0)
                database_clone(template, name)
                spec, out = scratch / f"{n}.json", scratch / f"{n}.result.json"
                spec.write_text(json.dumps({**job, "database_url": database_url(name),
                                            "redis_url": f"{redis_base}/{redis_db}", "out": str(out)}))
                proc = subprocess.Popen([sys.executable, "-m", "webapp.feed.loopcopy", str(spec)],
                                        cwd=settings.BASE_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)
                running[n] = (proc, name, redis_db, out)
            time.sleep(0.2)
            for n, (proc, name, _, out) in list(running.items()):
                if proc.poll() is None:
                    continue
                log = proc.stdout.read() if proc.stdout else ""
                database_drop(name)
                del running[n]
                if proc.returncode:
                    raise RuntimeError(f"closed-loop copy {n} ({jobs[n]['arm']}) failed:\n{log[-3000:]}")
                results[n] = json.loads(out.read_text())
                bar.update()
    finally:
        for proc, name, _, _ in running.values():
            proc.kill()
            proc.wait()
            database_drop(name)
        bar.close()
    return [results[n] for n in range(len(jobs))]



def replicates_run(*, template: str, arms: list[str], plans: list[Plan], world: str, model_dir: str,
                   redis_dbs: Sequence[int], progress: bool = True) -> list[dict[str, dict]]:
    """Every arm under every plan in a copy of `template` (`copies_run`): one {arm: LoopResult
    as JSON} per plan, the replicates `recsys.abtest.loop_compare` takes."""
    runs = copies_run(template=template, redis_dbs=redis_dbs, progress=progress,
                      jobs=[{"arm": a, "world": world, "plan": p.to_json(), "model_dir": model_dir}
                            for p in plans for a in arms])
    return [dict(zip(arms, runs[r * len(arms):(r + 1) * len(arms)], strict=True)) for r in range(len(plans))]


