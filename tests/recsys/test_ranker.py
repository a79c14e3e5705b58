"""The ranker: its arms, `rank` on hand-made inputs (blend, budget, gate, feature and its
fallback, the repeat discount, the subcategory cap), and the CTR model's as-of features."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from recsys.arms import ARMS, Arm, UnknownArm, arm, arms
from recsys.ctr import CtrModel, ImpressionCounts, _counts_before, assemble, auc, impression_features
from recsys.ranker import (
    Candidates,
    Models,
    Reader,
    Scores,
    diversified_top,
    expected_page_clicks,
    explored,
    final_scores,
    models_from,
    rank,
    weight_ladder,
    within_budget,
)


def test_the_registry_names_every_arm_and_refuses_what_it_does_not_know():
    assert list(ARMS) == ["ctr", "blend", "feature", "noralm", "gate", "explore"]
    assert ARMS["ctr"].kind == "blend" and ARMS["ctr"].weight == 0.0  # the reference: CTR alone
    assert ARMS["blend"].weight > 0 and 0 < ARMS["blend"].budget < 1 and ARMS["feature"].fallback == "blend"
    # noralm: the feature arm's ablation, its model without RALM's terms
    assert ARMS["noralm"].kind == "feature" and ARMS["feature"].ralm and not ARMS["noralm"].ralm
    assert ARMS["noralm"].fallback == "blend"
    assert [a.name for a in arms("ctr, blend,gate")] == ["ctr", "blend", "gate"] and arms("") == []
    with pytest.raises(UnknownArm, match="one of ctr, blend, feature, noralm, gate, explore"):
        arm("magic")
    with pytest.raises(UnknownArm, match="named twice"):
        arms("ctr,blend,ctr")
    for bad in ({"weight": 1.5}, {"budget": 1.0}, {"per_group": 0}, {"repeat_discount": 0.0}, {"kind": "magic"}):
        with pytest.raises(AssertionError):
            dataclasses.replace(ARMS["blend"], **bad)
    with pytest.raises(AssertionError):
        Arm("f", "feature")  # a feature arm needs a fallback


def test_blend_interpolates_and_the_ctr_arm_is_blend_at_zero():
    ctr, sim = np.array([0.10, 0.02, 0.05]), np.array([0.01, 0.20, 0.05])
    half = final_scores(ARMS["blend"], ctr=ctr, similarity=sim, weight=0.5)
    assert np.allclose(half, 0.5 * ctr + 0.5 * sim) and np.argmax(half) == 1
    assert np.allclose(final_scores(ARMS["ctr"], ctr=ctr, similarity=sim), ctr)
    assert np.allclose(final_scores(ARMS["blend"], ctr=ctr, similarity=sim, weight=1.0), sim)
    with pytest.raises(ValueError, match="feature arm"):
        final_scores(ARMS["feature"], ctr=ctr, similarity=sim)


def test_gate_drops_dissimilar_candidates_but_never_empties_the_page():
    ctr = np.array([0.9, 0.1, 0.2, 0.3])
    sim = np.array([0.001, 0.5, 0.03, 0.01])
    out = final_scores(ARMS["gate"], ctr=ctr, similarity=sim, limit=2)
    assert np.isneginf(out[0]) and np.isneginf(out[3]) and out[1] == 0.1 and out[2] == 0.2
    topped = final_scores(ARMS["gate"], ctr=ctr, similarity=sim, limit=3)
    assert np.isfinite(topped).sum() == 3 and np.isfinite(topped[3])  # the most similar of the rest


class _Map:
    """A calibration map with PlattCalibrator's predict: sigmoid(x . coef + b)."""

    def __init__(self, coef, b):
        self.coef, self.b = np.asarray(coef, float), b

    def predict(self, x):
        return 1 / (1 + np.exp(-(np.asarray(x, float).reshape(len(x), -1) @ self.coef + self.b)))


def _world(n=6, *, clicks=True, seen=None):
    """A reader, n candidates and models where the CTR model likes the low ids and the
    similarity (through the reader's text profile) the high ones."""
    d = 4
    vectors = np.zeros((n, d), np.float32)
    vectors[:, 0] = np.linspace(-1, 1, n)
    vectors[:, 1] = np.sqrt(1 - vectors[:, 0] ** 2)
    cand = Candidates(ids=np.arange(10, 10 + n), category=np.zeros(n, np.int64), group=np.arange(n),
                      vectors=vectors, age_hours=np.full(n, 2.0),
                      seen=np.zeros(n) if seen is None else np.asarray(seen, float),
                      ctr_features=np.linspace(1, -1, n)[:, None].astype(np.float32))
    reader = Reader(profile=np.array([1, 0, 0, 0], np.float32) * (1.0 if clicks else 0.0),
                    affinity=np.zeros(1, np.float32), has_clicks=clicks)
    coldstart = (np.r_[np.zeros(d), 6.0, 0.0, 0.0, 0.0], -3.0)  # the cosine of profile and item decides
    models = Models(coldstart=coldstart, ctr=(np.array([1.0]), -2.0), cold_map=_Map([1.0], 0.0),
                    warm_map=_Map([1.0, 0.5], 0.0))
    return reader, cand, Scores(np.full(n, np.nan)), models


def test_rank_blends_ctr_with_the_calibrated_similarity_and_logs_what_ranked():
    reader, cand, scores, models = _world()
    ctr_page = rank(reader, cand, scores, arm=ARMS["ctr"], models=models, limit=3)
    assert ctr_page.page.tolist() == [0, 1, 2] and ctr_page.weight_used == 0.0
    wide = dataclasses.replace(ARMS["blend"], weight=0.9, budget=0.0)
    blend = rank(reader, cand, scores, arm=wide, models=models, limit=3)
    lin = 6.0 * cand.vectors[:, 0] - 3.0
    assert np.allclose(blend.similarity, 1 / (1 + np.exp(-lin)))  # the cold map on the cold-start logit
    assert np.allclose(blend.final, 0.1 * blend.ctr + 0.9 * blend.similarity)
    assert blend.page.tolist() == [5, 4, 3]
    parts = blend.parts(5)
    assert parts["warm"] is False and parts["ralm_logit"] is None and parts["weight"] == 0.9
    assert parts["ctr"] == pytest.approx(blend.ctr[5], abs=1e-6) and parts["calibrated"] is True
    # A warm candidate (RALM scored it) goes through the warm map on (RALM, cold-start) logits.
    warm = Scores(np.array([np.nan] * 5 + [2.0]))
    w = rank(reader, cand, warm, arm=wide, models=models, limit=3)
    assert w.similarity[5] == pytest.approx(1 / (1 + np.exp(-(2.0 + 0.5 * lin[5]))))
    assert w.parts(5)["warm"] is True and w.parts(5)["ralm_logit"] == 2.0
    # Without calibration maps the cold-start model's own probability stands for every candidate.
    raw = rank(reader, cand, warm, arm=wide, models=dataclasses.replace(models, cold_map=None), limit=3)
    assert np.allclose(raw.similarity, 1 / (1 + np.exp(-lin))) and raw.parts(0)["calibrated"] is False


def test_the_budget_turns_w_down_for_readers_with_clicks_only():
    reader, cand, scores, models = _world()
    strict = dataclasses.replace(ARMS["blend"], weight=0.9, budget=0.01)
    r = rank(reader, cand, scores, arm=strict, models=models, limit=3)
    expected = expected_page_clicks(cand.ctr_features[:, 0] - 2.0, r.page, position_slope=0.0)
    best = expected_page_clicks(cand.ctr_features[:, 0] - 2.0, np.array([0, 1, 2]), position_slope=0.0)
    assert r.weight == 0.9 and r.weight_used < 0.9 and expected >= 0.99 * best
    newcomer, *_ = _world(clicks=False)
    assert rank(newcomer, cand, scores, arm=strict, models=models, limit=3).weight_used == 0.9


def test_recently_shown_stories_are_discounted_and_a_page_takes_two_per_subcategory():
    reader, cand, scores, models = _world(seen=[2, 0, 0, 0, 0, 0])
    r = rank(reader, cand, scores, arm=ARMS["ctr"], models=models, limit=3)
    assert r.final[0] == pytest.approx(0.25 * r.ctr[0]) and r.page[0] == 1 and r.parts(0)["seen"] == 2
    one_group = dataclasses.replace(cand, group=np.array([0, 0, 0, 1, 1, 1]))
    assert rank(reader, one_group, scores, arm=ARMS["ctr"], models=models, limit=3).page.tolist() == [1, 2, 3]


def test_feature_arm_reads_its_model_or_falls_back_and_says_so():
    reader, cand, scores, models = _world()
    for name in ("feature", "noralm"):
        fell = rank(reader, cand, scores, arm=ARMS[name], models=models, limit=3)
        assert fell.arm == name and fell.served_by == "blend" and fell.parts(0)["served_by"] == "blend"
    # Models over (CTR feature, ralm_logit, warm, coldstart_logit) and (CTR feature,
    # coldstart_logit) that read only the cold-start logit rank by it: the similarity's order.
    learned = dataclasses.replace(models, ctr_feature=(np.array([0.0, 0.0, 0.0, 1.0]), 0.0),
                                  ctr_noralm=(np.array([0.0, 1.0]), 0.0))
    for name in ("feature", "noralm"):
        f = rank(reader, cand, scores, arm=ARMS[name], models=learned, limit=3)
        assert f.served_by == name and f.page.tolist() == [5, 4, 3]
        assert np.allclose(f.final, f.similarity) and "served_by" not in f.parts(5) and "weight" not in f.parts(5)
        assert f.parts(5)["learned_ctr"] == pytest.approx(f.similarity[5], abs=1e-6)
    # RALM's weight lifts the warm candidate it scores under `feature`, not under `noralm`.
    warm = Scores(np.array([15.0] + [np.nan] * 5))  # cold-start logit -9 (the least similar), RALM +15
    lifted = dataclasses.replace(learned, ctr_feature=(np.array([0.0, 1.0, 0.0, 1.0]), 0.0))
    assert rank(reader, cand, warm, arm=ARMS["feature"], models=lifted, limit=3).page.tolist() == [0, 5, 4]
    assert rank(reader, cand, warm, arm=ARMS["noralm"], models=lifted, limit=3).page.tolist() == [5, 4, 3]


def test_rank_checks_its_inputs():
    reader, cand, scores, models = _world()
    with pytest.raises(ValueError, match="seen"):
        rank(reader, dataclasses.replace(cand, seen=np.zeros(2)), scores, arm=ARMS["ctr"], models=models, limit=3)
    with pytest.raises(ValueError, match="ralm_logit"):
        rank(reader, cand, Scores(np.zeros(2)), arm=ARMS["ctr"], models=models, limit=3)
    with pytest.raises(ValueError, match="limit"):
        rank(reader, cand, scores, arm=ARMS["ctr"], models=models, limit=0)
    empty = rank(reader, dataclasses.replace(cand, ids=cand.ids[:0], category=cand.category[:0],
                                             group=cand.group[:0], vectors=cand.vectors[:0],
                                             age_hours=cand.age_hours[:0], seen=cand.seen[:0],
                                             ctr_features=cand.ctr_features[:0]),
                 Scores(np.zeros(0)), arm=ARMS["blend"], models=models, limit=3)
    assert len(empty.page) == 0


def test_the_budget_keeps_the_largest_weight_whose_page_stays_within_it():
    ctr = np.array([0.30, 0.28, 0.20, 0.10, 0.05])
    sim = np.array([0.00, 0.01, 0.02, 0.20, 0.365])
    logit = np.log(ctr / (1 - ctr))
    asked = []

    def page_for(w: float) -> np.ndarray:
        asked.append(w)
        return np.argsort(-final_scores(ARMS["blend"], ctr=ctr, similarity=sim, weight=w), kind="stable")[:2]

    def value(page: np.ndarray) -> float:
        return expected_page_clicks(logit, page, position_slope=0.0)

    assert weight_ladder(0.8, 4) == [0.8, 0.4, 0.2, 0.1, 0.05, 0.0]
    assert weight_ladder(0.8, steps=1) == [0.8, 0.4, 0.0]
    # w = 0.8 puts the similar stories 4 and 3 on top (clicks 0.15 of the CTR page's 0.58);
    # w = 0.4 only story 4 (0.35); w = 0.2 none: the first within 10%.
    assert list(page_for(0.8)) == [4, 3] and list(page_for(0.4)) == [0, 4] and list(page_for(0.2)) == [0, 1]
    asked.clear()
    w, page = within_budget(page_for, value, weight=0.8, budget=0.1, steps=4)
    assert (w, list(page)) == (0.2, [0, 1]) and asked == [0.0, 0.8, 0.4, 0.2]
    w, page = within_budget(page_for, value, weight=0.8, budget=0.5, steps=4)  # 0.35 >= 0.29
    assert (w, list(page)) == (0.4, [0, 4])
    w, page = within_budget(page_for, value, weight=0.8, budget=0.9, steps=4)
    assert w == 0.8
    asked.clear()  # no budget: the page at w, and nothing else ranked
    assert within_budget(page_for, value, weight=0.8, budget=0.0, steps=4)[0] == 0.8 and asked == [0.8]
    # No step of the ladder fits: the CTR-only page.
    w, page = within_budget(page_for, value, weight=0.8, budget=0.1, steps=1)
    assert (w, list(page)) == (0.0, [0, 1])


def test_expected_page_clicks_reads_the_position_term_and_the_factor():
    logit = np.array([0.0, np.log(3.0)])  # P = 0.5 and 0.75 at the top
    assert expected_page_clicks(logit, np.array([1, 0]), position_slope=0.0) == pytest.approx(1.25)
    # second place: logit - log1p(1) * 1/log(2) = logit - 1
    got = expected_page_clicks(logit, np.array([1, 0]), position_slope=-1 / np.log(2), factor=np.array([0.5, 1.0]))
    assert got == pytest.approx(0.75 + 0.5 / (1 + np.exp(1.0)))


def test_subcategory_cap_and_fill():
    scores = np.array([9, 8, 7, 6, 5, 4], float)
    groups = np.array([0, 0, 0, 1, 1, 2])
    top = diversified_top(scores, groups, limit=4, per_group=2)
    assert top.tolist() == [0, 1, 3, 4]
    # A page that cannot be filled under the cap takes the best of the capped ones.
    assert sorted(diversified_top(scores[:3], groups[:3], limit=3, per_group=1).tolist()) == [0, 1, 2]
    # Dropped candidates (-inf) never appear.
    assert -1 not in diversified_top(np.array([1.0, -np.inf]), np.array([0, 1]), limit=2, per_group=2).tolist()
    assert diversified_top(np.array([1.0, -np.inf]), np.array([0, 1]), limit=2, per_group=2).tolist() == [0]


def test_counts_are_strictly_before_each_query():
    keys = np.array([1, 1, 2, 1])
    times = np.array([10, 20, 20, 30])
    assert _counts_before(keys, times, keys, times).tolist() == [0, 1, 0, 2]
    w = np.array([1.0, 0.0, 1.0, 1.0])
    assert _counts_before(keys, times, keys, times, w).tolist() == [0, 1, 0, 1]


def test_impression_features_never_see_their_own_click():
    # One item shown four times; clicked the first time only.
    x, prior = impression_features(reader=np.array([0, 1, 2, 0]), item=np.zeros(4, int),
                                   time=np.array([0, 10, 20, 30.]), position=np.zeros(4),
                                   clicked=np.array([1, 0, 0, 0], bool),
                                   item_category=np.array([0]), item_published=np.array([0.0]), n_categories=3)
    assert prior == 0.25
    exposure = x[:, 2]
    assert np.allclose(exposure, np.log1p([0, 1, 2, 3]))
    smoothed = 1 / (1 + np.exp(-x[:, 1]))
    assert smoothed[0] == pytest.approx(prior, rel=1e-3) and smoothed[1] > smoothed[2] > smoothed[3] > prior
    # The reader who clicked has an affinity for the category only after the click.
    assert x[0, 0] == pytest.approx(0.0) and x[3, 0] > 0


def test_affinity_counts_the_click_log_where_given_clicks_without_impressions_too():
    # Reader 0 clicked two category-1 stories in their history (no impression) before being
    # shown item 0 (category 1) twice; clicked the first time.
    log = dict(reader=np.array([0, 0]), item=np.array([0, 0]), time=np.array([100.0, 200.0]), position=np.zeros(2),
               clicked=np.array([True, False]), item_category=np.array([1, 1, 1]),
               item_published=np.zeros(3), n_categories=3)
    history = (np.array([0, 0, 0]), np.array([1, 2, 0]), np.array([10.0, 20.0, 150.0]))  # the last: the click
    without, _ = impression_features(**log)
    with_, _ = impression_features(**log, clicks=history)
    assert without[0, 0] == pytest.approx(0.0) and with_[0, 0] > 0  # the history counts before any click
    assert with_[1, 0] > without[1, 0] > 0  # three clicks in the category against one
    assert np.array_equal(with_[:, 1:], without[:, 1:])  # nothing else reads the click log


def _impression_log(n: int = 3_000, seed: int = 0) -> dict:
    """A log of `n` impressions over 40 readers and 30 items in 4 categories; pages share
    whole-second times, some not."""
    rng = np.random.default_rng(seed)
    return {"reader": rng.integers(0, 40, n), "item": rng.integers(0, 30, n),
            "time": np.sort(rng.integers(1_000, 1_400, n)).astype(float) + rng.choice([0.0, 0.25], n),
            "clicked": rng.random(n) < 0.2}


def test_query_features_equal_the_training_rows_on_the_logs_own_impressions():
    """What the served view computes for a (reader, item, time) query from the log is what
    training computed for the logged impression itself: one as-of semantics for both."""
    log = _impression_log()
    category, published = np.arange(30) % 4, np.linspace(0, 900, 30)
    position = np.random.default_rng(1).integers(0, 10, len(log["item"]))
    x, prior = impression_features(**log, position=position, item_category=category, item_published=published,
                                   n_categories=4)
    counts = ImpressionCounts(**log, item_category=category, item_published=published, n_categories=4)
    q = counts.features(reader=log["reader"], item=log["item"], time=log["time"], position=position, prior=prior)
    assert np.array_equal(q, x)
    # Served at position 0 with the fit's prior, a query reads the same counts.
    served = counts.features(reader=log["reader"], item=log["item"], time=log["time"], position=0.0, prior=prior)
    assert np.array_equal(served[:, :4], x[:, :4]) and not served[:, 4].any()


def test_query_features_count_the_log_strictly_before_the_query():
    log = {"reader": np.array([0, 1, 0]), "item": np.array([0, 0, 1]), "time": np.array([10.0, 20.0, 20.0]),
           "clicked": np.array([True, False, True])}
    counts = ImpressionCounts(**log, item_category=np.array([1, 2]), item_published=np.array([0.0, 0.0]),
                              n_categories=3)
    x = counts.features(reader=np.array([0, 0, 5, 0]), item=np.array([0, 0, 0, 1]),
                        time=np.array([5.0, 20.0, 20.0, 99.0]), position=0.0, prior=0.1)
    assert np.allclose(x[:, 2], np.log1p([0, 1, 1, 1]))  # item 0's impressions before: none, then the one at 10
    smoothed = 1 / (1 + np.exp(-x[:, 1]))
    assert smoothed[0] == pytest.approx(0.1, rel=1e-4) and smoothed[1] == pytest.approx((1 + 5) / 51, rel=1e-4)
    # Reader 0's affinity for category 1 (item 0's) counts its click at 10, not before it;
    # reader 5 has never clicked; at 99 reader 0 has clicked categories 1 and 2 once each.
    share = lambda own, total: np.log((own + 1) / (total + 3) * 3)  # noqa: E731 (recsys.profiles.category_affinity)
    assert x[:, 0] == pytest.approx([0.0, share(1, 1), 0.0, share(1, 2)])


def test_models_are_built_from_the_trained_ones_as_the_feed_loads_them():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    y = rng.random(400) < 1 / (1 + np.exp(-(x[:, 0] - 0.5 * x[:, 4])))
    ctr, cold = CtrModel().fit(x, y), CtrModel().fit(x[:, :3], y)
    m = models_from(cold, {"ctr": ctr, "ctr_noralm": None}, cold_map=None, warm_map=None)
    assert np.allclose(m.ctr[0], ctr.linear()[0]) and np.allclose(m.coldstart[0], cold.linear()[0])
    assert m.position_slope == pytest.approx(ctr.linear()[0][4]) and m.position_slope < 0
    assert m.ctr_feature is None and m.ctr_noralm is None and not m.calibrated  # those arms fall back
    assert models_from(cold, {"ctr": None}, cold_map=None, warm_map=None) is None


def test_ctr_model_recovers_a_planted_effect():
    rng = np.random.default_rng(0)
    n = 20_000
    aff = rng.normal(size=n)
    x = assemble(affinity=aff, item_clicks=rng.integers(0, 5, n), item_impressions=rng.integers(5, 100, n),
                 age_hours=rng.uniform(0, 48, n), position=rng.integers(0, 10, n), prior=0.05)
    p = 1 / (1 + np.exp(-(-3 + 1.2 * aff - 0.5 * x[:, 4])))
    y = rng.random(n) < p
    model = CtrModel().fit(x[:15_000], y[:15_000])
    assert auc(y[15_000:], model.decision_function(x[15_000:])) > 0.7
    coef = model.model_.coef_[0]
    assert coef[0] > 0.3 and coef[4] < 0  # affinity up, deeper positions down


def test_reader_logits_equal_the_models_decision_function():
    from recsys.coldstart import ColdStartModel, pair_features, reader_logits
    from recsys.profiles import Profiles

    rng = np.random.default_rng(1)
    n, d, c = 300, 16, 4
    vectors = rng.standard_normal((n, d)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    category = rng.integers(0, c, n)
    profiles = Profiles(vectors[:2] * 0.9, rng.normal(size=(2, c)).astype(np.float32))
    readers = rng.integers(0, 2, 2000)
    items = rng.integers(0, n, 2000)
    age = rng.uniform(0, 50, 2000)
    age[::7] = np.nan
    x = pair_features(profiles, readers, vectors, category, items, age)
    model = ColdStartModel().fit(x, rng.random(2000) < 1 / (1 + np.exp(-x[:, d] * 3)))
    items0 = np.arange(n)
    ages0 = rng.uniform(0, 50, n)
    expected = model.decision_function(pair_features(profiles, np.zeros(n, np.int64), vectors, category, items0, ages0))
    fast = reader_logits(*model.linear(), profile=profiles.vectors[0],
                         affinity=profiles.category_affinity[0][category], item_vectors=vectors, age_hours=ages0)
    assert np.allclose(fast, expected, atol=1e-4)


def test_exploration_slots_give_the_best_cold_stories_the_places_of_the_weakest_warm_ones():
    final = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    cold = np.array([False, False, False, True, False, True, True, False])
    page = np.array([0, 1, 2, 4])  # no cold story on it
    # Two slots: the two best cold stories off the page (3, then 5) replace the two weakest warm ones (2, 4),
    # and the page is in score order again.
    assert explored(page, final, cold, slots=2).tolist() == [0, 1, 3, 5]
    assert explored(np.array([0, 3, 5, 1]), final, cold, slots=2).tolist() == [0, 3, 5, 1]  # enough already
    assert explored(page, final, np.zeros(8, bool), slots=2).tolist() == page.tolist()  # none to give them to
    dropped = final.copy()
    dropped[[3, 5]] = -np.inf  # a gate's dropped candidates are never explored
    assert explored(page, dropped, cold, slots=2).tolist() == [0, 1, 2, 6]
