"""The README's numbers are bench/report.py's rendering of what `make bench` measured."""

from __future__ import annotations

import importlib.util
import json

from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("bench_report", ROOT / "bench" / "report.py")
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)


def test_readme_blocks_match_the_committed_results():
    results = json.loads(report.RESULTS.read_text())
    evaluation = json.loads(report.EVALUATION.read_text())
    rendered = report.blocks(results, evaluation)
    text = report.README.read_text()
    shown = {m.group("name") for m in report.BLOCK.finditer(text)}
    assert shown == {"headline"}  # the README shows the short table; results.md has them all
    assert len(rendered["headline"].splitlines()) - 2 <= report.HEADLINE_ROWS
    assert "](bench/results.md)" in text and "## Numbers" in report.results_md(rendered, [])
    assert report.readme_with(text, rendered) == text, "run python bench/report.py after make bench"
    for key in ("bench", "import", "demo", "refresh", "feed", "load", "soak", "readers", "ab", "evaluation"):
        assert key in results, f"make bench did not write results.json[{key!r}]"


def test_a_block_is_rewritten_and_the_prose_around_it_kept():
    text = ("intro 1.0\n<!-- bench:feed -->\n| old |\n<!-- /bench:feed -->\nafter 2.0\n"
            "<!-- bench:other -->\nx\n<!-- /bench:other -->\n")
    out = report.readme_with(text, {"feed": "| new |"})
    assert out == text.replace("| old |", "| new |")
    results = {"feed": {"candidates": {"1000": {"p50_ms": 8.0, "p99_ms": 11.0}, "100": {"p50_ms": 5.0, "p99_ms": 7.5}}}}
    assert report.feed(results).splitlines()[2:] == ["| 100 | 5.00 | 7.50 |", "| 1,000 | 8.00 | 11.00 |"]


def test_arms_are_listed_in_the_registrys_order_with_their_fallback():
    paired = {name: {"expected_ctr": 0.05, "expected_ctr_vs_ctr_only": 0.01, "expected_ctr_vs_ctr_only_se": 0.002,
                     "cold_share": 0.5, "tail_share": 0.4, "exposure_gini": 0.3, "categories_per_page": 3.0,
                     "served_by": name} for name in ("gate", "feature", "blend", "old")}
    paired["feature"]["served_by"] = "blend"
    paired["ctr"] = {**paired["blend"], "expected_ctr_vs_ctr_only": 0.0, "served_by": "ctr"}
    del paired["ctr"]["expected_ctr_vs_ctr_only_se"]
    rows = report.ab({"ab": {"paired": paired}}).splitlines()[2:]
    assert [r.split(" | ")[0].strip("| ") for r in rows] == ["ctr", "blend", "feature (served by blend)", "gate", "old"]
    assert " ref " in rows[0] and "+1.0% ± 0.2" in rows[1]


def test_bench_run_tells_its_usage_and_refuses_an_unknown_benchmark():
    import subprocess
    import sys

    run = [sys.executable, str(ROOT / "bench" / "run.py")]
    shown = subprocess.run([*run, "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "importer, refresh, feed" in shown.stdout
    before = report.RESULTS.read_text()
    refused = subprocess.run([*run, "feed", "nope"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "unknown benchmark nope" in refused.stderr and "Traceback" not in refused.stderr
    assert report.RESULTS.read_text() == before  # nothing ran


def test_the_mind_benchmark_renders_its_steps_and_mind_protocols_table():
    """bench/mind.py's results: a row of the numbers table, and the MIND view's scorers in a
    block of their own in results.md."""
    view = {"auc": 0.7291, "auc_se": 0.0031, "mrr": 0.323, "ndcg5": 0.353, "ndcg10": 0.421}
    mind = {"users": 50_000, "news": 45_753, "impressions": 150_000, "shown": 5_509_697, "history_clicks": 1_495_259,
            "import_s": 521.0, "embed_s": 447.3, "train_s": 1104.0, "first_feed_s": 1.25,
            "feed": {"p50_ms": 12.5, "p99_ms": 40.25}, "train_peak_rss_mib": 4096, "eval": {"hybrid": view}}
    rendered = report.blocks({"mind": mind}, None)
    assert "| hybrid | 0.729 ± 0.003 | 0.323 | 0.353 | 0.421 |" in rendered["mind"]
    row = next(line for line in rendered["numbers"].splitlines() if "bench/mind.py" in line)
    assert "521 s, 447 s, 1104 s, 1.25 s, p50 12.50 ms / p99 40.25 ms, 4.0 GiB" in row
    assert "MIND's protocol" in report.results_md(rendered, [])
    assert "mind" not in report.blocks({"mind": {**mind, "eval": {}}}, None)
