"""The monitoring that docker-compose.yml brings up, checked without a Docker engine: the
Prometheus configuration and alert rules and the provisioned Grafana dashboard parse, they
reach the services where those listen, and every query names a metric that is exported (by
the web's /metrics, scraped here; by Flower, whose declared metrics are read from Flower)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from tests.test_deploy import COMPOSE
from webapp.news.management.commands.rundemo import read_procfile

ROOT = Path(__file__).resolve().parent.parent
OPS = ROOT / "ops"
PROMETHEUS = yaml.safe_load((OPS / "prometheus" / "prometheus.yml").read_text())
ALERTS = yaml.safe_load((OPS / "prometheus" / "alerts.yml").read_text())
DASHBOARD = json.loads((OPS / "grafana" / "dashboards" / "ralm-feed.json").read_text())
METRIC = re.compile(r"\b((?:ralm|django|flower)_[a-z0-9_]+|up)\b(?!\s*\()")
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def _exported(text: str) -> set[str]:
    """Every name a scrape shows: families (declared, even without a sample yet) and samples."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names |= {s.name for s in family.samples}
    return names


def _named(expr: str) -> set[str]:
    found = set(METRIC.findall(expr))
    assert found, f"no metric in {expr!r}"
    return found


def _is_exported(name: str, exported: set[str]) -> bool:
    return name == "up" or name in exported or any(
        name.endswith(s) and name.removesuffix(s) in exported for s in SUFFIXES)


@pytest.fixture(scope="module")
def flower_metrics() -> set[str]:
    """What Flower declares at its /metrics (its own code, in a process of its own)."""
    code = ("from flower.events import get_prometheus_metrics; get_prometheus_metrics(); "
            "from prometheus_client import generate_latest; print(generate_latest().decode())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return {n for n in _exported(out.stdout) if n.startswith("flower_")}


@pytest.fixture
def web_metrics(db, settings) -> set[str]:
    settings.METRICS_TOKEN = ""
    resp = Client().get("/metrics")
    assert resp.status_code == 200
    return _exported(resp.content.decode())


def _queries() -> list[tuple[str, str]]:
    panels = DASHBOARD["panels"]
    assert len(panels) >= 15
    out = []
    for panel in panels:
        assert panel["targets"], panel["title"]
        out += [(panel["title"], t["expr"]) for t in panel["targets"]]
    return out


def test_every_panel_and_alert_names_an_exported_metric(web_metrics, flower_metrics):
    exported = web_metrics | flower_metrics
    queries = _queries() + [(r["alert"], r["expr"]) for g in ALERTS["groups"] for r in g["rules"]]
    for title, expr in queries:
        missing = {n for n in _named(expr) if not _is_exported(n, exported)}
        assert not missing, f"{title}: {sorted(missing)} not exported"
    shown = set().union(*(_named(e) for _, e in _queries()))
    # The panels the operations issue asks for, each on the dashboard.
    for metric in ("ralm_feed_latency_seconds_bucket", "ralm_feed_candidates_bucket", "ralm_clicks_total",
                   "ralm_impressions_total", "ralm_feed_degraded_total", "ralm_model_age_seconds",
                   "ralm_refresh_lag_seconds", "ralm_refresh_batch_seconds_bucket", "ralm_items_promoted_total",
                   "ralm_items_demoted_total", "ralm_serving_store_entries", "ralm_rate_limited_total",
                   "ralm_celery_queue_length", "flower_task_runtime_seconds_bucket", "flower_events_total"):
        assert metric in shown, metric


def test_the_alerts_are_the_four_asked_for_with_their_thresholds():
    rules = {r["alert"]: r for g in ALERTS["groups"] for r in g["rules"]}
    assert {"RefreshLagging", "FeedDegraded", "ModelStale", "FeedSlow"} <= set(rules)
    assert re.search(r"ralm_refresh_lag_seconds\)\s*>\s*300$", rules["RefreshLagging"]["expr"])
    assert rules["FeedDegraded"]["expr"].rstrip().endswith("> 0.01") and rules["FeedDegraded"]["for"] == "5m"
    assert "ralm_feed_degraded_answers_total" in rules["FeedDegraded"]["expr"]
    assert rules["ModelStale"]["expr"].endswith("> 2 * 86400")
    assert rules["FeedSlow"]["expr"].startswith("histogram_quantile(0.99,") and \
        rules["FeedSlow"]["expr"].endswith("> 0.05") and rules["FeedSlow"]["for"] == "5m"
    for rule in rules.values():
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    readme = (ROOT / "README.md").read_text()
    for name in rules:  # what each means and what to do
        assert name in readme, name


def test_prometheus_scrapes_each_service_where_it_listens():
    services = COMPOSE["services"]
    prom = services["prometheus"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prom["volumes"] if v.startswith("./")}
    assert (ROOT / mounts["/etc/prometheus/prometheus.yml"]).resolve() == OPS / "prometheus" / "prometheus.yml"
    assert PROMETHEUS["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert (ROOT / mounts["/etc/prometheus/alerts.yml"]).resolve() == OPS / "prometheus" / "alerts.yml"
    jobs = {j["job_name"]: j for j in PROMETHEUS["scrape_configs"]}
    target = {name: j["static_configs"][0]["targets"][0] for name, j in jobs.items()}
    assert target == {"web": "web:8000", "worker": "worker:9808", "flower": "flower:5555"}
    assert "0.0.0.0:8000" in services["web"]["command"]
    assert services["worker"]["environment"]["WORKER_METRICS_ADDR"] == "0.0.0.0"
    from django.conf import settings
    assert settings.WORKER_METRICS_PORT == 9808 and "WORKER_METRICS_PORT" not in services["worker"]["environment"]
    assert "--port=5555" in services["flower"]["command"].split()
    # The web's /metrics wants the token: Prometheus reads it from the secret that holds it.
    auth = jobs["web"]["authorization"]
    assert auth["type"] == "Bearer" and auth["credentials_file"] == "/run/secrets/metrics_token"
    assert prom["secrets"] == ["metrics_token"]
    assert COMPOSE["secrets"]["metrics_token"] == {"environment": "METRICS_TOKEN"}
    assert services["web"]["environment"]["METRICS_TOKEN"].startswith("${METRICS_TOKEN:?")
    assert "METRICS_TOKEN" in (ROOT / "Makefile").read_text()


def test_grafana_provisions_the_prometheus_source_and_the_dashboard():
    graf = COMPOSE["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in graf["volumes"] if v.startswith("./")}
    provisioning = ROOT / mounts["/etc/grafana/provisioning"]
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards" / "ralm-feed.yml").read_text())["providers"][0]
    assert (ROOT / mounts[provider["options"]["path"]] / "ralm-feed.json").exists()
    for panel in DASHBOARD["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
    assert graf["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")


def test_flower_runs_in_the_demo_and_in_compose():
    assert read_procfile(ROOT / "Procfile")["flower"].startswith("celery -A workers flower")
