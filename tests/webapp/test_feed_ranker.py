"""The trained ranker behind the feed: modes per request, logged score parts, the subcategory
cap, the reasons shown, the item and reader endpoints, and ab_report."""

from __future__ import annotations

import json
from collections import Counter
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from recsys.ctr import FEATURES
from recsys.ranker import expected_page_clicks, weight_ladder
from webapp.lookalike.models import ModelKind, ModelRun, SeedSet
from webapp.news.models import Click, Impression, Item, ItemStatus, Reader


def _reader() -> Reader:
    return Reader.objects.filter(source="demo", clicks__isnull=False).order_by("pk").first()


def test_the_trained_ranker_serves_the_feed_and_logs_its_parts(trained, client, settings, monkeypatch):
    assert ModelRun.objects.filter(kind=ModelKind.CTR, is_active=True).exists()
    reader = _reader()
    clicked = set(Click.objects.filter(reader=reader).values_list("item_id", flat=True))
    resp = client.get(f"/api/feed?reader={reader.pk}&limit=20")
    assert resp.status_code == 200
    body = resp.json()
    assert body["mode"] == "blend" and len(body["items"]) == 20
    ids = [e["item"]["id"] for e in body["items"]]
    assert not clicked & set(ids)
    subs = Counter((e["item"]["category"], e["item"]["subcategory"]) for e in body["items"])
    assert max(subs.values()) <= settings.FEED_MAX_PER_SUBCATEGORY
    scores = [e["score"] for e in body["items"]]
    assert all(e["why"] for e in body["items"])
    for e in body["items"]:
        p = e["score_parts"]
        # (logged to 6 decimals: a similarity under 5e-7, which a thin history's uncalibrated text model gives, is 0)
        assert 0 < p["ctr"] < 1 and 0 <= p["similarity"] < 1 and p["weight"] == settings.FEED_BLEND_WEIGHT
        # the w the CTR budget left the page: one of the ladder's, the same for the whole page
        assert p["budget"] == settings.FEED_BLEND_BUDGET and p["weight_used"] in weight_ladder(p["weight"])
        assert p["weight_used"] == body["items"][0]["score_parts"]["weight_used"]
        if p["seen"] == 0:  # unseen stories score exactly the blend
            w = p["weight_used"]
            assert e["score"] == pytest.approx((1 - w) * p["ctr"] + w * p["similarity"], abs=1e-5)
        assert (p["ralm_logit"] is not None) == p["warm"]
    assert scores[: len(scores) // 2] and max(scores) == scores[0]
    logged = Impression.objects.filter(request_id=body["request_id"]).order_by("position")
    assert [i.item_id for i in logged] == ids and {i.mode for i in logged} == {"blend"}
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


def test_modes_per_request(trained, client):
    reader = _reader()
    pages = {}
    for mode in ("blend", "ctr", "feature", "gate"):
        resp = client.get(f"/api/feed?reader={reader.pk}&limit=10&mode={mode}")
        assert resp.status_code == 200, resp.content
        pages[mode] = resp.json()
        assert Impression.objects.filter(request_id=pages[mode]["request_id"]).first().mode == pages[mode]["mode"]
    assert pages["ctr"]["mode"] == "ctr" and pages["gate"]["mode"] == "gate"
    assert pages["feature"]["mode"] in ("feature", "blend")  # blend when the slice had too little to fit it
    if pages["feature"]["mode"] == "blend":  # the arm keeps its name in the log
        assert all(e["score_parts"]["requested"] == "feature" for e in pages["feature"]["items"])
    assert all("requested" not in e["score_parts"] for e in pages["blend"]["items"])
    for e in pages["ctr"]["items"]:
        assert e["score_parts"]["weight"] == 0.0
    w1 = client.get(f"/api/feed?reader={reader.pk}&limit=10&w=1&budget=0").json()  # no CTR budget
    for e in w1["items"]:
        if e["score_parts"]["seen"] == 0:
            assert e["score"] == pytest.approx(e["score_parts"]["similarity"], abs=1e-5)
    # The blend's evidence: each story's w shrinks with its impressions, w * n0 / (n0 + shown).
    from django.utils import timezone

    from webapp.news import ranking, services
    from webapp.news.selectors import impression_variant, reader_history

    plain = client.get(f"/api/feed?reader={reader.pk}&limit=30&w=0.5&budget=0").json()
    counts = {e["item"]["id"]: [0, 50, 5000][n % 3] for n, e in enumerate(plain["items"])}
    for pk, c in counts.items():  # impressions as the minute's counts job would have kept them
        Item.objects.filter(pk=pk).update(shown_count=c)
    services.catalog_changed()
    now = timezone.now()
    clicked, seen = reader_history(reader=reader, now=now)
    r = ranking.rank(reader_id=reader.pk, source="demo", clicked=clicked, shown=seen, now=now, limit=10_000,
                     config=ranking.ranker_config("blend", 0.5, 50.0, budget=0.0), topics=())
    parts = {int(i): (p, s) for i, p, s in zip(r.item_ids, r.parts, r.scores, strict=True)}
    scale = np.mean([p["ctr"] for p in r.parts]) / np.mean([p["similarity"] for p in r.parts])  # every candidate
    for pk, c in counts.items():
        p, score = parts[pk]
        assert p["evidence"] == 50 and p["weight"] == 0.5 and p["shown"] == c
        assert p["similarity_scale"] == pytest.approx(scale, rel=1e-3)
        if p["seen"] == 0:
            w = 0.5 * 50 / (50 + c)
            assert score == pytest.approx((1 - w) * p["ctr"] + w * scale * p["similarity"], abs=1e-5)
    n0 = client.get(f"/api/feed?reader={reader.pk}&limit=10&w=0.5&n0=50&budget=0").json()
    assert n0["mode"] == "blend" and all(e["score_parts"]["evidence"] == 50 for e in n0["items"])
    logged = Impression.objects.filter(request_id=n0["request_id"]).first()
    assert impression_variant(logged.mode, logged.score_parts) == "blend w=0.5 n0=50"
    budgeted = client.get(f"/api/feed?reader={reader.pk}&limit=10&w=0.5&n0=50&budget=0.02").json()
    logged = Impression.objects.filter(request_id=budgeted["request_id"]).first()
    assert impression_variant(logged.mode, logged.score_parts) == "blend w=0.5 n0=50 budget=0.02"
    assert client.get(f"/feed/?reader={reader.pk}&w=0.5&n0=50&budget=0.02").status_code == 200


def test_a_feed_request_with_warm_caches_is_two_statements(trained, client, django_assert_num_queries):
    """Once the process holds the catalog and the models, a feed is one round trip for the
    reader with their history and one for the page's impressions; the rest is memory and Redis."""
    reader = _reader()
    assert client.get(f"/api/feed?reader={reader.pk}&limit=10").status_code == 200
    with django_assert_num_queries(2) as ctx:
        body = client.get(f"/api/feed?reader={reader.pk}&limit=10").json()
    assert body["mode"] == "blend" and len(body["items"]) == 10
    assert ctx.captured_queries[1]["sql"].lstrip().startswith("INSERT INTO news_impression")
    stored = Impression.objects.filter(request_id=body["request_id"]).order_by("position")
    assert [(i.pk, i.item_id, i.reader_id, i.mode) for i in stored] == \
        [(e["impression"], e["item"]["id"], reader.pk, "blend") for e in body["items"]]
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


def test_a_story_its_readers_pass_over_loses_similarity(trained, settings):
    """The per-story recalibration: a story whose impressions drew far fewer clicks than the
    similarity predicted is scaled down by (clicks + prior) / (expected + prior), in blend and
    gate; the feature mode's model reads the similarity it was fitted on."""
    from django.utils import timezone

    from webapp.news import ranking, services
    from webapp.news.selectors import reader_history

    settings.FEED_STORY_PRIOR_CLICKS = 5.0  # on (off by default)
    reader = _reader()
    now = timezone.now()
    clicked, shown = reader_history(reader=reader, now=now)

    def parts(mode: str = "blend") -> dict[int, dict]:
        ranking.catalogs.clear()
        r = ranking.rank(reader_id=reader.pk, source="demo", clicked=clicked, shown=shown, now=now, limit=10_000,
                         config=ranking.ranker_config(mode, 1.0, budget=0.0), topics=())
        return {int(i): p for i, p in zip(r.item_ids, r.parts, strict=True)}

    before, before_feature = parts(), parts("feature")
    top = max(before, key=lambda i: before[i]["similarity"])
    Item.objects.filter(pk=top).update(similarity_clicks=0, similarity_expected=45.0)  # (0 + 5) / (45 + 5)
    services.catalog_changed()
    after, after_feature = parts(), parts("feature")
    assert after[top]["story_factor"] == pytest.approx(0.1)
    assert after[top]["similarity"] == pytest.approx(0.1 * before[top]["similarity"], rel=1e-3)
    assert sorted(after, key=lambda i: -after[i]["similarity"]).index(top) > 0  # no longer the most similar
    others = [i for i in before if i != top]
    assert all(after[i]["similarity"] == before[i]["similarity"] for i in others)
    if "ctr_with_similarity" in before_feature[top]:
        assert after_feature[top]["ctr_with_similarity"] == before_feature[top]["ctr_with_similarity"]
    settings.FEED_STORY_PRIOR_CLICKS = 0.0  # off
    assert parts()[top]["similarity"] == before[top]["similarity"]


def test_the_ctr_budget_bounds_what_the_blend_gives_up(trained):
    """With a budget b the blend's page keeps at least (1 - b) of the clicks the CTR model
    expects of the CTR-only page (its position term and the repeat discount included): the
    largest w of the ladder that does, 0 when none does. Without one, w = 1 gives up more."""
    from django.utils import timezone

    from webapp.lookalike import store
    from webapp.news import ranking
    from webapp.news.selectors import reader_history

    now = timezone.now()
    m = ranking.models.get(store.client(), None)
    slope = float(m.ctr_linear[0][FEATURES.index("position")])
    assert slope < 0  # lower on the page, fewer clicks

    def expected(r: ranking.Ranked) -> float:  # from the logged parts: P(click) at the top, times of seen
        logit = np.log([p["ctr"] / (1 - p["ctr"]) for p in r.parts])
        repeat = np.array([ranking.SEEN_DISCOUNT ** p["seen"] for p in r.parts])
        return expected_page_clicks(logit, np.arange(len(logit)), position_slope=slope, factor=repeat)

    used, over = [], 0
    for reader in Reader.objects.filter(source="demo", clicks__isnull=False).distinct().order_by("pk")[:25]:
        clicked, shown = reader_history(reader=reader, now=now)

        def page(mode: str, weight: float, budget: float, reader=reader, clicked=clicked, shown=shown):
            return ranking.rank(reader_id=reader.pk, source="demo", clicked=clicked, shown=shown, now=now, limit=10,
                                config=ranking.ranker_config(mode, weight, budget=budget), topics=reader.topics)

        ctr, free, kept = page("ctr", 0.0, 0.0), page("blend", 1.0, 0.0), page("blend", 1.0, 0.01)
        assert expected(kept) >= 0.99 * expected(ctr) - 1e-4  # (the parts are rounded to 6 decimals)
        over += expected(free) < 0.99 * expected(ctr)
        w = {p["weight_used"] for p in kept.parts}
        assert len(w) == 1 and w <= set(weight_ladder(1.0)) and {p["budget"] for p in kept.parts} == {0.01}
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
    r = ranking.rank(reader_id=new.pk, source="demo", clicked=[], shown={}, now=now, limit=10,
                     config=ranking.ranker_config("blend", 1.0, budget=0.01), topics=new.topics)
    assert {(p["weight_used"], p["budget"]) for p in r.parts} == {(1.0, 0.01)}


@pytest.mark.django_db
@pytest.mark.parametrize("query, field", [("mode=magic", "mode"), ("w=2", "w"), ("w=x", "w"), ("n0=-1", "n0"),
                                          ("n0=x", "n0"), ("n0=nan", "n0"),
                                          ("budget=1", "budget"), ("budget=-0.1", "budget"), ("budget=x", "budget")])
def test_bad_mode_or_weight_is_a_400_naming_the_field(client, demo_db, query, field):
    reader = Reader.objects.first()
    resp = client.get(f"/api/feed?reader={reader.pk}&{query}")
    assert resp.status_code == 400 and field in resp.json()
    page = client.get(f"/feed/?reader={reader.pk}&{query}")
    assert page.status_code == 400


def test_warm_stories_say_readers_like_you_and_cold_ones_name_the_topic(trained):
    from django.utils import timezone

    from webapp.news import ranking

    reader = _reader()
    clicked = list(Click.objects.filter(reader=reader).order_by("-clicked_at").values_list("item_id", flat=True))
    # Every candidate ranked (a page as long as the catalog), so the few warm stories of the
    # small test history are among them wherever they rank.
    ranked = ranking.rank(reader_id=reader.pk, source="demo", clicked=clicked, shown={}, now=timezone.now(),
                          limit=10_000, config=ranking.ranker_config())
    warm_ids = set(Item.objects.filter(status=ItemStatus.WARM).values_list("pk", flat=True)) - set(clicked)
    assert warm_ids and {int(i) for i, w in zip(ranked.item_ids, ranked.warm, strict=True) if w} == warm_ids
    for why, warm in zip(ranked.why, ranked.warm, strict=True):
        if warm:
            assert why.startswith("Readers like you read it:") and "share your taste" in why
        else:
            assert why.startswith(("New story on a topic you read", "New in", "Popular in"))
    assert any(w.startswith("New story on a topic you read") for w in ranked.why)


def test_feed_page_shows_reasons_badges_and_the_mode(trained, client):
    reader = _reader()
    html = client.get(f"/feed/?reader={reader.pk}&mode=ctr").content.decode()
    assert 'class="why"' in html and "Ranked by <code>ctr</code>" in html and "mode=ctr" in html
    assert 'class="badge' in html


def test_item_and_reader_endpoints(trained, client, settings):
    seeds = SeedSet.objects.filter(count__gt=0).order_by("-count").first()
    body = client.get(f"/api/items/{seeds.item_id}").json()
    assert body["id"] == seeds.item_id and body["seeds"]["count"] == seeds.count
    assert body["seeds"]["sample"] == seeds.seed_reader_ids[:20]
    item = Item.objects.get(pk=seeds.item_id)
    if item.status == ItemStatus.WARM:
        assert sum(body["seeds"]["clusters"]) == seeds.count
    item.similarity_clicks, item.similarity_expected = 3, 13.0
    item.save(update_fields=["similarity_clicks", "similarity_expected"])
    record = client.get(f"/api/items/{seeds.item_id}").json()["similarity"]
    assert record == {"clicks": 3, "expected": 13.0, "story_factor": 1.0}  # the recalibration is off by default
    settings.FEED_STORY_PRIOR_CLICKS = 5.0
    record = client.get(f"/api/items/{seeds.item_id}").json()["similarity"]
    assert record["story_factor"] == 0.4444  # (3 + 5) / (13 + 5)
    assert client.get("/api/items/999999999").status_code == 404
    assert client.get("/api/items/999999999").json()["detail"]

    reader = _reader()
    prof = client.get(f"/api/readers/{reader.pk}").json()
    assert prof["clicks"] == Click.objects.filter(reader=reader).count() == sum(prof["categories"].values())
    assert prof["vector_computed_at"] is not None and len(prof["recent"]) >= 1
    assert client.get("/api/readers/999999999").status_code == 404
    schema = client.get("/api/schema/").content.decode()
    assert "/api/items/{item_id}" in schema and "/api/readers/{reader_id}" in schema


def test_ab_report_compares_the_modes(trained):
    sim_out = StringIO()
    call_command("simulate", "--backfill-hours", "1", "--sessions", "400", "--seed", "9", "--modes",
                 "blend:0.5::0,ctr,gate", stdout=sim_out)
    assert "blend w=0.5:" in sim_out.getvalue() and "expected CTR" in sim_out.getvalue()
    out = StringIO()
    call_command("ab_report", "--hours", "2", "--json", stdout=out)
    report = json.loads(out.getvalue())
    summary = report["summary"]
    assert {"blend w=0.5", "ctr", "gate"} <= set(summary)
    for stats in summary.values():
        assert stats["impressions"] > 0 and 0 <= stats["cold_share"] <= 1 and 0 <= stats["exposure_gini"] <= 1
        # the hidden click model's mean probability: near the observed CTR, with less noise
        assert 0 < stats["expected_ctr"] < 1 and stats["expected_ctr_se"] < stats["ctr_se"]
        assert abs(stats["expected_ctr"] - stats["ctr"]) < 4 * stats["ctr_se"]
    assert {"blend w=0.5", "gate"} <= set(report["vs_ctr"]) and "ctr" not in report["vs_ctr"]
    blend = report["vs_ctr"]["blend w=0.5"]
    assert blend["expected_ctr_change"] == pytest.approx(
        summary["blend w=0.5"]["expected_ctr"] / summary["ctr"]["expected_ctr"] - 1, abs=1e-3)
    # The simulator rotates each reader through the arms: most readers saw both.
    within = report["vs_ctr_within_readers"]["blend w=0.5"]
    assert within["readers"] > 10 and "expected_ctr_change" in within and "cold_share_diff_se" in within
    table = StringIO()
    call_command("ab_report", "--minutes", "120", stdout=table)
    text = table.getvalue()
    assert "exposure_gini" in text and "blend w=0.5" in text and "against ctr" in text and "expected CTR" in text
    assert "within readers" in text
    # Paired: the same readers ranked now by every variant, nothing logged.
    logged = Impression.objects.count()
    out = StringIO()
    call_command("ab_report", "--hours", "2", "--json", "--paired", "40", "--variants",
                 "ctr,blend:0.5::0,blend:0,blend:1::0.01", stdout=out)
    paired = json.loads(out.getvalue())["paired"]
    assert Impression.objects.count() == logged
    assert set(paired) == {"ctr", "blend w=0.5", "blend w=0", "blend w=1 budget=0.01"} and paired["ctr"]["pages"] == 40
    same = paired["blend w=0"]  # w = 0 is the ctr mode: a paired difference of exactly zero
    assert same["expected_ctr_vs_ctr_only"] == 0 and same["expected_ctr_vs_ctr_only_se"] == 0
    assert same["cold_share_diff"] == 0 and same["tail_share_diff_se"] == 0
    assert paired["blend w=0.5"]["expected_ctr_vs_ctr_only_se"] > 0
    table = StringIO()
    call_command("ab_report", "--hours", "2", "--paired", "5", "--variants", "ctr,blend:0.5::0", stdout=table)
    assert "paired, now: 5 simulated readers" in table.getvalue()
    # Several moments, pooled; the errors clustered by moment.
    out = StringIO()
    call_command("ab_report", "--hours", "2", "--json", "--paired", "15", "--snapshots", "3", "--every", "0",
                 "--variants", "ctr,blend:0.5::0", stdout=out)
    report = json.loads(out.getvalue())
    assert report["paired_moments"] == {"snapshots": 3, "every_seconds": 0.0, "readers_each": 15}
    assert report["paired"]["ctr"]["pages"] == 45 and report["paired"]["blend w=0.5"]["cold_share_diff_se"] >= 0
    assert Impression.objects.count() == logged
    for bad in (("--snapshots", "0"), ("--every", "-1"), ("--every", "nan")):
        with pytest.raises(CommandError, match="--snapshots"):
            call_command("ab_report", "--hours", "2", "--paired", "5", *bad)
    with pytest.raises(CommandError, match="unknown ranker mode"):
        call_command("ab_report", "--hours", "2", "--paired", "5", "--variants", "ctr,magic")
    with pytest.raises(CommandError, match="--hours"):
        call_command("ab_report", "--hours", "0")
    for bad in ("magic", "blend:2", "ctr:0.5", "blend:x", "blend:0.1:x", "blend:0.1:-5", "blend::5", "ctr:0:5",
                "blend:0.1,blend:0.1:0",
                "blend:0.1::1", "blend:0.1::-0.5", "blend:0.1::x", "blend:::0.01", "ctr:::0.01"):
        with pytest.raises(CommandError, match="--modes"):
            call_command("simulate", "--backfill-hours", "1", "--sessions", "1", "--modes", bad)


def test_paired_errors_cluster_by_moment():
    from webapp.news.abtest import _mean_se

    rng = np.random.default_rng(0)
    shifts = np.repeat(rng.normal(0, 1, 8), 50)  # the state moves between 8 moments
    d = shifts + rng.normal(0, 0.1, 400)
    per_page = _mean_se(d, np.zeros(400))
    clustered = _mean_se(d, np.repeat(np.arange(8), 50))
    assert per_page == pytest.approx(d.std(ddof=1) / 20)
    assert clustered > 5 * per_page  # eight draws of the state, not four hundred
    assert clustered == pytest.approx(np.sqrt(8 / 7 * ((np.bincount(np.repeat(np.arange(8), 50), d - d.mean())) ** 2)
                                             .sum()) / 400)


def test_impression_variant_names_the_arm():
    from webapp.news.selectors import impression_variant

    assert impression_variant("blend", {"weight": 0.1}) == "blend w=0.1"
    assert impression_variant("blend", {"weight": 0.1, "requested": "feature"}) == "feature as blend w=0.1"
    assert impression_variant("ctr", {"weight": 0.0}) == "ctr" and impression_variant("gate", None) == "gate"
    assert impression_variant("blend", {"weight": 0.1, "evidence": 200.0}) == "blend w=0.1 n0=200"
    assert impression_variant("blend", {"weight": 0.1, "budget": 0.01, "weight_used": 0.025}) == \
        "blend w=0.1 budget=0.01"  # the arm asked for, whatever w its budget left a page


def test_variants_parse_with_their_blend_evidence(settings):
    from webapp.news.simulator import parse_variant

    assert parse_variant("blend:0.1:200:0") == ("blend w=0.1 n0=200", "blend", 0.1, 200.0, 0.0)
    assert parse_variant("blend:0.1::0") == ("blend w=0.1", "blend", 0.1, None, 0.0)
    assert parse_variant("blend:0.1:0:0")[0] == "blend w=0.1"  # n0 = 0: the plain blend, by its name
    assert parse_variant("blend:0.1:300:0.02") == ("blend w=0.1 n0=300 budget=0.02", "blend", 0.1, 300.0, 0.02)
    assert parse_variant("gate") == ("gate", "gate", None, None, None)
    # Left out, the budget is the setting's, and named as the impressions it logs name it.
    settings.FEED_BLEND_BUDGET = 0.01
    assert parse_variant("blend:0.1") == ("blend w=0.1 budget=0.01", "blend", 0.1, None, None)
    assert parse_variant("blend:0") == ("blend w=0", "blend", 0.0, None, None)  # no w, no budget to spend
    settings.FEED_BLEND_BUDGET = 0.0
    assert parse_variant("blend:0.1") == ("blend w=0.1", "blend", 0.1, None, None)
