"""The ranker's arms on simulated traffic: the demo world with the 36-hour history of
`make demo`, models trained on it, then simulated sessions (in-process, through the same feed
service the API calls) in which every arm ranks the same reader at the same moment, and one
arm, rotating per reader, serves the page that is logged and clicked. Scratch database and
Redis db 14. Writes results.json["ab"], and ["demo"]: the time to build the history and train
on it. Tiny mode (bench/common.py): the tiny demo world, 40 sessions."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from datetime import timedelta
from io import StringIO

from common import REDIS_URL, TINY, TINY_WORLD, demo_world, save, scratch_database, sized, table

SESSIONS = sized(3000, 40)
BACKFILL = sized(100_000, TINY_WORLD[0])  # the 36-hour history of `make demo`


def main() -> None:
    os.environ["REDIS_URL"] = REDIS_URL
    os.environ["MODEL_DIR"] = tempfile.mkdtemp(prefix="ralm-bench-ab-")
    with scratch_database("ralm_feed_bench_ab"):
        from django.conf import settings
        from django.core.management import call_command
        from django.utils import timezone
        from tqdm import tqdm

        from fixtures.corpus import click_model, load_readers
        from recsys.abtest import PairedPages
        from recsys.arms import ARMS, REFERENCE
        from webapp.common.connections import redis_client
        from webapp.feed.abtest import head_of, pages_rank
        from webapp.feed.backfill import ARM as HISTORY_ARM
        from webapp.feed.simulator import LocalTransport, Simulator, backfill_times
        from webapp.news import services
        from webapp.news.models import Click, Impression

        redis_client().flushdb()
        started = time.perf_counter()
        steps, trained = demo_world(sessions=BACKFILL, hours=36, seed=1)
        demo = {"load_demo_seconds": steps["load_demo"], "backfill_sessions": BACKFILL,
                "backfill_seconds": steps["backfill"], "clicks": Click.objects.count(),
                "impressions": Impression.objects.count(), "readers": trained.readers,
                "train_seconds": steps["train"], "train_stages": trained.seconds,
                "stage1_val_auc": trained.tower_run.metrics["val_auc"],
                "stage2_val_auc": trained.lookalike_run.metrics["val_auc"]}
        arms = [ARMS[REFERENCE], *(a for name, a in ARMS.items() if name != REFERENCE)]
        print(f"history and models ready in {time.perf_counter() - started:.0f} s; {SESSIONS} sessions, arms "
              f"{', '.join(a.name for a in arms)} ...", flush=True)
        # Every session, every arm ranks the same reader at the same moment (not logged) and the
        # hidden click model scores each page: reader-to-reader variation, the bulk of the noise
        # between arms, cancels out. Then one arm, rotating per reader, serves the logged page.
        sim = Simulator(readers=load_readers(), click_model=click_model(settings.DEMO_WORLD),
                        transport=LocalTransport(), seed=2, arms=[a.name for a in arms])
        times = backfill_times(hours=2, sessions=SESSIONS, now=timezone.now(), rng=sim.rng)
        catalog, head = head_of(source="demo", now=timezone.now())  # the head before the A/B
        pages = PairedPages()
        next_counts = times[0] if times else None
        for t in tqdm(times, desc="A/B sessions", unit="session", disable=TINY):
            if t >= next_counts:  # the item counts, as the minute's job keeps them
                services.item_popularity_refresh(now=t)
                next_counts = t + timedelta(minutes=5)
            k = sim.draw_reader()
            pages_rank(pages, sim, k, arms=arms, now=t, head=head)
            sim.session(now=t, reader=k)
        services.item_popularity_refresh()
        out = StringIO()
        call_command("ab_report", "--hours", "3", "--json", stdout=out)
        report = json.loads(out.getvalue())
        logged = {k: v for k, v in report["summary"].items() if k != HISTORY_ARM}
        within = {k: v for k, v in report["vs_ctr_within_readers"].items() if k != HISTORY_ARM}
        redis_client().flushdb()
    paired = pages.summary(catalog, reference=REFERENCE)
    seconds = round(time.perf_counter() - started)
    save("ab", {"sessions": SESSIONS, "seconds": seconds, "paired": paired, "logged": logged,
                "logged_within_readers": within})
    save("demo", demo)
    cols = ("expected_ctr", "expected_ctr_vs_ctr_only", "expected_ctr_vs_ctr_only_se", "cold_share", "tail_share",
            "exposure_gini", "categories_per_page")
    print("paired (every arm ranks every session; the hidden click model's expected CTR):")
    print(table([(m, *(s.get(c, "") for c in cols)) for m, s in paired.items()], ("arm", *cols)))
    cols = ("impressions", "ctr", "expected_ctr", "cold_share", "tail_share", "exposure_gini", "categories_per_page")
    print("logged (each session served by one arm; ab_report):")
    print(table([(m, *(s.get(c) for c in cols)) for m, s in sorted(logged.items())], ("arm", *cols)))
    cols = ("expected_ctr_change", "expected_ctr_change_se", "cold_share_diff", "cold_share_diff_se",
            "tail_share_diff", "tail_share_diff_se", "readers")
    print("logged, against ctr within readers (ab_report):")
    print(table([(m, *(s.get(c) for c in cols)) for m, s in sorted(within.items())], ("arm", *cols)))
    print(f"{seconds} s")


if __name__ == "__main__":
    sys.exit(main())
