"""A/B statistics of the ranker's arms: exposure Gini, the long tail, page-clustered errors,
within-reader comparisons, paired pages."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.abtest import (
    PairedPages,
    ab_compare,
    ab_summary,
    ab_within_readers,
    arm_label,
    exposure_gini,
    loop_compare,
    loop_figures,
    tail_mask,
    was_cold,
)


def test_exposure_gini():
    assert exposure_gini(np.array([5, 5, 5, 5])) == pytest.approx(0.0)
    assert exposure_gini(np.array([0, 0, 0, 12])) == pytest.approx(0.75)
    assert exposure_gini(np.zeros(3)) == 0.0


def test_ab_summary_per_arm():
    arm = np.array(["a", "a", "a", "a", "b", "b", "b", "b"])
    request = np.array(["q1", "q1", "q2", "q2", "q3", "q3", "q4", "q4"])
    item = np.array([1, 2, 1, 2, 3, 4, 5, 1])
    clicked = np.array([1, 0, 0, 0, 1, 1, 0, 0], bool)
    cold = np.array([0, 0, 0, 0, 1, 1, 1, 0], bool)
    category = np.array(["x", "x", "x", "y", "x", "y", "z", "x"])
    s = ab_summary(arm=arm, request=request, item=item, clicked=clicked, cold=cold, category=category,
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
    s = ab_summary(arm=np.array(["a"] * 6), request=np.array(["q"] * 6), item=item, clicked=np.zeros(6, bool),
                   cold=np.zeros(6, bool), category=np.zeros(6), catalog=catalog, popularity=before)
    assert s["a"]["tail_share"] == pytest.approx(4 / 6, abs=1e-4)


def test_ab_standard_errors_count_pages_not_impressions_and_compare_to_ctr():
    rng = np.random.default_rng(0)
    pages, size = 400, 10
    request = np.repeat(np.arange(2 * pages), size)
    arm = np.where(request < pages, "ctr", "blend")
    # Whole pages are cold or not: the page, not the impression, is the unit of chance.
    cold = np.repeat(rng.random(2 * pages) < np.where(np.arange(2 * pages) < pages, 0.3, 0.4), size)
    expected = np.where(arm == "ctr", 0.10, 0.099)
    clicked = rng.random(len(request)) < expected
    s = ab_summary(arm=arm, request=request, item=rng.integers(1, 50, len(request)), clicked=clicked, cold=cold,
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
    arm = np.tile(np.repeat(["ctr", "blend"], 10), 300)
    value = base[reader] + np.where(arm == "blend", 0.01, 0.0)
    value[::7] = np.nan  # unknown values are left out
    w = ab_within_readers(arm=arm, reader=reader, values={"expected_ctr": value})
    assert w["blend"]["expected_ctr_diff"] == pytest.approx(0.01) and w["blend"]["expected_ctr_diff_se"] < 1e-9
    assert w["blend"]["readers"] == 300
    assert w["blend"]["expected_ctr_change"] == pytest.approx(0.01 / np.nanmean(base), rel=0.05)
    # Across arms with different readers the same difference drowns in the spread.
    other = np.where(arm == "blend", reader + 1000, reader)
    assert ab_within_readers(arm=arm, reader=other, values={"expected_ctr": value}) == {}


def test_paired_pages_errors_cluster_by_moment():
    """Two moments whose arms differ by +1% and +5%: the paired error counts two draws of
    the live state, not the pages within each."""
    pages = PairedPages()
    for moment, lift in ((0, 0.01), (1, 0.05)):
        for _ in range(50):
            pages.add("ctr", expected=0.1, cold=0.2, tail=0.1, categories=3, items=[1, 2], served_by="ctr",
                      snapshot=moment)
            pages.add("blend", expected=0.1 * (1 + lift), cold=0.3, tail=0.2, categories=4, items=[1, 3],
                      served_by="blend", snapshot=moment)
    s = pages.summary(np.array([1, 2, 3, 4]))
    assert s["ctr"]["expected_ctr_vs_ctr_only"] == 0.0
    assert s["blend"]["expected_ctr_vs_ctr_only"] == pytest.approx(0.03)
    assert s["blend"]["expected_ctr_vs_ctr_only_se"] == pytest.approx(0.02, abs=1e-3)  # two moments, 0.01 and 0.05
    assert s["blend"]["cold_share_diff"] == pytest.approx(0.1) and s["blend"]["categories_per_page"] == 4
    assert s["blend"]["served_by"] == "blend" and s["blend"]["pages"] == 100


def test_labels_name_a_fallback_and_cold_comes_from_the_log():
    assert arm_label("feature", {"served_by": "blend"}) == "feature as blend"
    assert arm_label("blend", {"weight": 0.05}) == "blend" and arm_label("baseline", None) == "baseline"
    assert was_cold({"warm": True}, "cold") is False and was_cold({"warm": False}, "warm") is True
    assert was_cold({}, "cold") is True and was_cold(None, "warm") is False  # logged before the ranker said


def _run(arm, *, expected, tail, warm, shown, categories=(3, 3)):
    size = [10] * len(expected)
    return {"arm": arm, "expected": expected, "size": size, "tail": tail, "cold": [5] * len(expected),
            "categories": list(categories), "minutes_to_warm": warm, "shown": shown, "live": [1, 2, 3, 4],
            "served_by": {arm: len(expected)}}


def test_loop_figures_of_one_copy():
    f = loop_figures(_run("a", expected=[0.1, 0.2], tail=[2, 4], warm={"7": 10.0, "8": 30.0, "9": None},
                          shown={"1": 15, "2": 5}))
    assert f["expected_ctr"] == pytest.approx(0.15) and f["tail_exposure"] == pytest.approx(0.3)
    assert f["cold_share"] == pytest.approx(0.5) and f["categories_per_page"] == 3
    assert f["minutes_to_warm"] == 30.0 and f["never_warm_share"] == pytest.approx(1 / 3)  # never counts as never
    assert f["coverage"] == pytest.approx(1000 * 2 / 20)  # distinct stories per 1,000 impressions
    assert 0 < f["exposure_gini"] < 1  # stories 3 and 4 were live and never shown
    with pytest.raises(ValueError, match="served no page"):
        loop_figures(_run("a", expected=[], tail=[], warm={}, shown={}, categories=()))


def test_loop_compare_pairs_arms_within_replicates_and_errs_over_replicates():
    reps = []
    for r, (base, lift) in enumerate([(0.10, 0.02), (0.20, 0.06), (0.15, 0.03)]):
        reps.append({"ctr": _run("ctr", expected=[base, base], tail=[5, 5], warm={"7": 20.0 + r},
                                 shown={"1": 20}),
                     "x": _run("x", expected=[base * (1 + lift)] * 2, tail=[6, 6], warm={"7": 15.0 + r},
                               shown={"1": 20}, categories=(4, 4))})
    out = loop_compare(reps)
    vs = out["x"]["vs_ctr"]
    lifts = np.array([0.02, 0.06, 0.03])
    assert vs["expected_ctr_rel"] == pytest.approx(lifts.mean(), abs=1e-6)
    assert vs["expected_ctr_rel_se"] == pytest.approx(lifts.std(ddof=1) / np.sqrt(3), abs=1e-6)
    assert vs["tail_exposure_rel"] == pytest.approx(0.2) and vs["tail_exposure_rel_se"] == pytest.approx(0, abs=1e-9)
    assert vs["minutes_to_warm_diff"] == pytest.approx(-5.0) and vs["categories_per_page_diff"] == pytest.approx(1.0)
    assert "vs_ctr" not in out["ctr"] and out["ctr"]["expected_ctr_se"] > 0
    # A median that is infinite in a replicate (over half never warm) has no difference to average.
    reps[0]["x"]["minutes_to_warm"] = {"7": None}
    vs = loop_compare(reps)["x"]["vs_ctr"]
    assert vs["minutes_to_warm_diff"] is None and vs["minutes_to_warm_diff_se"] is None
    assert loop_compare(reps[:1])["x"]["vs_ctr"]["expected_ctr_rel_se"] is None  # one replicate: no error
