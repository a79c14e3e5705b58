"""The audience measurement: rank correlation and top-share AUC against a known truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from recsys.audience import auc, cosine_rows, spearman, story_audience, summarise


def test_spearman_and_auc_match_their_definitions():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=300), rng.normal(size=300)
    b[:100] = a[:100]
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert spearman(a, np.ones(300)) == 0.0
    labels = a > 1.0
    pos, neg = a[labels], a[~labels]
    assert auc(labels, a) == 1.0 and auc(labels, -a) == 0.0
    noisy = a + rng.normal(size=300)
    pairs = (noisy[labels][:, None] > noisy[~labels][None]).mean()
    assert auc(labels, noisy) == pytest.approx(pairs) and len(pos) and len(neg)
    assert auc(np.zeros(5, bool), np.arange(5)) == 0.5


def test_a_story_audience_scores_the_truth_perfectly_and_noise_not_at_all():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=2000)
    out = story_audience(truth, {"oracle": 3 * truth + 1, "reversed": -truth, "noise": rng.normal(size=2000)})
    assert out["oracle"] == {"rho": 1.0, "auc": 1.0}
    assert out["reversed"]["rho"] == pytest.approx(-1.0) and out["reversed"]["auc"] == 0.0
    assert abs(out["noise"]["rho"]) < 0.1 and abs(out["noise"]["auc"] - 0.5) < 0.06


def test_summarise_averages_per_seed_bucket_with_standard_errors():
    per = [(7, {"x": {"rho": 0.2, "auc": 0.6}}), (9, {"x": {"rho": 0.4, "auc": 0.8}}),
           (50, {"x": {"rho": 0.5, "auc": 0.7}})]
    out = summarise(per)["buckets"]
    assert set(out) == {"5-19", "20-99"}
    assert out["5-19"]["x"]["rho"] == pytest.approx(0.3) and out["5-19"]["x"]["stories"] == 2
    assert out["5-19"]["x"]["rho_se"] == pytest.approx(np.std([0.2, 0.4], ddof=1) / np.sqrt(2), abs=1e-4)
    assert np.isnan(out["20-99"]["x"]["rho_se"])


def test_cosine_rows_is_zero_for_empty_rows():
    x = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    assert cosine_rows(x, np.array([1.0, 0.0])) == pytest.approx([1.0, 0.0, np.sqrt(0.5)])
