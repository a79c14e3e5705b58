"""The ranker modes on simulated traffic: the demo world with the 36-hour history of
`make demo`, models trained on it, then simulated sessions split at random between the modes
(in-process, through the same feed service the API calls), compared by `manage.py ab_report`.
Scratch database and Redis db 14. Writes results.json["ab"]."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from io import StringIO

from common import save, scratch_database, table

VARIANTS = ["ctr", "blend:0.1", "blend:0.2", "blend:0.3", "blend:0.5", "feature", "gate"]
SESSIONS = 7000


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
        from webapp.news import services
        from webapp.news.simulator import LocalTransport, Simulator, backfill_times

        store.client().flushdb()
        started = time.perf_counter()
        call_command("load_demo", verbosity=0)
        call_command("simulate", "--backfill-hours", "36", "--sessions", "6000", "--seed", "1", verbosity=0)
        call_command("train", verbosity=0)
        print(f"history and models ready in {time.perf_counter() - started:.0f} s; "
              f"{SESSIONS} sessions split between {', '.join(VARIANTS)} ...", flush=True)
        # The A/B sessions run through the same feed service as the API, over the last 2 hours
        # (ab_report tells the variants apart; the history is logged as `baseline`). Besides
        # the sampled clicks, the simulator sums each impression's hidden click probability:
        # the expected CTR, the same measure without the sampling noise.
        sim = Simulator(readers=load_readers(), click_model=ClickModel(taxonomy=taxonomy_of(load_stories())),
                        transport=LocalTransport(), seed=2, modes=VARIANTS)
        times = backfill_times(hours=2, sessions=SESSIONS, now=timezone.now(), rng=sim.rng)
        for t in tqdm(times, desc="A/B sessions", unit="session"):
            sim.session(now=t)
        services.item_popularity_refresh()
        out = StringIO()
        call_command("ab_report", "--hours", "3", "--json", stdout=out)
        summary = {k: v for k, v in json.loads(out.getvalue()).items() if k != "baseline"}
        for label, (n, _, expected) in sim.stats.variants.items():
            summary[label]["expected_ctr"] = round(expected / n, 5)
        store.client().flushdb()
    ref = summary["ctr"]
    for stats in summary.values():
        stats["expected_ctr_vs_ctr_only"] = round(stats["expected_ctr"] / ref["expected_ctr"] - 1, 4)
    save("ab", {"sessions": SESSIONS, "variants": summary})
    cols = ("impressions", "ctr", "expected_ctr", "expected_ctr_vs_ctr_only", "cold_share", "tail_share",
            "exposure_gini", "categories_per_page")
    print(table([(m, *(s[c] for c in cols)) for m, s in sorted(summary.items())], ("variant", *cols)))


if __name__ == "__main__":
    sys.exit(main())
