"""The learned-weight arms (`feature` and its ablation `noralm`): RALM's weight learned from
logged impressions comes out near 0 when RALM's logit is noise, positive when it carries click
signal beyond the other inputs, is never negative, and `rank` serves the fitted models."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.arms import ARMS
from recsys.coldstart import reader_logits
from recsys.ctr import (
    FEATURE_COLUMNS,
    NORALM_COLUMNS,
    CtrModel,
    assemble,
    fit_learned,
    learned_rows,
    named_weights,
    widened,
)
from recsys.ranker import Candidates, Models, Reader, Scores, rank

N = 60_000


def _log(ralm_effect: float, *, echo: float = 0.0, seed: int = 0):
    """Logged impressions whose clicks follow the reader's affinity, the cold-start logit
    and, on warm stories, `ralm_effect` times RALM's own part of its logit. RALM's logit is
    `echo` times the affinity (what the count already knows) plus that part, so what it adds
    beyond the other inputs is only `ralm_effect`."""
    rng = np.random.default_rng(seed)
    aff = rng.normal(size=N)
    x = assemble(affinity=aff, item_clicks=rng.integers(0, 10, N), item_impressions=rng.integers(20, 400, N),
                 age_hours=rng.uniform(0, 48, N), position=rng.integers(0, 10, N), prior=0.05)
    lin = rng.normal(size=N)
    warm = rng.random(N) < 0.6
    own = rng.normal(size=N)
    ralm = np.where(warm, echo * aff + own, np.nan)
    logit = -3.0 + 0.8 * aff + 0.6 * lin + ralm_effect * np.where(warm, own, 0.0)
    y = rng.random(N) < 1 / (1 + np.exp(-logit))
    return x, ralm, lin, y, np.arange(N, dtype=float)


def _fit(ralm_effect: float, *, echo: float = 0.0):
    x, ralm, lin, y, t = _log(ralm_effect, echo=echo)
    models, report = fit_learned(x, ralm, lin, y, t, validation_from=N * 0.5)
    return models, report


def test_rows_name_their_columns_and_cold_stories_read_zero_for_ralm():
    x = np.ones((3, 5), np.float32)
    rows = learned_rows(x, np.array([2.0, np.nan, -1.0]), np.array([0.5, 0.25, 0.0]))
    assert rows.shape == (3, len(FEATURE_COLUMNS))
    at = {c: FEATURE_COLUMNS.index(c) for c in ("ralm_logit", "warm", "coldstart_logit")}
    assert rows[:, at["ralm_logit"]].tolist() == [2.0, 0.0, -1.0] and rows[:, at["warm"]].tolist() == [1, 0, 1]
    assert rows[:, at["coldstart_logit"]].tolist() == [0.5, 0.25, 0.0]
    bare = learned_rows(x, np.array([2.0, np.nan, -1.0]), np.array([0.5, 0.25, 0.0]), ralm=False)
    assert bare.shape == (3, len(NORALM_COLUMNS)) and bare[:, -1].tolist() == [0.5, 0.25, 0.0]


def test_named_weights_are_the_models_raw_units():
    x, ralm, lin, y, _ = _log(0.5)
    rows = learned_rows(x, ralm, lin)
    model = CtrModel().fit(rows[:20_000], y[:20_000])
    w = named_weights(model)
    assert list(w) == [*FEATURE_COLUMNS, "intercept"]
    coef = np.array([w[c] for c in FEATURE_COLUMNS])
    assert np.allclose(rows[:500].astype(np.float64) @ coef + w["intercept"], model.decision_function(rows[:500]),
                       atol=1e-6)
    assert named_weights(model.linear()) == w  # a loaded linear map reads the same
    with pytest.raises(ValueError, match="columns"):
        named_weights(model, NORALM_COLUMNS)


def test_ralm_weight_is_about_zero_when_its_logit_is_noise():
    models, report = _fit(0.0)
    w = report["ctr_feature"]["weights"]
    assert 0.0 <= report["ralm_weight"] == w["ralm_logit"] < 0.06
    # The inputs that do carry the clicks keep their weights.
    assert w["affinity"] == pytest.approx(0.8, abs=0.1) and w["coldstart_logit"] == pytest.approx(0.6, abs=0.1)
    assert report["ctr_noralm"]["weights"]["coldstart_logit"] == pytest.approx(0.6, abs=0.1)
    assert set(report["ctr_noralm"]["weights"]) == {*NORALM_COLUMNS, "intercept"}
    # A RALM that only echoes the count (its logit follows the reader's affinity, which
    # predicts the clicks) adds nothing beyond it either.
    _, echoed = _fit(0.0, echo=1.0)
    assert 0.0 <= echoed["ralm_weight"] < 0.06
    # Neither lowers the held-out log loss beyond its noise, so RALM's terms are dropped: the
    # weight served is exactly 0, and the arm ranks as its ablation does.
    for r in (report, echoed):
        gain = r["ctr_feature"]["heldout_gain"]
        assert r["ctr_feature"]["ralm_dropped"] is True and gain["diff"] <= 2 * gain["se"] and r["ralm_weight"] == 0.0
    assert echoed["ctr_feature"]["weights"]["affinity"] == pytest.approx(0.8, abs=0.1)


def test_ralm_weight_is_positive_when_its_logit_carries_clicks_beyond_the_others():
    models, report = _fit(0.7)
    assert report["ralm_weight"] == pytest.approx(0.7, abs=0.12) and report["ctr_feature"]["ralm_clamped"] is False
    gain = report["ctr_feature"]["heldout_gain"]
    assert report["ctr_feature"]["ralm_dropped"] is False and gain["diff"] > 2 * gain["se"] > 0
    # It carries what the other inputs do not: the model with it predicts the later half better.
    assert report["ctr_feature"]["val_auc"] > report["ctr_noralm"]["val_auc"] + 0.01
    assert report["warm_rows"] == int((~np.isnan(_log(0.7)[1])).sum())


def test_a_negative_ralm_weight_is_clamped_to_zero_and_recorded():
    models, report = _fit(-0.7)
    f = report["ctr_feature"]
    assert f["ralm_clamped"] is True and f["ralm_weight_fitted"] < -0.4
    assert report["ralm_weight"] == 0.0 and f["weights"]["ralm_logit"] == 0.0 and f["weights"]["warm"] == 0.0
    # The served model is noralm's: the same weights on the columns they share.
    shared = report["ctr_noralm"]["weights"]
    assert all(f["weights"][c] == pytest.approx(v, abs=1e-12) for c, v in shared.items())
    x, ralm, lin, *_ = _log(-0.7)
    assert np.allclose(models["ctr_feature"].decision_function(learned_rows(x[:1000], ralm[:1000], lin[:1000])),
                       models["ctr_noralm"].decision_function(learned_rows(x[:1000], ralm[:1000], lin[:1000],
                                                                           ralm=False)), atol=1e-9)


def test_widened_scores_the_same_rows_the_same():
    x, ralm, lin, y, _ = _log(0.0)
    small = CtrModel().fit(learned_rows(x[:5000], ralm[:5000], lin[:5000], ralm=False), y[:5000])
    wide = widened(small, NORALM_COLUMNS, FEATURE_COLUMNS)
    assert wide.n_features_in_ == len(FEATURE_COLUMNS)
    assert np.allclose(wide.decision_function(learned_rows(x[:300], ralm[:300], lin[:300])),
                       small.decision_function(learned_rows(x[:300], ralm[:300], lin[:300], ralm=False)), atol=1e-9)
    assert small.n_features_in_ == len(NORALM_COLUMNS)  # the original is left as it was


def _candidates(n: int = 40, seed: int = 3):
    """A reader and n candidates, half warm, with random CTR features, text and RALM logits."""
    rng = np.random.default_rng(seed)
    d = 8
    vectors = rng.normal(size=(n, d)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ctr_features = assemble(affinity=rng.normal(size=n), item_clicks=rng.integers(0, 10, n),
                            item_impressions=rng.integers(20, 400, n), age_hours=rng.uniform(0, 48, n),
                            position=0.0, prior=0.05)
    cand = Candidates(ids=np.arange(100, 100 + n), category=np.zeros(n, np.int64), group=np.arange(n),
                      vectors=vectors, age_hours=rng.uniform(0, 48, n), seen=np.zeros(n), ctr_features=ctr_features)
    profile = rng.normal(size=d).astype(np.float32)
    reader = Reader(profile=profile / np.linalg.norm(profile), affinity=np.zeros(1, np.float32), has_clicks=True)
    scores = Scores(np.where(np.arange(n) % 2 == 0, rng.normal(size=n) * 2, np.nan))
    coldstart = (rng.normal(size=d + 4), -2.0)
    return reader, cand, scores, coldstart


def _ranked(models: dict, arm: str):
    reader, cand, scores, coldstart = _candidates()
    m = Models(coldstart=coldstart, ctr=(np.zeros(5), -3.0), ctr_feature=models["ctr_feature"].linear(),
               ctr_noralm=models["ctr_noralm"].linear())
    return rank(reader, cand, scores, arm=ARMS[arm], models=m, limit=len(cand)), (reader, cand, scores, coldstart)


def test_rank_serves_the_fitted_models_from_the_same_inputs():
    models, _ = _fit(0.7)
    for arm, key in (("feature", "ctr_feature"), ("noralm", "ctr_noralm")):
        r, (reader, cand, scores, coldstart) = _ranked(models, arm)
        lin = reader_logits(*coldstart, profile=reader.profile, affinity=reader.affinity[cand.category],
                            item_vectors=cand.vectors, age_hours=cand.age_hours)
        rows = learned_rows(cand.ctr_features, scores.ralm_logit, lin, ralm=ARMS[arm].ralm)
        expected = models[key].predict_proba(rows)[:, 1]
        assert r.served_by == arm and np.allclose(r.final, expected, atol=1e-6)  # every candidate's P(click)
        assert r.page.tolist() == np.argsort(-expected, kind="stable").tolist()
        assert r.parts(0)["learned_ctr"] == pytest.approx(expected[0], abs=1e-6) and "weight" not in r.parts(0)
    # With a positive RALM weight the two arms part on the warm candidates, and only there.
    feature, _ = _ranked(models, "feature")
    noralm, _ = _ranked(models, "noralm")
    warm = ~np.isnan(feature.ralm_logit)
    assert not np.allclose(feature.final[warm], noralm.final[warm], atol=1e-3)


def test_noralm_ranks_as_feature_does_when_ralm_weight_is_zero():
    models, report = _fit(-0.7)  # clamped: RALM's weight 0
    assert report["ralm_weight"] == 0.0
    feature, _ = _ranked(models, "feature")
    noralm, _ = _ranked(models, "noralm")
    assert feature.page.tolist() == noralm.page.tolist() and np.allclose(feature.final, noralm.final, atol=1e-9)


def test_a_learned_arm_without_its_model_falls_back():
    models, _ = _fit(0.0)
    reader, cand, scores, coldstart = _candidates()
    m = Models(coldstart=coldstart, ctr=(np.zeros(5), -3.0), ctr_feature=models["ctr_feature"].linear())
    assert rank(reader, cand, scores, arm=ARMS["feature"], models=m, limit=5).served_by == "feature"
    fell = rank(reader, cand, scores, arm=ARMS["noralm"], models=m, limit=5)
    assert fell.served_by == "blend" and fell.parts(0)["served_by"] == "blend" and fell.learned_ctr is None
