from __future__ import annotations

import re

import pytest
from django.test import Client

from tests.factories import ItemFactory, ReaderFactory
from webapp.news.models import Click, Impression

pytestmark = pytest.mark.django_db


def test_home_lists_readers_to_pick(client):
    reader = ReaderFactory(name="Ada Quinn")
    html = client.get("/").content.decode()
    assert "Ada Quinn" in html and f"/feed/?reader={reader.pk}" in html


def test_feed_page_shows_cards_and_logs_impressions(client):
    reader = ReaderFactory()
    items = ItemFactory.create_batch(3)
    resp = client.get("/feed/", {"reader": reader.pk})
    assert resp.status_code == 200
    html = resp.content.decode()
    for item in items:
        assert item.title in html
    assert html.count('class="badge cold"') == 3
    assert Impression.objects.filter(reader=reader).count() == 3
    assert "csrfmiddlewaretoken" in html


def test_click_from_the_page_needs_csrf_and_lands_on_the_story():
    browser = Client(enforce_csrf_checks=True)
    reader = ReaderFactory()
    item = ItemFactory()
    html = browser.get("/feed/", {"reader": reader.pk}).content.decode()
    impression = Impression.objects.get(reader=reader, item=item)

    forged = browser.post("/click/", {"reader": reader.pk, "impression": impression.pk})
    assert forged.status_code == 403 and Click.objects.count() == 0

    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    resp = browser.post("/click/", {"reader": reader.pk, "impression": impression.pk,
                                    "csrfmiddlewaretoken": token, "next": "https://evil.example/"})
    assert resp.status_code == 302
    assert resp["Location"] == f"/items/{item.pk}/?reader={reader.pk}"
    click = Click.objects.get()
    assert click.impression_id == impression.pk
    story = browser.get(resp["Location"])
    assert story.status_code == 200 and item.title in story.content.decode()


def test_feed_page_unknown_reader_is_404_and_bad_id_is_400(client):
    assert client.get("/feed/", {"reader": 987654}).status_code == 404
    assert client.get("/feed/", {"reader": "x"}).status_code == 400
    no_reader = client.get("/feed/")  # no id and no reader of this browser's own: the home page
    assert no_reader.status_code == 302 and no_reader["Location"] == "/"


def test_click_form_with_bad_values_is_rejected(client):
    assert client.post("/click/", {"reader": "x", "impression": "1"}).status_code == 400
    assert client.post("/click/", {"reader": 1, "impression": 99999}).status_code == 404


def test_story_page_unknown_is_404(client):
    assert client.get("/items/123456/").status_code == 404


def test_admin_needs_staff_login_and_lists_every_model(client, admin_client):
    assert client.get("/admin/").status_code == 302
    index = admin_client.get("/admin/").content.decode()
    for path in ["news/reader", "news/item", "news/impression", "news/click",
                 "lookalike/seedset", "lookalike/lookalikestate", "lookalike/modelrun", "lookalike/readervector"]:
        assert f"/admin/{path}/" in index
        assert admin_client.get(f"/admin/{path}/").status_code == 200
