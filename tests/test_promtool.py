"""The Prometheus configuration and alert rules pass Prometheus's own checker, and each alert
passes its unit test in ops/prometheus/alerts_test.yml (it fires when it should, and not below
its threshold or before its `for:`). `make test` installs promtool (`make promtool`)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROM = ROOT / "ops" / "prometheus"
RULES = PROM / "alerts.yml"
UNIT = PROM / "alerts_test.yml"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: `make promtool` installs it (Debian's prometheus package)"
    return path


def _alerts() -> set[str]:
    return {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}


def _run(*args: str) -> str:
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


def test_the_configuration_passes_promtool(promtool, tmp_path):
    """Checked as the container sees it: the paths it names inside the container (the rules,
    the metrics token's secret) point at their files here."""
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    config["rule_files"] = [str(RULES)]
    token = tmp_path / "metrics_token"
    token.write_text("a-token\n")
    for job in config["scrape_configs"]:
        if "authorization" in job:
            assert job["authorization"]["credentials_file"] == "/run/secrets/metrics_token"
            job["authorization"]["credentials_file"] = str(token)
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config))
    out = _run(promtool, "check", "config", "--lint=all", "--lint-fatal", str(checked))
    assert "SUCCESS" in out and f"{len(_alerts())} rules found" in out, out


def test_the_rules_pass_promtool(promtool):
    assert "SUCCESS" in _run(promtool, "check", "rules", "--lint=all", "--lint-fatal", str(RULES))


def test_each_alert_fires_when_it_should_and_not_before(promtool):
    assert "SUCCESS" in _run(promtool, "test", "rules", str(UNIT))


def test_each_alert_has_a_firing_and_a_quiet_case():
    alerts = _alerts()
    cases = [c for t in yaml.safe_load(UNIT.read_text())["tests"] for c in t["alert_rule_test"]]
    for name in alerts:
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c["exp_alerts"] for c in mine), f"{name}: no case where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{name}: no case where it stays quiet"


def test_make_test_installs_promtool():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test:[^#\n]*\bpromtool\b", makefile, re.M)
    recipe = re.search(r"^promtool:.*?\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert "test -x /usr/bin/promtool" in recipe and "RUNLEVEL=1 apt-get install" in recipe
