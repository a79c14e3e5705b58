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

MODES = "blend,ctr,feature,gate"
SESSIONS = 4000


def main() -> None:
    os.environ["REDIS_URL"] = "redis://127.0.0.1:6379/14"
    os.environ["MODEL_DIR"] = tempfile.mkdtemp(prefix="ralm-bench-ab-")
    with scratch_database("ralm_feed_bench_ab"):
        from django.core.management import call_command

        from webapp.lookalike import store

        store.client().flushdb()
        started = time.perf_counter()
        call_command("load_demo", verbosity=0)
        call_command("simulate", "--backfill-hours", "36", "--sessions", "6000", "--seed", "1", verbosity=0)
        call_command("train", verbosity=0)
        print(f"history and models ready in {time.perf_counter() - started:.0f} s; "
              f"{SESSIONS} sessions split between {MODES} ...", flush=True)
        # The A/B sessions come after the history (the last 2 hours hold both; ab_report
        # tells the modes apart, the history is logged as `baseline`).
        call_command("simulate", "--backfill-hours", "2", "--sessions", str(SESSIONS), "--seed", "2",
                     "--modes", MODES, verbosity=0)
        out = StringIO()
        call_command("ab_report", "--hours", "3", "--json", stdout=out)
        summary = {k: v for k, v in json.loads(out.getvalue()).items() if k != "baseline"}
        store.client().flushdb()
    ctr0 = summary["ctr"]["ctr"]
    for stats in summary.values():
        stats["ctr_vs_ctr_only"] = round(stats["ctr"] / ctr0 - 1, 4) if ctr0 else None
    save("ab", {"sessions": SESSIONS, "modes": summary})
    cols = ("impressions", "ctr", "ctr_vs_ctr_only", "cold_share", "tail_share", "exposure_gini",
            "categories_per_page")
    print(table([(m, *(s[c] for c in cols)) for m, s in summary.items()], ("mode", *cols)))


if __name__ == "__main__":
    sys.exit(main())
