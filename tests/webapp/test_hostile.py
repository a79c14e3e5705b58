"""A table of hostile and malformed requests against the real app (Postgres, Redis): none
answers 5xx, every error under /api/ and at /healthz answers JSON in the API's one shape
({"detail": ...}), held-back stories do not exist for readers, and profile fields take only
their choices. Each row names the finding it covers."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.factories import ImpressionFactory, ItemFactory, ReaderFactory
from webapp.news.models import Click, Reader, Source

pytestmark = pytest.mark.django_db

DEEP = "[" * 2000 + "]" * 2000


@pytest.fixture
def world():
    """A demo reader with demo profile values, a published and a held-back story, an impression."""
    reader = ReaderFactory(region="north", age_band="25-34", device="mobile")
    ReaderFactory(region="south", age_band="35-44", device="desktop")
    live, held = ItemFactory(), ItemFactory(published_at=None, title="Held back")
    impression = ImpressionFactory(reader=reader, item=live)
    return {"reader": reader.pk, "live": live.pk, "held": held.pk, "impression": impression.pk}


# (finding, method, path, body or query, content type, extra headers, expected status)
REQUESTS = [
    ("2 deep nesting", "post", "/api/clicks", DEEP, "application/json", {}, 400),
    ("2 deep object", "post", "/api/clicks", '{"a":' * 3000 + "1" + "}" * 3000, "application/json", {}, 400),
    ("5 body over the limit", "post", "/api/clicks", "x" * 3_000_000, "application/json", {}, 413),
    ("5 bad Content-Length", "post", "/api/clicks", "{}", "application/json", {"CONTENT_LENGTH": "abc"}, 400),
    ("5 bad Host", "get", "/api/feed", {"reader": "{reader}"}, None, {"HTTP_HOST": "evil.example"}, 400),
    ("5 bad Host, POST", "post", "/api/clicks", "{}", "application/json", {"HTTP_HOST": "evil.example"}, 400),
    ("5 POST /healthz", "post", "/healthz", "", "application/json", {}, 405),
    ("5 PUT /healthz", "put", "/healthz", "", "application/json", {}, 405),
    ("5 URL over 4 KB", "get", "/api/feed?reader=1&pad=" + "x" * 5000, None, None, {}, 414),
    ("5 method not allowed", "delete", "/api/feed", None, None, {}, 405),
    ("5 method not allowed", "put", "/api/clicks", "{}", "application/json", {}, 405),
    ("5 GET on clicks", "get", "/api/clicks", None, None, {}, 405),
    ("5 unknown API path", "get", "/api/nowhere", None, None, {}, 404),
    ("5 non-numeric item", "get", "/api/items/abc", None, None, {}, 404),
    ("5 item id beyond bigint", "get", "/api/items/" + "9" * 30, None, None, {}, 404),
    ("5 reader id beyond bigint", "get", "/api/readers/" + "9" * 30, None, None, {}, 404),
    ("5 reader 0", "get", "/api/readers/0", None, None, {}, 404),
    ("5 text/plain body", "post", "/api/clicks", "impression=1", "text/plain", {}, 415),
    ("5 form body", "post", "/api/clicks", "impression=1", "application/x-www-form-urlencoded", {}, 415),
    ("5 broken JSON", "post", "/api/clicks", "{not json", "application/json", {}, 400),
    ("5 JSON list", "post", "/api/clicks", "[]", "application/json", {}, 400),
    ("5 JSON null", "post", "/api/clicks", "null", "application/json", {}, 400),
    ("5 JSON string", "post", "/api/clicks", '"x"', "application/json", {}, 400),
    ("5 huge number", "post", "/api/clicks", '{"impression": 1e400}', "application/json", {}, 400),
    ("5 long digits", "post", "/api/clicks", '{"impression": ' + "1" * 400 + "}", "application/json", {}, 400),
    ("5 negative impression", "post", "/api/clicks", '{"impression": -1}', "application/json", {}, 400),
    ("5 NUL in JSON", "post", "/api/clicks", '{"impression": "\\u0000"}', "application/json", {}, 400),
    ("5 invalid UTF-8", "post", "/api/clicks", b'{"impression": "\xff"}', "application/json", {}, 400),
    ("5 unknown impression", "post", "/api/clicks", '{"impression": 999999}', "application/json", {}, 404),
    ("9 reader twice", "get", "/api/feed", "reader={reader}&reader={reader}", None, {}, 400),
    ("9 limit twice", "get", "/api/feed", "reader={reader}&limit=3&limit=4", None, {}, 400),
    ("5 bad reader", "get", "/api/feed", {"reader": "abc"}, None, {}, 400),
    ("5 NUL reader", "get", "/api/feed", {"reader": "1\x00"}, None, {}, 400),
    ("5 unknown arm", "get", "/api/feed", {"reader": "{reader}", "arm": "<script>"}, None, {}, 400),
    ("5 limit too big", "get", "/api/feed", {"reader": "{reader}", "limit": "100000"}, None, {}, 400),
    ("5 unknown reader", "get", "/api/feed", {"reader": "424242"}, None, {}, 404),
    ("3 held-back story, API", "get", "/api/items/{held}", None, None, {}, 404),
    ("3 held-back story, page", "get", "/items/{held}/", None, None, {}, 404),
    ("3 held-back story, page as a reader", "get", "/items/{held}/", {"reader": "{reader}"}, None, {}, 404),
    ("3 published story, API", "get", "/api/items/{live}", None, None, {}, 200),
    ("9 favicon", "get", "/favicon.ico", None, None, {}, 200),
    ("9 reader twice, page", "get", "/feed/", "reader={reader}&reader={reader}", None, {}, 400),
    ("9 reader twice, story page", "get", "/items/{live}/", "reader={reader}&reader=2", None, {}, 400),
    ("5 healthz", "get", "/healthz", None, None, {}, 200),
    ("5 healthz HEAD", "head", "/healthz", None, None, {}, 200),
    ("5 click page GET", "get", "/click/", None, None, {}, 405),
    ("5 click page, bad form", "post", "/click/", {"reader": "x", "impression": "y"}, None, {}, 400),
    ("5 page beyond bigint", "get", "/items/" + "9" * 30 + "/", None, None, {}, 404),
    ("5 unknown page", "get", "/nowhere/", None, None, {}, 404),
    ("5 schema", "get", "/api/schema/", None, None, {}, 200),
]


def _fill(value, ids):
    if isinstance(value, str):
        for key, v in ids.items():
            value = value.replace("{" + key + "}", str(v))
        return value
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


@pytest.mark.parametrize(("finding", "method", "path", "data", "content_type", "extra", "expected"), REQUESTS,
                         ids=[f"{r[0]}: {r[1].upper()} {r[2][:40]}" for r in REQUESTS])
def test_hostile_request(world, finding, method, path, data, content_type, extra, expected):
    client = Client()
    path, data = _fill(path, world), _fill(data, world)
    if isinstance(data, str) and method in ("get", "head") and "=" in data:
        path, data = f"{path}?{data}", None
    kwargs = dict(extra)
    if content_type is not None:
        kwargs["content_type"] = content_type
    response = getattr(client, method)(path, data, **kwargs) if data is not None else \
        getattr(client, method)(path, **kwargs)
    assert response.status_code < 500
    assert response.status_code == expected, response.content[:300]
    if (path.startswith("/api/") or path.startswith("/healthz")) and response.status_code >= 400:
        assert response["Content-Type"].startswith("application/json"), response.content[:300]
        body = json.loads(response.content)
        assert isinstance(body, dict) and isinstance(body["detail"], str) and body["detail"]
    if "held-back" in finding:
        assert b"Held back" not in response.content
    assert not Click.objects.exists()  # nothing hostile stored a click


def test_staff_see_held_back_stories(world, client):
    user = get_user_model().objects.create_user("editor", password="pw-editor-1", is_staff=True)
    client.force_login(user)
    assert client.get(f"/api/items/{world['held']}").json()["title"] == "Held back"
    assert client.get(f"/items/{world['held']}/").status_code == 200


@pytest.mark.parametrize(("field", "value"), [
    ("region", "Atlantis"), ("age_band", "999"), ("device", "📱"), ("region", "<b>north</b>"), ("device", "x" * 40),
])
def test_profile_fields_take_only_their_choices(world, client, field, value):
    client.post("/start/")
    me = Reader.objects.get(source=Source.WEB)
    client.get("/")
    token = client.cookies["csrftoken"].value
    bad = client.patch(f"/api/readers/{me.pk}", {field: value}, content_type="application/json",
                       HTTP_X_CSRFTOKEN=token)
    assert bad.status_code == 400 and field in bad.json()["errors"] and bad.json()["detail"]
    assert getattr(Reader.objects.get(pk=me.pk), field) == ""
    ok = client.patch(f"/api/readers/{me.pk}", {"region": "north", "device": ""}, content_type="application/json",
                      HTTP_X_CSRFTOKEN=token)
    assert ok.status_code == 200 and ok.json()["region"] == "north"


def _rate_keys_clear() -> None:
    from webapp.common.connections import redis_client

    r = redis_client()
    for key in r.scan_iter(match="*:rate:client-*"):
        r.delete(key)


def test_one_client_beyond_its_limit_gets_429_and_others_do_not(world, settings, rate_clock):
    settings.FEED_CLIENT_RATE_LIMIT, settings.SIMULATOR_TOKEN = "3/minute", "sim-token-for-tests"
    _rate_keys_clear()
    one, other = Client(REMOTE_ADDR="10.0.0.1"), Client(REMOTE_ADDR="10.0.0.2")
    reader = world["reader"]
    assert [one.get("/api/feed", {"reader": reader}).status_code for _ in range(3)] == [200, 200, 200]
    over = one.get("/api/feed", {"reader": reader})
    assert over.status_code == 429 and over["Retry-After"] and "client" in over.json()["detail"]
    assert one.get("/feed/", {"reader": reader}).status_code == 429  # the pages share the client's count
    assert other.get("/api/feed", {"reader": reader}).status_code == 200
    # The simulator, with its token, is one client per simulated reader: outside the limit.
    sim = Client(REMOTE_ADDR="10.0.0.1", HTTP_X_SIMULATOR_TOKEN="sim-token-for-tests")
    assert all(sim.get("/api/feed", {"reader": reader}).status_code == 200 for _ in range(5))
    wrong = Client(REMOTE_ADDR="10.0.0.1", HTTP_X_SIMULATOR_TOKEN="guess")
    assert wrong.get("/api/feed", {"reader": reader}).status_code == 429
    _rate_keys_clear()


def test_clicks_beyond_the_client_limit_get_429(world, settings, rate_clock):
    settings.CLICK_CLIENT_RATE_LIMIT = "2/minute"
    _rate_keys_clear()
    ItemFactory.create_batch(3)
    client = Client(REMOTE_ADDR="10.0.0.3")
    page = client.get("/api/feed", {"reader": world["reader"], "limit": 3}).json()
    codes = [client.post("/api/clicks", {"impression": e["impression"]}, content_type="application/json").status_code
             for e in page["items"]]
    assert codes == [201, 201, 429] and Click.objects.count() == 2
    _rate_keys_clear()


def test_a_click_on_another_clients_impression_is_refused(world):
    shown_to, stranger = Client(REMOTE_ADDR="10.0.0.4"), Client(REMOTE_ADDR="10.0.0.5")
    page = shown_to.get("/api/feed", {"reader": world["reader"], "limit": 2}).json()
    impression = page["items"][0]["impression"]
    refused = stranger.post("/api/clicks", {"impression": impression}, content_type="application/json")
    assert refused.status_code == 400 and "not shown to this client" in refused.json()["detail"]
    assert "impression" in refused.json()["errors"] and not Click.objects.exists()
    # The page form refuses it too; the client it was shown to clicks it.
    assert stranger.post("/click/", {"reader": world["reader"], "impression": impression}).status_code == 400
    assert shown_to.post("/api/clicks", {"impression": impression}, content_type="application/json").status_code == 201
