"""What RALM adds to the count, in every demo world, against that world's hidden click model
(webapp.feed.truth): for each world, the history of `make demo` drawn in it and the models
trained on it, then
- the feed's view: per reader, the warm stories they have not clicked, ranked by each scorer;
- the audience view: per story, the readers who have not clicked it, by seed bucket;
each scorer alone (mean Spearman rho) and added to the count (the paired difference against
the count), the default arm against its ablation without RALM, RALM against the seeds' mean
E_u, the information ceiling and the oracle; and the weights the ranker learned for RALM's
and the cold-start model's logits. The default world also gets the per-story audience table
(recsys.audience.summarise). Scratch database and Redis db 14.
Writes results.json["audience"]. Tiny mode (bench/common.py): the tiny demo world.

    python bench/audience.py                    # every registered world
    python bench/audience.py audiences:w_audience=1.2   # a world spec of your own
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time

from common import REDIS_URL, TINY_WORLD, demo_world, save, scratch_database, sized, table

BACKFILL = sized(100_000, TINY_WORLD[0])  # the 36-hour history of `make demo`
ORDER = ("ralm", "seed_average", "click_profile", "category_affinity", "coldstart", "category_truth")
LABELS = {"count": "the count (category + 0.5 subcategory log share)", "ralm": "RALM (the served logit)",
          "seed_average": "seeds' mean E_u (cosine)", "als": "ALS look-alike (seeds' mean factors)",
          "arm": "the default arm's score", "ablation": "the default arm without RALM (ablation)",
          "ceiling": "information ceiling (tastes estimated from the logs)",
          "oracle": "oracle (the hidden tastes; no model can know them)"}


def fmt(d: dict, key: str = "diff") -> str:
    if not d or d.get(key) is None or (isinstance(d.get(key), float) and math.isnan(d[key])):
        return "—"
    return f"{d[key]:+.3f} ± {d['se']:.3f}" if key == "diff" else f"{d[key]:.3f} ± {d['se']:.3f}"


def world_table(v: dict) -> str:
    """One row per scorer: alone and added to the count, in the feed's view and at 20-99 seeds."""
    cols = [("feed_view", v["feed_view"])] + [(f"seeds {b}", s) for b, s in v["buckets"].items()]
    header = ("scorer", *(f"{name}: alone" for name, _ in cols), *(f"{name}: count + it" for name, _ in cols))
    rows = []
    for k, label in LABELS.items():
        alone = [fmt(s["scorers"].get(k, {}), "rho") for _, s in cols]
        added = ["ref" if k == "count" else fmt(s["count_plus"].get(k, {})) for _, s in cols]
        rows.append((label, *alone, *added))
    rows.append(("arm − ablation", *(fmt(s["arm_minus_ablation"]) for _, s in cols), *("" for _ in cols)))
    rows.append(("RALM − seeds' mean E_u", *(fmt(s["ralm_minus_seed_average"]) for _, s in cols),
                 *("" for _ in cols)))
    rows.append(("units (readers / stories)", *(str(s["units"]) for _, s in cols), *("" for _ in cols)))
    return table(rows, header)


def share_of_ceiling(v: dict) -> float | None:
    ralm, ceiling = v.get("count_plus_ralm", {}).get("diff"), v.get("ceiling", {}).get("diff")
    if ralm is None or ceiling is None or not ceiling > 0:
        return None
    return round(ralm / ceiling, 3)


def one_world(world: str, *, default: bool) -> dict:
    """Build the world in a fresh scratch database, train, measure both views."""
    with scratch_database("ralm_feed_bench_audience"):
        from webapp.common.connections import redis_client
        from webapp.feed.truth import measure
        from webapp.lookalike.audience import AudienceWorld
        from webapp.lookalike.models import ModelKind, ModelRun
        from webapp.news.models import Click, Reader

        redis_client().flushdb()
        started = time.perf_counter()
        steps, trained = demo_world(sessions=BACKFILL, hours=36, seed=1, world=world)
        print(f"[{world}] world built in {time.perf_counter() - started:.0f} s", flush=True)
        out = measure(world, progress=not os.environ.get("BENCH_TINY")) or {}
        ctr = ModelRun.objects.filter(kind=ModelKind.CTR, is_active=True).first()
        metrics = (ctr.metrics or {}) if ctr is not None else {}
        weights = {arm: (metrics.get(f"ctr_{arm}") or {}).get("weights") for arm in ("feature", "noralm")}
        out |= {"learned_weights": weights, "ralm_weight": metrics.get("ralm_weight"),
                "stage1_val_auc": trained.tower_run.metrics["val_auc"],
                "stage2_val_auc": trained.lookalike_run.metrics["val_auc"],
                "clicks": Click.objects.count(), "readers": Reader.objects.filter(source="demo").count(),
                "world_seconds": steps}
        if "feed_view" in out:
            out["feed_view"]["ralm_weight"] = out["ralm_weight"]
            out["feed_view"]["ralm_share_of_ceiling"] = share_of_ceiling(out["feed_view"])
        if default:
            legacy = AudienceWorld.load(world)
            if legacy is not None:
                out["per_story"] = legacy.all_stories()
        out["seconds"] = round(time.perf_counter() - started, 1)
        redis_client().flushdb()
    return out


def main(argv: list[str]) -> None:
    os.environ["REDIS_URL"] = REDIS_URL
    os.environ["MODEL_DIR"] = tempfile.mkdtemp(prefix="ralm-bench-audience-")
    from recsys.simulation import DEFAULT_WORLD, WORLDS, world_config

    worlds = argv or [DEFAULT_WORLD, *(w for w in WORLDS if w != DEFAULT_WORLD)]
    for w in worlds:
        world_config(w)  # a bad spec stops here, before any world is built
    started = time.perf_counter()
    result: dict = {"worlds": {}, "default_world": DEFAULT_WORLD}
    for w in worlds:
        result["worlds"][w] = one_world(w, default=w == DEFAULT_WORLD)
    # The keys of the per-story table stay at the top, for the default world.
    main_world = result["worlds"].get(DEFAULT_WORLD) or next(iter(result["worlds"].values()))
    per_story = main_world.get("per_story", {})
    result |= {"buckets": per_story.get("buckets", {}), "stage1_val_auc": main_world["stage1_val_auc"],
               "stage2_val_auc": main_world["stage2_val_auc"], "seconds": round(time.perf_counter() - started, 1),
               "clicks_per_reader": round(main_world["clicks"] / max(main_world["readers"], 1), 1),
               "world": main_world["world_seconds"]}
    if argv:  # a world of one's own is printed, not saved over the committed figures
        print("(worlds named on the command line: results.json left alone)")
    else:
        save("audience", result)
    for w, v in result["worlds"].items():
        print(f"\n## world {w}: stage 1 val AUC {v['stage1_val_auc']}, stage 2 val AUC {v['stage2_val_auc']}, "
              f"{v['clicks']:,} clicks; {v['seconds']:.0f} s")
        if "feed_view" not in v:
            print("(no trained models or no stories with seeds: nothing measured)")
            continue
        print(world_table(v))
        fv = v["feed_view"]
        print(f"learned weights (raw units): {v['learned_weights'] or 'none recorded'}")
        print(f"feed view: arm − ablation {fmt(fv['arm_minus_ablation'])}; count + RALM {fmt(fv['count_plus_ralm'])}; "
              f"ceiling {fmt(fv['ceiling'])}; RALM's share of the ceiling {fv['ralm_share_of_ceiling']}")
        b = v["buckets"].get("20-99")
        if b:
            print(f"audience view 20-99 seeds: arm − ablation {fmt(b['arm_minus_ablation'])}; "
                  f"RALM − seeds' mean E_u {fmt(b['ralm_minus_seed_average'])}; ceiling {fmt(b['ceiling'])}")
    if per_story.get("buckets"):
        rows = []
        for bucket, scorers in per_story["buckets"].items():
            for name in sorted(scorers, key=lambda s: ORDER.index(s) if s in ORDER else len(ORDER)):
                m = scorers[name]
                rows.append((bucket, name, f"{m['rho']:.3f} ± {m['rho_se']:.3f}",
                             f"{m['auc']:.3f} ± {m['auc_se']:.3f}", m["stories"]))
        print(f"\nper story, world {DEFAULT_WORLD}:")
        print(table(rows, ("seeds", "scorer", "Spearman rho", "AUC top 10%", "stories")))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
