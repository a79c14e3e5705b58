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


def _staff_login(page, live_server, path: str, selector: str) -> None:
    """A staff account logged in through the admin's form, landing on `path`."""
    get_user_model().objects.create_user("editor", password="pw-editor-1", is_staff=True, is_superuser=True)
    page.goto(f"{live_server.url}/admin/login/?next={path}")
    page.fill("#id_username", "editor")
    page.fill("#id_password", "pw-editor-1")
    page.click("input[type=submit]")
    page.wait_for_selector(selector)


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
    item = Item.objects.filter(status=ItemStatus.WARM).order_by("-pk").first()
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    _staff_login(page, live_server, f"/admin/news/item/{item.pk}/seeds/", "#seed-view")
    reader = page.locator("#seeds a", has_text="score for this reader").first
    reader.click()
    page.wait_for_selector("#score")
    assert page.locator("#projection svg").count() == 1
    page.screenshot(path=str(ARTIFACTS / "admin-seeds.png"), full_page=True)


def test_a_new_reader_gets_more_of_what_they_click(trained, live_server, browser):
    """Start reading with one click, skip the topics, click three stories of one category:
    the next page holds more stories of that category than the first did. The vector that
    makes it personal is recomputed at each click, with no retraining."""
    page = browser.new_page(viewport={"width": 420, "height": 900})
    page.goto(f"{live_server.url}/")
    page.click("#start-reading")
    page.wait_for_url("**/topics/")
    page.screenshot(path=str(ARTIFACTS / "topics.png"), full_page=True)
    page.click("#save-topics")  # none picked
    page.wait_for_url("**/feed/")
    reader = Reader.objects.get(source="web")
    first = [page.locator("article.card").nth(i).get_attribute("data-category") for i in range(10)]
    assert all("until you click or pick topics" in t for t in page.locator("article.card .why").all_inner_texts())
    # The category the first page shows least (the first such card): room for more of it.
    category = min(first, key=lambda c: (first.count(c), first.index(c)))
    for n in range(3):
        if n:  # back to the feed (the first click is on the first page itself)
            page.goto(f"{live_server.url}/feed/")
        for _ in range(5):  # the category's stories may sit a page further on
            if page.locator(f'article.card[data-category="{category}"]').count():
                break
            page.click("#more")
            page.wait_for_load_state()
        card = page.locator(f'article.card[data-category="{category}"]').first
        item_id = card.get_attribute("data-item-id")
        card.locator("button.read").click()
        page.wait_for_url(f"**/items/{item_id}/**")
        assert Click.objects.filter(reader=reader).count() == n + 1
    page.goto(f"{live_server.url}/feed/")
    after = [page.locator("article.card").nth(i).get_attribute("data-category") for i in range(10)]
    page.screenshot(path=str(ARTIFACTS / "new-reader-feed.png"), full_page=True)
    assert after.count(category) > first.count(category), (category, first, after)
    assert any(category in t for t in page.locator("article.card .why").all_inner_texts())
    assert reader.vectors.exists()


def test_the_dashboard_and_seeds_pages_fit_a_phone(trained, live_server, browser):
    item = Item.objects.filter(status=ItemStatus.WARM).order_by("-pk").first()
    page = browser.new_page(viewport={"width": 390, "height": 844})
    _staff_login(page, live_server, "/admin/dashboard/", "#dashboard")
    widths = {"dashboard": page.evaluate("document.documentElement.scrollWidth")}
    page.goto(f"{live_server.url}/admin/news/item/{item.pk}/seeds/")
    page.wait_for_selector("#seed-view")
    widths["seeds"] = page.evaluate("document.documentElement.scrollWidth")
    assert widths == {"dashboard": 390, "seeds": 390}, widths
