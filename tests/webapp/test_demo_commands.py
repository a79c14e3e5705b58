"""load_demo, simulate and the popularity refresh against the real database."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from tests.conftest import demo_history
from tests.factories import ClickFactory, ImpressionFactory, ItemFactory
from webapp.news import services
from webapp.news.models import Click, Impression, Item, Reader


@pytest.mark.django_db
def test_load_demo_loads_corpus_and_population_and_is_idempotent(demo_db):
    items, readers = Item.objects.filter(source="demo"), Reader.objects.filter(source="demo")
    assert items.count() >= 300 and readers.count() >= 1000
    assert items.values("category").distinct().count() >= 12
    held = items.filter(published_at__isnull=True).count()
    assert 0.1 * items.count() < held < 0.3 * items.count()
    assert items.filter(published_at__gt=timezone.now()).count() == 0
    snapshot = list(items.order_by("pk").values_list("pk", "title", "published_at", "status"))
    people = list(readers.order_by("pk").values_list("pk", "name", "region"))
    call_command("load_demo", verbosity=0)
    assert list(items.order_by("pk").values_list("pk", "title", "published_at", "status")) == snapshot
    assert list(readers.order_by("pk").values_list("pk", "name", "region")) == people


@pytest.mark.django_db
def test_load_demo_does_not_unpublish_a_story_published_since(demo_db):
    published = services.item_publish_next(source="demo")
    call_command("load_demo", verbosity=0)
    published.refresh_from_db()
    assert published.published_at is not None


@pytest.mark.django_db
def test_load_demo_bad_input_is_one_line_and_loads_nothing(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps([{"id": "x-1", "title": "Only a title"}]))
    with pytest.raises(CommandError) as err:
        call_command("load_demo", "--stories", str(tmp_path), verbosity=0)
    assert "bad.json: story 1: missing or empty abstract, category, subcategory" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(CommandError, match="not a folder"):
        call_command("load_demo", "--stories", str(tmp_path / "missing"), verbosity=0)
    with pytest.raises(CommandError, match="held-back-share"):
        call_command("load_demo", "--held-back-share", "1.5", verbosity=0)
    assert Item.objects.count() == 0 and Reader.objects.count() == 0


@pytest.mark.django_db
def test_backfill_writes_a_past_history_in_bulk(demo_db, capsys):
    from django.db.models import Count, Sum

    from webapp.feed import services as feed
    from webapp.lookalike.models import SeedSet

    call_command("simulate", "--backfill-hours", "6", "--sessions", "150", "--seed", "3")
    assert "backfill: 150 sessions, 1500 impressions" in capsys.readouterr().out
    imps = Impression.objects.filter(reader__source="demo")
    assert imps.count() == 1500 and set(imps.values_list("arm", flat=True)) == {"explore"}
    assert imps.values("request_id").distinct().count() == 150
    now = timezone.now()
    assert imps.filter(shown_at__lt=now - timedelta(hours=3)).exists() and not imps.filter(shown_at__gt=now).exists()
    # Each page holds ten different stories at positions 0..9.
    pages = imps.values("request_id").annotate(n=Count("item", distinct=True), top=Count("position", distinct=True))
    assert {(p["n"], p["top"]) for p in pages} == {(10, 10)}
    clicks = Click.objects.filter(reader__source="demo")
    assert clicks.count() > 20
    # Every click follows its impression and matches its reader and item; a story is clicked once per reader.
    for c in clicks.select_related("impression"):
        assert c.impression.reader_id == c.reader_id and c.impression.item_id == c.item_id
        assert c.clicked_at >= c.impression.shown_at
    assert clicks.values("reader", "item").distinct().count() == clicks.count()
    # Only stories live at the time were shown.
    assert all(i.item.published_at <= i.shown_at for i in imps.select_related("item"))
    # The counts and the seed sets' flags are left as the click path leaves them.
    assert Item.objects.aggregate(n=Sum("shown_count"))["n"] == 1500
    assert set(SeedSet.objects.filter(dirty=True).values_list("item_id", flat=True)) == \
        set(clicks.values_list("item_id", flat=True))
    # The feed's own impressions follow on from the bulk ids.
    page = feed.feed_build(reader=Reader.objects.filter(source="demo").first(), limit=5)
    assert len(page.entries) == 5 and Impression.objects.count() == 1505
    # Skipped when history exists.
    call_command("simulate", "--backfill-hours", "6", "--sessions", "50", "--skip-if-history", verbosity=0)
    assert imps.count() == 1505


@pytest.mark.django_db
def test_simulated_clicks_follow_hidden_interests(demo_db):
    """Readers click their favourite categories far more often than others (sessions spread
    evenly over the hours: the same history whatever the hour the test runs)."""
    from fixtures.corpus import load_readers

    demo_history(sessions=600, hours=12, seed=5, world="labels")
    truth = {r.id: r.truth for r in load_readers()}
    fav, other = [0, 0], [0, 0]  # [clicks, impressions]
    for ext, cat, clicked in Impression.objects.filter(reader__source="demo").values_list(
            "reader__external_id", "item__category", "click__id"):
        bucket = fav if truth[ext].interests[cat] >= 0.2 else other
        bucket[0] += clicked is not None
        bucket[1] += 1
    assert fav[0] / fav[1] > 4 * other[0] / other[1]


@pytest.mark.django_db
def test_in_the_audiences_world_readers_click_their_groups_stories_more(demo_db):
    """The hidden audience groups move clicks as the world says, and no label carries them:
    within the same favourite categories, a story written for one of the reader's groups is
    clicked more than twice as often as one written for another group (the world's e^3 odds,
    on click rates of about a third)."""
    from fixtures.corpus import click_model, load_readers
    from recsys.simulation import item_truth, reader_audiences

    model = click_model("audiences")
    demo_history(sessions=3000, hours=12, seed=5, world="audiences")
    truth = {r.id: r.truth for r in load_readers()}
    mine, theirs = [0, 0], [0, 0]  # [clicks, impressions], favourite categories only
    for ext, story, cat, sub, clicked in Impression.objects.filter(reader__source="demo").values_list(
            "reader__external_id", "item__external_id", "item__category", "item__subcategory", "click__id"):
        group = item_truth(external_id=story, category=cat, subcategory=sub, config=model.config).audience
        if group < 0 or truth[ext].interests[cat] < 0.2:
            continue
        bucket = mine if reader_audiences(truth[ext], model.config)[group] else theirs
        bucket[0] += clicked is not None
        bucket[1] += 1
    assert mine[1] > 300 and theirs[1] > 1500
    assert mine[0] / mine[1] > 2 * theirs[0] / theirs[1]


@pytest.mark.django_db(transaction=True)
def test_live_simulation_over_http_clicks_and_publishes(live_server, capsys):
    call_command("load_demo", verbosity=0)
    held = Item.objects.filter(source="demo", published_at__isnull=True).count()
    call_command("simulate", "--base-url", live_server.url, "--sessions", "40", "--rate", "200",
                 "--publish-every", "0.05", "--seed", "1")
    out = capsys.readouterr().out
    assert "simulate: 40 sessions, 400 impressions" in out and "0 errors" in out
    assert Impression.objects.filter(reader__source="demo").count() == 400
    assert Item.objects.filter(source="demo", published_at__isnull=True).count() < held
    clicks = Click.objects.filter(reader__source="demo")
    assert clicks.exists() and not clicks.filter(impression__isnull=True).exists()


def test_simulate_rejects_bad_arguments():
    with pytest.raises(CommandError, match="--backfill-hours needs"):
        call_command("simulate", "--backfill-hours", "5")
    with pytest.raises(CommandError, match="must be positive"):
        call_command("simulate", "--rate", "0")
    with pytest.raises(CommandError, match="--arms applies to live sessions"):
        call_command("simulate", "--backfill-hours", "2", "--sessions", "10", "--arms", "ctr")


@pytest.mark.django_db
def test_simulate_without_demo_readers_is_a_clear_error():
    with pytest.raises(CommandError, match="run load_demo first"):
        call_command("simulate", "--inprocess", "--sessions", "1")
    with pytest.raises(CommandError, match="run load_demo first"):
        call_command("simulate", "--backfill-hours", "2", "--sessions", "10")


@pytest.mark.django_db
def test_the_counts_keep_each_storys_impressions_and_clicks():
    """The CTR model's item CTR and exposure: every impression and its click, whatever ranked it."""
    shown, clicked, never = (ItemFactory() for _ in range(3))
    for n in range(3):
        imp = ImpressionFactory(item=shown, position=n, arm="blend", score_parts={"ctr": 0.1})
        if n < 2:
            ClickFactory(item=shown, reader=imp.reader, impression=imp)
    ImpressionFactory(item=clicked, score_parts={"popularity": 1.0})  # the baseline's impressions count too
    ClickFactory(item=clicked)  # a click with no impression (an imported history) is not a shown click
    services.item_popularity_refresh()
    for item, counts in ((shown, (3, 2)), (clicked, (1, 0)), (never, (0, 0))):
        item.refresh_from_db()
        assert (item.shown_count, item.click_count) == counts
    Impression.objects.filter(item=shown).delete()
    services.item_popularity_refresh()
    shown.refresh_from_db()
    assert (shown.shown_count, shown.click_count) == (0, 0)  # a story's counts follow the log down too


@pytest.mark.django_db
def test_popularity_is_a_decayed_click_count():
    now = timezone.now()
    hot, cooling, cold = ItemFactory(), ItemFactory(), ItemFactory(popularity=5.0)
    ClickFactory.create_batch(2, item=hot, clicked_at=now)
    ClickFactory(item=cooling, clicked_at=now - timedelta(hours=6))
    ClickFactory(item=cold, clicked_at=now - timedelta(days=30))
    services.item_popularity_refresh(now=now, half_life_hours=6.0)
    for item, expected in [(hot, 2.0), (cooling, 0.5), (cold, 0.0)]:
        item.refresh_from_db()
        assert item.popularity == pytest.approx(expected, abs=1e-6)
    assert services.item_popularity_refresh(now=now, half_life_hours=6.0) == 0  # nothing changed
