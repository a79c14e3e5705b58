"""The refresh part of bench/scale.py: real Celery workers (prefork) with one process and
with two refresh dirty stories; beat's `refresh_seeds` fans out into one task per partition
(workers.tasks), and the clock stops when no seed set or state is dirty any more.

- **From scratch** (`refresh_scratch`): DIRTY brand-new stories with SEEDS seeds each: every
  list rebuilt from the click table, every state clustered afresh.
- **Steady state** (`refresh_steady`): WARM stories with SEEDS seeds each, their lists and
  states refreshed once; then, before each timing, a minute in which DIRTY of them get 1-5
  new clickers (one COPY of clicks, as many statements would write them, then the stories
  marked dirty as the click path marks them): the seeds are merged from the deltas and
  most states re-clustered from their previous centroids."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, clicked_world, sized, table
from procs import wait_for

READERS = sized(100_000, 2_000)
DIRTY, SEEDS, DIM = sized(10_000, 400), sized(200, 20), 64
WARM = int(os.environ.get("BENCH_STEADY_WARM") or sized(100_000, 2_000))  # a smaller world: BENCH_STEADY_WARM
CELERY = [sys.executable, "-m", "celery", "-A", "workers"]
ROUNDS = sized((1, 2, 1, 2), (1, 2))  # worker processes of each timing: alternated, each measured twice


def _timed(processes: int) -> float:
    """Seconds until real workers with `processes` processes leave nothing dirty."""
    from django.db import connection

    from webapp.lookalike.models import SeedSet

    db = connection.settings_dict
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LOOKALIKE_REFRESH_PARTITIONS": "2",
           "LOOKALIKE_REFRESH_BATCH": str(DIRTY),
           "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"}
    log = Path(tempfile.mkstemp(prefix=f"ralm-scale-worker{processes}-", suffix=".log")[1])
    worker = subprocess.Popen([*CELERY, "worker", "--pool", "prefork", "--concurrency", str(processes),
                               "--without-mingle", "--without-gossip", "--loglevel", "INFO", "-n",
                               f"scale{processes}@%h"], cwd=ROOT, env=env, stdout=log.open("w"),
                              stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: " ready." in log.read_text(), timeout=120), log.read_text()[-2000:]
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
    return seconds


def _world(items: int) -> None:
    import torch

    torch.manual_seed(0)
    clicked_world(Path(os.environ["MODEL_DIR"]), readers=READERS, items=items, clicked=items, seeds=SEEDS, dim=DIM,
                  rng=np.random.default_rng(1))


def refresh_scratch() -> dict:
    from webapp.lookalike.models import SeedSet

    print(f"refresh from scratch: {DIRTY:,} dirty stories × {SEEDS} seeds among {READERS:,} readers", flush=True)
    _world(DIRTY)
    out = {}
    for processes in ROUNDS:
        SeedSet.objects.all().delete()  # brand-new sets: rebuilt from the click table
        SeedSet.objects.bulk_create([SeedSet(item_id=i, dirty=True) for i in range(1, DIRTY + 1)], batch_size=5000)
        out.setdefault(processes, []).append(_timed(processes))
    one, two = float(np.median(out[1])), float(np.median(out[2]))
    return {"items": DIRTY, "seeds_per_item": SEEDS, "one_worker_s": round(one, 2), "two_workers_s": round(two, 2),
            "speedup": round(one / two, 2), "runs": {str(k): [round(x, 2) for x in v] for k, v in out.items()}}


def _warm_up() -> None:
    """Every story's seeds and state, refreshed in this process (not timed)."""
    from webapp.lookalike.models import SeedSet
    from webapp.lookalike.refresh import states_refresh
    from webapp.lookalike.seeds import seeds_refresh

    SeedSet.objects.bulk_create([SeedSet(item_id=i, dirty=True) for i in range(1, WARM + 1)], batch_size=5000)
    while seeds_refresh(batch=DIRTY)["remaining"]:
        pass
    while states_refresh(batch=DIRTY)["remaining"]:
        pass


def _minute(rng: np.random.Generator) -> int:
    """DIRTY of the warm stories get 1-5 new clickers each, now; returns the clicks."""
    from django.db import connection, transaction
    from django.utils import timezone

    from webapp.common.bulk import copy_rows
    from webapp.lookalike.services import seedset_mark_dirty
    from webapp.news.models import Click

    stories = rng.choice(WARM, DIRTY, replace=False) + 1
    counts = rng.integers(1, 6, DIRTY)
    now = timezone.now()
    rows = [{"reader_id": int(r), "item_id": int(i), "clicked_at": now}
            for i, n in zip(stories, counts, strict=True) for r in rng.choice(READERS, n, replace=False) + 1]
    with connection.cursor() as cur, transaction.atomic():
        copy_rows(cur, Click, rows)
    seedset_mark_dirty(item_ids=stories.tolist())
    return len(rows)


def refresh_steady(scratch: dict) -> dict:
    """The steady-state minute's refresh, timed; returned beside the from-scratch `scratch`."""
    print(f"refresh, steady state: {WARM:,} warm stories × {SEEDS} seeds, a minute of {DIRTY:,} dirty", flush=True)
    _world(WARM)
    started = time.perf_counter()
    _warm_up()
    print(f"  warm-up (in-process, not timed): {time.perf_counter() - started:.0f} s", flush=True)
    rng, out, clicks = np.random.default_rng(2), {}, []
    for processes in ROUNDS:
        clicks.append(_minute(rng))
        out.setdefault(processes, []).append(_timed(processes))
    one, two = float(np.median(out[1])), float(np.median(out[2]))
    rows = [(n, f"{scratch[k]:.2f}", f"{s:.2f}") for n, k, s in ((1, "one_worker_s", one), (2, "two_workers_s", two))]
    print(table(rows, ("worker processes", f"from scratch: {DIRTY:,} new × {SEEDS} seeds, s",
                       f"steady: {DIRTY:,} of {WARM:,} warm, 1-5 new clickers, s")))
    return {**scratch, "steady_stories": WARM, "steady_dirty": DIRTY, "steady_clicks": int(np.median(clicks)),
            "steady_one_worker_s": round(one, 2), "steady_two_workers_s": round(two, 2),
            "steady_runs": {str(k): [round(x, 2) for x in v] for k, v in out.items()}}
