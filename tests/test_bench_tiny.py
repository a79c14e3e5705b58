"""Every benchmark runs in `make test`, at a tiny size on its own code path, so a change
that breaks one (a new column, a renamed service) fails here rather than at the next
`make bench`. The committed results are left alone."""

from __future__ import annotations

import json
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
    assert {"ctr", "blend", "feature", "gate"} <= set(r["ab"]["paired"]) and r["demo"]["clicks"] > 0
    assert {"ralm", "hybrid", "ranker"} <= set(r["evaluation"]["auc"])
    assert (ROOT / "bench" / "results.json").read_bytes() == committed
