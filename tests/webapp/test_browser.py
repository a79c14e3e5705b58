"""A real browser (Debian's Chromium, driven by Playwright) reads the feed as a reader,
clicks a story, and sees the click stored and the next feed change. Screenshots are kept in
test-artifacts/ (the README's come from there)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from webapp.news.models import Click, Item, ItemStatus, Reader

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture
def browser(monkeypatch):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (make browser)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls of the test
    # itself are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


def test_read_click_and_the_next_feed_changes(trained, live_server, browser):
    reader = Reader.objects.filter(source="demo", clicks__isnull=False).order_by("pk").first()
    before = Click.objects.filter(reader=reader).count()
    page = browser.new_page(viewport={"width": 420, "height": 900})  # a phone-sized window
    page.goto(f"{live_server.url}/")
    page.goto(f"{live_server.url}/feed/?reader={reader.pk}")
    cards = page.locator("article.card")
    assert cards.count() == 10
    assert page.locator("article.card .why").count() == 10 and page.locator(".badge").count() == 10
    first_ids = [cards.nth(i).get_attribute("data-item-id") for i in range(cards.count())]
    page.screenshot(path=str(ARTIFACTS / "feed.png"), full_page=True)

    clicked_item = first_ids[0]
    title = cards.nth(0).locator("h2").inner_text()
    cards.nth(0).locator("button.read").click()
    page.wait_for_url(f"**/items/{clicked_item}/**")
    assert title in page.content()
    assert Click.objects.filter(reader=reader).count() == before + 1
    assert Click.objects.filter(reader=reader, item_id=int(clicked_item)).exists()

    page.goto(f"{live_server.url}/feed/?reader={reader.pk}")
    next_ids = [page.locator("article.card").nth(i).get_attribute("data-item-id") for i in range(10)]
    assert clicked_item not in next_ids and next_ids != first_ids
    page.screenshot(path=str(ARTIFACTS / "feed-after-click.png"), full_page=True)


def test_admin_seed_view_in_the_browser(trained, live_server, browser):
    get_user_model().objects.create_user("editor", password="pw-editor-1", is_staff=True, is_superuser=True)
    item = Item.objects.filter(status=ItemStatus.WARM).order_by("-pk").first()
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(f"{live_server.url}/admin/login/?next=/admin/news/item/{item.pk}/seeds/")
    page.fill("#id_username", "editor")
    page.fill("#id_password", "pw-editor-1")
    page.click("input[type=submit]")
    page.wait_for_selector("#seed-view")
    reader = page.locator("#seeds a", has_text="score for this reader").first
    reader.click()
    page.wait_for_selector("#score")
    assert page.locator("#projection svg").count() == 1
    page.screenshot(path=str(ARTIFACTS / "admin-seeds.png"), full_page=True)
