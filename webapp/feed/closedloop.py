"""The closed loop: one ranker arm serving its own copy of the demo world for simulated hours.

Readers arrive, read a page the arm ranks (through the feed service, as the API does) and
click by the hidden click model; their clicks make the stories' seeds, and every simulated
minute the project's own refresh (counts, seeds, centroids and E_global, promotion) turns
those seeds into the next minute's exposure. Held-back stories are published at the demo's
rate. Nothing is re-implemented: this module only drives the clock.

Every arm's copy runs the same `Plan`: the same arrivals and publications, and common
random numbers for the clicks (a reader's draw for a story in a session does not depend on
the arm, so where two arms show the same story at the same moment to the same reader, they
get the same click). What differs between the copies is the arm, and what its exposure did
to the stories' seeds. `recsys.abtest.loop_compare` turns the copies' results into each
arm's figures against `ctr`.

A copy is a database of its own (Postgres `CREATE DATABASE ... TEMPLATE` of the world's
snapshot; `snapshot_make` takes one of a database in use) with a Redis database of its own,
run by a process of its own (`copies_run`, `python -m webapp.feed.loopcopy SPEC`), as many
at once as there are Redis databases given and cores.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import connection
from tqdm import tqdm

from fixtures.corpus import click_model, load_readers
from recsys.abtest import head_items
from recsys.arms import arm as arm_named
from recsys.simulation import item_truth
from webapp.common.connections import redis_client
from webapp.feed import services
from webapp.feed.selectors import TAIL_WINDOW
from webapp.lookalike import refresh
from webapp.lookalike.services import item_status_refresh
from webapp.news.models import Item, ItemStatus, Reader, Source
from webapp.news.services import item_popularity_refresh, item_publish_next

TAIL_WINDOW_HOURS = TAIL_WINDOW.total_seconds() / 3600.0  # the long tail, as ab_report and the dashboard fix it
HEAD_SHARE = 0.2  # outside the 20% most shown over the window
SESSIONS_PER_HOUR = 100_000 / 36  # the rate of `make demo`'s history (Makefile: 100,000 sessions over 36 h)
# Redis databases `manage.py ab_report --closed-loop` runs its copies in (tests use 15, the
# benchmarks 10, 11, 13 and 14, the demo REDIS_URL's own).
REDIS_DBS = (8, 9)


@dataclass(frozen=True)
class Plan:
    """What every arm's copy shares: the start of the simulated clock, the arrivals (seconds
    after the start, and the simulated reader's index in fixtures/readers.jsonl order), the
    publication rate and the seed of the click draws."""

    start: float  # POSIX seconds
    hours: float
    seed: int
    arrivals: list[tuple[float, int]]
    publish_every: float = 45.0  # seconds between held-back stories, as `manage.py simulate` publishes them
    refresh_every: float = 60.0  # the beat schedule's LOOKALIKE_REFRESH_SECONDS
    feed_size: int = 10

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Plan:
        return cls(**{**d, "arrivals": [tuple(a) for a in d["arrivals"]]})


def plan_make(*, start: datetime, hours: float, sessions_per_hour: float, seed: int) -> Plan:
    """Arrivals over `hours` after `start`: a Poisson process of the given rate, each reader
    drawn by activity (as the simulator draws them)."""
    readers = load_readers()
    weights = np.array([r.truth.activity for r in readers], np.float64)
    rng = np.random.default_rng([seed, 0x100B])
    n = int(rng.poisson(sessions_per_hour * hours))
    times = np.sort(rng.uniform(0.0, hours * 3600.0, n))
    who = rng.choice(len(readers), size=n, p=weights / weights.sum())
    return Plan(start=start.timestamp(), hours=hours, seed=seed,
                arrivals=[(round(float(t), 3), int(k)) for t, k in zip(times, who, strict=True)])


def click_draw(seed: int, session: int, item: int) -> float:
    """The uniform draw deciding whether the reader of `session` clicks `item` (a click when
    it falls below the click probability): the same in every arm's copy."""
    h = hashlib.blake2b(f"{seed}:{session}:{item}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2.0 ** 64


@dataclass
class LoopResult:
    """One copy's run: per page, what the hidden click model expects and what the page held;
    per story published during the run, the minutes until it turned warm (None: never)."""

    arm: str
    served_by: dict[str, int] = field(default_factory=dict)  # pages per arm that ranked them (fallbacks)
    expected: list[float] = field(default_factory=list)  # expected clicks per impression
    size: list[int] = field(default_factory=list)
    cold: list[int] = field(default_factory=list)  # impressions of stories cold when shown
    tail: list[int] = field(default_factory=list)  # impressions outside the trailing day's head
    categories: list[int] = field(default_factory=list)
    shown: dict[int, int] = field(default_factory=dict)  # item id -> impressions during the run
    live: list[int] = field(default_factory=list)  # every story live at some point of the run
    minutes_to_warm: dict[int, float | None] = field(default_factory=dict)
    clicks: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict:
        d = asdict(self)
        d["shown"] = {str(k): v for k, v in self.shown.items()}
        d["minutes_to_warm"] = {str(k): v for k, v in self.minutes_to_warm.items()}
        return d


class _Exposure:
    """Impressions per story over the trailing TAIL_WINDOW_HOURS, the world's history
    included, kept as the clock moves; `head` is the most shown HEAD_SHARE of the live stories."""

    def __init__(self, start: float, size: int) -> None:
        since = datetime.fromtimestamp(start - TAIL_WINDOW_HOURS * 3600.0, UTC)
        self.times, self.items = self._history(since, start)
        self.counts = np.bincount(self.items, minlength=size).astype(np.int64)
        self.expired = 0
        self.new_t: list[float] = []
        self.new_i: list[int] = []
        self.new_expired = 0

    @staticmethod
    def _history(since: datetime, start: float) -> tuple[np.ndarray, np.ndarray]:
        with connection.cursor() as cur:
            cur.execute("SELECT EXTRACT(EPOCH FROM i.shown_at), i.item_id FROM news_impression i "
                        "JOIN news_item it ON it.id = i.item_id WHERE i.shown_at >= %s AND i.shown_at <= %s "
                        "AND it.source = %s ORDER BY i.shown_at",
                        [since, datetime.fromtimestamp(start, UTC), Source.DEMO])
            rows = cur.fetchall()
        a = np.array(rows, np.float64).reshape(-1, 2)
        return a[:, 0], a[:, 1].astype(np.int64)

    def add(self, t: float, items: list[int]) -> None:
        for i in items:
            self.counts[i] += 1
            self.new_t.append(t)
            self.new_i.append(i)

    def head(self, now: float, live: np.ndarray) -> set[int]:
        """The head as of `now`: impressions older than the window leave the counts first."""
        cutoff = now - TAIL_WINDOW_HOURS * 3600.0
        while self.expired < len(self.times) and self.times[self.expired] < cutoff:
            self.counts[self.items[self.expired]] -= 1
            self.expired += 1
        while self.new_expired < len(self.new_t) and self.new_t[self.new_expired] < cutoff:
            self.counts[self.new_i[self.new_expired]] -= 1
            self.new_expired += 1
        return head_items(live, self.counts[live], 1.0 - HEAD_SHARE)


def _tick(now: datetime) -> None:
    """One simulated minute of the workers, in the order their chain runs: the counts, the
    seeds of clicked stories, their centroids and E_global, then promotion."""
    item_popularity_refresh(now=now)
    while refresh.seeds_refresh().get("remaining"):
        pass
    while refresh.states_refresh().get("remaining"):
        pass
    item_status_refresh()


def loop_run(*, arm: str, plan: Plan, world: str | None = None, progress: bool = True) -> LoopResult:
    """Run the plan with `arm` serving every page, in the database and Redis this process
    points at (a copy of the world: it is written to)."""


    started = time.perf_counter()
    chosen = arm_named(arm)
    model = click_model(world or settings.DEMO_WORLD)
    people = load_readers()
    by_ext = dict(Reader.objects.filter(source=Source.DEMO).values_list("external_id", "pk"))
    readers = {k: Reader.objects.get(pk=by_ext[p.id]) for k, p in enumerate(people) if p.id in by_ext}
    redis_client().flushdb()
    refresh.serving_store_rebuild()
    out = LoopResult(arm=chosen.name)
    truths: dict[int, object] = {}
    size = int(Item.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
    exposure = _Exposure(plan.start, size)
    ticks = int(math.floor(plan.hours * 3600.0 / plan.refresh_every))
    publishes = int(math.floor(plan.hours * 3600.0 / plan.publish_every)) if plan.publish_every > 0 else 0
    published: dict[int, float] = {}  # item -> POSIX seconds
    live_ids: set[int] = set()
    events = sorted([(n * plan.refresh_every, 0, n) for n in range(1, ticks + 1)]
                    + [(n * plan.publish_every, 1, n) for n in range(1, publishes + 1)]
                    + [(t, 2, s) for s, (t, _) in enumerate(plan.arrivals)])

    def live_now(t: float) -> np.ndarray:
        ids = np.array(Item.objects.filter(source=Source.DEMO, published_at__lte=datetime.fromtimestamp(t, UTC))
                       .values_list("pk", flat=True), np.int64)
        live_ids.update(ids.tolist())
        return np.sort(ids)

    head = exposure.head(plan.start, live_now(plan.start))
    for offset, kind, n in tqdm(events, desc=f"closed loop {chosen.name}", unit="event", disable=not progress,
                                mininterval=2.0):
        t = plan.start + offset
        now = datetime.fromtimestamp(t, UTC)
        if kind == 0:  # a minute of the workers, then the head as of the new minute
            _tick(now)
            for pk in Item.objects.filter(pk__in=[i for i in published if i not in out.minutes_to_warm],
                                          status=ItemStatus.WARM).values_list("pk", flat=True):
                out.minutes_to_warm[pk] = round((t - published[pk]) / 60.0, 2)
            head = exposure.head(t, live_now(t))
            continue
        if kind == 1:
            item = item_publish_next(source=Source.DEMO, now=now)
            if item is not None:
                published[item.pk] = t
            continue
        k = plan.arrivals[n][1]
        reader = readers.get(k)
        if reader is None:
            continue
        page = services.feed_build(reader=reader, limit=plan.feed_size, now=now, arm=chosen.name)
        if not page.entries:
            continue
        served = next((e.score_parts.get("served_by") for e in page.entries
                       if isinstance(e.score_parts, dict) and e.score_parts.get("served_by")), chosen.name)
        out.served_by[served] = out.served_by.get(served, 0) + 1
        expected = 0.0
        items = []
        for e in page.entries:
            pk = e.item.pk
            items.append(pk)
            if pk not in truths:
                truths[pk] = item_truth(external_id=e.item.external_id, category=e.item.category,
                                        subcategory=e.item.subcategory, config=model.config)
            age = (now - (e.item.published_at or now)).total_seconds() / 3600.0
            p = model.click_probability(people[k].truth, truths[pk], position=e.position, age_hours=age)
            expected += p
            if click_draw(plan.seed, n, pk) < p:
                when = now + timedelta(seconds=5 + 10 * e.position)  # as the simulator clicks
                out.clicks += services.click_record(impression_id=e.impression_id, reader_id=reader.pk,
                                                    now=when).created
        m = len(items)
        out.expected.append(expected / m)
        out.size.append(m)
        out.cold.append(sum(not e.warm for e in page.entries))
        out.tail.append(sum(i not in head for i in items))
        out.categories.append(len({e.item.category for e in page.entries}))
        for i in items:
            out.shown[i] = out.shown.get(i, 0) + 1
        exposure.add(t, items)
    for pk in published:
        out.minutes_to_warm.setdefault(pk, None)
    out.live = sorted(live_ids)
    out.seconds = round(time.perf_counter() - started, 1)
    return out


# The tables a copy needs from a snapshot taken of a database in use, parents first (a COPY
# checks its foreign keys at once); the counts' deltas last, after the triggers' own.
SNAPSHOT_TABLES = ("auth_user", "news_reader", "news_item", "news_impression", "news_click", "lookalike_modelrun",
                   "lookalike_seedset", "lookalike_lookalikestate", "lookalike_readervector", "news_itemcountdelta")


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
            if t == "news_itemcountdelta":  # the triggers saw the rows above come in: keep the source's own
                dst.execute("TRUNCATE news_itemcountdelta")
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


def plus_minus(vs: dict, key: str, scale: float = 1.0, unit: str = "") -> str:
    """A compared figure `vs[key]` with its standard error (`key_se`), e.g. "+5.65% ± 0.13"."""
    v, se = vs.get(key), vs.get(f"{key}_se")
    if v is None:
        return "-"
    return f"{scale * v:+.2f}{unit}" + (f" ± {scale * se:.2f}" if se is not None else "")


def loop_table(arms: dict[str, dict], reference: str = "ctr") -> str:
    """recsys.abtest.loop_compare's figures as a text table, each arm against `reference`."""
    pm = plus_minus
    header = ("arm", "expected CTR", "vs ref", "tail exposure", "vs ref", "minutes to warm", "vs ref", "never warm",
              "to cold", "categories/page", "vs ref", "Gini", "stories/1k impr.")
    rows = [header]
    for a, v in arms.items():
        vs = v.get(f"vs_{reference}", {})
        rows.append((a, f"{v['expected_ctr']:.4f}", pm(vs, "expected_ctr_rel", 100, "%") if vs else "ref",
                     f"{v['tail_exposure']:.3f}", pm(vs, "tail_exposure_rel", 100, "%") if vs else "ref",
                     "never" if v["minutes_to_warm"] is None else f"{v['minutes_to_warm']:.1f}",
                     pm(vs, "minutes_to_warm_diff") if vs else "ref", f"{v['never_warm_share']:.2f}",
                     f"{v['cold_share']:.3f}", f"{v['categories_per_page']:.2f}",
                     pm(vs, "categories_per_page_diff") if vs else "ref", f"{v['exposure_gini']:.3f}",
                     f"{v['coverage']:.2f}"))
    widths = [max(len(str(r[c])) for r in rows) for c in range(len(header))]
    return "\n".join("  ".join(str(x).rjust(w) if c else str(x).ljust(w) for c, (x, w) in enumerate(zip(r, widths,
                      strict=True))) for r in rows)
