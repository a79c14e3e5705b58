"""Scale: the parts of the minute's work whose cost must follow the traffic, not the history or
the catalog, measured at 100× the demo (100,000 stories and readers).

- **Counts.** A history of 1M impressions, then of 10M (the same traffic rate over a ten
  times longer past, 3% of them clicked, written by COPY in chunks), and at each size one
  minute of traffic as the feed writes it (one INSERT per page of 10, one per click); then
  the counts job (`item_popularity_refresh`: the decayed popularity and the impression and
  click counts) is timed. Its time at 10M must stay within 1.5× of its time at 1M.
- **Refresh.** 10,000 dirty stories with 200 seeds each, refreshed by real Celery workers
  (prefork) with one process and with two: beat's `refresh_seeds` fans out into one task per
  partition (workers.tasks), and the clock stops when no seed set is dirty any more.

A scratch database and Redis db 12; writes results.json["scale"]. Tiny mode (bench/common.py):
2,000 stories and readers, 10,000 and 100,000 impressions, 400 dirty stories × 20 seeds.
Not measured here yet (the issue's recall part): the feed at 100,000 stories, what it keeps
of the full ranking's top 10, a web process's memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from common import ROOT, TINY, clicked_world, save, scratch_database, sized, table

sys.path.insert(0, str(ROOT))
from tests.procs import wait_for  # noqa: E402 (bench/ first, then the project)

STORIES, READERS = sized(100_000, 2_000), sized(100_000, 2_000)
SIZES = sized((1_000_000, 10_000_000), (10_000, 100_000))  # impressions of history
RATE_PER_HOUR = sized(1_000_000 / 72, 10_000 / 72)  # the history's traffic: 1M impressions in three days
CTR = 0.03
MINUTE_PAGES = sized(2_000, 50)  # one minute of traffic before each timing: pages of 10
RUNS = 3  # timings of the counts job at each size (median)
DIRTY, SEEDS, DIM = sized(10_000, 400), sized(200, 20), 64
CHUNK = 1_000_000  # rows per COPY
REDIS_DB = "redis://127.0.0.1:6379/12"
CELERY = [sys.executable, "-m", "celery", "-A", "workers"]


def _history(cur, *, start_id: int, n: int, end: float, rng: np.random.Generator, item_ids: np.ndarray,
             reader_ids: np.ndarray) -> None:
    """n impressions (CTR of them clicked) at the history's rate, ending at `end` (epoch s)."""
    from tqdm import tqdm

    from webapp.common.bulk import copy_columns, timestamps_text
    from webapp.news.models import Click, Impression

    span = n / RATE_PER_HOUR * 3600.0
    with tqdm(total=n, unit="impression", unit_scale=True, desc="history", disable=TINY) as bar:
        for lo in range(0, n, CHUNK):
            m = min(CHUNK, n - lo)
            ids = np.arange(start_id + lo, start_id + lo + m)
            shown = end - span + (lo + np.arange(m)) / n * span
            items = item_ids[rng.zipf(1.3, m) % len(item_ids)]  # a long tail of stories
            readers = reader_ids[rng.integers(0, len(reader_ids), m)]
            copy_columns(cur, Impression, {
                "id": ids, "reader": readers, "item": items, "request_id": [f"h{i}" for i in ids.tolist()],
                "position": ids % 10, "shown_at": timestamps_text(shown), "arm": ["history"] * m}, m)
            c = np.flatnonzero(rng.random(m) < CTR)
            copy_columns(cur, Click, {"reader": readers[c], "item": items[c], "impression": ids[c],
                                      "clicked_at": timestamps_text(shown[c] + 20)}, len(c))
            bar.update(m)


def _minute(*, rng: np.random.Generator, item_ids: np.ndarray, reader_ids: np.ndarray) -> None:
    """A minute of traffic as the feed and the click API write it: a statement per page and click."""
    from django.db import connection
    from django.utils import timezone

    from webapp.feed.services import _IMPRESSIONS_SQL
    from webapp.news.models import Click

    now = timezone.now()
    with connection.cursor() as cur:
        for _ in range(MINUTE_PAGES):
            reader = int(rng.choice(reader_ids))
            page = [{"item_id": int(i), "position": p, "score": 0.0, "score_parts": {}}
                    for p, i in enumerate(rng.choice(item_ids, 10, replace=False))]
            cur.execute(_IMPRESSIONS_SQL, {"reader": reader, "request": uuid.uuid4().hex, "now": now, "arm": "blend",
                                           "client": "", "page": json.dumps(page)})
            shown = cur.fetchall()
            if rng.random() < 10 * CTR:
                impression, position = shown[int(rng.integers(0, len(shown)))]
                Click.objects.create(impression_id=impression, reader_id=reader, item_id=page[position]["item_id"],
                                     clicked_at=now)


def _counts() -> dict:
    from django.db import connection, transaction
    from django.utils import timezone

    from webapp.common.bulk import copy_rows
    from webapp.news.models import Item, ItemCountDelta, Reader
    from webapp.news.services import item_popularity_refresh

    rng = np.random.default_rng(0)
    now = timezone.now()
    print(f"counts: {STORIES:,} stories, {READERS:,} readers, a history of {SIZES[0]:,} then {SIZES[-1]:,} "
          "impressions", flush=True)
    with connection.cursor() as cur, transaction.atomic():
        copy_rows(cur, Reader, ({"id": r, "external_id": f"s{r}", "name": f"Reader {r}", "created_at": now}
                                for r in range(1, READERS + 1)))
        copy_rows(cur, Item, ({"id": i, "external_id": f"s{i}", "title": f"Story {i}", "category": "news",
                               "created_at": now, "published_at": now} for i in range(1, STORIES + 1)))
    item_ids, reader_ids = np.arange(1, STORIES + 1), np.arange(1, READERS + 1)
    out, done, rows = {}, 0, []
    end = now.timestamp()
    for size in SIZES:
        with connection.cursor() as cur, transaction.atomic():
            cur.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM news_impression")
            first = cur.fetchone()[0]
            # The older part of the longer past: the history grows backwards from the first one.
            _history(cur, start_id=first, n=size - done, end=end - done / RATE_PER_HOUR * 3600.0, rng=rng,
                     item_ids=item_ids, reader_ids=reader_ids)
            cur.execute("SELECT setval(pg_get_serial_sequence('news_impression', 'id'), %s)", [first + size - done])
        done = size
        with connection.cursor() as cur:
            cur.execute("VACUUM ANALYZE news_impression")
            cur.execute("VACUUM ANALYZE news_click")
        item_popularity_refresh()  # the history's own deltas in: the steady state
        seconds = []
        for _ in range(RUNS):
            _minute(rng=rng, item_ids=item_ids, reader_ids=reader_ids)
            pending = ItemCountDelta.objects.count()
            started = time.perf_counter()
            item_popularity_refresh()
            seconds.append(time.perf_counter() - started)
        key = f"{size // 1_000_000}M_s" if size >= 1_000_000 else f"{size // 1000}k_s"
        out[key] = round(float(np.median(seconds)), 3)
        rows.append((f"{size:,}", f"{pending:,}", f"{np.median(seconds) * 1000:.0f}",
                     f"{min(seconds) * 1000:.0f}-{max(seconds) * 1000:.0f}"))
    shown = Item.objects.filter(shown_count__gt=0).count()
    print(table(rows, ("history impressions", "delta rows of a minute", "counts job ms (median)", "range ms")))
    first, last = (out[k] for k in list(out)[:2])
    out["ratio"] = round(last / first, 2) if first else None
    out["stories_shown"] = shown
    return out


def _refresh() -> dict:
    import torch

    from webapp.lookalike.models import SeedSet

    torch.manual_seed(0)
    print(f"refresh: {DIRTY:,} dirty stories × {SEEDS} seeds among {READERS:,} readers", flush=True)
    clicked_world(Path(os.environ["MODEL_DIR"]), readers=READERS, items=DIRTY, clicked=DIRTY, seeds=SEEDS, dim=DIM,
                  rng=np.random.default_rng(1))
    env = {**os.environ, "REDIS_URL": REDIS_DB, "PYTHONUNBUFFERED": "1", "LOOKALIKE_REFRESH_PARTITIONS": "2",
           "LOOKALIKE_REFRESH_BATCH": str(DIRTY)}
    from django.db import connection as conn

    db = conn.settings_dict
    env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    out, rows = {}, []
    for processes in sized((1, 2, 1, 2), (1, 2)):  # alternated, each measured twice
        SeedSet.objects.all().delete()
        SeedSet.objects.bulk_create([SeedSet(item_id=i, dirty=True) for i in range(1, DIRTY + 1)], batch_size=5000)
        log = Path(tempfile.mkstemp(prefix=f"ralm-scale-worker{processes}-", suffix=".log")[1])
        worker = subprocess.Popen([*CELERY, "worker", "--pool", "prefork", "--concurrency", str(processes),
                                   "--without-mingle", "--without-gossip", "--loglevel", "INFO", "-n",
                                   f"scale{processes}@%h"], cwd=ROOT, env=env, stdout=log.open("w"),
                                  stderr=subprocess.STDOUT)
        try:
            assert wait_for(lambda log=log: " ready." in log.read_text(), timeout=120), log.read_text()[-2000:]
            from workers.tasks import refresh_seeds

            started = time.perf_counter()
            refresh_seeds.apply_async(kwargs={})
            finished = wait_for(lambda: not SeedSet.objects.filter(dirty=True).exists()
                                and not SeedSet.objects.filter(state_dirty=True).exists(), timeout=600, every=0.05)
            seconds = time.perf_counter() - started
            assert finished, log.read_text()[-3000:]
        finally:
            worker.terminate()
            worker.wait(timeout=60)
        out.setdefault(processes, []).append(seconds)
        rows.append((processes, f"{seconds:.2f}"))
    print(table(rows, ("worker processes", "seconds, 10,000 dirty × 200 seeds" if not TINY else "seconds")))
    one, two = float(np.median(out[1])), float(np.median(out[2]))
    return {"items": DIRTY, "seeds_per_item": SEEDS, "one_worker_s": round(one, 2), "two_workers_s": round(two, 2),
            "speedup": round(one / two, 2), "runs": {str(k): [round(x, 2) for x in v] for k, v in out.items()}}


def main() -> int:
    import argparse
    import json

    from common import RESULTS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("only", nargs="?", choices=("counts", "refresh"), help="measure only this (the other part of "
                    "results.json['scale'] is kept)")
    args = ap.parse_args()
    os.environ["REDIS_URL"] = REDIS_DB
    os.environ["MODEL_DIR"] = tempfile.mkdtemp(prefix="ralm-bench-scale-")
    kept = json.loads(RESULTS.read_text()).get("scale", {}) if args.only and RESULTS.exists() else {}
    counts, refresh = kept.get("counts"), kept.get("refresh")
    from webapp.common.connections import redis_client

    if args.only in (None, "counts"):
        with scratch_database("ralm_feed_bench_scale"):
            redis_client().flushdb()
            counts = _counts()
    if args.only in (None, "refresh"):
        with scratch_database("ralm_feed_bench_scale"):
            from workers.celery import app

            app.control.purge()
            refresh = _refresh()
            redis_client().flushdb()
    if counts is None or refresh is None:
        print("results.json has no earlier scale run to keep: run both parts", file=sys.stderr)
        return 1
    result = {"stories": STORIES, "readers": READERS, "impressions": SIZES[-1], "counts": counts, "refresh": refresh}
    save("scale", result)
    print(f"counts job at {SIZES[-1]:,} / at {SIZES[0]:,} impressions: {counts['ratio']}×; refresh with two "
          f"worker processes {refresh['two_workers_s']} s, {refresh['speedup']}× one")
    return 0


if __name__ == "__main__":
    sys.exit(main())
