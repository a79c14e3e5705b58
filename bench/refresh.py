"""Refresh throughput: dirty items with 200 seeds each, k=20, h=64, through the real seed and
look-alike state refresh (Postgres + Redis), in a scratch database and Redis db 14. Also shows
that the cost follows the dirty items, not the items in the table. Writes results.json["refresh"]."""

from __future__ import annotations

import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import save, scratch_database, table

ITEMS, SEEDS, READERS, DIM = 10_000, 200, 20_000, 64


def _copy(cursor, table_name: str, columns: str, rows) -> None:
    buf = io.StringIO("".join("\t".join(map(str, r)) + "\n" for r in rows))
    with cursor.cursor.copy(f"COPY {table_name} ({columns}) FROM STDIN") as copy:  # noqa: S608 (constants)
        copy.write(buf.read())


def main() -> None:
    os.environ["REDIS_URL"] = "redis://127.0.0.1:6379/14"
    models = Path(tempfile.mkdtemp(prefix="ralm-bench-"))
    with scratch_database("ralm_feed_bench_refresh"):
        import torch
        from django.db import connection, transaction
        from django.utils import timezone

        from recsys.artifacts import save_lookalike
        from recsys.lookalike import LookalikeConfig, LookalikeModel
        from webapp.lookalike import store
        from webapp.lookalike.models import ModelKind, ModelRun, SeedSet
        from webapp.lookalike.refresh import seeds_refresh, states_refresh

        torch.set_num_threads(2)
        store.client().flushdb()
        rng = np.random.default_rng(0)
        save_lookalike(models / "lookalike", LookalikeModel(LookalikeConfig(dim=DIM, k=20)))
        tower = ModelRun.objects.create(kind=ModelKind.USER_TOWER, version="bench", is_active=True)
        ModelRun.objects.create(kind=ModelKind.LOOKALIKE, version="bench", is_active=True,
                                artifact_path=str(models / "lookalike"))
        now = timezone.now()
        print(f"setting up {READERS:,} readers, {5 * ITEMS:,} items, {ITEMS * SEEDS:,} clicks ...", flush=True)
        with connection.cursor() as cur, transaction.atomic():
            _copy(cur, "news_reader", "id, source, external_id, name, region, age_band, device, topics, created_at",
                  ((r, "demo", f"b{r}", f"Reader {r}", "", "", "", "{}", now.isoformat())
                   for r in range(1, READERS + 1)))
            vecs = rng.standard_normal((READERS, DIM)).astype("<f4")
            _copy(cur, "lookalike_readervector", "reader_id, model_run_id, dim, vector, computed_at",
                  ((r + 1, tower.pk, DIM, "\\\\x" + vecs[r].tobytes().hex(), now.isoformat()) for r in range(READERS)))
            _copy(cur, "news_item", "id, source, external_id, title, abstract, category, subcategory, url, status,"
                  " popularity, click_count, shown_count, created_at",
                  ((i, "demo", f"i{i}", f"Item {i}", "", "news", "", "", "cold", 0, 0, 0, now.isoformat())
                   for i in range(1, 5 * ITEMS + 1)))
            clicks = ((r, i, now.isoformat()) for i in range(1, ITEMS + 1)
                      for r in rng.choice(READERS, SEEDS, replace=False) + 1)
            _copy(cur, "news_click", "reader_id, item_id, clicked_at", clicks)
        cur = connection.cursor()
        cur.execute("ANALYZE")

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
        for dirty in (1_000, 10_000):
            seconds = run(list(range(1, dirty + 1)))
            rows.append((f"{dirty:,} dirty of {5 * ITEMS:,} items", f"{seconds:.1f}", f"{dirty / seconds:,.0f}"))
            if dirty == ITEMS:
                result = {"items": dirty, "seeds_per_item": SEEDS, "k": 20, "h": DIM, "seconds": round(seconds, 2),
                          "items_per_s": round(dirty / seconds), "seeds_seconds": round(split["seeds"], 2),
                          "states_seconds": round(split["states"], 2)}
        # The same 1,000 dirty items with no other items in the tables' way: the cost follows the dirty set.
        with connection.cursor() as c, transaction.atomic():
            c.execute("DELETE FROM news_click WHERE item_id > 1000")
            c.execute("DELETE FROM lookalike_lookalikestate WHERE item_id > 1000")
            c.execute("DELETE FROM lookalike_seedset WHERE item_id > 1000")
            c.execute("DELETE FROM news_item WHERE id > 1000")
        seconds = run(list(range(1, 1001)))
        rows.append(("1,000 dirty of 1,000 items", f"{seconds:.1f}", f"{1000 / seconds:,.0f}"))
        result["dirty_1000_of_50000_seconds"] = float(rows[0][1])
        result["dirty_1000_of_1000_seconds"] = round(seconds, 2)
        store.client().flushdb()
    save("refresh", result)
    print(table(rows, ("refresh (seeds + k-means + E_global, Postgres + Redis)", "seconds", "items/s")))


if __name__ == "__main__":
    sys.exit(main())
