"""How well each scorer picks a story's audience on the demo world (recsys.audience): the
demo world with the history of `make demo` and the models trained on it, then, for every
story with seeds, every demo reader who has not clicked it ranked by each scorer against the
hidden click model's attraction. Per seed bucket: Spearman's rho and the AUC of the truly top
10% readers, means over stories with standard errors. Scratch database and Redis db 14.
Writes results.json["audience"]. Tiny mode (bench/common.py): the tiny demo world."""

from __future__ import annotations

import os
import sys
import tempfile
import time

from common import REDIS_URL, TINY_WORLD, demo_world, save, scratch_database, sized, table

BACKFILL = sized(100_000, TINY_WORLD[0])  # the 36-hour history of `make demo`
ORDER = ("ralm", "seed_average", "click_profile", "category_affinity", "coldstart", "category_truth")


def main() -> None:
    os.environ["REDIS_URL"] = REDIS_URL
    os.environ["MODEL_DIR"] = tempfile.mkdtemp(prefix="ralm-bench-audience-")
    with scratch_database("ralm_feed_bench_audience"):
        from webapp.common.connections import redis_client
        from webapp.lookalike.audience import AudienceWorld
        from webapp.news.models import Click

        redis_client().flushdb()
        started = time.perf_counter()
        steps, trained = demo_world(sessions=BACKFILL, hours=36, seed=1)
        world = AudienceWorld.load()
        result = world.all_stories()
        result |= {"stage1_val_auc": trained.tower_run.metrics["val_auc"],
                   "stage2_val_auc": trained.lookalike_run.metrics["val_auc"],
                   "clicks_per_reader": round(Click.objects.count() / max(len(world.reader_ids), 1), 1),
                   "seconds": round(time.perf_counter() - started, 1), "world": steps}
        redis_client().flushdb()
    save("audience", result)
    rows = []
    for bucket, scorers in result["buckets"].items():
        for name in sorted(scorers, key=lambda s: ORDER.index(s) if s in ORDER else len(ORDER)):
            m = scorers[name]
            rows.append((bucket, name, f"{m['rho']:.3f} ± {m['rho_se']:.3f}", f"{m['auc']:.3f} ± {m['auc_se']:.3f}",
                         m["stories"]))
    print(table(rows, ("seeds", "scorer", "Spearman rho", "AUC top 10%", "stories")))
    print(f"stage 1 val AUC {result['stage1_val_auc']}, stage 2 val AUC {result['stage2_val_auc']}, "
          f"{result['clicks_per_reader']} clicks per reader; {result['seconds']:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
