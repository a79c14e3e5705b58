"""Import a MovieLens or MIND dataset folder. All or nothing; re-importing adds nothing."""

from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, transaction

from recsys.datasets import READERS, DatasetError, read_dataset
from webapp.lookalike.services import seedset_mark_dirty
from webapp.news.embedding import stored_then_embedded
from webapp.news.importers import ImportReport, dataset_import
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
        def store(progress) -> ImportReport:
            with transaction.atomic():  # all or nothing, the seed sets of the clicked items marked with it
                report = dataset_import(dataset=dataset, source=Source(fmt), progress=progress)
                seedset_mark_dirty(item_ids=report.clicked_items)  # the next refresh rebuilds their seeds
            timing["stored"] = time.perf_counter() - started
            return report

        timing: dict[str, float] = {}
        total = len(dataset.items) + len(dataset.readers) + len(dataset.impressions) + len(dataset.clicks)
        try:
            report, embedded = stored_then_embedded(store, rows=total, desc=f"import {fmt}",
                                                    verbosity=options.get("verbosity", 1))
        except DatabaseError as exc:
            # The reader checks every field against its column; this is the backstop for a
            # rule it does not know, reported in one line like the reader's own errors.
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "stored" in timing:  # the rows are in; only the text vectors failed
                raise CommandError(f"{path}: imported, but the text vectors failed ({reason}); "
                                   "run manage.py embed_items") from None
            raise CommandError(f"{path}: the database refused a row ({reason}) (nothing imported)") from None
        stored = timing["stored"]
        if options.get("verbosity", 1):
            self.stdout.write(f"{fmt}: {report} stored in {stored:.1f}s; {embedded} text vectors computed in "
                              f"{time.perf_counter() - started - stored:.1f}s")
