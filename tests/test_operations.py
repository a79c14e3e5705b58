"""Operations with the processes as they run in production: gunicorn with two worker
processes adds up its metrics at /metrics whichever process answers, and logs one JSON line
per request whose request id leads to the answer's impressions and on to its clicks; a Celery
worker with a pool of two serves the refresh's metrics on its port and logs one JSON line
per task; Flower, following the workers' task events, exports their runtimes and failures."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import wait_for
from tests.procs import free_port
from tests.test_ops_config import DASHBOARD, _named
from tests.webapp.test_metrics import parse, total
from webapp.feed import services
from webapp.lookalike.models import ModelKind, ModelRun
from webapp.news.models import Click, Impression, Reader, Source

CELERY = [sys.executable, "-m", "celery", "-A", "workers"]
TOKEN = "operations-test-token"  # noqa: S105 -- the test's own web process


def _get(url: str, **headers) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _post_json(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return resp.status, json.loads(resp.read())


def _json_lines(log: Path) -> list[dict]:
    out = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def test_gunicorn_adds_up_its_processes_and_logs_a_request_id_that_leads_to_impressions_and_clicks(
        trained, celery_env, spawn, tmp_path):
    port = free_port()
    spawn([sys.executable, "-m", "gunicorn", "webapp.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2",
           "--threads", "2", "--timeout", "60", "--no-control-socket"], {**celery_env, "METRICS_TOKEN": TOKEN})
    base, log = f"http://127.0.0.1:{port}", tmp_path / "proc0.log"
    assert wait_for(lambda: _up(base), timeout=90), log.read_text()
    tower = ModelRun.objects.get(kind=ModelKind.USER_TOWER, is_active=True)
    readers = list(Reader.objects.filter(source=Source.DEMO, vectors__model_run=tower).order_by("pk")[:4])
    n = 16
    pages = []
    for k in range(n):
        status, headers, body = _get(f"{base}/api/feed?reader={readers[k % 4].pk}&limit=5")
        assert status == 200
        pages.append((headers, json.loads(body)))

    # Whichever process answers the scrape, it counts every answer of both.
    assert _get(f"{base}/metrics")[0] == 403  # the token is set: this machine alone is not enough
    counts = []
    for _ in range(6):
        status, _, body = _get(f"{base}/metrics", Authorization=f"Bearer {TOKEN}")
        assert status == 200
        samples = parse(body.decode())
        counts.append(total(samples, "ralm_feed_latency_seconds_count"))
        assert total(samples, "django_http_responses_total_by_status_view_method_total", view="api:feed") == n
        assert total(samples, "ralm_impressions_total") == 5 * n
    assert counts == [n] * 6

    # The request id: in the response, its header, the log line and every impression of the page.
    headers, page = pages[0]
    rid = page["request_id"]
    assert headers["X-Request-ID"] == rid
    lines = [line for line in _json_lines(log) if line.get("event") == "request"]
    mine = [line for line in lines if line.get("request_id") == rid]
    assert len(mine) == 1, lines[:3]
    line = mine[0]
    assert line["path"] == "/api/feed" and line["status"] == 200 and line["ms"] > 0 and line["level"] == "info"
    assert line["reader"] == readers[0].pk and line["arm"] == page["arm"] and line["shown"] == 5
    assert line["candidates"] > 5 and line["degraded"] == []
    shown = Impression.objects.filter(request_id=line["request_id"]).order_by("position")
    assert [i.item_id for i in shown] == [e["item"]["id"] for e in page["items"]]
    assert [i.pk for i in shown] == [e["impression"] for e in page["items"]]
    assert len({line["request_id"] for line in lines}) == len(lines)  # one line per request, each its own id
    # gunicorn's own lines are JSON objects too, one "Booting worker" for each of its processes.
    booted = [x for x in _json_lines(log) if x.get("logger") == "gunicorn.error" and "Booting worker" in x["event"]]
    assert len(booted) == 2, log.read_text()[:2000]

    # ... and on to its clicks: the click's line names the request that showed the story.
    status, click = _post_json(f"{base}/api/clicks", {"impression": page["items"][1]["impression"]})
    assert status == 201
    click_lines = [x for x in _json_lines(log) if x.get("event") == "request" and x.get("path") == "/api/clicks"]
    assert len(click_lines) == 1 and click_lines[0]["shown_in"] == rid
    assert click_lines[0]["impression"] == page["items"][1]["impression"] and click_lines[0]["created"] is True
    assert Click.objects.get(impression__request_id=rid).item_id == page["items"][1]["item"]["id"]
    counted = parse(_get(f"{base}/metrics", Authorization=f"Bearer {TOKEN}")[2].decode())
    assert total(counted, "ralm_clicks_total") == 1


def _up(base: str) -> bool:
    try:
        return _get(f"{base}/healthz")[0] == 200
    except OSError:
        return False


def _scrape(url: str) -> dict:
    try:
        status, _, body = _get(url)
    except OSError:
        return {}
    return parse(body.decode()) if status == 200 else {}


def test_the_worker_serves_the_refresh_metrics_logs_its_tasks_and_flower_exports_task_metrics(
        trained, celery_env, spawn, tmp_path):
    metrics_port, flower_port = free_port(), free_port()
    env = {**celery_env, "WORKER_METRICS_PORT": str(metrics_port)}
    spawn([*CELERY, "worker", "--concurrency", "2", "--without-mingle", "--without-gossip", "--loglevel", "INFO"],
          env)
    spawn([*CELERY, "flower", "--address=127.0.0.1", f"--port={flower_port}"], env)
    worker_log = tmp_path / "proc0.log"
    assert wait_for(lambda: " ready." in worker_log.read_text(), timeout=90), worker_log.read_text()
    worker_url, flower_url = f"http://127.0.0.1:{metrics_port}/metrics", f"http://127.0.0.1:{flower_port}/metrics"
    assert wait_for(lambda: bool(_scrape(flower_url)), timeout=60), "Flower never answered"

    # Clicks on four stories, then the refresh (its partitions run in both pool processes).
    tower = ModelRun.objects.get(kind=ModelKind.USER_TOWER, is_active=True)
    reader = Reader.objects.filter(source=Source.DEMO, vectors__model_run=tower).order_by("pk").first()
    page = services.feed_build(reader=reader, limit=4)
    for entry in page.entries:
        services.click_record(impression_id=entry.impression_id)
    from workers.celery import app
    app.send_task("workers.tasks.refresh_seeds")
    app.send_task("workers.tasks.embed_items", kwargs={"no_such_argument": 1})  # fails: a TypeError

    def refreshed() -> bool:
        samples = _scrape(worker_url)
        return total(samples, "ralm_refresh_batch_seconds_count", step="states") >= 1 and \
            total(samples, "ralm_refresh_items_total", step="seeds") >= 4
    assert wait_for(refreshed, timeout=90), _scrape(worker_url)
    samples = _scrape(worker_url)
    assert total(samples, "ralm_refresh_batch_seconds_sum", step="seeds") > 0
    assert ("ralm_items_promoted_total", frozenset()) in samples

    def flower_saw() -> bool:
        s = _scrape(flower_url)
        return total(s, "flower_events_total", type="task-succeeded", task="workers.tasks.refresh_states") >= 1 and \
            total(s, "flower_events_total", type="task-failed", task="workers.tasks.embed_items") == 1
    assert wait_for(flower_saw, timeout=60), _scrape(flower_url)
    flower = _scrape(flower_url)
    assert total(flower, "flower_task_runtime_seconds_count", task="workers.tasks.refresh_seeds") >= 1
    assert total(flower, "flower_worker_online") >= 1

    # What the dashboard asks of the worker and of Flower, they export.
    exported = {name for name, _ in samples} | {name for name, _ in flower}
    wanted = set().union(*(_named(t["expr"]) for p in DASHBOARD["panels"] for t in p["targets"]))
    for name in wanted:
        if name.startswith(("flower_", "ralm_refresh_batch", "ralm_refresh_items", "ralm_items_")):
            assert name in exported or f"{name}_total" in exported, name

    # One JSON line per task, with its state and time.
    tasks = [x for x in _json_lines(worker_log) if x.get("event") == "task"]
    ok = [x for x in tasks if x["task"] == "workers.tasks.refresh_seeds" and x["state"] == "SUCCESS"]
    assert ok and ok[0]["ms"] >= 0 and ok[0]["task_id"] and ok[0]["level"] == "info"
    failed = [x for x in tasks if x["task"] == "workers.tasks.embed_items"]
    assert len(failed) == 1 and failed[0]["state"] == "FAILURE" and failed[0]["level"] == "warning"
