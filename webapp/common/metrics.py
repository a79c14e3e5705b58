"""The platform's own Prometheus metrics, recorded where things happen (prometheus-client).

Web processes serve them at /metrics (webapp.feed.metrics, with what is read at scrape
time: model age, refresh lag, serving store size, queue length); Celery workers serve the
refresh's at their own port (workers.celery). Under gunicorn and in a worker's pool the
processes share PROMETHEUS_MULTIPROC_DIR, so one scrape adds up every process
(prometheus-client's multiprocess mode). With METRICS_ENABLED off nothing is recorded.

Labels take a handful of values each (arms, statuses, reason codes, steps), never ids.
"""

from __future__ import annotations

from django.conf import settings
from django_prometheus.middleware import PrometheusAfterMiddleware
from django_prometheus.utils import Time, TimeSince
from prometheus_client import Counter, Histogram

ENABLED: bool = settings.METRICS_ENABLED

FEED_LATENCY = Histogram(
    "ralm_feed_latency_seconds", "Time to answer a feed request (API or page), by ranker arm.", ["arm"],
    buckets=(0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5))
FEED_CANDIDATES = Histogram(
    "ralm_feed_candidates", "Candidate stories the ranker scored for one feed request, by ranker arm.", ["arm"],
    buckets=(10, 50, 100, 250, 500, 1000, 2000, 5000, 10000, 50000))
IMPRESSIONS = Counter("ralm_impressions_total", "Stories shown in feeds, by ranker arm and story status "
                      "(cold: scored by the cold-start model; warm: by RALM from its seeds).", ["arm", "status"])
CLICKS = Counter("ralm_clicks_total", "Clicks stored, by the ranker arm of the feed they came from.", ["arm"])
DEGRADED_ANSWERS = Counter("ralm_feed_degraded_answers_total", "Feed answers built with a fallback.")
DEGRADED = Counter("ralm_feed_degraded_total", "Feed answers built with a fallback, by reason "
                   "(redis, lookalike_model, ranker_model); an answer counts once per reason.", ["reason"])
RATE_LIMITED = Counter("ralm_rate_limited_total", "Requests refused over a rate limit, by limit.", ["limit"])
REFRESH_BATCH = Histogram(
    "ralm_refresh_batch_seconds", "Time one refresh batch takes, by step (seeds, states).", ["step"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0))
REFRESH_ITEMS = Counter("ralm_refresh_items_total", "Stories refreshed, by step (seeds, states).", ["step"])
PROMOTED = Counter("ralm_items_promoted_total", "Stories turned warm (cold-start to RALM scoring).")
DEMOTED = Counter("ralm_items_demoted_total", "Stories turned cold again (their seeds fell below the floor).")


def feed_served(*, arm: str, seconds: float, candidates: int, warm: list[bool], degraded: tuple[str, ...]) -> None:
    """One feed answer: its time, the candidates scored, whether each story shown is warm,
    and the reasons it was degraded for."""
    if not ENABLED:
        return
    FEED_LATENCY.labels(arm).observe(seconds)
    FEED_CANDIDATES.labels(arm).observe(candidates)
    n_warm = sum(warm)
    if n_warm:
        IMPRESSIONS.labels(arm, "warm").inc(n_warm)
    if len(warm) - n_warm:
        IMPRESSIONS.labels(arm, "cold").inc(len(warm) - n_warm)
    if degraded:
        DEGRADED_ANSWERS.inc()
    for reason in degraded:
        DEGRADED.labels(reason).inc()


def click_stored(*, arm: str) -> None:
    if ENABLED:
        CLICKS.labels(arm or "unknown").inc()


def rate_limited(*, limit: str) -> None:
    if ENABLED:
        RATE_LIMITED.labels(limit).inc()


def refresh_batch(*, step: str, seconds: float, items: int) -> None:
    if ENABLED:
        REFRESH_BATCH.labels(step).observe(seconds)
        REFRESH_ITEMS.labels(step).inc(items)


def status_changed(*, promoted: int, demoted: int) -> None:
    if ENABLED:
        PROMOTED.inc(promoted)
        DEMOTED.inc(demoted)


class RequestMetrics(PrometheusAfterMiddleware):
    """django-prometheus's request metrics, the two an operator reads: responses by status,
    view and method, and latency by view and method (and, as the library does, exceptions by
    type and view). Its other series (by transport, charset and template, body sizes, a second
    latency around every middleware) double the writes every request pays, and tell nothing
    these two and the feed's own do not. The innermost middleware: it times the view."""

    def process_request(self, request) -> None:
        request.prometheus_after_middleware_event = Time()

    def process_view(self, request, view_func, *view_args, **view_kwargs) -> None:
        return None

    def process_template_response(self, request, response):
        return response

    def process_response(self, request, response):
        method, view = self._method(request), self._get_view_name(request)
        self.metrics.responses_by_status_view_method.labels(status=str(response.status_code), view=view,
                                                            method=method).inc()
        if hasattr(request, "prometheus_after_middleware_event"):
            self.metrics.requests_latency_by_view_method.labels(view=view, method=method).observe(
                TimeSince(request.prometheus_after_middleware_event))
        return response
