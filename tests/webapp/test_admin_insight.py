"""The admin's seed view of an item and the live dashboard."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from recsys.arms import ARMS
from webapp.lookalike.models import ModelKind, ModelRun, SeedSet
from webapp.news.models import Item, ItemStatus, Reader


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
