"""Import a MovieLens or MIND dataset folder. All or nothing; re-importing adds nothing."""

from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from recsys.datasets import READERS, DatasetError, read_dataset
from webapp.news.embedding import items_embed
from webapp.news.importers import dataset_import
from webapp.news.models import Source


class Command(BaseCommand):
    help = "Import MIND (news.tsv, behaviors.tsv) or MovieLens (movies.csv, ratings.csv, tags.csv)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--format", required=True, choices=sorted(READERS), dest="fmt")
        parser.add_argument("path", type=Path, help="folder holding the dataset files")

    def handle(self, *args, fmt: str, path: Path, **options) -> None:
        started = time.perf_counter()
        try:
            dataset = read_dataset(fmt, path)
        except DatasetError as exc:
            raise CommandError(f"{exc} (nothing imported)") from None
        total = len(dataset.items) + len(dataset.readers) + len(dataset.impressions) + len(dataset.clicks)
        with tqdm(total=total, desc=f"import {fmt}", unit="row",
                  disable=options.get("verbosity", 1) == 0) as bar:
            report = dataset_import(dataset=dataset, source=Source(fmt), progress=bar.update)
        stored = time.perf_counter() - started
        # Outside the import's transaction: a failure here leaves the rows, and embed_items retries.
        embedded = items_embed(progress=options.get("verbosity", 1) > 0)
        if options.get("verbosity", 1) == 0:
            return
        self.stdout.write(
            f"{fmt}: items {report.items} ({report.items_created} new), readers {report.readers} "
            f"({report.readers_created} new), impressions {report.impressions} "
            f"({report.impressions_created} new), clicks {report.clicks} ({report.clicks_created} new) "
            f"stored in {stored:.1f}s; {embedded} text vectors computed in "
            f"{time.perf_counter() - started - stored:.1f}s"
        )
