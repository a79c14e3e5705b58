"""Every benchmark runs in `make test`, at a tiny size on its own code path, so a change
that breaks one (a new column, a renamed service) fails here rather than at the next
`make bench`. The committed results are left alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT


def test_every_benchmark_runs_in_tiny_mode(tmp_path):
    committed = (ROOT / "bench" / "results.json").read_bytes()
    results = tmp_path / "results.json"
    out = subprocess.run([sys.executable, "bench/run.py", "--tiny", "--results", str(results)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    r = json.loads(results.read_text())
    assert r["import"]["rows"] > 0 and r["import"]["store_seconds_median"] > 0
    assert r["refresh"]["items"] > 0 and r["refresh"]["items_per_s"] > 0
    assert all(c["p50_ms"] > 0 for c in r["feed"]["candidates"].values()) and r["feed"]["raw_seed_ratio_500"] > 0
    assert r["readers"]["clicks"] > 0 and r["readers"]["click_to_vector_ms"]["p50"] > 0
    assert r["load"]["requests"] > 0 and r["load"]["errors_5xx"] == 0
    assert r["load"]["clicks_sent"] == r["load"]["clicks_stored"]
    soak = r["soak"]
    assert [p["phase"] for p in soak["phases"]] == ["steady", "worker killed", "redis down", "redis back",
                                                   "postgres cut", "recovery"]
    assert all(p["errors_5xx"] == 0 and p["feeds_200"] == p["feeds"] for p in soak["phases"])
    assert all(p["clicks_sent"] == p["clicks_stored"] for p in soak["phases"])
    assert sum(p["outage_feeds"] for p in soak["phases"]) > 0 and soak["refresh_caught_up"]
    assert min(soak["faults"]["postgres cut"]["terminated"]) > 0
    scale = r["scale"]
    assert scale["counts"]["ratio"] > 0 and scale["counts"]["stories_shown"] > 0
    assert scale["refresh"]["one_worker_s"] > 0 and scale["refresh"]["two_workers_s"] > 0
    assert scale["refresh"]["steady_one_worker_s"] > 0 and scale["refresh"]["steady_two_workers_s"] > 0
    assert scale["refresh"]["steady_dirty"] < scale["refresh"]["steady_stories"]
    feed = scale["feed"]  # through recall (the tiny world is above its recall threshold)
    assert 0 < feed["p50_ms"] <= feed["p99_ms"] and feed["requests"] > 0 and 0.5 <= feed["top10_kept"] <= 1
    assert feed["warm_stories"] > 0 and 0 < scale["web_rss_mib"] < 4096
    assert {"ctr", "blend", "feature", "gate"} <= set(r["ab"]["paired"]) and r["demo"]["clicks"] > 0
    loop = r["ab"]["closed_loop"]  # every arm in a copy of the world of its own, in both worlds
    assert r["ab"]["default_arm"] == "feature" and loop["world"] == "audiences" and loop["replicates"] == 2
    assert loop["other_world"]["world"] == "labels" and set(loop["other_world"]["arms"]) == {"ctr", "feature", "noralm"}
    for block in (loop, loop["other_world"]):
        assert {"expected_ctr_rel", "expected_ctr_rel_se"} <= set(block["ablation"])
        for arm_name, a in block["arms"].items():
            assert a["impressions"] > 0 and 0 < a["expected_ctr"] < 1 and a["served_by"]
            assert arm_name == "ctr" or {"expected_ctr_rel", "tail_exposure_rel", "minutes_to_warm_diff",
                                         "categories_per_page_diff"} <= set(a["vs_ctr"])
    assert {"ralm", "hybrid", "ranker"} <= set(r["evaluation"]["auc"])
    worlds = r["audience"]["worlds"]
    assert set(worlds) == {"audiences", "labels"} and r["audience"]["default_world"] == "audiences"
    for w in worlds.values():  # the tiny world has stories with a few seeds, so the audience view has rows
        assert w["feed_view"]["units"] >= 0 and w["buckets"] and w["learned_weights"]["noralm"]
        assert all({"arm_minus_ablation", "ralm_minus_seed_average", "ceiling", "count_plus_ralm"} <= set(b)
                   for b in w["buckets"].values())
    assert (ROOT / "bench" / "results.json").read_bytes() == committed


def test_the_mind_benchmark_runs_in_tiny_mode(tmp_path):
    """bench/mind.py is outside `make bench` until its full size fits the machine (see
    docs/experiments/2026-12-08-mind-full-size.md); its tiny size runs here all the same: the
    world written, imported, trained, served and scored by MIND's own protocol."""
    results = tmp_path / "results.json"
    env = dict(os.environ, BENCH_TINY="1", BENCH_RESULTS=str(results))
    out = subprocess.run([sys.executable, "bench/mind.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    mind = json.loads(results.read_text())["mind"]
    assert mind["impressions"] > 0 and mind["news"] > 0 and mind["users"] > 0
    assert mind["import_s"] > 0 and mind["train_s"] > 0 and mind["first_feed_s"] > 0
    assert 0 < mind["feed"]["p50_ms"] <= mind["feed"]["p99_ms"]
    # The tiny world's calibration slice is too small for the hybrid and the ranker (the full
    # size has them); the scorers that need no calibration are always there.
    assert {"random", "popularity", "als", "ralm", "coldstart_linear"} <= set(mind["eval"])
    assert all(0 <= v["auc"] <= 1 and v["auc_se"] >= 0 for v in mind["eval"].values())
