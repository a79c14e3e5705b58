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
from collections import Counter
from io import StringIO

import numpy as np
from common import save, scratch_database, table

VARIANTS = ["ctr", "blend:0.1", "blend:0.2", "blend:0.3", "blend:0.5", "feature", "gate"]
SESSIONS = 3000


def main() -> None:
    os.environ["REDIS_URL"] = "redis://127.0.0.1:6379/14"
    os.environ["MODEL_DIR"] = tempfile.mkdtemp(prefix="ralm-bench-ab-")
    with scratch_database("ralm_feed_bench_ab"):
        from django.core.management import call_command
        from django.utils import timezone
        from tqdm import tqdm

        from fixtures.corpus import load_readers, load_stories, taxonomy_of
        from recsys.ranker import exposure_gini
        from recsys.simulation import ClickModel
        from webapp.lookalike import store
        from webapp.news import ranking, services
        from webapp.news.models import Reader
        from webapp.news.selectors import reader_history
        from webapp.news.simulator import LocalTransport, Shown, Simulator, backfill_times

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
        # Paired: every session, every variant ranks the same reader at the same moment (not
        # logged) and the hidden click model scores each page; then one variant, drawn at
        # random, serves the page that is logged and clicked. Reader-to-reader variation, the
        # bulk of the noise between arms, cancels out of the paired comparison.
        catalog = ranking.catalogs.get("demo", store.client())
        head = set(catalog.ids[np.argsort(-catalog.shown, kind="stable")[: len(catalog.ids) // 5]].tolist())
        paired = {label: {"pages": 0, "impressions": 0, "expected": 0.0, "cold": 0, "tail": 0, "shown": Counter(),
                          "categories": 0} for label, _, _ in sim.variants}
        for t in tqdm(times, desc="A/B sessions", unit="session"):
            k = sim.draw_reader()
            reader = Reader.objects.get(pk=sim.db_ids[k])
            clicked, shown = reader_history(reader=reader, now=t)
            for label, mode, weight in sim.variants:
                r = ranking.rank(reader_id=reader.pk, source="demo", clicked=clicked, shown=shown, now=t, limit=10,
                                 config=ranking.ranker_config(mode, weight))
                page = [Shown(0, pos, i.external_id, i.category, i.subcategory, i.published_at)
                        for pos, i in enumerate(r.items)]
                acc = paired[label]
                acc["pages"] += 1
                acc["impressions"] += len(page)
                acc["expected"] += sim.expected_clicks(k, page, t)
                acc["cold"] += sum(not w for w in r.warm)
                acc["tail"] += sum(int(i) not in head for i in r.item_ids)
                acc["shown"].update(int(i) for i in r.item_ids)
                acc["categories"] += len({i.category for i in r.items})
                acc["served_as"] = r.mode
            sim.session(now=t, reader=k)
        services.item_popularity_refresh()
        out = StringIO()
        call_command("ab_report", "--hours", "3", "--json", stdout=out)
        report = json.loads(out.getvalue())
        summary = {k: v for k, v in report["summary"].items() if k != "baseline"}
        within = {k: v for k, v in report["vs_ctr_within_readers"].items() if k != "baseline"}
        store.client().flushdb()
    pairs = {}
    for label, acc in paired.items():
        counts = np.array([acc["shown"].get(int(i), 0) for i in catalog.ids])
        pairs[label] = {"pages": acc["pages"], "expected_ctr": round(acc["expected"] / acc["impressions"], 5),
                        "cold_share": round(acc["cold"] / acc["impressions"], 4),
                        "tail_share": round(acc["tail"] / acc["impressions"], 4),
                        "exposure_gini": round(exposure_gini(counts), 4),
                        "categories_per_page": round(acc["categories"] / acc["pages"], 2),
                        "served_as": acc.get("served_as")}
    ref = pairs["ctr"]["expected_ctr"]
    for stats in pairs.values():
        stats["expected_ctr_vs_ctr_only"] = round(stats["expected_ctr"] / ref - 1, 4)
    seconds = round(time.perf_counter() - started)
    save("ab", {"sessions": SESSIONS, "seconds": seconds, "paired": pairs, "logged": summary,
                "logged_within_readers": within})
    cols = ("expected_ctr", "expected_ctr_vs_ctr_only", "cold_share", "tail_share", "exposure_gini",
            "categories_per_page")
    print("paired (every variant ranks every session; the hidden click model's expected CTR):")
    print(table([(m, *(s[c] for c in cols)) for m, s in sorted(pairs.items())], ("variant", *cols)))
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
