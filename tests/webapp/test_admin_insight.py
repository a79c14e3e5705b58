"""The admin's seed view of an item and the live dashboard."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from recsys.arms import ARMS
from webapp.lookalike.models import ModelKind, ModelRun, SeedSet
from webapp.news.models import Click, Item, ItemStatus, Reader


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_user("editor", password="pw-editor-1", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


def test_item_seed_view_shows_seeds_clusters_projection_and_scores_a_reader(trained, staff):
    item = Item.objects.filter(status=ItemStatus.WARM).order_by("-pk").first()
    seeds = SeedSet.objects.get(item=item)
    page = staff.get(f"/admin/news/item/{item.pk}/seeds/")
    assert page.status_code == 200
    html = page.content.decode()
    assert f'<strong id="seed-count">{seeds.count}</strong>' in html
    assert html.count('class="chart"') == 3 and 'id="attention"' in html
    assert f'href="/admin/news/reader/{seeds.seed_reader_ids[0]}/change/"' in html

    reader = seeds.seed_reader_ids[0]
    scored = staff.get(f"/admin/news/item/{item.pk}/seeds/?reader={reader}").content.decode()
    assert 'id="score"' in scored and "local weight (this reader)" in scored
    assert staff.get(f"/admin/news/item/{item.pk}/seeds/?reader=abc").status_code == 400
    assert "No reader 999999999" in staff.get(f"/admin/news/item/{item.pk}/seeds/?reader=999999999").content.decode()
    assert staff.get("/admin/news/item/999999999/seeds/").status_code == 404
    # Linked from the change form and the list.
    assert f"/admin/news/item/{item.pk}/seeds/" in staff.get(f"/admin/news/item/{item.pk}/change/").content.decode()


def test_the_seeds_page_says_what_each_cluster_holds_and_where_each_seed_is(trained, staff):
    from collections import Counter

    from webapp.lookalike.insight import seed_view

    item = Item.objects.filter(status=ItemStatus.WARM).order_by("-pk").first()
    view = seed_view(item=item)
    ids = SeedSet.objects.get(item=item).seed_reader_ids
    assert [c.seeds for c in view.clusters] == view.cluster_sizes
    assert sum(c.share for c in view.clusters) == pytest.approx(100, abs=0.5)
    assert sum(c.nearest for c in view.clusters) == len(ids)  # every seed has a vector, so a nearest centroid
    # Each listed seed is in a cluster of the story.
    assert [r.pk for r, _ in view.seed_rows] == ids[:100]
    assert {c for _, c in view.seed_rows} <= set(range(len(view.clusters)))
    # What a cluster's seeds read, this story left out, counted from the clicks themselves.
    members = {r.pk for r, c in view.seed_rows if c == 0} | {i for i in ids[100:]}
    if len(view.clusters) == 1:
        counts = Counter(Click.objects.filter(reader_id__in=members).exclude(item=item)
                         .values_list("item__category", flat=True))
        total = sum(counts.values())
        top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        assert view.clusters[0].categories == [(c, round(100 * n / total, 1)) for c, n in top]
    html = staff.get(f"/admin/news/item/{item.pk}/seeds/").content.decode()
    top, share = view.clusters[0].categories[0]
    assert f"{top} {share}%" in html and f'<td class="share">{view.clusters[0].share}%</td>' in html
    assert html.count('<td class="cluster">') == len(view.seed_rows)


def test_the_seeds_page_runs_the_feeds_readers_like_you_test_for_a_reader(trained, staff, monkeypatch):
    """Scoring a reader shows the verdict of the feed's test (webapp.lookalike.serving), per
    cluster and as the claim the feed may make, as the definition gives it."""
    from tests.webapp.whycheck import Story, served_vector
    from webapp.lookalike import insight
    from webapp.lookalike.insight import seed_view

    # The charts and the audience figures are not what this test reads, and cost most of a page.
    monkeypatch.setattr(insight, "_audience", lambda item: [])
    for chart in ("_history_svg", "_bars_svg", "_projection_svg"):
        monkeypatch.setattr(insight, chart, lambda *a: "")
    seen = set()
    for item in Item.objects.filter(status=ItemStatus.WARM).order_by("pk")[:6]:
        story = Story.of(item.pk)
        for reader_id in SeedSet.objects.get(item=item).seed_reader_ids[:20]:
            why, close = story.why(served_vector(reader_id))
            view = seed_view(item=item, reader_id=reader_id)
            assert [c.close for c in view.clusters] == close.tolist()
            assert all(c.cosine is not None and c.bar is not None for c in view.clusters)
            assert view.score["why"] == why.claim and view.score["chance"] == 5
            seen.add(why.claim is not None)
    assert seen == {True, False}  # both verdicts met among these seeds
    item = Item.objects.filter(status=ItemStatus.WARM).order_by("pk").first()
    reader = SeedSet.objects.get(item=item).seed_reader_ids[0]
    html = staff.get(f"/admin/news/item/{item.pk}/seeds/?reader={reader}").content.decode()
    assert 'id="why-test"' in html and 'id="score-logit"' in html and 'id="score-probability"' in html


def test_the_seeds_page_gives_the_calibrated_probability_the_feed_gives(trained, staff, monkeypatch):
    """Next to RALM's logit, the P(click) the feed's warm map gives the pair (the test world's
    short history fits no maps, so maps are fitted here): the same figures as the feed's score
    parts for a reader the story is shown to."""
    import dataclasses
    from types import SimpleNamespace

    import numpy as np
    from django.utils import timezone

    from recsys.calibration import PlattCalibrator
    from webapp.common.connections import redis_client
    from webapp.feed import ranking
    from webapp.feed.selectors import reader_history
    from webapp.lookalike import insight

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    cold = PlattCalibrator().fit(x[:, :1], (x[:, 0] + rng.normal(size=400) > 1).astype(int))
    warm = PlattCalibrator().fit(x, (x.sum(1) + rng.normal(size=400) > 1).astype(int))
    real = ranking.models.get(redis_client())
    fitted = dataclasses.replace(real, ranker=dataclasses.replace(real.ranker, cold_map=cold, warm_map=warm))
    monkeypatch.setattr(ranking.models, "get", lambda r, pointers=None: fitted)  # the feed's maps
    load = insight.load_coldstart  # the seeds page's: the same maps in the active run's artifact
    monkeypatch.setattr(insight, "load_coldstart", lambda folder: load(folder) | {
        "calibration": SimpleNamespace(cold=cold, warm=warm)})

    item = Item.objects.filter(status=ItemStatus.WARM, source="demo").order_by("pk").first()
    readers = Reader.objects.filter(source="demo", clicks__isnull=False).exclude(clicks__item=item).distinct()
    reader = readers.order_by("pk").first()
    now = timezone.now()
    clicked, shown = reader_history(reader=reader, now=now)
    ranked = ranking.rank(reader_id=reader.pk, source="demo", clicked=clicked, shown=shown, now=now, limit=10_000,
                          arm=ARMS["blend"], topics=reader.topics)
    parts = ranked.parts[[int(i) for i in ranked.item_ids].index(item.pk)]
    assert parts["calibrated"] and parts["warm"]
    html = staff.get(f"/admin/news/item/{item.pk}/seeds/?reader={reader.pk}").content.decode()
    logit = float(html.split('id="score-logit">')[1].split("<")[0])
    probability = float(html.split('id="score-probability">')[1].split("<")[0])
    assert logit == pytest.approx(parts["ralm_logit"], abs=1e-3)
    assert probability == pytest.approx(parts["similarity"], abs=1e-3)
    assert f"cold-start logit {parts['coldstart_logit']}" in html or \
        abs(float(html.split("cold-start logit ")[1].split()[0].rstrip(",.;)")) - parts["coldstart_logit"]) < 1e-3


def test_the_seed_view_sets_the_storys_audience_against_the_simulated_truth(trained, staff):
    from webapp.lookalike.audience import AudienceWorld

    item = Item.objects.filter(status=ItemStatus.WARM, source="demo").order_by("pk").first()
    html = staff.get(f"/admin/news/item/{item.pk}/seeds/").content.decode()
    assert "This audience against the simulated truth" in html and 'id="audience"' in html
    seeds, figures = AudienceWorld.load().story(item.pk)
    assert seeds == SeedSet.objects.get(item=item).count
    assert set(figures) == {"ralm", "seed_average", "click_profile", "category_affinity", "coldstart",
                            "category_truth"}
    assert f"<td>{round(figures['ralm']['rho'], 3)}</td>" in html
    # The truth's own category term ranks the audience far better than chance: the truth is real.
    assert figures["category_truth"]["rho"] > 0.5 and figures["category_truth"]["auc"] > 0.8
    assert all(-1 <= m["rho"] <= 1 and 0 <= m["auc"] <= 1 for m in figures.values())


def test_the_audience_over_every_story_is_bucketed_by_seeds(trained):
    from webapp.lookalike.audience import AudienceWorld

    world = AudienceWorld.load()
    buckets = world.all_stories()["buckets"]
    stories = {k: max(v["stories"] for v in b.values()) for k, b in buckets.items()}
    with_seeds = SeedSet.objects.filter(count__gt=0, item__source="demo", item__published_at__isnull=False).count()
    published = Item.objects.filter(source="demo", published_at__isnull=False).count()
    # Bucket "0" holds the stories without seeds (the cold-start model's); every other bucket
    # has RALM's figures and only stories with seeds.
    assert 0 < sum(n for k, n in stories.items() if k != "0") <= with_seeds
    assert sum(stories.values()) <= published
    assert all("ralm" in b for k, b in buckets.items() if k != "0") and "ralm" not in buckets.get("0", {})


def test_a_story_outside_the_demo_world_shows_no_audience(trained, staff):
    from tests.factories import ItemFactory

    item = ItemFactory(source="movielens")
    assert "This audience against" not in staff.get(f"/admin/news/item/{item.pk}/seeds/").content.decode()


def test_cold_item_without_state_says_so(trained, staff):
    item = Item.objects.filter(status=ItemStatus.COLD, lookalike_states__isnull=True).first()
    html = staff.get(f"/admin/news/item/{item.pk}/seeds/").content.decode()
    assert "No look-alike state yet" in html and html.count('class="chart"') == 1


def test_dashboard_charts_arms_and_published_stories(trained, staff):
    html = staff.get("/admin/dashboard/").content.decode()
    assert html.count('class="chart"') == 2 and 'id="arms"' in html and 'id="published"' in html
    assert 'http-equiv="refresh"' in html


def test_dashboard_shows_the_w_the_ctr_budget_left_each_blend_arm(trained, staff):
    from webapp.feed.dashboard import dashboard

    readers = Reader.objects.filter(source="demo", clicks__isnull=False).order_by("pk")[:4]
    used = []
    for reader in readers:  # the blend arm has a CTR budget: each page logs the w it left
        page = staff.get(f"/api/feed?reader={reader.pk}&limit=10&arm=blend").json()
        used.append(page["items"][0]["score_parts"]["weight_used"])
    staff.get(f"/api/feed?reader={readers[0].pk}&limit=10&arm=ctr")  # no budget: no such column
    rows = {m["arm"]: m for m in dashboard().arms}
    arm = rows["blend"]["budget"]
    full = ARMS["blend"].weight
    assert arm["pages"] == 4 and arm["mean_w"] == pytest.approx(sum(used) / 4)
    assert arm["full_share"] == used.count(full) / 4 and arm["zero_share"] == used.count(0.0) / 4
    assert rows["ctr"]["budget"] is None
    # Four pages of ten distinct stories each: coverage is 1,000 x distinct stories / impressions.
    assert rows["blend"]["impressions"] == 40 and 0 <= rows["blend"]["tail"] <= 1 and 0 <= rows["blend"]["cold"] <= 1
    assert 250 <= rows["blend"]["coverage"] <= 1000
    html = staff.get("/admin/dashboard/").content.decode()
    assert "<td>blend</td>" in html and "of\n4 pages" in html


@pytest.mark.django_db
def test_admin_pages_need_staff(client):
    for url in ("/admin/dashboard/", "/admin/news/item/1/seeds/"):
        resp = client.get(url)
        assert resp.status_code == 302 and "/admin/login/" in resp["Location"]


def test_model_runs_list_shows_metrics(trained, staff):
    html = staff.get("/admin/lookalike/modelrun/").content.decode()
    assert "val AUC" in html
    run = ModelRun.objects.get(kind=ModelKind.CTR, is_active=True)
    assert "prior" in staff.get(f"/admin/lookalike/modelrun/{run.pk}/change/").content.decode()


def test_the_dashboard_is_computed_once_for_every_admin_watching(trained, staff, monkeypatch):
    from webapp.feed import dashboard as module

    calls = []
    real = module.dashboard
    monkeypatch.setattr(module, "dashboard", lambda **kw: calls.append(1) or real(**kw))
    first = staff.get("/admin/dashboard/").content.decode()
    second = staff.get("/admin/dashboard/").content.decode()
    charts = lambda html: html[html.index('class="chart"'):html.index('id="published"')]  # noqa: E731
    assert len(calls) == 1 and charts(first) == charts(second)
    # Another admin (another session) within the period gets the same figures, not a new computation.
    other = type(staff)()
    other.force_login(get_user_model().objects.get(username="editor"))
    assert other.get("/admin/dashboard/").status_code == 200 and len(calls) == 1


def test_an_account_reloading_heavy_admin_pages_in_a_loop_gets_429s(trained, staff, settings, rate_clock):
    """ADMIN_PAGE_RATE_LIMIT counts the dashboard and the seeds pages per staff account: past
    it a 429 with Retry-After, the page not rendered; another account has its own count."""
    settings.ADMIN_PAGE_RATE_LIMIT = "3/minute"
    item = Item.objects.filter(status=ItemStatus.WARM).first()
    pages = ["/admin/dashboard/", f"/admin/news/item/{item.pk}/seeds/", "/admin/dashboard/"]
    assert [staff.get(p).status_code for p in pages] == [200, 200, 200]
    for p in pages:
        over = staff.get(p)
        assert over.status_code == 429 and 1 <= int(over["Retry-After"]) <= 60
        assert "3/minute" in over.content.decode() and 'class="chart"' not in over.content.decode()
    assert staff.get("/admin/news/item/").status_code == 200  # the admin's other pages are not counted
    other = get_user_model().objects.create_user("second", password="pw-second-1", is_staff=True, is_superuser=True)
    staff.force_login(other)
    assert staff.get("/admin/dashboard/").status_code == 200
    settings.ADMIN_PAGE_RATE_LIMIT = "off"
    assert all(staff.get(pages[1]).status_code == 200 for _ in range(5))
