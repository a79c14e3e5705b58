from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection

from tests.factories import ClickFactory, ImpressionFactory, ItemFactory, ReaderFactory
from webapp.lookalike.models import SeedSet
from webapp.news.models import Click, Impression

pytestmark = pytest.mark.django_db


def test_feed_logs_one_impression_per_item_with_score_parts(client):
    reader = ReaderFactory()
    ItemFactory.create_batch(15)
    resp = client.get("/api/feed", {"reader": reader.pk, "limit": 5})
    assert resp.status_code == 200
    body = resp.json()
    assert body["reader"] == reader.pk and body["arm"] == "baseline"
    assert [e["position"] for e in body["items"]] == [0, 1, 2, 3, 4]
    stored = Impression.objects.filter(request_id=body["request_id"]).order_by("position")
    assert [i.pk for i in stored] == [e["impression"] for e in body["items"]]
    assert [i.item_id for i in stored] == [e["item"]["id"] for e in body["items"]]
    for imp, entry in zip(stored, body["items"], strict=True):
        assert set(imp.score_parts) == {"popularity", "recency", "novelty"}
        assert imp.score == pytest.approx(entry["score"])
    scores = [e["score"] for e in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_feed_excludes_clicked_unpublished_and_other_catalogs(client):
    reader = ReaderFactory()
    clicked, live = ItemFactory(), ItemFactory()
    ItemFactory(published_at=None)
    ItemFactory(source="movielens")
    ClickFactory(reader=reader, item=clicked)
    body = client.get("/api/feed", {"reader": reader.pk, "limit": 50}).json()
    assert [e["item"]["id"] for e in body["items"]] == [live.pk]


def test_feed_prefers_popular_then_recent_and_rotates_seen_items(client):
    reader = ReaderFactory()
    a, b, c = ItemFactory(popularity=10.0), ItemFactory(popularity=3.0), ItemFactory(popularity=0.0)
    first = [e["item"]["id"] for e in client.get("/api/feed", {"reader": reader.pk, "limit": 3}).json()["items"]]
    assert first == [a.pk, b.pk, c.pk]
    # Shown items are discounted, so asking again a few times moves unseen-for-longer ones up.
    for _ in range(3):
        client.get("/api/feed", {"reader": reader.pk, "limit": 1})
    again = client.get("/api/feed", {"reader": reader.pk, "limit": 1}).json()["items"][0]["item"]["id"]
    assert again != a.pk


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 5}, "reader"),
        ({"reader": "abc"}, "reader"),
        ({"reader": "-3"}, "reader"),
        ({"reader": "99999999999999999999999"}, "reader"),
        ({"reader": 1, "limit": "0"}, "limit"),
        ({"reader": 1, "limit": "-1"}, "limit"),
        ({"reader": 1, "limit": "ten"}, "limit"),
        ({"reader": 1, "limit": "101"}, "limit"),
    ],
)
def test_feed_bad_input_is_400_naming_the_field(client, params, field):
    ReaderFactory()
    resp = client.get("/api/feed", params)
    assert resp.status_code == 400
    assert resp["Content-Type"] == "application/json"
    assert field in resp.json()["errors"] and field in resp.json()["detail"]


def test_feed_unknown_reader_is_404_json(client):
    resp = client.get("/api/feed", {"reader": 424242})
    assert resp.status_code == 404
    assert resp.json() == {"detail": "Reader 424242 not found."}


def test_click_is_stored_linked_to_its_impression_and_marks_seeds_dirty(client):
    imp = ImpressionFactory()
    resp = client.post("/api/clicks", {"impression": imp.pk, "reader": imp.reader_id},
                       content_type="application/json")
    assert resp.status_code == 201
    click = Click.objects.get()
    assert (click.impression_id, click.reader_id, click.item_id) == (imp.pk, imp.reader_id, imp.item_id)
    assert resp.json()["click"] == click.pk and resp.json()["created"] is True
    assert SeedSet.objects.get(item=imp.item).dirty


def test_repeated_click_on_one_impression_stores_one_click(client):
    imp = ImpressionFactory()
    first = client.post("/api/clicks", {"impression": imp.pk}, content_type="application/json")
    second = client.post("/api/clicks", {"impression": imp.pk}, content_type="application/json")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["click"] == second.json()["click"]
    assert second.json()["created"] is False
    assert Click.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_clicks_on_one_impression_store_one(live_server):
    import json
    import urllib.request

    imp = ImpressionFactory()
    codes = []

    def post():
        req = urllib.request.Request(f"{live_server.url}/api/clicks", method="POST",
                                     data=json.dumps({"impression": imp.pk}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            codes.append(resp.status)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200] * 7 + [201]
    assert Click.objects.filter(impression=imp).count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "impression"), ({"impression": "x"}, "impression"), ({"impression": 0}, "impression"),
     ({"impression": 1, "reader": "me"}, "reader")],
)
def test_click_bad_body_is_400_naming_the_field(client, body, field):
    resp = client.post("/api/clicks", body, content_type="application/json")
    assert resp.status_code == 400 and field in resp.json()["errors"]
    assert Click.objects.count() == 0


def test_click_malformed_json_is_400(client):
    resp = client.post("/api/clicks", "{not json", content_type="application/json")
    assert resp.status_code == 400 and "detail" in resp.json()


def test_click_unknown_impression_is_404(client):
    resp = client.post("/api/clicks", {"impression": 99999}, content_type="application/json")
    assert resp.status_code == 404 and resp.json() == {"detail": "Impression 99999 not found."}


def test_click_by_another_reader_is_rejected_and_nothing_stored(client):
    imp, other = ImpressionFactory(), ReaderFactory()
    resp = client.post("/api/clicks", {"impression": imp.pk, "reader": other.pk},
                       content_type="application/json")
    assert resp.status_code == 400 and "reader" in resp.json()["errors"] and resp.json()["detail"]
    assert Click.objects.count() == 0


def test_unknown_api_path_is_json_404(client):
    resp = client.get("/api/nothing-here")
    assert resp.status_code == 404 and resp.json() == {"detail": "Not found."}


def test_method_not_allowed_is_json(client):
    resp = client.get("/api/clicks")
    assert resp.status_code == 405 and "detail" in resp.json()


def test_healthz_reports_postgres_and_redis(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok", "postgres": "ok", "redis": "ok"}


def test_healthz_is_503_when_redis_is_unreachable(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    resp = client.get("/healthz")
    assert resp.status_code == 503
    assert resp.json()["postgres"] == "ok" and resp.json()["redis"].startswith("error")


def test_openapi_schema_lists_the_endpoints(client):
    resp = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert resp.status_code == 200
    text = resp.content.decode()
    assert "/api/feed" in text and "/api/clicks" in text


def test_hot_query_indexes_exist():
    with connection.cursor() as cur:
        cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('news_click', 'news_impression')")
        defs = dict(cur.fetchall())
    assert "(item_id, clicked_at DESC)" in defs["click_item_recent_idx"]
    assert "(reader_id, shown_at DESC)" in defs["impression_reader_recent_idx"]
    # The (key, time) indexes serve lookups by reader or item alone: no single-column index
    # on those keys for every feed insert to keep up.
    alone = [name for name, d in defs.items() if d.endswith("(reader_id)") or d.endswith("(item_id)")]
    assert alone == []


def test_reader_with_history_is_one_round_trip_with_what_the_two_reads_give(django_assert_num_queries):
    from django.utils import timezone

    from webapp.feed.selectors import reader_history, reader_with_history
    from webapp.news.models import Reader

    reader = ReaderFactory(topics=["sports", "news"])
    older, newer, shown = ItemFactory(), ItemFactory(), ItemFactory()
    ClickFactory(reader=reader, item=older, clicked_at=timezone.now() - timedelta(hours=2))
    ClickFactory(reader=reader, item=newer)
    ImpressionFactory.create_batch(2, reader=reader, item=shown)
    ImpressionFactory(reader=reader, item=older, shown_at=timezone.now() - timedelta(days=3))  # outside the window
    now = timezone.now()
    with django_assert_num_queries(1):
        got, clicked, seen = reader_with_history(reader_id=reader.pk, now=now)
    stored = Reader.objects.get(pk=reader.pk)
    assert got == stored and got._state.adding is False
    assert [getattr(got, f.attname) for f in Reader._meta.concrete_fields] == \
        [getattr(stored, f.attname) for f in Reader._meta.concrete_fields]
    assert clicked == [newer.pk, older.pk] and seen == {shown.pk: 2}
    assert (clicked, seen) == reader_history(reader=stored, now=now)
    assert reader_with_history(reader_id=reader.pk + 10_000, now=now) == (None, [], {})


def test_feed_build_refuses_a_history_read_by_the_caller():
    """A page's history is read by the service at the page's own time, never handed in."""
    from webapp.feed import services

    with pytest.raises(TypeError, match="history"):
        services.feed_build(reader=ReaderFactory(), limit=5, history=([], {}))
