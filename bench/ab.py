"""The ranker's arms on simulated traffic, two ways, in the demo world of `make demo` (its
36-hour history and the models trained on it):

- **closed loop** (the paper's online result): each arm runs forward for HOURS simulated
  hours in a copy of the world of its own (bench/closed_loop.py), where its clicks make
  seeds, the minute's refresh turns seeds into states and promotions, and those decide the
  next minute's exposure (webapp.feed.closedloop). Every copy of a replicate shares the
  arrivals, publications and click draws; the figures are means over REPLICATES with
  their standard errors. The default arm, its ablation without RALM, `ctr` and the
  candidate arms run in the default world; the default arm, its ablation and `ctr` in the
  other world.
- **paired, shared world**: every arm ranks the same reader at the same moment and one
  arm, rotating per reader, serves the page that is logged and clicked; every arm's clicks
  become every arm's seeds, so this sees no loop (kept as the quick paired check).

Scratch databases (the copies: webapp.feed.loopcopies.copies_run) and Redis dbs 14 and 13.
Writes results.json["ab"], and ["demo"]: the time to build the history and train on it.
Tiny mode (bench/common.py): the tiny demo world, 40 paired sessions and a few simulated
minutes per copy.
"""

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
HOURS = sized(2.0, 0.05)  # simulated hours each closed-loop copy runs
REPLICATES = sized(3, 2)
RATE = sized(BACKFILL / 36.0, 2000.0)  # sessions per simulated hour: the history's own rate
# Redis databases the copies run in, one per copy running at once (bench/common.py lists who uses which).
REDIS_DBS = (11, 10) if TINY else (14, 13)
CANDIDATES = ("explore",)  # arms compared in the default world beside the default, its ablation and ctr


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
        from recsys.arms import ABLATIONS, ARMS, REFERENCE
        from recsys.simulation import WORLDS
        from webapp.common.connections import redis_client
        from webapp.feed.abtest import head_of, pages_rank
        from webapp.feed.backfill import ARM as HISTORY_ARM
        from webapp.feed.closedloop import loop_table, plus_minus
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
        default, ablation = settings.FEED_ARM, ABLATIONS.get(settings.FEED_ARM)
        loop_arms = list(dict.fromkeys([REFERENCE, default, *([ablation] if ablation else []), *CANDIDATES]))
        print(f"history and models ready in {time.perf_counter() - started:.0f} s; closed loop: {REPLICATES} "
              f"replicates x {', '.join(loop_arms)}, {HOURS:g} simulated hours each ...", flush=True)
        loop = {"default_arm": default,
                "closed_loop": loop_block(settings.DEMO_WORLD, closed_loop(settings.DEMO_WORLD, loop_arms),
                                          default=default, ablation=ablation)}
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
    other = next(w for w in WORLDS if w != world_config_name(settings.DEMO_WORLD))
    with scratch_database("ralm_feed_bench_ab"):
        redis_client().flushdb()
        demo_world(sessions=BACKFILL, hours=36, seed=1, world=other)
        other_arms = [REFERENCE, default, *([ablation] if ablation else [])]
        print(f"world {other} ready; closed loop: {REPLICATES} replicates x {', '.join(other_arms)} ...", flush=True)
        loop["closed_loop"]["other_world"] = loop_block(other, closed_loop(other, other_arms), default=default,
                                                        ablation=ablation)
        redis_client().flushdb()
    paired = pages.summary(catalog, reference=REFERENCE)
    seconds = round(time.perf_counter() - started)
    save("ab", {"sessions": SESSIONS, "seconds": seconds, "paired": paired, "logged": logged,
                "logged_within_readers": within, **loop})
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
    for block in (loop["closed_loop"], loop["closed_loop"]["other_world"]):
        print(f"\nclosed loop, world {block['world']}: {block['replicates']} replicates x {block['hours']:g} simulated "
              f"hours, {block['sessions_per_hour']:g} sessions/hour; each arm in a copy of its own; mean ± standard "
              "error over replicates")
        print(loop_table(block["arms"]))
        a = block.get("ablation") or {}
        if a:
            vs = plus_minus(a, "expected_ctr_rel", 100, "%")
            print(f"{default} against {a['arm']} (without RALM): expected CTR {vs}")
    print(f"{seconds} s")


def world_config_name(spec: str) -> str:
    return spec.partition(":")[0]


def closed_loop(world: str, arms: list[str]) -> list[dict[str, dict]]:
    """Each arm of each replicate in its own copy of the world in the scratch database (its
    snapshot, untouched by the copies); one {arm: result} per replicate."""
    from django.db import connection, connections
    from django.db.models import Max

    from webapp.feed.closedloop import plan_make
    from webapp.feed.loopcopies import replicates_run
    from webapp.news.models import Impression

    start = Impression.objects.aggregate(m=Max("shown_at"))["m"]
    plans = [plan_make(start=start, hours=HOURS, sessions_per_hour=RATE, seed=100 + r) for r in range(REPLICATES)]
    template = connection.settings_dict["NAME"]
    connections.close_all()  # a template must have no connections
    return replicates_run(template=template, arms=arms, plans=plans, world=world, model_dir=os.environ["MODEL_DIR"],
                          redis_dbs=REDIS_DBS, progress=not TINY)


def loop_block(world: str, replicates: list[dict[str, dict]], *, default: str, ablation: str | None) -> dict:
    """The closed loop's figures for results.json: per arm, its figures and against ctr."""
    from recsys.abtest import loop_compare
    from recsys.arms import REFERENCE

    block = {"world": world, "replicates": len(replicates), "hours": HOURS, "sessions_per_hour": round(RATE, 1),
             "arms": loop_compare(replicates, reference=REFERENCE)}
    for a, run in replicates[0].items():
        block["arms"][a]["served_by"] = run["served_by"]
    if ablation:
        vs = loop_compare([{default: r[default], ablation: r[ablation]} for r in replicates],
                          reference=ablation)[default][f"vs_{ablation}"]
        block["ablation"] = {"arm": ablation, "expected_ctr_rel": vs["expected_ctr_rel"],
                             "expected_ctr_rel_se": vs["expected_ctr_rel_se"]}
    return block


if __name__ == "__main__":
    sys.exit(main())
