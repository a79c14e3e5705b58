"""Compare the ranker modes on the logged traffic: python manage.py ab_report [--hours H]."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from recsys.ranker import ab_summary
from webapp.news.models import Impression, Item, Source
from webapp.news.selectors import impression_variant, impression_was_cold

COLUMNS = ("impressions", "clicks", "ctr", "cold_share", "tail_share", "exposure_gini", "categories_per_page")


class Command(BaseCommand):
    help = "Compare ranker modes from the impression log: CTR, cold and tail exposure, Gini, diversity."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--hours", type=float, default=24.0, help="look back this many hours (default 24)")
        parser.add_argument("--source", default=Source.DEMO, choices=[s.value for s in Source])
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def handle(self, *args, **o) -> None:
        if o["hours"] <= 0:
            raise CommandError("--hours must be positive")
        since = timezone.now() - timedelta(hours=o["hours"])
        rows = list(Impression.objects.filter(shown_at__gte=since, item__source=o["source"]).values_list(
            "mode", "score_parts", "request_id", "item_id", "click__id", "item__category", "item__status"))
        if not rows:
            raise CommandError(f"no impressions of source {o['source']!r} in the last {o['hours']:g} hours")
        mode = np.array([impression_variant(m, p) for m, p, *_ in rows])
        cold = np.array([impression_was_cold(p, s) for _, p, _, _, _, _, s in rows])
        catalog = np.array(Item.objects.filter(source=o["source"], published_at__lte=timezone.now())
                           .values_list("pk", flat=True))
        item = np.array([r[3] for r in rows], np.int64)
        summary = ab_summary(mode=mode, request=np.array([r[2] for r in rows]), item=item,
                             clicked=np.array([r[4] is not None for r in rows]), cold=cold,
                             category=np.array([r[5] for r in rows]), catalog=np.union1d(catalog, item))
        if o["json"]:
            self.stdout.write(json.dumps(summary, indent=2))
            return
        width = max(len(m) for m in summary) + 2
        self.stdout.write("mode".ljust(width) + "".join(c.rjust(20) for c in COLUMNS))
        for m, stats in summary.items():
            self.stdout.write(m.ljust(width) + "".join(str(stats[c]).rjust(20) for c in COLUMNS))
        self.stdout.write(f"\nlast {o['hours']:g} h; tail = items outside the most shown 20% of the catalog; "
                          "cold = cold when shown")
