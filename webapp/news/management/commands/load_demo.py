"""Load the demo corpus and the simulated readers. Running it again changes nothing."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from fixtures.corpus import READERS_FILE, STORIES_DIR, CorpusError, load_readers, load_stories
from webapp.news.demo import demo_load
from webapp.news.embedding import stored_then_embedded


class Command(BaseCommand):
    help = "Load the demo stories (fixtures/stories) and readers (fixtures/readers.jsonl)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--stories", type=Path, default=STORIES_DIR, help="folder of story JSON files")
        parser.add_argument("--readers", type=Path, default=READERS_FILE, help="reader population JSONL")
        parser.add_argument("--held-back-share", type=float, default=0.2,
                            help="share of stories held back and published while the demo runs")

    def handle(self, *args, stories: Path, readers: Path, held_back_share: float, **options) -> None:
        if not 0.0 <= held_back_share < 1.0:
            raise CommandError("--held-back-share must be in [0, 1)")
        if not stories.is_dir():
            raise CommandError(f"{stories}: not a folder")
        try:
            story_rows = load_stories(stories)
            reader_rows = load_readers(readers)
        except CorpusError as exc:
            raise CommandError(str(exc)) from None
        report, embedded = stored_then_embedded(
            lambda progress: demo_load(stories=story_rows, readers=reader_rows, held_back_share=held_back_share,
                                       progress=progress),
            rows=len(story_rows) + len(reader_rows), desc="load_demo", verbosity=options.get("verbosity", 1))
        if options.get("verbosity", 1):
            self.stdout.write(f"{report}; {embedded} text vectors computed")
