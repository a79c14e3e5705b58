"""The ranker's modes, the subcategory cap, exposure statistics and the CTR model's as-of features."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.ctr import CtrModel, _counts_before, assemble, auc, impression_features
from recsys.ranker import (
    RankerConfig,
    ab_compare,
    ab_summary,
    ab_within_readers,
    blend_weights,
    diversified_top,
    expected_page_clicks,
    exposure_gini,
    final_scores,
    on_ctr_scale,
    story_factor,
    tail_mask,
    weight_ladder,
    within_budget,
)


def test_story_factor_recovers_hidden_appeal_and_leaves_unshown_stories_alone():
    rng = np.random.default_rng(3)
    appeal = np.exp(rng.normal(0.0, 0.4, 400))  # how much more than predicted readers click each story
    expected = rng.uniform(0.0, 40.0, 400)  # clicks the similarity predicted for its impressions
    clicks = rng.poisson(appeal * expected)
    f = story_factor(clicks, expected, prior=5.0)
    well_seen = expected > 20
    assert np.corrcoef(np.log(f[well_seen]), np.log(appeal[well_seen]))[0, 1] > 0.6
    # Thin evidence is shrunk towards 1: the factor moves less than the raw ratio.
    raw = (clicks + 1e-9) / (expected + 1e-9)
    thin = (expected > 0.5) & (expected < 3)
    assert np.abs(np.log(f[thin])).mean() < np.abs(np.log(np.maximum(raw[thin], 1e-3))).mean()
    assert story_factor(np.array([0, 4]), np.array([0.0, 0.0]), prior=5.0).tolist() == [1.0, 1.8]
    assert story_factor(np.array([0.0]), np.array([0.0]), prior=5.0)[0] == 1.0  # a story never shown
    assert story_factor(clicks, expected, prior=0.0).tolist() == [1.0] * 400  # off
    with pytest.raises(ValueError):
        story_factor(clicks, expected, prior=-1.0)


def test_blend_interpolates_and_ctr_mode_is_blend_at_zero():
    ctr, sim = np.array([0.10, 0.02, 0.05]), np.array([0.01, 0.20, 0.05])
    blend = final_scores(RankerConfig("blend", weight=0.5), ctr=ctr, similarity=sim)
    assert np.allclose(blend, 0.5 * ctr + 0.5 * sim)
    assert np.argmax(blend) == 1 and np.argmax(final_scores(RankerConfig("ctr"), ctr=ctr, similarity=sim)) == 0
    assert np.allclose(final_scores(RankerConfig("blend", weight=0.0), ctr=ctr, similarity=sim), ctr)
    assert np.allclose(final_scores(RankerConfig("blend", weight=1.0), ctr=ctr, similarity=sim), sim)


def test_blend_evidence_hands_a_story_from_its_similarity_to_its_own_impressions():
    shown = np.array([0.0, 100.0, 300.0, 30_000.0])
    w = blend_weights(0.2, 100.0, shown)
    assert np.allclose(w, [0.2, 0.1, 0.05, 0.2 * 100 / 30_100])  # full, half at n0, next to nothing
    assert blend_weights(0.2, 0.0, shown) == 0.2 and blend_weights(0.2, 100.0, None) == 0.2  # off
    # Stories shown once and stories shown 30,000 times, pairwise the same CTR and similarity:
    # the similarity (put on the CTR's scale over the candidates, here x3.75) moves only the
    # ones whose own impressions have not spoken yet, up where it is high and down where low.
    ctr, sim = np.array([0.05, 0.05, 0.10, 0.10]), np.array([0.03, 0.03, 0.01, 0.01])
    assert on_ctr_scale(ctr, sim) == pytest.approx(3.75)
    shown = np.array([1.0, 30_000.0, 1.0, 30_000.0])
    out = final_scores(RankerConfig("blend", weight=0.2, evidence=100.0), ctr=ctr, similarity=sim, shown=shown)
    w = 0.2 * 100 / 101
    assert out[0] == pytest.approx((1 - w) * 0.05 + w * 0.1125) and out[0] > out[1]
    assert out[2] == pytest.approx((1 - w) * 0.10 + w * 0.0375) and out[2] < out[3]
    assert out[1] == pytest.approx(0.05, abs=1e-3) and out[3] == pytest.approx(0.10, abs=1e-3)
    plain = final_scores(RankerConfig("blend", weight=0.2), ctr=ctr, similarity=sim, shown=shown)
    assert np.allclose(plain, 0.8 * ctr + 0.2 * sim)  # one w for all: the similarity as it comes
    assert np.allclose(final_scores(RankerConfig("ctr", evidence=100.0), ctr=ctr, similarity=sim, shown=shown), ctr)
    assert on_ctr_scale(ctr, np.zeros(4)) == 1.0


def test_feature_mode_ranks_by_the_model_with_similarity_and_needs_it():
    ctr, sim = np.array([0.1, 0.2]), np.array([0.3, 0.1])
    with_sim = np.array([0.4, 0.1])
    assert np.argmax(final_scores(RankerConfig("feature"), ctr=ctr, similarity=sim, ctr_with_similarity=with_sim)) == 0
    with pytest.raises(ValueError, match="feature mode"):
        final_scores(RankerConfig("feature"), ctr=ctr, similarity=sim)


def test_gate_drops_dissimilar_candidates_but_never_empties_the_page():
    ctr = np.array([0.9, 0.1, 0.2, 0.3])
    sim = np.array([0.001, 0.5, 0.03, 0.01])
    out = final_scores(RankerConfig("gate", gate=0.02), ctr=ctr, similarity=sim, limit=2)
    assert np.isneginf(out[0]) and np.isneginf(out[3]) and out[1] == 0.1 and out[2] == 0.2
    topped = final_scores(RankerConfig("gate", gate=0.02), ctr=ctr, similarity=sim, limit=3)
    assert np.isfinite(topped).sum() == 3 and np.isfinite(topped[3])  # the most similar of the rest


def test_bad_config_is_rejected():
    for bad in ({"mode": "magic"}, {"weight": 1.5}, {"max_per_subcategory": 0}, {"evidence": -1.0},
                {"evidence": float("nan")}, {"budget": -0.01}, {"budget": 1.0}, {"budget": float("nan")}):
        with pytest.raises(ValueError):
            RankerConfig(**bad)


def test_the_budget_keeps_the_largest_weight_whose_page_stays_within_it():
    ctr = np.array([0.30, 0.28, 0.20, 0.10, 0.05])
    sim = np.array([0.00, 0.01, 0.02, 0.20, 0.365])
    logit = np.log(ctr / (1 - ctr))
    asked = []

    def page_for(w: float) -> np.ndarray:
        asked.append(w)
        return np.argsort(-final_scores(RankerConfig(weight=w), ctr=ctr, similarity=sim), kind="stable")[:2]

    def value(page: np.ndarray) -> float:
        return expected_page_clicks(logit, page, position_slope=0.0)

    assert weight_ladder(0.8) == [0.8, 0.4, 0.2, 0.1, 0.05, 0.0]
    assert weight_ladder(0.8, steps=1) == [0.8, 0.4, 0.0]
    # w = 0.8 puts the similar stories 4 and 3 on top (clicks 0.15 of the CTR page's 0.58);
    # w = 0.4 only story 4 (0.35); w = 0.2 none: the first within 10%.
    assert list(page_for(0.8)) == [4, 3] and list(page_for(0.4)) == [0, 4] and list(page_for(0.2)) == [0, 1]
    asked.clear()
    w, page = within_budget(page_for, value, weight=0.8, budget=0.1)
    assert (w, list(page)) == (0.2, [0, 1]) and asked == [0.0, 0.8, 0.4, 0.2]
    w, page = within_budget(page_for, value, weight=0.8, budget=0.5)  # 0.35 >= 0.29
    assert (w, list(page)) == (0.4, [0, 4])
    w, page = within_budget(page_for, value, weight=0.8, budget=0.9)
    assert w == 0.8
    asked.clear()  # no budget: the page at w, and nothing else ranked
    assert within_budget(page_for, value, weight=0.8, budget=0.0)[0] == 0.8 and asked == [0.8]
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


def test_exposure_gini():
    assert exposure_gini(np.array([5, 5, 5, 5])) == pytest.approx(0.0)
    assert exposure_gini(np.array([0, 0, 0, 12])) == pytest.approx(0.75)
    assert exposure_gini(np.zeros(3)) == 0.0


def test_ab_summary_per_mode():
    mode = np.array(["a", "a", "a", "a", "b", "b", "b", "b"])
    request = np.array(["q1", "q1", "q2", "q2", "q3", "q3", "q4", "q4"])
    item = np.array([1, 2, 1, 2, 3, 4, 5, 1])
    clicked = np.array([1, 0, 0, 0, 1, 1, 0, 0], bool)
    cold = np.array([0, 0, 0, 0, 1, 1, 1, 0], bool)
    category = np.array(["x", "x", "x", "y", "x", "y", "z", "x"])
    s = ab_summary(mode=mode, request=request, item=item, clicked=clicked, cold=cold, category=category,
                   catalog=np.arange(1, 11))
    assert s["a"]["ctr"] == 0.25 and s["b"]["ctr"] == 0.5
    assert s["a"]["cold_share"] == 0.0 and s["b"]["cold_share"] == 0.75
    assert s["a"]["tail_share"] == 0.0 and s["b"]["tail_share"] > 0  # items 1 and 2 are the head
    assert s["a"]["exposure_gini"] > s["b"]["exposure_gini"]
    assert s["a"]["categories_per_page"] == 1.5 and s["b"]["categories_per_page"] == 2.0


def test_tail_by_popularity_before_the_window_is_fixed_before_any_arm_serves():
    catalog = np.array([10, 20, 30, 40, 50, 60, 70, 80, 90, 100])
    before = np.array([50, 40, 0, 0, 0, 0, 0, 0, 0, 0])  # 10 and 20 were the popular stories
    item = np.array([30, 30, 30, 30, 10, 20])  # an arm that piles onto new story 30
    assert not tail_mask(item, catalog)[:4].any()  # without: 30 made itself the head
    assert tail_mask(item, catalog, popularity=before).tolist() == [True] * 4 + [False, False]
    with pytest.raises(ValueError):
        tail_mask(item, catalog, popularity=before[:3])
    s = ab_summary(mode=np.array(["a"] * 6), request=np.array(["q"] * 6), item=item, clicked=np.zeros(6, bool),
                   cold=np.zeros(6, bool), category=np.zeros(6), catalog=catalog, popularity=before)
    assert s["a"]["tail_share"] == pytest.approx(4 / 6, abs=1e-4)


def test_ab_standard_errors_count_pages_not_impressions_and_compare_to_ctr():
    rng = np.random.default_rng(0)
    pages, size = 400, 10
    request = np.repeat(np.arange(2 * pages), size)
    mode = np.where(request < pages, "ctr", "blend")
    # Whole pages are cold or not: the page, not the impression, is the unit of chance.
    cold = np.repeat(rng.random(2 * pages) < np.where(np.arange(2 * pages) < pages, 0.3, 0.4), size)
    expected = np.where(mode == "ctr", 0.10, 0.099)
    clicked = rng.random(len(request)) < expected
    s = ab_summary(mode=mode, request=request, item=rng.integers(1, 50, len(request)), clicked=clicked, cold=cold,
                   category=np.zeros(len(request)), catalog=np.arange(1, 50), expected=expected)
    naive = np.sqrt(0.3 * 0.7 / (pages * size))
    assert s["ctr"]["cold_share_se"] > 2.5 * naive  # ~ sqrt(10) x the per-impression figure
    assert s["ctr"]["expected_ctr"] == pytest.approx(0.10) and s["ctr"]["expected_ctr_se"] == pytest.approx(0.0)
    c = ab_compare(s)["blend"]
    assert c["expected_ctr_change"] == pytest.approx(-0.01) and c["expected_ctr_change_se"] == pytest.approx(0.0)
    assert abs(c["cold_share_diff"] - 0.1) < 3 * c["cold_share_diff_se"] and c["cold_share_diff_se"] > 0
    assert abs(c["ctr_change"] - (s["blend"]["ctr"] / s["ctr"]["ctr"] - 1)) < 1e-3
    assert ab_compare(s, reference="gate") == {}


def test_within_readers_the_reader_spread_drops_out():
    """Readers differ a lot (base rates 0.02 to 0.2); each sees both arms; the arm adds 0.01."""
    rng = np.random.default_rng(1)
    base = rng.uniform(0.02, 0.2, 300)
    reader = np.repeat(np.arange(300), 20)
    mode = np.tile(np.repeat(["ctr", "blend"], 10), 300)
    value = base[reader] + np.where(mode == "blend", 0.01, 0.0)
    value[::7] = np.nan  # unknown values are left out
    w = ab_within_readers(mode=mode, reader=reader, values={"expected_ctr": value})
    assert w["blend"]["expected_ctr_diff"] == pytest.approx(0.01) and w["blend"]["expected_ctr_diff_se"] < 1e-9
    assert w["blend"]["readers"] == 300
    assert w["blend"]["expected_ctr_change"] == pytest.approx(0.01 / np.nanmean(base), rel=0.05)
    # Across arms with different readers the same difference drowns in the spread.
    other = np.where(mode == "blend", reader + 1000, reader)
    assert ab_within_readers(mode=mode, reader=other, values={"expected_ctr": value}) == {}


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
    from recsys.coldstart import ColdStartModel, Profiles, pair_features, reader_logits

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
