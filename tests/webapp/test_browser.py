"""A real browser (Debian's Chromium, driven by Playwright) reads the feed as a reader,
clicks a story, and sees the click stored and the next feed change; checks that the "why"
lines and the admin's seeds page hold for the reader they speak of. Screenshots are kept in
test-artifacts/ (the README's come from there)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.contrib.auth import get_user_model

from webapp.lookalike.models import ModelKind, ReaderVector
from webapp.news.models import Click, Impression, Item, ItemStatus, Reader

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


def _server_page(reader: Reader) -> list[tuple[int, bool, str]]:
    """(story, warm, why) of the reader's first page as the feed would rank it now."""
    from django.conf import settings
    from django.utils import timezone

    from recsys.arms import arm
    from webapp.feed import ranking
    from webapp.feed.selectors import reader_history

    now = timezone.now()
    clicked, shown = reader_history(reader=reader, now=now)
    ranked = ranking.rank(reader_id=reader.pk, source="demo", clicked=clicked, shown=shown, now=now, limit=10,
                          arm=arm(settings.FEED_ARM), topics=reader.topics)
    return [(int(i), w, why) for i, w, why in zip(ranked.item_ids, ranked.warm, ranked.why, strict=True)]


def _feed_lines_hold(page, live_server, reader: Reader, shot: str) -> list[tuple[int, str, bool]]:
    """The reader's feed in the browser: every warm story's line holds by the "readers like
    you" test (tests.webapp.whycheck). Returns (story, line, made the claim) of the warm ones."""
    from tests.webapp.whycheck import CLAIM, READ_BY, assert_line_holds

    page.goto(f"{live_server.url}/feed/?reader={reader.pk}")
    cards = page.locator("article.card")
    warm = []
    for n in range(cards.count()):
        item_id, line = int(cards.nth(n).get_attribute("data-item-id")), cards.nth(n).locator(".why").inner_text()
        assert "share your taste" not in line
        if CLAIM.match(line) or READ_BY.match(line):
            warm.append((item_id, line, assert_line_holds(line, item_id, reader.pk)))
    page.screenshot(path=str(ARTIFACTS / shot), full_page=True)
    return warm


def _seeds_page_holds(page, live_server, item_id: int, reader: Reader, *, via_row: bool) -> str:
    """The story's seeds page scoring the reader: what each cluster holds, the RALM logit
    beside the calibrated P(click) (or why there is none), and the "readers like you" test's
    verdict as the definition gives it. Returns the verdict's text."""
    from tests.webapp.whycheck import Story, served_vector

    path = f"/admin/news/item/{item_id}/seeds/"
    if via_row:  # the seed reader's own row: the cluster it is in, and its "score" link
        page.goto(f"{live_server.url}{path}")
        row = page.locator(f'#seeds tr[data-reader="{reader.pk}"]')
        story = Story.of(item_id)
        vector = ReaderVector.objects.get(reader=reader, model_run__kind=ModelKind.USER_TOWER,
                                          model_run__is_active=True)
        fx = story.scorer.transform(np.frombuffer(bytes(vector.vector), "<f4").astype(np.float64))
        assert row.locator(".cluster").inner_text() == str(int(np.argmin(((story.cents - fx) ** 2).sum(1))))
        row.locator("a", has_text="score for this reader").click()
    else:
        page.goto(f"{live_server.url}{path}?reader={reader.pk}")
    page.wait_for_selector("#score")
    clusters = page.locator("#attention tr.cluster")
    shares = [float(clusters.nth(n).locator(".share").inner_text().rstrip("%")) for n in range(clusters.count())]
    assert clusters.count() >= 1 and abs(sum(shares) - 100) < 0.5, shares
    for n in range(clusters.count()):  # what the seed readers nearest each centroid read
        if int(clusters.nth(n).get_attribute("data-nearest")):
            assert clusters.nth(n).locator(".categories").inner_text() not in ("", "-")
            assert " / " in clusters.nth(n).locator(".subcategories").inner_text()
    logit = float(page.locator("#score-logit").inner_text())
    probability = page.locator("#score-probability").inner_text()
    if probability == "none":  # the test world's short history may fit no calibration maps: the page says so
        assert "no calibrated ranker serves" in page.locator("#score").inner_text()
    else:
        assert 0 < float(probability) < 1, probability
    why, close = Story.of(item_id).why(served_vector(reader.pk))
    verdict = page.locator("#why-test").inner_text()
    if why.close:
        assert page.locator("#why-claim").inner_text() == f"Readers like you read it: {why.claim}."
        assert [clusters.nth(n).locator(".close").inner_text() for n in range(clusters.count())] == \
            ["yes" if c else "no" for c in close]
    else:
        assert "close to no cluster" in verdict and page.locator("#why-claim").count() == 0
    assert np.isfinite(logit)
    return verdict


def test_why_lines_and_the_seeds_page_for_a_few_click_reader_and_a_seed_reader(trained, live_server, browser):
    """The feed's "why" lines hold for the reader they are shown to, and the seeds page says
    the same of that reader: for a demo reader with one to three clicks and for a seed reader
    of a warm story."""
    from django.db.models import Count

    from webapp.lookalike.models import SeedSet

    demo = Reader.objects.filter(source="demo").annotate(n=Count("clicks")).order_by("pk")
    few = next(r for r in demo.filter(n__gte=1, n__lte=3) if any(w for _, w, _ in _server_page(r)))
    seeds = {}  # reader -> a warm story listed with them among its first 100 seeds
    for item_id, ids in SeedSet.objects.filter(item__status=ItemStatus.WARM, item__source="demo") \
            .order_by("item_id").values_list("item_id", "seed_reader_ids"):
        for reader_id in ids[:100]:
            seeds.setdefault(reader_id, item_id)
    candidates = [r for r in demo.filter(pk__in=list(seeds))[:60]]
    pages = {r.pk: _server_page(r) for r in candidates}
    claims = lambda r: sum(why.startswith("Readers like you") for _, _, why in pages[r.pk])  # noqa: E731
    seed = max(candidates, key=lambda r: (claims(r) > 0, sum(w for _, w, _ in pages[r.pk]), -r.pk))

    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    _staff_login(page, live_server, "/admin/", "#content")
    few_lines = _feed_lines_hold(page, live_server, few, "feed-why-few-clicks.png")
    seed_lines = _feed_lines_hold(page, live_server, seed, "feed-why-seed-reader.png")
    assert few_lines and seed_lines, (few_lines, seed_lines)
    if claims(seed):
        assert any(made for _, _, made in seed_lines), seed_lines

    # The few-click reader's first warm story: the seeds page's verdict is the feed line's, and
    # its logit is the one the feed logged with the impression.
    item_id, line, made = few_lines[0]
    verdict = _seeds_page_holds(page, live_server, item_id, few, via_row=False)
    assert ("close to no cluster" not in verdict) == made
    if made:
        assert line.startswith(page.locator("#why-claim").inner_text())
    shown = Impression.objects.filter(reader=few, item_id=item_id).latest("shown_at").score_parts
    assert float(page.locator("#score-logit").inner_text()) == pytest.approx(shown["ralm_logit"], abs=1e-3)
    page.screenshot(path=str(ARTIFACTS / "admin-seeds-few-clicks.png"), full_page=True)

    # The seed reader, from their row on the seeds page of a story they read.
    _seeds_page_holds(page, live_server, seeds[seed.pk], seed, via_row=True)
    page.screenshot(path=str(ARTIFACTS / "admin-seeds-seed-reader.png"), full_page=True)


def test_the_dashboard_and_seeds_pages_fit_a_phone(trained, live_server, browser):
    item = Item.objects.filter(status=ItemStatus.WARM).order_by("-pk").first()
    page = browser.new_page(viewport={"width": 390, "height": 844})
    _staff_login(page, live_server, "/admin/dashboard/", "#dashboard")
    widths = {"dashboard": page.evaluate("document.documentElement.scrollWidth")}
    page.goto(f"{live_server.url}/admin/news/item/{item.pk}/seeds/")
    page.wait_for_selector("#seed-view")
    widths["seeds"] = page.evaluate("document.documentElement.scrollWidth")
    assert widths == {"dashboard": 390, "seeds": 390}, widths


def test_no_page_breaks_its_content_security_policy(trained, live_server, browser):
    """Every page the site and the admin render keeps to the policy it sends: the browser
    reports no refused script, style, image or form."""
    reader = Reader.objects.filter(source="demo").order_by("pk").first()
    item = Item.objects.filter(status=ItemStatus.WARM).order_by("-pk").first()
    page = browser.new_page()
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    page.add_init_script("document.addEventListener('securitypolicyviolation', "
                         "e => console.error('Content Security Policy: ' + e.violatedDirective))")
    for path in ("/", f"/feed/?reader={reader.pk}", f"/items/{item.pk}/?reader={reader.pk}", "/accounts/login/",
                 "/accounts/signup/"):
        response = page.goto(f"{live_server.url}{path}")
        assert "script-src 'self'" in response.headers["content-security-policy"], path
    _staff_login(page, live_server, "/admin/", "#content")
    for path in ("/admin/dashboard/", f"/admin/news/item/{item.pk}/seeds/", "/admin/news/item/",
                 f"/admin/news/item/{item.pk}/change/", "/admin/news/reader/"):
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("load")
    assert refused == []
