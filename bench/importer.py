"""Import throughput: `import_dataset --format movielens` on ml-latest-small, first import
and idempotent re-import, into a scratch database. Writes results.json["import"]."""

from __future__ import annotations

import statistics
import sys
import time

from common import ROOT, save, scratch_database, table

DATA = ROOT.parent / "shared" / "data" / "movielens" / "ml-latest-small"
REPEATS = 3


def main() -> None:
    if not DATA.is_dir():
        sys.exit(f"bench/importer.py: {DATA} not found")
    first, again = [], []
    with scratch_database():
        from django.core.management import call_command

        from webapp.news.models import Click, Item, Reader

        for _ in range(REPEATS):
            for model in (Click, Item, Reader):
                model.objects.all().delete()
            t = time.perf_counter()
            call_command("import_dataset", "--format", "movielens", str(DATA), verbosity=0)
            first.append(time.perf_counter() - t)
            t = time.perf_counter()
            call_command("import_dataset", "--format", "movielens", str(DATA), verbosity=0)
            again.append(time.perf_counter() - t)
        rows = Item.objects.count() + Reader.objects.count() + Click.objects.count()
    result = {
        "dataset": "ml-latest-small", "rows": rows, "repeats": REPEATS,
        "first_seconds_median": round(statistics.median(first), 2),
        "reimport_seconds_median": round(statistics.median(again), 2),
        "rows_per_s": round(rows / statistics.median(first)),
    }
    save("import", result)
    print(table([("first import", f"{result['first_seconds_median']:.2f}", f"{result['rows_per_s']:,}"),
                 ("re-import (no change)", f"{result['reimport_seconds_median']:.2f}",
                  f"{round(rows / statistics.median(again)):,}")],
                ("ml-latest-small", "median s", "rows/s")))


if __name__ == "__main__":
    main()
