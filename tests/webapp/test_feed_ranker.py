"""The trained ranker behind the feed: arms per request, logged score parts, the subcategory
cap, the CTR budget, the reasons shown, the item and reader endpoints, ab_report, and the
replay's `ranker` scorer giving the feed's scores for the feed's inputs."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from io import StringIO
from types import SimpleNamespace

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from recsys import ranker
from recsys.arms import ARMS
from recsys.profiles import Profiles
from recsys.ranker import expected_page_clicks, weight_ladder
from recsys.replay import Groups
from recsys.scorers import Ranker
from webapp.common.connections import redis_client
from webapp.feed import gathering, ranking
from webapp.feed.selectors import reader_history
from webapp.lookalike.models import ModelKind, ModelRun, SeedSet
from webapp.news.models import Click, Impression, Item, ItemStatus, Reader


def _reader() -> Reader:
    return Reader.objects.filter(source="demo", clicks__isnull=False).order_by("pk").first()


def test_the_trained_ranker_serves_the_feed_and_logs_its_parts(trained, client, monkeypatch):
    assert ModelRun.objects.filter(kind=ModelKind.CTR, is_active=True).exists()
    blend = ARMS["blend"]
    reader = _reader()
    clicked = set(Click.objects.filter(reader=reader).values_list("item_id", flat=True))
    resp = client.get(f"/api/feed?reader={reader.pk}&limit=20&arm=blend")
    assert resp.status_code == 200
    body = resp.json()
    assert body["arm"] == "blend" and len(body["items"]) == 20
    ids = [e["item"]["id"] for e in body["items"]]
    assert not clicked & set(ids)
    subs = Counter((e["item"]["category"], e["item"]["subcategory"]) for e in body["items"])
    assert max(subs.values()) <= blend.per_group
    scores = [e["score"] for e in body["items"]]
    assert all(e["why"] for e in body["items"])
    for e in body["items"]:
        p = e["score_parts"]
        # (logged to 6 decimals: a similarity under 5e-7, which a thin history's uncalibrated text model gives, is 0)
        assert 0 < p["ctr"] < 1 and 0 <= p["similarity"] < 1 and p["weight"] == blend.weight
        # the w the CTR budget left the page: one of the ladder's, the same for the whole page
        assert p["weight_used"] in weight_ladder(blend.weight, blend.budget_steps)
        assert p["weight_used"] == body["items"][0]["score_parts"]["weight_used"]
        if p["seen"] == 0:  # unseen stories score exactly the blend
            w = p["weight_used"]
            assert e["score"] == pytest.approx((1 - w) * p["ctr"] + w * p["similarity"], abs=1e-5)
        assert (p["ralm_logit"] is not None) == p["warm"]
    assert scores[: len(scores) // 2] and max(scores) == scores[0]
    logged = Impression.objects.filter(request_id=body["request_id"]).order_by("position")
    assert [i.item_id for i in logged] == ids and {i.arm for i in logged} == {"blend"}
    assert logged[0].score_parts["ctr"] == body["items"][0]["score_parts"]["ctr"]

    # A request on warm copies asks Redis twice: the catalog version and the serving runs in
    # one MGET, then the states' version and the reader's vector in one pipeline.
    import redis.connection

    sent = []
    send = redis.connection.AbstractConnection.send_packed_command
    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command",
                        lambda self, *a, **k: (sent.append(a), send(self, *a, **k))[1])
    assert client.get(f"/api/feed?reader={reader.pk}&limit=20").status_code == 200
    assert len(sent) == 2, sent


def test_arms_per_request(trained, client, settings):
    reader = _reader()
    pages = {}
    for name in ARMS:
        resp = client.get(f"/api/feed?reader={reader.pk}&limit=10&arm={name}")
        assert resp.status_code == 200, resp.content
        pages[name] = resp.json()
        assert pages[name]["arm"] == name
        assert Impression.objects.filter(request_id=pages[name]["request_id"]).first().arm == name
    for e in pages["ctr"]["items"]:
        assert e["score_parts"]["weight"] == 0.0 and e["score"] == pytest.approx(
            e["score_parts"]["ctr"] * ARMS["ctr"].repeat_discount ** e["score_parts"]["seen"], abs=1e-5)
    for name in ("feature", "noralm"):
        served = {e["score_parts"].get("served_by", name) for e in pages[name]["items"]}
        assert served in ({name}, {"blend"})  # blend when the slice had too little to fit its model
        if served == {name}:  # the learned-weight model's P(click), discounted if shown recently
            for e in pages[name]["items"]:
                p = e["score_parts"]
                assert 0 < p["learned_ctr"] < 1 and "weight" not in p
                assert e["score"] == pytest.approx(p["learned_ctr"] * ARMS[name].repeat_discount ** p["seen"],
                                                   abs=1e-5)
    assert all("served_by" not in e["score_parts"] for name in ("blend", "ctr", "gate") for e in pages[name]["items"])
    # The learned-weight arm serves unless a request names another.
    assert settings.FEED_ARM == "feature"
    assert client.get(f"/api/feed?reader={reader.pk}&limit=10").json()["arm"] == "feature"
    # No other ranker parameter is taken from a request.
    plain = client.get(f"/api/feed?reader={reader.pk}&limit=10&arm=blend&w=1&n0=5&budget=0").json()
    assert plain["arm"] == "blend" and {e["score_parts"]["weight"] for e in plain["items"]} == {ARMS["blend"].weight}


def _ranked(reader: Reader, arm, *, limit: int = 10, now=None, shown=None) -> ranking.Ranked:
    now = now or timezone.now()
    clicked, seen = reader_history(reader=reader, now=now)
    return ranking.rank(reader_id=reader.pk, source="demo", clicked=clicked, shown=seen if shown is None else shown,
                        now=now, limit=limit, arm=arm, topics=reader.topics)


def test_the_ctr_budget_bounds_what_the_blend_gives_up(trained):
    """With a budget b the blend's page keeps at least (1 - b) of the clicks the CTR model
    expects of the CTR-only page (its position term and the repeat discount included): the
    largest w of the ladder that does, 0 when none does. Without one, w = 1 gives up more."""
    now = timezone.now()
    m = ranking.models.get(redis_client(), None).ranker
    assert m.position_slope < 0  # lower on the page, fewer clicks
    free_arm = dataclasses.replace(ARMS["blend"], weight=1.0, budget=0.0)
    kept_arm = dataclasses.replace(ARMS["blend"], weight=1.0, budget=0.01)

    def expected(r: ranking.Ranked) -> float:  # from the logged parts: P(click) at the top, times of seen
        logit = np.log([p["ctr"] / (1 - p["ctr"]) for p in r.parts])
        repeat = np.array([kept_arm.repeat_discount ** p["seen"] for p in r.parts])
        return expected_page_clicks(logit, np.arange(len(logit)), position_slope=m.position_slope, factor=repeat)

    used, over = [], 0
    for reader in Reader.objects.filter(source="demo", clicks__isnull=False).distinct().order_by("pk")[:25]:
        ctr, free, kept = (_ranked(reader, a, now=now) for a in (ARMS["ctr"], free_arm, kept_arm))
        assert expected(kept) >= 0.99 * expected(ctr) - 1e-4  # (the parts are rounded to 6 decimals)
        over += expected(free) < 0.99 * expected(ctr)
        w = {p["weight_used"] for p in kept.parts}
        assert len(w) == 1 and w <= set(weight_ladder(1.0, kept_arm.budget_steps))
        used.append(w.pop())
        if used[-1] == 0.0:  # nothing of the similarity fit the budget: the CTR-only page
            assert list(kept.item_ids) == list(ctr.item_ids)
        elif used[-1] == 1.0:
            assert list(kept.item_ids) == list(free.item_ids)
    assert over >= 20  # the similarity alone costs more than 1% for (nearly) every reader
    assert min(used) < 1.0  # so the budget turned w down
    # A reader with no clicks yet (only picked topics) keeps the full w: the CTR model knows
    # nothing of them, and the budget would take back the topics' lean.
    new = Reader.objects.create(source="demo", external_id="no-clicks-yet", name="New", topics=[
        Item.objects.filter(source="demo").values_list("category", flat=True).first()])
    assert {p["weight_used"] for p in _ranked(new, kept_arm, now=now).parts} == {1.0}


def test_the_replay_ranker_gives_the_feeds_scores_for_the_feeds_inputs(trained):
    """The feed and the replay evaluation's `ranker` scorer both rank with recsys.ranker.rank:
    the inputs the feed gathers for a reader, handed to the replay's scorer as one group, give
    the scores the feed served."""
    reader = Reader.objects.filter(source="demo", clicks__isnull=False).order_by("-pk").first()
    now = timezone.now()
    clicked, _ = reader_history(reader=reader, now=now)
    r = redis_client()
    m = ranking.models.get(r, None)
    cat = ranking.catalogs.get("demo", r)
    g = ranking.gather(reader_id=reader.pk, cat=cat, m=m, clicked=clicked, shown={}, now=now, topics=reader.topics,
                       r=r, pointers=None)
    assert (~np.isnan(g.scores.ralm_logit)).any() and (np.isnan(g.scores.ralm_logit)).any()  # warm and cold
    served = _ranked(reader, ARMS["blend"], limit=len(g.rows), now=now, shown={})
    direct = ranker.rank(g.reader, g.candidates, g.scores, arm=ARMS["blend"], models=m.ranker, limit=len(g.rows))
    pos = {int(i): k for k, i in enumerate(g.candidates.ids)}
    assert np.allclose(served.scores, direct.final[[pos[int(i)] for i in served.item_ids]])

    # The same inputs as one replay group: its candidates are catalog rows, its time is now.
    rows = g.rows
    inter = SimpleNamespace(item_category=cat.category, item_subcategory=cat.subcategory, item_published=cat.published)
    warm = ~np.isnan(g.scores.ralm_logit)
    groups = Groups(view="overall", reader=np.zeros(1, np.int64), time=np.array([now.timestamp()]),
                    items=rows[None], seeds=np.where(warm, 20, 0)[None], pop=np.zeros((1, len(rows))),
                    bucket=np.zeros(1, np.int64))
    profile = Profiles(g.reader.profile[None], g.reader.affinity[None])
    for name in ("blend", "feature", "noralm"):
        replay = Ranker(arm=ARMS[name], models=m.ranker, inter=inter, item_vectors=cat.vectors,
                        profiles=lambda _: profile, ralm=lambda _: np.nan_to_num(g.scores.ralm_logit)[None],
                        threshold=20, ctr_features=lambda _: g.candidates.ctr_features)
        direct = ranker.rank(g.reader, g.candidates, g.scores, arm=ARMS[name], models=m.ranker, limit=len(g.rows))
        assert np.allclose(replay(groups)[0], direct.final, atol=1e-9), name


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["arm=magic", "arm=blend:0.2", "arm="])
def test_an_unknown_arm_is_a_400_naming_the_field(client, demo_db, query):
    reader = Reader.objects.first()
    resp = client.get(f"/api/feed?reader={reader.pk}&{query}")
    if query == "arm=":
        assert resp.status_code in (200, 400)  # an empty value: the default arm, or refused, never a 500
        return
    assert resp.status_code == 400 and "arm" in resp.json()["errors"]
    assert client.get(f"/feed/?reader={reader.pk}&{query}").status_code == 400


def test_a_feed_request_with_warm_caches_is_two_statements(trained, client, django_assert_num_queries):
    """Once the process holds the catalog and the models, a feed is one round trip for the
    reader with their history and one for the page's impressions; the rest is memory and Redis."""
    reader = _reader()
    assert client.get(f"/api/feed?reader={reader.pk}&limit=10").status_code == 200
    with django_assert_num_queries(2) as ctx:
        body = client.get(f"/api/feed?reader={reader.pk}&limit=10").json()
    assert body["arm"] == "feature" and len(body["items"]) == 10  # the default arm
    assert ctx.captured_queries[1]["sql"].lstrip().startswith("INSERT INTO news_impression")
    stored = Impression.objects.filter(request_id=body["request_id"]).order_by("position")
    assert [(i.pk, i.item_id, i.reader_id, i.arm) for i in stored] == \
        [(e["impression"], e["item"]["id"], reader.pk, "feature") for e in body["items"]]
    # A story deleted after this process copied the catalog (its impressions go with it, so it
    # still ranks first): the insert fails on it, the page is logged without it, the copy reloaded.
    gone = body["items"][0]["item"]["id"]
    Item.objects.filter(pk=gone).delete()
    again = client.get(f"/api/feed?reader={reader.pk}&limit=10")
    assert again.status_code == 200
    items = again.json()["items"]
    assert gone not in [e["item"]["id"] for e in items] and [e["position"] for e in items] == list(range(len(items)))
    assert len(items) >= 9  # only the deleted story is missing
    stored = Impression.objects.filter(request_id=again.json()["request_id"]).order_by("position")
    assert [(i.pk, i.item_id, i.position) for i in stored] == \
        [(e["impression"], e["item"]["id"], e["position"]) for e in items]
    assert len(client.get(f"/api/feed?reader={reader.pk}&limit=10").json()["items"]) == 10  # from the reloaded copy


def test_warm_stories_claim_readers_like_you_only_where_it_holds(trained):
    from django.utils import timezone

    from tests.webapp.whycheck import assert_line_holds
    from webapp.feed import ranking

    reader = _reader()
    clicked = list(Click.objects.filter(reader=reader).order_by("-clicked_at").values_list("item_id", flat=True))
    # Every candidate ranked (a page as long as the catalog), so the few warm stories of the
    # small test history are among them wherever they rank.
    ranked = ranking.rank(reader_id=reader.pk, source="demo", clicked=clicked, shown={}, now=timezone.now(),
                          limit=10_000, arm=ARMS["blend"])
    warm_ids = set(Item.objects.filter(status=ItemStatus.WARM).values_list("pk", flat=True)) - set(clicked)
    assert warm_ids and {int(i) for i, w in zip(ranked.item_ids, ranked.warm, strict=True) if w} == warm_ids
    for item_id, why, warm in zip(ranked.item_ids, ranked.why, ranked.warm, strict=True):
        if warm:
            assert_line_holds(why, int(item_id), reader.pk)
        else:
            assert why.startswith(("New story on a topic you read", "New in", "Popular in"))
    assert any(w.startswith("New story on a topic you read") for w in ranked.why)


def test_feed_page_shows_reasons_badges_and_the_arm(trained, client):
    reader = _reader()
    html = client.get(f"/feed/?reader={reader.pk}&arm=ctr").content.decode()
    assert 'class="why"' in html and "Ranked by <code>ctr</code>" in html and "arm=ctr" in html
    assert 'class="badge' in html


def test_item_and_reader_endpoints(trained, client):
    seeds = SeedSet.objects.filter(count__gt=0).order_by("-count").first()
    body = client.get(f"/api/items/{seeds.item_id}").json()
    assert body["id"] == seeds.item_id and body["seeds"]["count"] == seeds.count
    assert body["seeds"]["sample"] == seeds.seed_reader_ids[:20]
    assert body["impressions"] == Item.objects.get(pk=seeds.item_id).shown_count and "similarity" not in body
    if Item.objects.get(pk=seeds.item_id).status == ItemStatus.WARM:
        assert sum(body["seeds"]["clusters"]) == seeds.count
    assert client.get("/api/items/999999999").status_code == 404
    assert client.get("/api/items/999999999").json()["detail"]

    reader = _reader()
    prof = client.get(f"/api/readers/{reader.pk}").json()
    assert prof["clicks"] == Click.objects.filter(reader=reader).count() == sum(prof["categories"].values())
    assert prof["vector_computed_at"] is not None and len(prof["recent"]) >= 1
    assert client.get("/api/readers/999999999").status_code == 404
    schema = client.get("/api/schema/").content.decode()
    assert "/api/items/{item_id}" in schema and "/api/readers/{reader_id}" in schema


def test_ab_report_compares_the_arms(trained):
    call_command("simulate", "--inprocess", "--sessions", "400", "--rate", "1000", "--publish-every", "0",
                 "--seed", "9", "--arms", "blend,ctr,gate", stdout=StringIO())
    out = StringIO()
    call_command("ab_report", "--hours", "2", "--json", stdout=out)
    report = json.loads(out.getvalue())
    summary = report["summary"]
    assert {"blend", "ctr", "gate"} <= set(summary)
    for stats in summary.values():
        assert stats["impressions"] > 0 and 0 <= stats["cold_share"] <= 1 and 0 <= stats["exposure_gini"] <= 1
        # the hidden click model's mean probability: near the observed CTR, with less noise
        assert 0 < stats["expected_ctr"] < 1 and stats["expected_ctr_se"] < stats["ctr_se"]
        assert abs(stats["expected_ctr"] - stats["ctr"]) < 4 * stats["ctr_se"]
    assert {"blend", "gate"} <= set(report["vs_ctr"]) and "ctr" not in report["vs_ctr"]
    assert report["vs_ctr"]["blend"]["expected_ctr_change"] == pytest.approx(
        summary["blend"]["expected_ctr"] / summary["ctr"]["expected_ctr"] - 1, abs=1e-3)
    # The simulator rotates each reader through the arms: most readers saw both.
    within = report["vs_ctr_within_readers"]["blend"]
    assert within["readers"] > 10 and "expected_ctr_change" in within and "cold_share_diff_se" in within
    table = StringIO()
    call_command("ab_report", "--minutes", "120", stdout=table)
    text = table.getvalue()
    assert "exposure_gini" in text and "blend" in text and "against ctr" in text and "expected CTR" in text
    assert "within readers" in text
    # Paired: the same readers ranked now by every arm, nothing logged.
    logged = Impression.objects.count()
    out = StringIO()
    call_command("ab_report", "--hours", "2", "--json", "--paired", "40", "--arms", "ctr,blend,gate", stdout=out)
    paired = json.loads(out.getvalue())["paired"]
    assert Impression.objects.count() == logged
    assert set(paired) == {"ctr", "blend", "gate"} and paired["ctr"]["pages"] == 40
    assert paired["ctr"]["expected_ctr_vs_ctr_only"] == 0 and paired["blend"]["expected_ctr_vs_ctr_only_se"] >= 0
    table = StringIO()
    call_command("ab_report", "--hours", "2", "--paired", "5", "--arms", "ctr,blend", stdout=table)
    assert "paired, now: 5 simulated readers" in table.getvalue()
    # Several moments, pooled; the errors clustered by moment.
    out = StringIO()
    call_command("ab_report", "--hours", "2", "--json", "--paired", "15", "--snapshots", "3", "--every", "0",
                 "--arms", "ctr,blend", stdout=out)
    report = json.loads(out.getvalue())
    assert report["paired_moments"] == {"snapshots": 3, "every_seconds": 0.0, "readers_each": 15}
    assert report["paired"]["ctr"]["pages"] == 45 and report["paired"]["blend"]["cold_share_diff_se"] >= 0
    assert Impression.objects.count() == logged
    for bad in (("--snapshots", "0"), ("--every", "-1"), ("--every", "nan")):
        with pytest.raises(CommandError, match="--snapshots"):
            call_command("ab_report", "--hours", "2", "--paired", "5", *bad)
    for bad in ("ctr,magic", "ctr,ctr", "blend:0.2"):
        with pytest.raises(CommandError, match="--arms"):
            call_command("ab_report", "--hours", "2", "--paired", "5", "--arms", bad)
        with pytest.raises(CommandError, match="--arms"):
            call_command("simulate", "--backfill-hours", "1", "--sessions", "1", "--arms", bad)
    with pytest.raises(CommandError, match="--hours"):
        call_command("ab_report", "--hours", "0")


def test_above_the_threshold_the_feed_ranks_recalled_candidates_and_keeps_the_full_rankings_top(trained, settings,
                                                                                               monkeypatch):
    """A catalog larger than FEED_RECALL_ABOVE: the ranker scores the union of the CTR
    model's exact top, the stories RALM puts nearest the reader, the newest cold and the most
    popular ones (here a tenth of the demo catalog), and the page keeps most of what ranking
    every story gives."""
    settings.FEED_RECALL_ABOVE = 50
    monkeypatch.setattr(gathering, "RECALL_CTR", 20)
    monkeypatch.setattr(gathering, "RECALL_RALM", 10)
    monkeypatch.setattr(gathering, "RECALL_FRESH", 5)
    monkeypatch.setattr(gathering, "RECALL_POPULAR", 5)
    now = timezone.now()
    m = ranking.models.get(redis_client(), None)
    kept, sizes = [], []
    for reader in Reader.objects.filter(source="demo", clicks__isnull=False).distinct().order_by("pk")[:30]:
        clicked, shown = reader_history(reader=reader, now=now)
        args = dict(reader_id=reader.pk, source="demo", clicked=clicked, shown=shown, now=now, limit=10,
                    arm=ARMS["blend"], topics=reader.topics)
        served, full = ranking.rank(**args), ranking.rank(**args, recall=False)
        kept.append(len(set(served.item_ids.tolist()) & set(full.item_ids.tolist())) / 10)
        cat = ranking.catalogs.get("demo", redis_client())
        g = ranking.gather(reader_id=reader.pk, cat=cat, m=m, clicked=clicked, shown=shown, now=now,
                           topics=reader.topics, r=redis_client(), pointers=None)
        everything = ranking.gather(reader_id=reader.pk, cat=cat, m=m, clicked=clicked, shown=shown, now=now,
                                    topics=reader.topics, r=redis_client(), pointers=None, recall=False)
        sizes.append(len(g.rows))
        assert set(g.rows.tolist()) < set(everything.rows.tolist())
        # The CTR model's own top 20 of all the candidates is among the recalled ones.
        x = everything.candidates.ctr_features.astype(np.float64) @ m.ranker.ctr[0]
        assert set(everything.rows[np.argsort(-x)[:20]].tolist()) <= set(g.rows.tolist())
        # Recalled candidates get the same scores as when every story is a candidate.
        at = {int(r): k for k, r in enumerate(everything.rows)}
        same = [at[int(r)] for r in g.rows]
        assert np.allclose(g.scores.ralm_logit, everything.scores.ralm_logit[same], equal_nan=True)
    assert max(sizes) <= 40 and min(sizes) >= 20
    assert np.mean(kept) >= 0.9


def test_the_catalog_copy_follows_text_vectors_computed_after_it_and_stories_that_leave(trained):
    """The copy keeps the text vectors once and fetches only what it has not seen, but a story
    published before its vector was computed gets it at the next reload, and a story that
    leaves the catalog leaves every other row's vector where it was."""
    from webapp.common.catalog import catalog_changed

    r = redis_client()
    live = list(Item.objects.filter(source="demo", published_at__isnull=False).order_by("pk"))
    late, leaving = live[3], live[7]
    Item.objects.filter(pk=late.pk).update(text_vector=None)
    cat = ranking.catalogs.get("demo", r)
    assert not cat.vectors[cat.row[late.pk]].any()
    Item.objects.filter(pk=late.pk).update(text_vector=late.text_vector)
    catalog_changed()
    cat = ranking.catalogs.get("demo", r)
    assert np.array_equal(cat.vectors[cat.row[late.pk]], np.frombuffer(bytes(late.text_vector), "<f4"))
    Item.objects.filter(pk=leaving.pk).update(published_at=None)
    catalog_changed()
    cat = ranking.catalogs.get("demo", r)
    assert leaving.pk not in cat.row and len(cat.ids) == len(live) - 1
    for item in live:
        if item.pk != leaving.pk:
            assert np.array_equal(cat.vectors[cat.row[item.pk]], np.frombuffer(bytes(item.text_vector), "<f4"))
