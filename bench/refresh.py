"""Refresh throughput: dirty items with 200 seeds each, k=20, h=64, through the real seed and
look-alike state refresh (Postgres + Redis), in a scratch database and Redis db 14. Also shows
that the cost follows the dirty items, not the items in the table. Writes results.json["refresh"].
Tiny mode (bench/common.py): 200 dirty items of 1,000, 20 seeds each."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import REDIS_URL, clicked_world, save, scratch_database, sized, table

ITEMS, SEEDS, READERS, DIM = sized(10_000, 200), sized(200, 20), sized(20_000, 500), 64
SMALL = sized(1_000, 100)  # the dirty set measured among many items and among only itself


def main() -> None:
    os.environ["REDIS_URL"] = REDIS_URL
    models = Path(tempfile.mkdtemp(prefix="ralm-bench-"))
    with scratch_database("ralm_feed_bench_refresh"):
        import torch
        from django.db import connection, transaction

        from webapp.common.connections import redis_client
        from webapp.lookalike.models import SeedSet
        from webapp.lookalike.refresh import states_refresh
        from webapp.lookalike.seeds import seeds_refresh

        torch.set_num_threads(2)
        redis_client().flushdb()
        print(f"setting up {READERS:,} readers, {5 * ITEMS:,} items, {ITEMS * SEEDS:,} clicks ...", flush=True)
        clicked_world(models, readers=READERS, items=5 * ITEMS, clicked=ITEMS, seeds=SEEDS, dim=DIM,
                      rng=np.random.default_rng(0))

        split: dict[str, float] = {}

        def run(dirty: list[int]) -> float:
            SeedSet.objects.all().delete()
            SeedSet.objects.bulk_create([SeedSet(item_id=i, dirty=True) for i in dirty], batch_size=5000)
            started = time.perf_counter()
            seeds = seeds_refresh(batch=len(dirty))
            split["seeds"] = time.perf_counter() - started
            if os.environ.get("BENCH_PROFILE") and len(dirty) == ITEMS:
                import cProfile
                import pstats

                prof = cProfile.Profile()
                states = prof.runcall(states_refresh, batch=len(dirty))
                pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
            else:
                states = states_refresh(batch=len(dirty))
            seconds = time.perf_counter() - started
            split["states"] = seconds - split["seeds"]
            assert seeds["items"] == states["items"] == len(dirty) and not states["remaining"], (seeds, states)
            return seconds

        run(list(range(1, 101)))  # warm up: model load, torch threads
        rows = []
        for dirty in (SMALL, ITEMS):
            seconds = run(list(range(1, dirty + 1)))
            rows.append((f"{dirty:,} dirty of {5 * ITEMS:,} items", f"{seconds:.1f}", f"{dirty / seconds:,.0f}"))
            if dirty == ITEMS:
                result = {"items": dirty, "seeds_per_item": SEEDS, "k": 20, "h": DIM, "seconds": round(seconds, 2),
                          "items_per_s": round(dirty / seconds), "seeds_seconds": round(split["seeds"], 2),
                          "states_seconds": round(split["states"], 2)}
        # The same small dirty set with no other items in the tables' way: the cost follows the dirty set.
        with connection.cursor() as c, transaction.atomic():
            for t in ("news_click", "lookalike_lookalikestate", "lookalike_seedset"):
                c.execute(f"DELETE FROM {t} WHERE item_id > %s", [SMALL])  # noqa: S608 (constant names)
            c.execute("DELETE FROM news_item WHERE id > %s", [SMALL])
        seconds = run(list(range(1, SMALL + 1)))
        rows.append((f"{SMALL:,} dirty of {SMALL:,} items", f"{seconds:.1f}", f"{SMALL / seconds:,.0f}"))
        result["dirty_small"] = SMALL
        result["dirty_small_of_all_seconds"] = float(rows[0][1])
        result["dirty_small_alone_seconds"] = round(seconds, 2)
        redis_client().flushdb()
    save("refresh", result)
    print(table(rows, ("refresh (seeds + k-means + E_global, Postgres + Redis)", "seconds", "items/s")))


if __name__ == "__main__":
    sys.exit(main())
