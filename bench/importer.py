"""Import throughput: MovieLens ml-latest-small into a scratch database, as
`import_dataset --format movielens` does it: parse, store (one transaction), then embed the
item texts. First import and idempotent re-import, each checked against the dataset's
counts (9,742 movies, 610 users, 100,836 ratings). Writes results.json["import"]. Tiny mode
(bench/common.py): the sample in tests/data, once."""

from __future__ import annotations

import statistics
import sys
import time

from common import ROOT, save, scratch_database, sized, table

DATA = sized(ROOT.parent / "shared" / "data" / "movielens" / "ml-latest-small", ROOT / "tests" / "data" /
             "movielens_sample")
REPEATS = sized(3, 1)
COUNTS = sized((9742, 610, 100836), None)  # movies, users, ratings of ml-latest-small


def main() -> None:
    if not DATA.is_dir():
        sys.exit(f"bench/importer.py: {DATA} not found")
    store, again, embed = [], [], []
    with scratch_database():
        from recsys.datasets import read_dataset
        from webapp.news.embedding import items_embed
        from webapp.news.importers import dataset_import
        from webapp.news.models import Click, Item, Reader

        dataset = read_dataset("movielens", DATA)
        expected = COUNTS or (len(dataset.items), len(dataset.readers), len(dataset.clicks))
        for n in range(REPEATS):
            for model in (Click, Item, Reader):
                model.objects.all().delete()
            for times in (store, again):  # the import, then the re-import that adds nothing
                t = time.perf_counter()
                dataset_import(dataset=read_dataset("movielens", DATA), source="movielens")
                times.append(time.perf_counter() - t)
                counts = (Item.objects.count(), Reader.objects.count(), Click.objects.count())
                assert counts == expected, f"imported {counts}, the dataset has {expected}"
            if n == 0:  # the encoder's speed does not depend on the database: once is enough
                t = time.perf_counter()
                items_embed(progress=False)
                embed.append(time.perf_counter() - t)
        rows = Item.objects.count() + Reader.objects.count() + Click.objects.count()
        items = Item.objects.count()
    result = {
        "dataset": DATA.name, "rows": rows, "repeats": REPEATS,
        "store_seconds_median": round(statistics.median(store), 2),
        "reimport_seconds_median": round(statistics.median(again), 2),
        "rows_per_s": round(rows / statistics.median(store)),
        "embed_seconds": round(embed[0], 1), "embed_items_per_s": round(items / embed[0]),
    }
    save("import", result)
    print(table([("parse + store (one transaction)", f"{result['store_seconds_median']:.2f}",
                  f"{result['rows_per_s']:,} rows/s"),
                 ("re-import (adds nothing)", f"{result['reimport_seconds_median']:.2f}", ""),
                 (f"embed {items:,} item texts", f"{result['embed_seconds']:.1f}",
                  f"{result['embed_items_per_s']} items/s")],
                (DATA.name, "seconds", "rate")))


if __name__ == "__main__":
    main()
