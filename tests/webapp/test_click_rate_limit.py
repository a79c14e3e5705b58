"""The per-reader click rate limit (CLICK_RATE_LIMIT), on the real Postgres and Redis: over
the limit a click is a 429 with Retry-After and nothing is stored; other readers, repeated
clicks and unknown impressions are unaffected; with Redis down clicks are stored (fail open)."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from tests.factories import ImpressionFactory, ItemFactory, ReaderFactory
from webapp.feed.ratelimit import Limiter, Rate, rate_parse
from webapp.news.models import Click, Impression

pytestmark = pytest.mark.django_db


def _click(client, impression: int, **extra):
    return client.post("/api/clicks", {"impression": impression, **extra}, content_type="application/json")


def test_api_over_the_limit_is_429_with_retry_after_and_nothing_stored(client, settings, rate_clock):
    settings.CLICK_RATE_LIMIT = "3/minute"
    reader, other = ReaderFactory(), ReaderFactory()
    shown = [ImpressionFactory(reader=reader) for _ in range(5)]
    assert _click(client, 987654).status_code == 404  # unknown: not counted
    assert [_click(client, imp.pk).status_code for imp in shown[:3]] == [201, 201, 201]

    over = _click(client, shown[3].pk, reader=reader.pk)
    assert over.status_code == 429 and over["Content-Type"] == "application/json"
    body = over.json()
    assert body["limit"] == "3/minute" and "3/minute" in body["detail"]
    assert 1 <= body["retry_after"] <= 60 and over["Retry-After"] == str(body["retry_after"])
    assert _click(client, shown[4].pk).status_code == 429
    assert Click.objects.filter(reader=reader).count() == 3
    assert not Click.objects.filter(impression__in=shown[3:]).exists()

    again = _click(client, shown[0].pk)  # a repeat of a stored click stores nothing: answered as before
    assert again.status_code == 200 and again.json()["created"] is False

    theirs = ImpressionFactory(reader=other)
    assert _click(client, theirs.pk).status_code == 201  # another reader has a counter of their own
    assert Click.objects.filter(reader=other).count() == 1
    assert Click.objects.count() == 4


def test_click_form_over_the_limit_is_429_and_nothing_stored(settings, rate_clock):
    settings.CLICK_RATE_LIMIT = "2/minute"
    browser = Client()
    reader = ReaderFactory()
    ItemFactory.create_batch(4)
    browser.get("/feed/", {"reader": reader.pk})
    shown = list(Impression.objects.filter(reader=reader).order_by("position"))
    assert len(shown) == 4
    codes = [browser.post("/click/", {"reader": reader.pk, "impression": imp.pk}).status_code for imp in shown[:3]]
    assert codes == [302, 302, 429]
    over = browser.post("/click/", {"reader": reader.pk, "impression": shown[3].pk})
    assert over.status_code == 429 and 1 <= int(over["Retry-After"]) <= 60
    assert "Too many clicks" in over.content.decode() and "2/minute" in over.content.decode()
    assert set(Click.objects.values_list("impression_id", flat=True)) == {shown[0].pk, shown[1].pk}


def test_redis_down_fails_open_every_click_is_stored(client, settings):
    settings.CLICK_RATE_LIMIT = "1/minute"
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    reader = ReaderFactory()
    shown = [ImpressionFactory(reader=reader) for _ in range(3)]
    assert [_click(client, imp.pk).status_code for imp in shown] == [201, 201, 201]
    assert Click.objects.filter(reader=reader).count() == 3


def test_limit_off_never_limits(client, settings):
    settings.CLICK_RATE_LIMIT = "off"
    reader = ReaderFactory()
    shown = [ImpressionFactory(reader=reader) for _ in range(4)]
    assert [_click(client, imp.pk).status_code for imp in shown] == [201] * 4


def test_the_limiter_counts_per_window_of_its_clock(rate_clock):
    """Over the rate, the wait is what is left of the window; the next window starts afresh."""
    rate = Rate(2, 60, "2/minute")
    limiter = Limiter(clock=rate_clock)
    assert [limiter.hit(scope="test", key=1, rate=rate) for _ in range(3)] == [None, None, 30]
    rate_clock.now += 29
    assert limiter.hit(scope="test", key=1, rate=rate) == 1
    assert limiter.hit(scope="test", key=2, rate=rate) is None  # another key, a counter of its own
    rate_clock.now += 1
    assert limiter.hit(scope="test", key=1, rate=rate) is None


@pytest.mark.parametrize(("text", "rate"), [("30/minute", Rate(30, 60, "30/minute")), ("5/s", Rate(5, 1, "5/s")),
                                            (" 100 / hour ", Rate(100, 3600, "100 / hour")),
                                            ("2/DAY", Rate(2, 86400, "2/DAY")), ("off", None), ("", None)])
def test_rate_parse(text, rate):
    assert rate_parse(text) == rate


@pytest.mark.parametrize("text", ["30", "0/minute", "-1/minute", "30/fortnight", "x/minute"])
def test_rate_parse_rejects_bad_values(text):
    with pytest.raises(ImproperlyConfigured, match=re.escape(repr(text))):
        rate_parse(text)
