"""The ranker modes on simulated traffic: the demo world with the 36-hour history of
`make demo`, models trained on it, then simulated sessions split at random between the modes
(in-process, through the same feed service the API calls), compared by `manage.py ab_report`.
Scratch database and Redis db 14. Writes results.json["ab"], and ["demo"]: the time to build the
history and train on it."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from datetime import timedelta
from io import StringIO

from common import save, scratch_database, table

# blend:W:N0:BUDGET; a budget of 0 is none (the plain blend), left out the setting's (FEED_BLEND_BUDGET)
VARIANTS = ["ctr", "blend:0.05::0", "blend:0.1::0", "blend:0.2::0", "blend:0.5::0", "blend:0.05::0.01",
            "blend:0.1::0.01", "blend:0.2::0.01", "blend:0.5::0.01", "blend:0.1:300:0", "feature", "gate"]
SESSIONS = 3000
BACKFILL = 18000  # the 36-hour history of `make demo`


def main() -> None:
    os.environ["REDIS_URL"] = "redis://127.0.0.1:6379/14"
    os.environ["MODEL_DIR"] = tempfile.mkdtemp(prefix="ralm-bench-ab-")
    with scratch_database("ralm_feed_bench_ab"):
        from django.core.management import call_command
        from django.utils import timezone
        from tqdm import tqdm

        from fixtures.corpus import load_readers, load_stories, taxonomy_of
        from recsys.simulation import ClickModel
        from webapp.lookalike import store
        from webapp.lookalike.training import model_train
        from webapp.news import services
        from webapp.news.abtest import Paired, head_of
        from webapp.news.models import Click, Impression
        from webapp.news.simulator import LocalTransport, Simulator, backfill_times

        store.client().flushdb()
        started = time.perf_counter()
        call_command("load_demo", verbosity=0)
        loaded = time.perf_counter()
        call_command("simulate", "--backfill-hours", "36", "--sessions", str(BACKFILL), "--seed", "1", verbosity=0)
        simulated = time.perf_counter()
        trained = model_train(source="demo", progress=None, log=lambda m: None)
        demo = {"load_demo_seconds": round(loaded - started, 1), "backfill_sessions": BACKFILL,
                "backfill_seconds": round(simulated - loaded, 1), "clicks": Click.objects.count(),
                "impressions": Impression.objects.count(), "readers": trained.readers,
                "train_seconds": round(time.perf_counter() - simulated, 1), "train_stages": trained.seconds,
                "stage1_val_auc": trained.tower_run.metrics["val_auc"],
                "stage2_val_auc": trained.lookalike_run.metrics["val_auc"]}
        print(f"history and models ready in {time.perf_counter() - started:.0f} s; "
              f"{SESSIONS} sessions split between {', '.join(VARIANTS)} ...", flush=True)
        # The A/B sessions run through the same feed service as the API, over the last 2 hours
        # (ab_report tells the variants apart; the history is logged as `baseline`). Besides
        # the sampled clicks, the simulator sums each impression's hidden click probability:
        # the expected CTR, the same measure without the sampling noise.
        sim = Simulator(readers=load_readers(), click_model=ClickModel(taxonomy=taxonomy_of(load_stories())),
                        transport=LocalTransport(), seed=2, modes=VARIANTS)
        times = backfill_times(hours=2, sessions=SESSIONS, now=timezone.now(), rng=sim.rng)
        # Paired: every session, every variant ranks the same reader at the same moment (not
        # logged) and the hidden click model scores each page; then one variant, drawn at
        # random, serves the page that is logged and clicked. Reader-to-reader variation, the
        # bulk of the noise between arms, cancels out of the paired comparison.
        catalog, head = head_of(source="demo", now=timezone.now())  # the head before the A/B
        paired = Paired(sim)
        next_refresh = times[0] if times else timezone.now()
        for t in tqdm(times, desc="A/B sessions", unit="session"):
            if t >= next_refresh:  # the counts (item CTR, the similarity's record) as the minute job keeps them
                services.item_popularity_refresh(now=t)
                next_refresh = t + timedelta(minutes=5)
            k = sim.draw_reader()
            paired.rank(k, now=t, head=head)
            sim.session(now=t, reader=k)
        services.item_popularity_refresh()
        out = StringIO()
        call_command("ab_report", "--hours", "3", "--json", stdout=out)
        report = json.loads(out.getvalue())
        summary = {k: v for k, v in report["summary"].items() if k != "baseline"}
        within = {k: v for k, v in report["vs_ctr_within_readers"].items() if k != "baseline"}
        store.client().flushdb()
    pairs = paired.summary(catalog)
    seconds = round(time.perf_counter() - started)
    save("ab", {"sessions": SESSIONS, "seconds": seconds, "paired": pairs, "logged": summary,
                "logged_within_readers": within})
    save("demo", demo)
    cols = ("expected_ctr", "expected_ctr_vs_ctr_only", "expected_ctr_vs_ctr_only_se", "cold_share", "tail_share",
            "exposure_gini", "categories_per_page")
    print("paired (every variant ranks every session; the hidden click model's expected CTR):")
    print(table([(m, *(s.get(c, "") for c in cols)) for m, s in pairs.items()], ("variant", *cols)))
    cols = ("impressions", "ctr", "expected_ctr", "cold_share", "tail_share", "exposure_gini", "categories_per_page")
    print("logged (each session served by one variant; ab_report):")
    print(table([(m, *(s.get(c) for c in cols)) for m, s in sorted(summary.items())], ("variant", *cols)))
    cols = ("expected_ctr_change", "expected_ctr_change_se", "cold_share_diff", "cold_share_diff_se",
            "tail_share_diff", "tail_share_diff_se", "readers")
    print("logged, against ctr within readers (ab_report):")
    print(table([(m, *(s.get(c) for c in cols)) for m, s in sorted(within.items())], ("variant", *cols)))
    print(f"{seconds} s")


if __name__ == "__main__":
    sys.exit(main())
