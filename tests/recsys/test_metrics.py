"""The one group AUC (recsys.metrics), scikit-learn's AUC and SciPy's Spearman against the
formulas they stand for, on random data with ties."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata

from recsys import audience, ctr
from recsys.metrics import group_metrics

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
