"""The text encoder, the cold-start linear model, calibration and the cold/warm policy."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from recsys.calibration import CalibrationError, PlattCalibrator, item_status
from recsys.coldstart import ColdStartModel, pair_features
from recsys.profiles import TOPIC_CLICKS, category_affinity, reader_profiles
from tests.conftest import ROOT


def test_encoder_gives_unit_384d_vectors_offline():
    """In a fresh process whose every network connection fails, the packaged model loads and
    encodes: similar texts land closer than unrelated ones."""
    code = (
        "import numpy as np; from recsys.text import TextEncoder\n"
        "v = TextEncoder().encode(['Storm warning for the north coast', 'Gales expected on the northern shore',"
        " 'Bond yields climb after inflation report', ''])\n"
        "print(v.shape, v.dtype, np.round(np.linalg.norm(v, axis=1), 5).tolist(),"
        " float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.2)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HTTP_PROXY": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": "", "HF_HOME": str(ROOT / "var" / "no-hf-home")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "(4, 384) float32 [1.0, 1.0, 1.0, 0.0] True"


def _planted(n_readers=300, n_items=200, d=16, seed=0):
    """Readers click an item when its vector points their way (plus noise); category and age
    carry no signal."""
    rng = np.random.default_rng(seed)
    items = rng.standard_normal((n_items, d)).astype(np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    cats = rng.integers(1, 4, n_items)
    hist = [rng.choice(n_items, 10, replace=False) for _ in range(n_readers)]
    prof = reader_profiles(item_vectors=items, item_category=cats, n_categories=4, histories=hist)
    r = rng.integers(n_readers, size=6000)
    i = rng.integers(n_items, size=6000)
    cos = (prof.vectors[r] * items[i]).sum(1)
    y = (cos + rng.normal(0, 0.15, len(r)) > 0.25).astype(int)
    x = pair_features(prof, r, items, cats, i, rng.uniform(0, 100, len(r)))
    return x, y


def test_linear_model_recovers_a_planted_preference():
    x, y = _planted()
    model = ColdStartModel(random_state=0).fit(x[:4000], y[:4000])
    assert model.n_features_in_ == 16 + 4
    auc = roc_auc_score(y[4000:], model.decision_function(x[4000:]))
    assert auc > 0.85, auc
    cos_weight = model.model_.coef_[0][16]  # the cosine feature, standardised
    assert cos_weight > 0 and cos_weight > np.abs(model.model_.coef_[0][17:]).max()


def test_linear_model_follows_the_estimator_contract():
    from sklearn.exceptions import NotFittedError

    model = ColdStartModel(C=0.5, random_state=3)
    assert model.get_params() == {"C": 0.5, "max_iter": 500, "random_state": 3}
    with pytest.raises(NotFittedError):
        model.decision_function(np.zeros((1, 20)))
    x, y = _planted(seed=1)
    assert model.fit(x, y) is model
    assert model.predict_proba(x[:3]).shape == (3, 2)


def test_platt_map_is_calibrated_and_refuses_a_decreasing_one():
    rng = np.random.default_rng(0)
    score = rng.normal(0, 1, 20000)
    label = rng.random(20000) < 1 / (1 + np.exp(-(2 * score - 1)))
    cal = PlattCalibrator().fit(score, label)
    assert cal.coef_[0] == pytest.approx(2, abs=0.15) and cal.intercept_ == pytest.approx(-1, abs=0.1)
    p = cal.predict(score)
    assert np.allclose(p, cal.model_.predict_proba(score[:, None])[:, 1], rtol=1e-12, atol=1e-15)  # sklearn's map
    two = PlattCalibrator().fit(np.stack([score, score + rng.normal(0, 1, 20000)], 1), label)
    assert np.allclose(two.predict(np.stack([score, -score], 1)[:50]),
                       two.model_.predict_proba(np.stack([score, -score], 1)[:50])[:, 1], rtol=1e-12, atol=1e-15)
    with pytest.raises(NotFittedError):
        PlattCalibrator().predict(score)
    for lo, hi in [(0.0, 0.2), (0.4, 0.6), (0.8, 1.0)]:
        m = (p >= lo) & (p < hi)
        assert abs(p[m].mean() - label[m].mean()) < 0.03
    with pytest.raises(CalibrationError, match="not increasing"):
        PlattCalibrator().fit(-score, label)


def test_an_item_crossing_the_threshold_turns_warm_and_one_hovering_does_not_flap():
    warm, history = False, []
    for seeds in [0, 5, 19, 20, 19, 21, 18, 20, 11, 10, 9, 12, 25]:
        warm = item_status(warm=warm, seeds=seeds, threshold=20)
        history.append(warm)
    # Turns warm at 20, stays warm while hovering (19, 18, 11, 10), cold again only below 10.
    assert history == [False, False, False, True, True, True, True, True, True, True, False, False, True]
    assert item_status(warm=True, seeds=14, threshold=20, demote_below=15) is False


def test_profiles_weigh_recent_clicks_more_and_picked_topics_as_clicks():
    items = np.eye(3, dtype=np.float32)
    cats = np.array([0, 1, 2])
    p = reader_profiles(item_vectors=items, item_category=cats, n_categories=3,
                        histories=[np.array([0, 1]), np.array([], np.int64)], picked=[set(), {2}])
    assert p.vectors[0, 1] > p.vectors[0, 0] > 0 and np.linalg.norm(p.vectors[0]) == pytest.approx(1.0)
    assert not p.vectors[1].any()  # no clicks: no text profile, but the picked topic counts
    assert p.category_affinity[1, 2] == pytest.approx(category_affinity(TOPIC_CLICKS, TOPIC_CLICKS, 3))
    assert p.category_affinity[1, 2] > 0 > p.category_affinity[1, 0]
    assert category_affinity(0, 0, 3) == pytest.approx(0.0)  # a reader with no clicks: no lean
