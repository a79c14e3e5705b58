"""GET /metrics: the Prometheus metrics of the web processes, for whoever may read them.

What is counted where it happens (webapp.common.metrics, django-prometheus's request and
database metrics) is added up over every process of the server (prometheus-client's
multiprocess mode, set up in gunicorn.conf.py); what describes shared state is read at
scrape time, here: the serving models' age, the refresh lag, what waits for the refresh,
the Redis serving store's size and the Celery queue's length. A source that cannot be
reached leaves its metrics out and sets ralm_metrics_source_up to 0; the scrape still answers.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Iterator

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

from webapp.common.addresses import is_loopback
from webapp.common.connections import redis_client
from webapp.lookalike import store
from webapp.lookalike.models import ModelRun, SeedSet

log = logging.getLogger(__name__)
QUEUES = ("celery",)  # the Celery queues the workers consume (the default one)
_brokers: dict[str, redis.Redis] = {}

_STATE_SQL = f"""
SELECT EXTRACT(EPOCH FROM now() - MIN(dirty_since)),
       COUNT(*) FILTER (WHERE dirty), COUNT(*) FILTER (WHERE state_dirty)
FROM {SeedSet._meta.db_table} WHERE dirty OR state_dirty
"""  # noqa: S608 -- a model's table name

_MODELS_SQL = f"""
SELECT kind, EXTRACT(EPOCH FROM now() - COALESCE(finished_at, created_at))
FROM {ModelRun._meta.db_table} WHERE is_active
"""  # noqa: S608 -- a model's table name


def _broker() -> redis.Redis:
    url = settings.CELERY_BROKER_URL
    if url not in _brokers:
        _brokers[url] = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    return _brokers[url]


class StateCollector:
    """The gauges read at scrape time from Postgres and Redis."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("ralm_metrics_source_up", "Whether the scrape could read the source "
                               "(postgres, redis) behind the gauges read at scrape time.", labels=["source"])
        for source, read in (("postgres", self._postgres), ("redis", self._redis)):
            try:
                yield from read()
                up.add_metric([source], 1.0)
            except (DatabaseError, redis.RedisError) as exc:
                log.warning("metrics: %s unreachable (%s)", source, exc.__class__.__name__)
                up.add_metric([source], 0.0)
        yield up

    def _postgres(self) -> list[Metric]:
        with connection.cursor() as cur:
            cur.execute(_STATE_SQL)
            lag, seeds, states = cur.fetchone()
            cur.execute(_MODELS_SQL)
            ages = cur.fetchall()
        g = GaugeMetricFamily("ralm_refresh_lag_seconds", "How long the oldest click not yet in a served "
                              "look-alike state has waited for the refresh (0: none waits).")
        g.add_metric([], float(lag or 0.0))
        pending = GaugeMetricFamily("ralm_refresh_pending_stories", "Stories waiting for the refresh, by step "
                                    "(seeds: clicked since; states: seeds changed since).", labels=["step"])
        pending.add_metric(["seeds"], float(seeds))
        pending.add_metric(["states"], float(states))
        age = GaugeMetricFamily("ralm_model_age_seconds", "Age of the serving run of each model, since its "
                                "training finished.", labels=["kind"])
        for kind, seconds in ages:
            age.add_metric([kind], float(seconds))
        return [g, pending, age]

    def _redis(self) -> list[Metric]:
        pointers = store.pointers_get()
        keys = {"reader_vectors": store.vectors_key(pointers.tower) if pointers.tower else None,
                "item_states": store.items_key(pointers.lookalike) if pointers.lookalike else None}
        pipe = redis_client().pipeline(transaction=False)
        for key in filter(None, keys.values()):
            pipe.hlen(key)
            pipe.memory_usage(key, samples=5)
        found = iter(pipe.execute())
        queues = _broker().pipeline(transaction=False)
        for queue in QUEUES:
            queues.llen(queue)
        lengths = queues.execute()
        entries = GaugeMetricFamily("ralm_serving_store_entries", "Entries of the Redis serving store under the "
                                    "serving runs, by kind.", labels=["kind"])
        size = GaugeMetricFamily("ralm_serving_store_bytes", "Memory the Redis serving store takes (Redis's "
                                 "sampled estimate), by kind.", labels=["kind"])
        for kind, key in keys.items():
            n, used = (next(found), next(found)) if key else (0, 0)
            entries.add_metric([kind], float(n))
            size.add_metric([kind], float(used or 0))
        queue = GaugeMetricFamily("ralm_celery_queue_length", "Tasks waiting in the Celery broker, by queue.",
                                  labels=["queue"])
        for name, n in zip(QUEUES, lengths, strict=True):
            queue.add_metric([name], float(n))
        return [entries, size, queue]


class _Exported:
    """What one scrape shows: the processes' counters (all of the server's under multiprocess
    mode, else this process's) and the state read now."""

    def collect(self) -> Iterator[Metric]:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            yield from registry.collect()
        else:
            yield from REGISTRY.collect()
        yield from StateCollector().collect()


def allowed(request: HttpRequest) -> bool:
    """A bearer of METRICS_TOKEN, a staff user, or (with no token set) a client on this machine."""
    token = settings.METRICS_TOKEN
    if token and hmac.compare_digest(request.headers.get("Authorization", "").encode(), f"Bearer {token}".encode()):
        return True
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_staff:
        return True
    return not token and is_loopback(request)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not allowed(request):
        return JsonResponse({"detail": "Metrics are for the monitoring system: send 'Authorization: Bearer' with "
                                       "METRICS_TOKEN, or sign in as staff."}, status=403)
    return HttpResponse(generate_latest(_Exported()), content_type=CONTENT_TYPE_LATEST)
