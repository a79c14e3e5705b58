"""GET /metrics in the test's own process, on the real Postgres and Redis: after feed requests,
clicks, a refused click, a degraded answer and a refresh, every metric of the platform is there
with the values those requests imply; a client without permission reads nothing.
(Under gunicorn and in a Celery worker's pool: tests/test_operations.py.)"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import TEST_CLIENT
from webapp.common.connections import redis_client
from webapp.feed import ranking, services
from webapp.lookalike import refresh, registry, seeds, store
from webapp.lookalike.models import ModelKind, ModelRun, SeedSet
from webapp.lookalike.services import item_status_refresh
from webapp.news.models import Impression, Item, ItemStatus, Reader, Source

Samples = dict[tuple[str, frozenset], float]


def scrape(client: Client, **headers) -> Samples:
    resp = client.get("/metrics", **headers)
    assert resp.status_code == 200, resp.content[:300]
    assert resp["Content-Type"].startswith("text/plain")
    return parse(resp.content.decode())


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def _feed(client: Client, reader: Reader, **params) -> dict:
    resp = client.get("/api/feed", {"reader": reader.pk, "limit": 10, **params})
    assert resp.status_code == 200, resp.content
    return resp.json()


def test_metrics_after_feeds_clicks_a_refusal_a_degraded_answer_and_a_refresh(trained, settings, rate_clock):
    settings.CLICK_RATE_LIMIT = "2/minute"
    settings.METRICS_TOKEN = ""
    client = Client()  # the test client's REMOTE_ADDR is 127.0.0.1: readable while no token is set
    tower = ModelRun.objects.get(kind=ModelKind.USER_TOWER, is_active=True)
    readers = list(Reader.objects.filter(source=Source.DEMO, vectors__model_run=tower).order_by("pk")[:3])
    before = scrape(client)

    pages = [_feed(client, readers[0]), _feed(client, readers[1]), _feed(client, readers[2], arm="ctr")]
    assert client.get("/feed/", {"reader": readers[0].pk}).status_code == 200
    ralm_scored = sum(1 for p in pages for e in p["items"] if e["score_parts"].get("ralm_logit") is not None)
    clicks = [client.post("/api/clicks", {"impression": e["impression"]}, content_type="application/json")
              for e in pages[0]["items"][:3]]  # one reader's: the third is over 2/minute
    assert [c.status_code for c in clicks] == [201, 201, 429]
    waiting = scrape(client)
    assert value(waiting, "ralm_refresh_lag_seconds") > 0  # two stories wait for their seeds
    assert value(waiting, "ralm_refresh_pending_stories", step="seeds") >= 2

    # A degraded answer: the look-alike model's weights unreadable, in a process starting now.
    weights = Path(ModelRun.objects.get(kind=ModelKind.LOOKALIKE, is_active=True).artifact_path) / "weights.pt"
    shutil.copyfile(weights, weights.with_suffix(".bak"))
    weights.write_text("garbage")
    for cache in (ranking.catalogs, ranking.models, registry):
        cache.clear()
    degraded = _feed(client, readers[1])
    shutil.move(weights.with_suffix(".bak"), weights)
    for cache in (ranking.catalogs, ranking.models, registry):
        cache.clear()
    assert degraded["degraded"] is True

    while seeds.seeds_refresh()["remaining"]:
        pass
    while refresh.states_refresh()["remaining"]:
        pass
    after = scrape(client)

    def delta(name: str, **labels) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    # Feed latency and candidates: one observation per answer (four through the API, one page).
    assert delta("ralm_feed_latency_seconds_count") == 5
    assert delta("ralm_feed_latency_seconds_count", arm="ctr") == 1
    assert delta("ralm_feed_latency_seconds_count", arm=settings.FEED_ARM) == 4  # the default arm
    assert 0 < delta("ralm_feed_latency_seconds_sum") < 60
    assert delta("ralm_feed_candidates_count") == 5
    assert delta("ralm_feed_candidates_sum") >= 5 * 10
    # Impressions by arm and status, as logged.
    assert delta("ralm_impressions_total", arm="ctr") == 10
    assert delta("ralm_impressions_total") == 50
    assert delta("ralm_impressions_total", status="warm") >= ralm_scored > 0
    assert delta("ralm_impressions_total", status="cold") >= 10  # the degraded page's, at least
    # Clicks stored, and the one refused.
    assert delta("ralm_clicks_total", arm=settings.FEED_ARM) == 2
    assert delta("ralm_rate_limited_total", limit="clicks") == 1
    # The degraded answer, once, by its reason.
    assert delta("ralm_feed_degraded_answers_total") == 1
    assert delta("ralm_feed_degraded_total", reason="lookalike_model") == 1
    assert delta("ralm_feed_degraded_total", reason="redis") == 0
    # The refresh: its batches timed, the clicked stories refreshed, nothing waits after it.
    assert delta("ralm_refresh_batch_seconds_count", step="seeds") >= 1
    assert delta("ralm_refresh_batch_seconds_count", step="states") >= 1
    assert delta("ralm_refresh_items_total", step="seeds") >= 2
    assert value(after, "ralm_refresh_lag_seconds") == 0
    assert value(after, "ralm_refresh_pending_stories", step="seeds") == 0
    assert ("ralm_items_promoted_total", frozenset()) in after and ("ralm_items_demoted_total", frozenset()) in after
    # What is read at scrape time.
    for kind in ModelKind.values:
        assert 0 < value(after, "ralm_model_age_seconds", kind=kind) < 7 * 86400, kind
    runs, r = store.pointers_get(), redis_client()
    assert value(after, "ralm_serving_store_entries", kind="reader_vectors") == r.hlen(store.vectors_key(runs.tower))
    assert value(after, "ralm_serving_store_entries", kind="item_states") == r.hlen(store.items_key(runs.lookalike))
    assert value(after, "ralm_serving_store_bytes", kind="item_states") > 0
    assert ("ralm_celery_queue_length", frozenset({("queue", "celery")})) in after
    assert value(after, "ralm_metrics_source_up", source="postgres") == 1
    assert value(after, "ralm_metrics_source_up", source="redis") == 1
    # django-prometheus: requests by view and database queries.
    assert delta("django_http_responses_total_by_status_view_method_total", view="api:feed") == 4
    assert delta("django_db_execute_total") > 0


def test_a_promotion_counts(trained, settings):
    """A story that its refreshed state makes warm counts as promoted (and back as demoted)."""
    settings.METRICS_TOKEN = ""
    before = parse(Client().get("/metrics").content.decode())
    item = Item.objects.filter(status=ItemStatus.COLD).first()
    readers = list(Reader.objects.filter(vectors__model_run__is_active=True).order_by("pk")[:25])
    for reader in readers:
        shown = Impression.objects.create(reader=reader, item=item, request_id=f"t-{reader.pk}", position=0,
                                          client=TEST_CLIENT)
        Client().post("/api/clicks", {"impression": shown.pk, "reader": reader.pk}, content_type="application/json")
    while seeds.seeds_refresh()["remaining"]:
        pass
    while refresh.states_refresh()["remaining"]:
        pass
    assert item_status_refresh(item_ids=[item.pk])["promoted"] == 1
    SeedSet.objects.filter(item=item).update(count=0)
    assert item_status_refresh(item_ids=[item.pk])["demoted"] == 1
    after = parse(Client().get("/metrics").content.decode())
    assert value(after, "ralm_items_promoted_total") - value(before, "ralm_items_promoted_total") == 1
    assert value(after, "ralm_items_demoted_total") - value(before, "ralm_items_demoted_total") == 1


@pytest.mark.django_db
def test_only_the_token_a_staff_user_or_with_no_token_this_machine_reads_the_metrics(settings):
    elsewhere = {"REMOTE_ADDR": "203.0.113.7"}
    settings.METRICS_TOKEN = ""
    assert Client().get("/metrics").status_code == 200  # loopback, no token set
    refused = Client().get("/metrics", **elsewhere)
    assert refused.status_code == 403 and "METRICS_TOKEN" in refused.json()["detail"]
    assert b"ralm_" not in refused.content

    settings.METRICS_TOKEN = token = secrets.token_urlsafe(16)
    for headers in ({}, elsewhere, {**elsewhere, "HTTP_AUTHORIZATION": "Bearer wrong"},
                    {**elsewhere, "HTTP_AUTHORIZATION": token}):
        resp = Client().get("/metrics", **headers)
        assert resp.status_code == 403 and b"ralm_" not in resp.content, headers
    ok = Client().get("/metrics", **elsewhere, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert ok.status_code == 200 and b"ralm_feed_latency_seconds" in ok.content

    reader = Client()
    reader.force_login(User.objects.create_user("reader", password="x" * 12))
    assert reader.get("/metrics", **elsewhere).status_code == 403
    staff = Client()
    staff.force_login(User.objects.create_user("ops", password="x" * 12, is_staff=True))
    assert staff.get("/metrics", **elsewhere).status_code == 200
    wrong = Client().post("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}", **elsewhere)
    assert wrong.status_code == 405 and "detail" in wrong.json()


def test_the_refresh_lag_is_the_oldest_click_not_yet_served(trained):
    """SeedSet.dirty_since: set by the first click on a story with nothing waiting, kept by
    later clicks and through the seed rebuild, cleared when the state is served; a click that
    comes between the two steps waits from the seed rebuild on."""
    item = Item.objects.filter(status=ItemStatus.COLD).order_by("pk").first()
    readers = list(Reader.objects.filter(vectors__model_run__is_active=True).exclude(clicks__item=item)
                   .order_by("pk")[:3])

    def click(reader: Reader) -> None:
        shown = Impression.objects.create(reader=reader, item=item, request_id=f"lag-{reader.pk}", position=0)
        services.click_record(impression_id=shown.pk)

    def since():
        return SeedSet.objects.get(item=item).dirty_since

    def drain(step) -> None:
        while step()["remaining"]:
            pass

    drain(seeds.seeds_refresh)
    drain(refresh.states_refresh)
    assert since() is None
    seeds_before = SeedSet.objects.get(item=item).count
    click(readers[0])
    first = since()
    assert first is not None
    click(readers[1])
    assert since() == first  # the older click still waits
    drain(seeds.seeds_refresh)
    assert since() == first  # its state does not have it yet
    click(readers[2])  # after the seeds were rebuilt, before the state
    rebuilt = SeedSet.objects.get(item=item).updated_at
    drain(refresh.states_refresh)
    assert since() == rebuilt  # served up to the rebuild; the third click waits from then on
    drain(seeds.seeds_refresh)
    drain(refresh.states_refresh)
    assert since() is None and SeedSet.objects.get(item=item).count == seeds_before + 3
