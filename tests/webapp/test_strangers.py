"""What a stranger on a public demo cannot do: click the history, spend a demo reader's clicks,
reset a limit with a made-up cookie, guess a password without end, see a web reader among a
story's seeds, write without limit, or slip a non-ASCII id past the checks; and what a deployer
gets over HTTPS. Each test names the finding of the hardening issue it covers; the proxy's part
(slow connections, its own errors) is in tests/test_proxy.py."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.factories import ImpressionFactory, ItemFactory, ReaderFactory
from webapp.common.connections import redis_client
from webapp.feed.access import SESSION_KEY
from webapp.lookalike.models import SeedSet
from webapp.news.models import Click, Impression, Reader, Source

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _counters_clear():
    def clear() -> None:
        r = redis_client()
        for key in r.scan_iter(match="*:rate:*"):
            r.delete(key)

    clear()
    yield
    clear()


def _click(client: Client, impression: int, **body):
    return client.post("/api/clicks", {"impression": impression, **body}, content_type="application/json")


def _page(client: Client, reader: int, limit: int = 5) -> list[int]:
    response = client.get("/api/feed", {"reader": reader, "limit": limit})
    assert response.status_code == 200, response.content[:200]
    return [entry["impression"] for entry in response.json()["items"]]


# --- 1. Nobody clicks the history ------------------------------------------------------------

def test_1_an_impression_shown_to_no_client_cannot_be_clicked_over_http():
    """The backfill's, an import's and the in-process simulator's impressions have no client."""
    history = ImpressionFactory(client="")
    stranger = Client(REMOTE_ADDR="198.51.100.1")
    refused = _click(stranger, history.pk)
    assert refused.status_code == 400 and "not shown to this client" in refused.json()["detail"]
    assert _click(stranger, history.pk, reader=history.reader_id).status_code == 400
    assert stranger.post("/click/", {"reader": history.reader_id, "impression": history.pk}).status_code == 400
    assert not Click.objects.exists()
    assert not SeedSet.objects.filter(item_id=history.item_id, dirty=True).exists()


# --- 2. Nobody spends a demo reader's clicks -------------------------------------------------

def test_2_a_stranger_cannot_use_up_a_demo_readers_clicks(settings, rate_clock):
    settings.CLICK_RATE_LIMIT = "30/minute"
    reader = ReaderFactory()
    history = [ImpressionFactory(reader=reader, client="") for _ in range(31)]
    ItemFactory.create_batch(3)
    stranger = Client(REMOTE_ADDR="198.51.100.2")
    assert {_click(stranger, imp.pk).status_code for imp in history} == {400}
    # A session that was just shown the reader's page clicks it.
    genuine = Client(REMOTE_ADDR="198.51.100.3")
    assert _click(genuine, _page(genuine, reader.pk)[0]).status_code == 201


def test_2_clicks_a_stranger_was_shown_count_against_that_stranger_alone(settings, rate_clock):
    settings.CLICK_RATE_LIMIT = "3/minute"
    reader = ReaderFactory()
    ItemFactory.create_batch(5)
    stranger, genuine = Client(REMOTE_ADDR="198.51.100.4"), Client(REMOTE_ADDR="198.51.100.5")
    shown = _page(stranger, reader.pk)
    assert [_click(stranger, i).status_code for i in shown[:4]] == [201, 201, 201, 429]
    assert _click(genuine, _page(genuine, reader.pk)[0]).status_code == 201
    assert Click.objects.filter(reader=reader).count() == 4


# --- 3. A made-up session cookie is no client of its own -------------------------------------

def test_3_a_made_up_session_cookie_does_not_reset_the_feed_limit(settings, rate_clock):
    settings.FEED_CLIENT_RATE_LIMIT = "3/minute"
    reader = ReaderFactory()
    ItemFactory.create_batch(2)
    client = Client(REMOTE_ADDR="198.51.100.6")
    assert [client.get("/feed/", {"reader": reader.pk}).status_code for _ in range(3)] == [200, 200, 200]
    assert client.get("/feed/", {"reader": reader.pk}).status_code == 429
    logged = Impression.objects.count()
    for n in range(3):
        forged = Client(REMOTE_ADDR="198.51.100.6")
        forged.cookies[settings.SESSION_COOKIE_NAME] = f"madeupsession000{n}x"
        assert forged.get("/feed/", {"reader": reader.pk}).status_code == 429
        assert forged.get("/api/feed", {"reader": reader.pk}).status_code == 429
    assert Impression.objects.count() == logged


def test_3_a_made_up_session_cookie_does_not_reset_the_click_limit(settings, rate_clock):
    settings.CLICK_CLIENT_RATE_LIMIT = "2/minute"
    reader = ReaderFactory()
    ItemFactory.create_batch(5)
    client = Client(REMOTE_ADDR="198.51.100.7")
    shown = _page(client, reader.pk)
    codes = [client.post("/click/", {"reader": reader.pk, "impression": i}).status_code for i in shown[:3]]
    assert codes == [302, 302, 429]
    forged = Client(REMOTE_ADDR="198.51.100.7")
    forged.cookies[settings.SESSION_COOKIE_NAME] = "madeupsession0000x"
    assert forged.post("/click/", {"reader": reader.pk, "impression": shown[3]}).status_code == 429
    assert Click.objects.count() == 2


# --- 5. Log-in throttling ----------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_5_ten_wrong_passwords_lock_the_account_out_from_that_address_for_a_while(path):
    from axes.models import AccessAttempt

    get_user_model().objects.create_user("editor", password="pw-editor-1", is_staff=True)
    attacker = Client(REMOTE_ADDR="198.51.100.8")
    for n in range(10):
        attacker.post(path, {"username": "editor", "password": f"guess-{n}"})
    right = attacker.post(path, {"username": "editor", "password": "pw-editor-1"})
    assert right.status_code == 429 and "Too many failed log-ins" in right.content.decode()
    assert "_auth_user_id" not in attacker.session
    # Another address is not locked out; the lockout ends by itself.
    elsewhere = Client(REMOTE_ADDR="198.51.100.9")
    assert elsewhere.post(path, {"username": "editor", "password": "pw-editor-1"}).status_code == 302
    AccessAttempt.objects.update(attempt_time=AccessAttempt.objects.get().attempt_time - timedelta(minutes=16))
    later = attacker.post(path, {"username": "editor", "password": "pw-editor-1"})
    assert later.status_code == 302 and "_auth_user_id" in attacker.session


# --- 6. Web readers stay private ---------------------------------------------------------------

def test_6_a_web_reader_is_counted_among_a_storys_seeds_but_never_named(trained):
    from webapp.feed import services
    from webapp.lookalike.seeds import seeds_refresh

    browser = Client()
    browser.post("/start/")
    web = Reader.objects.get(pk=browser.session[SESSION_KEY])
    shown = browser.get("/api/feed", {"reader": web.pk, "limit": 1}).json()["items"][0]
    assert _click(browser, shown["impression"]).status_code == 201
    item = shown["item"]["id"]
    demo = Reader.objects.filter(source=Source.DEMO, vectors__model_run__is_active=True).first()
    services.click_record(impression_id=ImpressionFactory(reader=demo, item_id=item).pk)
    while seeds_refresh()["remaining"]:
        pass
    seeds = SeedSet.objects.get(item_id=item)
    assert web.pk in seeds.seed_reader_ids and demo.pk in seeds.seed_reader_ids
    public = Client().get(f"/api/items/{item}").json()["seeds"]
    assert public["count"] == seeds.count and demo.pk in public["sample"] and web.pk not in public["sample"]


# --- 7. No writes without limit ----------------------------------------------------------------

def test_7_new_readers_are_limited_per_address(settings, rate_clock):
    settings.READER_CLIENT_RATE_LIMIT = "3/hour"
    before = Reader.objects.count()
    codes = [Client(REMOTE_ADDR="198.51.100.10").post("/start/").status_code for _ in range(4)]
    assert codes == [302, 302, 302, 429] and Reader.objects.count() == before + 3
    signup = Client(REMOTE_ADDR="198.51.100.10").post("/accounts/signup/", {
        "username": "newbie", "password1": "correct-horse-9x", "password2": "correct-horse-9x"})
    assert signup.status_code == 429 and not get_user_model().objects.filter(username="newbie").exists()
    assert Client(REMOTE_ADDR="198.51.100.11").post("/start/").status_code == 302  # another address


def test_7_head_writes_nothing():
    reader = ReaderFactory()
    ItemFactory.create_batch(3)
    client = Client()
    assert client.head("/api/feed", {"reader": reader.pk, "limit": 3}).status_code == 405
    assert client.head("/feed/", {"reader": reader.pk}).status_code == 405
    assert not Impression.objects.exists()


# --- 8. Smaller points -------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["１", "٣", "+1", "1.0", " 1", "1 ", "0x1", "1_0"])
def test_8_ids_are_ascii_digits_only(value):
    reader = ReaderFactory()
    ItemFactory()
    text = value.replace("1", str(reader.pk)) if value.strip("+ ").startswith("1") else value
    assert Client().get("/api/feed", {"reader": text}).status_code == 400
    assert Client().get("/feed/", {"reader": text}).status_code == 400
    assert Client().get("/api/feed", {"reader": reader.pk, "limit": value}).status_code == 400
    impression = ImpressionFactory(reader=reader)
    body = value.replace("1", str(impression.pk)) if value.strip("+ ").startswith("1") else value
    assert _click(Client(), body).status_code == 400
    assert not Click.objects.exists()


@pytest.mark.parametrize("body", ['{"impression": 7.0}', '{"impression": true}', '{"impression": "7.0"}'])
def test_8_a_json_id_is_a_whole_number(body):
    ImpressionFactory.create_batch(7)
    response = Client().post("/api/clicks", body, content_type="application/json")
    assert response.status_code == 400 and "impression" in response.json()["errors"]


def test_8_over_https_the_cookies_are_secure_and_hsts_and_a_csp_are_sent():
    for https in ({"secure": True}, {"HTTP_X_FORWARDED_PROTO": "https"}):  # direct, or as the proxy says
        browser = Client()
        browser.post("/start/", **https)
        page = browser.get("/", **https)
        assert browser.cookies["sessionid"]["secure"] and browser.cookies["csrftoken"]["secure"]
        assert page["Strict-Transport-Security"].startswith("max-age=")
    plain = Client()
    plain.post("/start/")
    page = plain.get("/")
    assert not plain.cookies["sessionid"]["secure"] and not plain.cookies["csrftoken"]["secure"]
    assert "Strict-Transport-Security" not in page
    csp = dict(part.strip().split(" ", 1) for part in page["Content-Security-Policy"].split(";"))
    assert csp["script-src"] == "'self'" and csp["frame-ancestors"] == "'none'" and csp["object-src"] == "'none'"


def test_8_a_client_cannot_choose_its_address_except_through_the_proxy(settings, rate_clock):
    """The proxy's X-Forwarded-For is believed from a trusted proxy only, so the per-client
    limit keys on the real client behind it, and a client talking to gunicorn directly cannot
    pick a fresh address per request."""
    settings.FEED_CLIENT_RATE_LIMIT = "2/minute"
    reader = ReaderFactory()
    ItemFactory()
    direct = Client(REMOTE_ADDR="198.51.100.12")
    codes = [direct.get("/api/feed", {"reader": reader.pk}, HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code
             for n in range(3)]
    assert codes == [200, 200, 429]
    proxy = Client(REMOTE_ADDR="127.0.0.1")  # the proxy on this machine, for two clients
    for address in ("203.0.113.50", "203.0.113.51"):
        codes = [proxy.get("/api/feed", {"reader": reader.pk}, HTTP_X_FORWARDED_FOR=address).status_code
                 for _ in range(3)]
        assert codes == [200, 200, 429]


def test_8_a_bad_host_is_one_short_line_without_a_traceback():
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger, handler = logging.getLogger("django.security.DisallowedHost"), Keep()
    logger.addHandler(handler)
    try:
        response = Client().get("/api/feed", {"reader": 1}, HTTP_HOST="evil.example" + "x" * 2000)
    finally:
        logger.removeHandler(handler)
    assert response.status_code == 400 and json.loads(response.content)["detail"]
    assert len(records) == 1 and records[0].exc_info is None and len(records[0].getMessage()) <= 200
    assert "evil.example" in records[0].getMessage()
