"""Compare the ranker arms on the logged traffic: python manage.py ab_report [--minutes M | --hours H];
or in the closed loop from a snapshot of this database: python manage.py ab_report --closed-loop HOURS."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils import timezone
from tqdm import tqdm

from fixtures.corpus import CorpusError, click_model, load_readers
from recsys.abtest import (
    PairedPages,
    ab_compare,
    ab_summary,
    ab_within_readers,
    arm_label,
    loop_compare,
    tail_mask,
    was_cold,
)
from recsys.arms import ARMS, REFERENCE, UnknownArm, arms
from webapp.feed import closedloop, loopcopies
from webapp.feed.abtest import head_of, impressions_expected, pages_rank
from webapp.feed.selectors import exposure_before
from webapp.feed.simulator import LocalTransport, Simulator
from webapp.news.models import Impression, Item, Source

COLUMNS = ("impressions", "clicks", "ctr", "expected_ctr", "cold_share", "tail_share", "exposure_gini", "coverage",
           "categories_per_page")


class Command(BaseCommand):
    help = ("Compare ranker arms from the impression log: CTR (and, for the simulated readers, expected "
            "CTR under their hidden click model), cold and tail exposure, Gini, diversity; each against ctr.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--hours", type=float, default=24.0, help="look back this many hours (default 24)")
        parser.add_argument("--minutes", type=float, default=0.0, help="look back this many minutes instead")
        parser.add_argument("--source", default=Source.DEMO, choices=[s.value for s in Source])
        parser.add_argument("--reference", default=REFERENCE, help="the arm the others are compared against")
        parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
        parser.add_argument("--paired", type=int, default=0, metavar="N",
                            help="also rank N simulated readers (drawn by activity) now under every arm, "
                                 "nothing logged, and score the pages with the hidden click model: a paired "
                                 "comparison free of the reader-to-reader spread")
        parser.add_argument("--snapshots", type=int, default=1, metavar="M",
                            help="with --paired: rank N readers at each of M moments, --every seconds apart, and "
                                 "pool them (the live state moves: one moment is one draw of it); the standard "
                                 "errors are then clustered by moment")
        parser.add_argument("--every", type=float, default=60.0, metavar="SECONDS",
                            help="seconds between --snapshots (default 60)")
        parser.add_argument("--arms", default=",".join(ARMS),
                            help=f"the arms --paired and --closed-loop compare, of {', '.join(ARMS)} (the first "
                                 "is the reference)")
        parser.add_argument("--closed-loop", type=float, default=0.0, metavar="HOURS",
                            help="instead of reading the log: from a snapshot of this database now, run every arm "
                                 "HOURS simulated hours in a copy of its own, its clicks making seeds and the "
                                 "minute's refresh turning them into exposure (webapp.feed.closedloop); the same "
                                 "arrivals and click draws in every copy")
        parser.add_argument("--replicates", type=int, default=3, metavar="R",
                            help="with --closed-loop: runs with different arrivals and draws; the figures are means "
                                 "with standard errors over them (default 3)")

    def handle(self, *args, **o) -> None:
        if o["hours"] <= 0 or o["minutes"] < 0 or o["paired"] < 0:
            raise CommandError("--hours must be positive and --minutes and --paired not negative")
        if o["snapshots"] < 1 or not 0 <= o["every"] < float("inf"):
            raise CommandError("--snapshots must be at least 1 and --every a number of seconds >= 0")
        if o["closed_loop"]:
            self._closed_loop(o)
            return
        paired = self._paired(o) if o["paired"] else None
        logged = self._logged(o)
        if o["json"]:
            extra = {"paired": paired, "paired_moments": {"snapshots": o["snapshots"], "every_seconds": o["every"],
                                                          "readers_each": o["paired"]}} if paired is not None else {}
            self.stdout.write(json.dumps({"summary": logged["summary"], f"vs_{o['reference']}": logged["compare"],
                                          f"vs_{o['reference']}_within_readers": logged["within"], **extra},
                                         indent=2))
            return
        self._logged_table(logged, o)
        if paired is not None:
            self._paired_table(paired, o)

    def _logged(self, o: dict) -> dict:
        """The arms' figures from the impressions logged in the window: per arm, against the
        reference, and against it within readers."""
        span = timedelta(minutes=o["minutes"]) if o["minutes"] else timedelta(hours=o["hours"])
        since = timezone.now() - span
        rows = list(Impression.objects.filter(shown_at__gte=since, item__source=o["source"]).values_list(
            "arm", "score_parts", "request_id", "item_id", "click__id", "item__category", "item__status",
            "reader__source", "reader__external_id", "item__external_id", "item__subcategory", "position", "shown_at",
            "item__published_at", "reader_id"))
        label = f"{o['minutes']:g} minutes" if o["minutes"] else f"{o['hours']:g} hours"
        if not rows:
            raise CommandError(f"no impressions of source {o['source']!r} in the last {label}")
        arm = np.array([arm_label(r[0], r[1]) for r in rows])
        cold = np.array([was_cold(r[1], r[6]) for r in rows])
        catalog = np.array(Item.objects.filter(source=o["source"], published_at__lte=timezone.now())
                           .values_list("pk", flat=True))
        item = np.array([r[3] for r in rows], np.int64)
        expected = impressions_expected([(r[8] if r[7] == Source.DEMO else None, r[9], r[5], r[10], r[11], r[12], r[13])
                                    for r in rows]) if o["source"] == Source.DEMO else None
        catalog = np.union1d(catalog, item)
        popularity = exposure_before(catalog=catalog, before=since, source=o["source"])  # fixes the long tail
        summary = ab_summary(arm=arm, request=np.array([r[2] for r in rows]), item=item,
                             clicked=np.array([r[4] is not None for r in rows]), cold=cold,
                             category=np.array([r[5] for r in rows]), catalog=catalog, expected=expected,
                             popularity=popularity)
        # The same comparison within readers (the simulator rotates each reader through the arms).
        per_reader = {"cold_share": cold.astype(float),
                      "tail_share": tail_mask(item, catalog, popularity=popularity).astype(float)}
        if expected is not None:
            per_reader["expected_ctr"] = expected
        within = ab_within_readers(arm=arm, reader=np.array([r[14] for r in rows]), values=per_reader,
                                   reference=o["reference"])
        return {"summary": summary, "compare": ab_compare(summary, reference=o["reference"]), "within": within,
                "expected": expected is not None, "label": label}

    def _logged_table(self, logged: dict, o: dict) -> None:
        summary, compare, within, expected = logged["summary"], logged["compare"], logged["within"], logged["expected"]
        columns = [c for c in COLUMNS if expected or c != "expected_ctr"]
        width = max(len(m) for m in summary) + 2
        self.stdout.write("arm".ljust(width) + "".join(c.rjust(20) for c in columns))
        for m, stats in summary.items():
            self.stdout.write(m.ljust(width) + "".join(str(stats[c]).rjust(20) for c in columns))
        exp = ["expected CTR change"] if expected else []
        if compare:
            self.stdout.write(f"\nagainst {o['reference']} (± one standard error, pages as the unit):")
            self.stdout.write("arm".ljust(width) + "".join(h.rjust(24) for h in
                                                           ["CTR change", *exp, "cold share", "tail share"]))
            for m, c in compare.items():
                cells = [_pct(c, "ctr_change")] + ([_pct(c, "expected_ctr_change")] if expected else [])
                cells += [_pts(c, "cold_share_diff"), _pts(c, "tail_share_diff")]
                self.stdout.write(m.ljust(width) + "".join(x.rjust(24) for x in cells))
        if within:
            self.stdout.write(f"\nagainst {o['reference']} within readers (each reader's own arms compared, then "
                              "averaged over readers who saw both; ± one standard error):")
            self.stdout.write("arm".ljust(width) + "".join(h.rjust(24) for h in
                                                           [*exp, "cold share", "tail share", "readers"]))
            for m, c in within.items():
                cells = ([_pct(c, "expected_ctr_change")] if expected else []) + \
                    [_pts(c, "cold_share_diff"), _pts(c, "tail_share_diff"), str(c["readers"])]
                self.stdout.write(m.ljust(width) + "".join(x.rjust(24) for x in cells))
        note = (f"\nlast {logged['label']}; tail = stories outside the 20% of the catalog most shown over the 24 "
                "hours before the window; cold = cold when shown; coverage = distinct stories per 1,000 impressions")
        if expected:
            note += ("; expected CTR = mean click probability of the shown stories under the simulated readers' "
                     "hidden click model (their impressions only)")
        self.stdout.write(note)

    def _paired(self, o: dict) -> dict:
        if o["source"] != Source.DEMO:
            raise CommandError("--paired needs the demo's simulated readers (--source demo)")
        try:
            chosen = arms(o["arms"])
            sim = Simulator(readers=load_readers(), click_model=click_model(settings.DEMO_WORLD),
                            transport=LocalTransport())
        except UnknownArm as exc:
            raise CommandError(f"--arms: {exc}") from None
        except (CorpusError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        if not chosen:
            raise CommandError("--arms: name at least one arm")
        pages = PairedPages()
        bar = tqdm(total=o["snapshots"] * o["paired"], desc="paired", unit="reader", disable=o["snapshots"] == 1)
        started = time.monotonic()
        for m in range(o["snapshots"]):
            time.sleep(max(0.0, started + m * o["every"] - time.monotonic()))
            now = timezone.now()
            catalog, head = head_of(source=o["source"], now=now)  # the head as of this moment
            for _ in range(o["paired"]):
                pages_rank(pages, sim, sim.draw_reader(), arms=chosen, now=now, head=head, source=o["source"],
                           snapshot=m)
                bar.update()
        bar.close()
        return pages.summary(catalog, reference=chosen[0].name)

    def _closed_loop(self, o: dict) -> None:
        if not 0 < o["closed_loop"] <= 48 or not 1 <= o["replicates"] <= 20:
            raise CommandError("--closed-loop takes 0 < HOURS <= 48 and --replicates 1 to 20")
        if o["source"] != Source.DEMO:
            raise CommandError("--closed-loop needs the demo's simulated readers (--source demo)")
        try:
            chosen = [a.name for a in arms(o["arms"])]
        except UnknownArm as exc:
            raise CommandError(f"--arms: {exc}") from None
        if not chosen:
            raise CommandError("--arms: name at least one arm")
        if not Item.objects.filter(source=Source.DEMO, status="warm").exists():
            raise CommandError("no warm demo stories: load the demo and train first (make demo)")
        now = timezone.now()
        snapshot = f"{connection.settings_dict['NAME']}_loop_snapshot"
        self.stderr.write(f"snapshot of this database into {snapshot} ...")
        try:
            loopcopies.snapshot_make(snapshot)
            plans = [closedloop.plan_make(start=now, hours=o["closed_loop"], seed=r,
                                          sessions_per_hour=closedloop.SESSIONS_PER_HOUR)
                     for r in range(o["replicates"])]
            replicates = loopcopies.replicates_run(template=snapshot, arms=chosen, plans=plans,
                                                   world=settings.DEMO_WORLD, model_dir=str(settings.MODEL_DIR),
                                                   redis_dbs=loopcopies.REDIS_DBS)
        finally:
            loopcopies.database_drop(snapshot)
        figures = loop_compare(replicates, reference=chosen[0])
        if o["json"]:
            self.stdout.write(json.dumps({"closed_loop": {"hours": o["closed_loop"], "replicates": o["replicates"],
                                                          "world": settings.DEMO_WORLD, "arms": figures}}, indent=2))
            return
        self.stdout.write(f"closed loop from now, world {settings.DEMO_WORLD}: {o['replicates']} replicates x "
                          f"{o['closed_loop']:g} simulated hours, each arm in a copy of its own; against "
                          f"{chosen[0]}, mean ± standard error over replicates")
        self.stdout.write(closedloop.loop_table(figures, reference=chosen[0]))
        self.stdout.write("tail = stories outside the 20% most shown over the trailing 24 hours; minutes to warm = "
                          "median over the stories published during the run (never: over half never turned warm)")

    def _paired_table(self, paired: dict, o: dict) -> None:
        if o["snapshots"] == 1:
            self.stdout.write(f"\npaired, now: {o['paired']} simulated readers each ranked by every arm "
                              "(nothing logged), pages scored by the hidden click model; ± one standard error "
                              "over pages:")
        else:
            self.stdout.write(f"\npaired, {o['snapshots']} moments {o['every']:g} s apart: {o['paired']} simulated "
                              "readers each, ranked by every arm (nothing logged), pages scored by the hidden "
                              "click model; ± one standard error clustered by moment:")
        head = ["expected CTR", "vs reference", "cold share", "vs reference", "tail share", "vs reference", "Gini"]
        width = max(len(m) for m in paired) + 2
        self.stdout.write("arm".ljust(width) + "".join(h.rjust(18) for h in head))
        for m, r in paired.items():
            vs = r.get("expected_ctr_vs_ctr_only")
            cells = [str(r["expected_ctr"]),
                     f"{100 * vs:+.1f}% ± {100 * r['expected_ctr_vs_ctr_only_se']:.1f}"
                     if "expected_ctr_vs_ctr_only_se" in r else ("ref" if vs == 0.0 else "-"),
                     str(r["cold_share"]), _pts(r, "cold_share_diff") if "cold_share_diff" in r else "",
                     str(r["tail_share"]), _pts(r, "tail_share_diff") if "tail_share_diff" in r else "",
                     str(r["exposure_gini"])]
            self.stdout.write(m.ljust(width) + "".join(x.rjust(18) for x in cells))


def _pct(c: dict, key: str) -> str:
    return f"{100 * c[key]:+.1f}% ± {100 * c[key + '_se']:.1f}" if key in c else "-"


def _pts(c: dict, key: str) -> str:
    return f"{100 * c[key]:+.1f} pts ± {100 * c[key + '_se']:.1f}"
