"""The one group AUC (recsys.metrics), scikit-learn's AUC and SciPy's Spearman against the
formulas they stand for, on random data with ties."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata

from recsys import audience, ctr
from recsys.metrics import MIND_METRICS, group_metrics, impression_metrics

EXACT = {"rel": 0, "abs": 1e-12}


def _group_auc_by_definition(scores, labels, groups) -> dict:
    """Each positive against its group's negatives, ties one half; the mean over positives."""
    aucs = []
    for g in np.unique(groups):
        s, lab = scores[groups == g], labels[groups == g]
        neg = s[~lab]
        if len(neg):
            aucs += [((neg < p).sum() + 0.5 * (neg == p).sum()) / len(neg) for p in s[lab]]
    return {"auc": float(np.mean(aucs)) if aucs else 0.0, "groups": len(aucs)}


def _auc_by_ranks(labels, scores) -> float:
    """Mann-Whitney U over average ranks; 0.5 without both classes."""
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    return float((rankdata(scores)[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _spearman_by_ranks(a, b) -> float:
    """Pearson's r of the average ranks; 0 when either side is constant."""
    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(np.sqrt((ra ** 2).sum() * (rb ** 2).sum()))
    return float((ra * rb).sum() / den) if den > 0 else 0.0


@pytest.mark.parametrize("seed", range(5))
def test_group_auc_is_the_definition_on_data_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 3000
    scores = rng.integers(0, 6, n).astype(np.float64)  # few values: many ties
    labels = rng.random(n) < 0.2
    groups = rng.integers(0, 400, n)
    groups[:20], labels[:20] = 998, True  # a group of positives alone
    groups[20:40], labels[20:40] = 999, False  # and one of negatives alone
    got = group_metrics(scores, labels, groups)
    assert got == _group_auc_by_definition(scores, labels, groups)
    assert group_metrics(scores, np.zeros(n, bool), groups) == {"auc": 0.0, "groups": 0}


@pytest.mark.parametrize("seed", range(5))
def test_auc_and_spearman_are_the_rank_formulas_on_data_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 500 + 100 * seed
    a = np.round(rng.normal(size=n), 1)  # ties
    b = np.round(a + rng.normal(size=n), 1)
    labels = b > np.quantile(b, 0.9)
    assert audience.auc(labels, a) == pytest.approx(_auc_by_ranks(labels, a), **EXACT)
    assert ctr.auc(labels.astype(int), a) == round(_auc_by_ranks(labels, a), 4)
    assert audience.spearman(a, b) == pytest.approx(_spearman_by_ranks(a, b), **EXACT)
    for constant in (np.ones(n), np.full(n, np.nan)):
        assert audience.spearman(a, constant) == _spearman_by_ranks(a, constant) == 0.0
        assert audience.spearman(constant, b) == 0.0
    assert audience.auc(np.zeros(n, bool), a) == 0.5 and ctr.auc(np.ones(n), a) is None


def _view_rhos_by_definition(truth, scores, mask, count="count", min_size=10, added_weight=0.5) -> dict:
    """Per row: each scorer's rho with the truth over the row's cells, and count + w * scorer's."""
    def z(x):
        sd = float(x.std())
        return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)

    out = {k: np.full(len(truth), np.nan) for k in scores} | {f"+{k}": np.full(len(truth), np.nan)
                                                             for k in scores if k != count}
    for u in range(len(truth)):
        cells = np.flatnonzero(mask[u])
        if len(cells) < min_size:
            continue
        t, zc = truth[u, cells], z(scores[count][u, cells])
        for k, s in scores.items():
            x = s[u, cells]
            if np.all(np.isfinite(x)):
                out[k][u] = _spearman_by_ranks(x, t)
                if k != count:
                    out[f"+{k}"][u] = _spearman_by_ranks(zc + added_weight * z(x), t)
    return out


@pytest.mark.parametrize("axis", [0, 1])
def test_view_rhos_are_the_rank_formulas(axis):
    rng = np.random.default_rng(axis)
    shape = (60, 40)
    truth = np.round(rng.normal(size=shape), 1)
    scores = {"count": np.round(truth + rng.normal(size=shape), 1), "noise": rng.integers(0, 3, shape) * 1.0,
              "flat": np.zeros(shape), "holes": truth + rng.normal(size=shape)}
    scores["holes"][::7] = np.nan
    mask = rng.random(shape) < 0.7
    mask[3] = False  # a unit with too few cells
    got = audience.view_rhos(truth, scores, mask, axis=axis)
    if axis == 0:
        truth, mask, scores = truth.T, mask.T, {k: v.T for k, v in scores.items()}
    want = _view_rhos_by_definition(truth, scores, mask)
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-12, err_msg=k)


# MIND's official scoring script (msnews/MIND evaluate.py), per impression, as the reference.
def _official_dcg_score(y_true, y_score, k=10):
    order = np.argsort(y_score)[::-1]
    y_true = np.take(y_true, order[:k])
    gains = 2 ** y_true - 1
    discounts = np.log2(np.arange(len(y_true)) + 2)
    return np.sum(gains / discounts)


def _official_ndcg_score(y_true, y_score, k=10):
    best = _official_dcg_score(y_true, y_true, k)
    actual = _official_dcg_score(y_true, y_score, k)
    return actual / best


def _official_mrr_score(y_true, y_score):
    order = np.argsort(y_score)[::-1]
    y_true = np.take(y_true, order)
    rr_score = y_true / (np.arange(len(y_true)) + 1)
    return np.sum(rr_score) / np.sum(y_true)


def _official(impressions) -> dict[str, list[float]]:
    """The script's four metrics of each (labels, scores) impression; NaN where it would fail
    (roc_auc_score raises on one class)."""
    from sklearn.metrics import roc_auc_score

    out = {m: [] for m in MIND_METRICS}
    for y, s in impressions:
        y, s = np.asarray(y), np.asarray(s, np.float64)
        one_class = y.min() == y.max()
        for m, f in (("auc", roc_auc_score), ("mrr", _official_mrr_score),
                     ("ndcg@5", lambda a, b: _official_ndcg_score(a, b, 5)),
                     ("ndcg@10", lambda a, b: _official_ndcg_score(a, b, 10))):
            out[m].append(np.nan if one_class else float(f(y, s)))
    return out


def _flat(impressions):
    return (np.concatenate([s for _, s in impressions]).astype(np.float64),
            np.concatenate([y for y, _ in impressions]), np.array([len(y) for y, _ in impressions]))


def _assert_official(impressions) -> dict[str, np.ndarray]:
    got = impression_metrics(*_flat(impressions))
    want = _official(impressions)
    for m in MIND_METRICS:
        np.testing.assert_allclose(got[m], want[m], rtol=0, atol=1e-12, err_msg=m)  # NaN where NaN
    return got


def test_mind_metrics_are_the_official_scripts_on_hand_made_impressions():
    long_y = [0] * 30
    long_y[3] = long_y[17] = long_y[29] = 1
    impressions = [
        ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]),  # two clicks, no tie
        ([1, 0, 0], [0.9, 0.1, 0.5]),
        ([0, 1, 0, 0], [1.0, 1.0, 1.0, 1.0]),  # every score tied: the script's order decides
        ([1, 0], [0.5, 0.5]),
        ([0, 1, 1, 0, 1], [2.0, 1.0, 2.0, 1.0, 0.0]),  # ties across the classes
        ([0, 0, 0], [0.3, 0.2, 0.1]),  # one class only: skipped
        ([1, 1], [0.3, 0.2]),  # one class only: skipped
        (long_y, [float(i % 3) for i in range(30)]),  # long enough for numpy's quicksort, with ties
    ]
    got = _assert_official(impressions)
    # The definitions by hand on the first impression: order 0.8 (clicked), 0.4, 0.35 (clicked), 0.1.
    assert got["auc"][0] == pytest.approx(3 / 4)
    assert got["mrr"][0] == pytest.approx((1 + 1 / 3) / 2)
    assert got["ndcg@5"][0] == pytest.approx((1 + 1 / np.log2(4)) / (1 + 1 / np.log2(3)))
    assert got["auc"][1] == got["mrr"][1] == got["ndcg@10"][1] == 1.0
    assert got["auc"][2] == got["auc"][3] == 0.5  # a tie counts one half
    assert np.isnan([got[m][k] for m in MIND_METRICS for k in (5, 6)]).all()
    assert not np.isnan(np.delete(got["auc"], [5, 6])).any()


@pytest.mark.parametrize("seed", range(4))
def test_mind_metrics_are_the_official_scripts_on_random_impressions(seed):
    rng = np.random.default_rng(seed)
    impressions = []
    for _ in range(400):
        n = int(rng.integers(1, 80))
        y = (rng.random(n) < rng.uniform(0.02, 0.5)).astype(int)
        s = rng.integers(0, 4, n).astype(float) if rng.random() < 0.5 else rng.normal(size=n)  # ties, or none
        impressions.append((y, s))
    got = _assert_official(impressions)
    assert np.isnan(got["auc"]).any() and (~np.isnan(got["auc"])).sum() > 300
    with pytest.raises(ValueError, match="finite"):
        impression_metrics(np.array([0.1, np.nan]), np.array([1, 0]), np.array([2]))
