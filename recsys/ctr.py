"""The CTR model: P(click) of a shown (reader, item) pair from features the feed has at hand.

Features (one row per impression, in this order):
  affinity   the reader's category affinity, log(P(category | reader) / uniform), smoothed
  item_ctr   logit of the item's smoothed CTR: (clicks + a * prior) / (impressions + a)
  exposure   log1p(the item's impressions): how much the CTR estimate can be trusted
  freshness  log1p(age in hours)
  position   log1p(position on the page); 0 when serving, so the ranking is position-free

The learned-weight ranker arms (recsys.arms: `feature`, `noralm`) read the similarity's parts
as separate columns after these, each with its own weight learned from the logged impressions
(`fit_learned`):
  ralm_logit       RALM's logit where RALM scored the story (warm), 0 where it is cold
  warm             1 where RALM scored the story
  coldstart_logit  the cold-start model's logit
`feature` reads all three (FEATURE_COLUMNS), `noralm` only the cold-start logit
(NORALM_COLUMNS). RALM's weight is kept at least 0: a similarity whose RALM part would rank
against RALM's own scores is no look-alike signal, so such a fit is replaced by the `noralm`
one (RALM's terms at weight 0).

For training, every feature of an impression is taken as of its time (counts strictly before
it), so the model never sees the click it is asked to predict.
"""

from __future__ import annotations

import copy

import numpy as np
from scipy.special import logit

from recsys import metrics
from recsys.coldstart import ColdStartModel
from recsys.profiles import category_affinity, freshness

FEATURES = ("affinity", "item_ctr", "exposure", "freshness", "position")
RALM_COLUMNS = ("ralm_logit", "warm")  # what the `noralm` arm leaves out
FEATURE_COLUMNS = (*FEATURES, *RALM_COLUMNS, "coldstart_logit")  # the `feature` arm's model
NORALM_COLUMNS = (*FEATURES, "coldstart_logit")  # the `noralm` arm's model
SMOOTHING = 50.0  # pseudo-impressions behind the prior CTR


class CtrModel(ColdStartModel):
    """Standardised features into a logistic regression (the same estimator as the cold-start
    model, a separate name so that artifacts say what they hold)."""

    def __init__(self, C: float = 1.0, max_iter: int = 500, random_state: int | None = 0) -> None:
        super().__init__(C=C, max_iter=max_iter, random_state=random_state)


def assemble(*, affinity: np.ndarray, item_clicks: np.ndarray, item_impressions: np.ndarray,
             age_hours: np.ndarray, position: np.ndarray | float, prior: float) -> np.ndarray:
    """The feature rows (N, 5), in the order of FEATURES."""
    n = len(affinity)
    smoothed = (np.asarray(item_clicks, np.float64) + SMOOTHING * prior) / (np.asarray(item_impressions, np.float64)
                                                                           + SMOOTHING)
    cols = [np.asarray(affinity, np.float64), clipped_logit(smoothed),
            np.log1p(np.asarray(item_impressions, np.float64)), freshness(age_hours),
            np.log1p(np.broadcast_to(np.asarray(position, np.float64), (n,)))]
    return np.stack(cols, 1).astype(np.float32)


def clipped_logit(p: np.ndarray) -> np.ndarray:
    """logit(p) with p kept within [1e-6, 1 - 1e-6], so a probability of 0 or 1 stays finite."""
    return logit(np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6))


class _EventIndex:
    """Events (key, time) sorted once, so that counts strictly before any query time cost two
    binary searches per query. Times are whole seconds; keys are non-negative integers."""

    def __init__(self, keys: np.ndarray, times: np.ndarray, weights: np.ndarray | None = None) -> None:
        times = np.asarray(times, np.int64)
        self.t0 = int(times.min(initial=0))
        comp = np.asarray(keys, np.int64) * (1 << 32) + (times - self.t0)
        order = np.argsort(comp, kind="stable")
        self.comp = comp[order]
        self.cum = np.concatenate([[0.0], np.cumsum(np.ones(len(order)) if weights is None else weights[order])])

    def before(self, keys: np.ndarray, times: np.ndarray) -> np.ndarray:
        """For each query (key, time): the number (or weight sum) of events with the same key
        strictly before that time."""
        base = np.asarray(keys, np.int64) * (1 << 32)
        # A query before every event counts none: its offset is clipped to the first event's.
        offset = np.maximum(np.asarray(times, np.int64) - self.t0, 0)
        start = np.searchsorted(self.comp, base, side="left")
        return self.cum[np.searchsorted(self.comp, base + offset, side="left")] - self.cum[start]


def _counts_before(keys: np.ndarray, times: np.ndarray, event_keys: np.ndarray, event_times: np.ndarray,
                   weights: np.ndarray | None = None) -> np.ndarray:
    """For each query (key, time): the number (or weight sum) of events with the same key
    strictly before that time. Times are whole seconds."""
    return _EventIndex(event_keys, event_times, weights).before(keys, times)


def _seconds(time: np.ndarray) -> np.ndarray:
    return np.floor(np.asarray(time, np.float64)).astype(np.int64)


class ImpressionCounts:
    """What the CTR features count of a log of impressions (each (N,): reader and item
    indices, times in seconds, clicked), indexed once: `features` gives the rows of any
    (reader, item, time) queries as of their times. A click counts from the time of its
    impression; only events strictly before a query's time count, so impressions sharing a
    time never see each other.

    The reader's category affinity counts `clicks` (reader, item, time), the whole click log,
    where given: the feed serves affinity from every click of the reader, and a log whose
    readers arrive with histories (MIND) holds most of their clicks outside its impressions.
    Without it, the clicked impressions."""

    def __init__(self, *, reader: np.ndarray, item: np.ndarray, time: np.ndarray, clicked: np.ndarray,
                 item_category: np.ndarray, item_published: np.ndarray, n_categories: int,
                 clicks: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> None:
        reader, item = np.asarray(reader, np.int64), np.asarray(item, np.int64)
        t, clicked = _seconds(time), np.asarray(clicked, bool)
        self.item_category = np.asarray(item_category, np.int64)
        self.item_published = np.asarray(item_published, np.float64)
        self.n_categories = n_categories
        self.shown = _EventIndex(item, t)
        self.clicks = _EventIndex(item[clicked], t[clicked])
        if clicks is None:
            c_reader, c_item, c_time = reader[clicked], item[clicked], t[clicked]
        else:
            c_reader, c_item, c_time = np.asarray(clicks[0], np.int64), np.asarray(clicks[1], np.int64), \
                _seconds(clicks[2])
        self.own = _EventIndex(c_reader * n_categories + self.item_category[c_item], c_time)
        self.total = _EventIndex(c_reader, c_time)

    def features(self, *, reader: np.ndarray, item: np.ndarray, time: np.ndarray, position: np.ndarray | float,
                 prior: float) -> np.ndarray:
        """`assemble`'s rows (N, 5) of the queries (each (N,)) from the events strictly before
        each query's time; `prior` the CTR the item CTR is smoothed towards (the fitted
        model's, so that served rows match its training rows); `position` 0 as served."""
        reader, item = np.asarray(reader, np.int64), np.asarray(item, np.int64)
        t, cat = _seconds(time), self.item_category[item]
        aff = category_affinity(self.own.before(reader * self.n_categories + cat, t), self.total.before(reader, t),
                                self.n_categories)
        age = (np.asarray(time, np.float64) - self.item_published[item]) / 3600.0
        return assemble(affinity=aff, item_clicks=self.clicks.before(item, t),
                        item_impressions=self.shown.before(item, t), age_hours=age, position=position, prior=prior)


def impression_features(*, reader: np.ndarray, item: np.ndarray, time: np.ndarray, position: np.ndarray,
                        clicked: np.ndarray, item_category: np.ndarray, item_published: np.ndarray,
                        n_categories: int, prior: float | None = None,
                        clicks: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, float]:
    """As-of features of logged impressions (arrays of shape (N,); times in seconds): each
    row is `ImpressionCounts.features` of the impression against the log itself (`clicks`,
    the click log, as there). Returns the rows and the prior CTR used (the log's CTR unless
    given)."""
    clicked = np.asarray(clicked, bool)
    prior = float(clicked.mean()) if prior is None and len(clicked) else float(prior or 0.05)
    counts = ImpressionCounts(reader=reader, item=item, time=time, clicked=clicked, item_category=item_category,
                              item_published=item_published, n_categories=n_categories, clicks=clicks)
    return counts.features(reader=reader, item=item, time=time, position=position, prior=prior), prior


REPLAY_FEATURES = ("affinity", "popularity", "freshness")


def click_log_features(*, reader: np.ndarray, item: np.ndarray, time: np.ndarray, popularity: np.ndarray,
                       click_reader: np.ndarray, click_item: np.ndarray, click_time: np.ndarray,
                       item_category: np.ndarray, item_published: np.ndarray, n_categories: int) -> np.ndarray:
    """The CTR model's features where the log has clicks but no impressions (the replay on
    MovieLens): the reader's category affinity from their clicks strictly before `time`,
    log1p(the item's clicks before `time`) in place of its CTR, and freshness. (N, 3)."""
    reader, item = np.asarray(reader, np.int64), np.asarray(item, np.int64)
    cat = np.asarray(item_category, np.int64)
    t = np.floor(np.asarray(time, np.float64)).astype(np.int64)
    ct = np.floor(np.asarray(click_time, np.float64)).astype(np.int64)
    cr = np.asarray(click_reader, np.int64)
    own = _counts_before(reader * n_categories + cat[item], t, cr * n_categories + cat[np.asarray(click_item)], ct)
    total = _counts_before(reader, t, cr, ct)
    age = (np.asarray(time, np.float64) - np.asarray(item_published, np.float64)[item]) / 3600.0
    return np.stack([category_affinity(own, total, n_categories), np.log1p(np.asarray(popularity, np.float64)),
                     freshness(age)], 1).astype(np.float32)


def learned_rows(x: np.ndarray, ralm_logit: np.ndarray, coldstart_logit: np.ndarray, *,
                 ralm: bool = True) -> np.ndarray:
    """Rows of `assemble` (N, 5) with the similarity's parts: FEATURE_COLUMNS (N, 8), or
    NORALM_COLUMNS (N, 6) with `ralm` false. `ralm_logit` (N,) is NaN where RALM did not
    score the story (cold); `coldstart_logit` (N,)."""
    lin = np.asarray(coldstart_logit, np.float64)[:, None]
    if not ralm:
        return np.hstack([x, lin]).astype(np.float32)
    ral = np.asarray(ralm_logit, np.float64)
    warm = ~np.isnan(ral)
    return np.hstack([x, np.where(warm, ral, 0.0)[:, None], warm[:, None], lin]).astype(np.float32)


def named_weights(model: CtrModel | tuple[np.ndarray, float], columns: tuple[str, ...] = FEATURE_COLUMNS
                  ) -> dict[str, float]:
    """What multiplies each column of a CTR model in raw units (the scaler folded in), by
    name, and its "intercept": e.g. named_weights(model)["ralm_logit"] is RALM's learned
    weight. `model`: a fitted CtrModel or its `linear()` map."""
    coef, intercept = model.linear() if hasattr(model, "linear") else model
    if len(coef) != len(columns):
        raise ValueError(f"the model has {len(coef)} columns, {len(columns)} named")
    return {**{c: float(w) for c, w in zip(columns, coef, strict=True)}, "intercept": float(intercept)}


def widened(model: CtrModel, columns: tuple[str, ...], to: tuple[str, ...]) -> CtrModel:
    """`model`, fitted over `columns`, as a model over `to` (a superset) that gives the
    columns it lacks weight 0: the same scores for the same rows."""
    at = [to.index(c) for c in columns]
    out = copy.deepcopy(model)
    scaler, lr = out.scaler_, out.model_
    mean, scale, var = np.zeros(len(to)), np.ones(len(to)), np.ones(len(to))
    mean[at], scale[at], var[at] = scaler.mean_, scaler.scale_, scaler.var_
    scaler.mean_, scaler.scale_, scaler.var_ = mean, scale, var
    coef = np.zeros((1, len(to)))
    coef[0, at] = lr.coef_[0]
    lr.coef_ = coef
    scaler.n_features_in_ = lr.n_features_in_ = out.n_features_in_ = len(to)
    return out


def fit_learned(x: np.ndarray, ralm_logit: np.ndarray, coldstart_logit: np.ndarray, y: np.ndarray,
                time: np.ndarray, *, validation_from: float, seed: int = 0
                ) -> tuple[dict[str, CtrModel | None], dict]:
    """The learned-weight arms' models on the same rows (`assemble`'s (N, 5), the parts as in
    `learned_rows`, clicks, times): {"ctr_feature": over FEATURE_COLUMNS, "ctr_noralm": over
    NORALM_COLUMNS}, each None when the rows lack clicks or skips, and a report with each
    one's rows, validation AUC and `weights` (`named_weights`). RALM's weight is never
    negative: a fit that gives RALM's logit a negative weight is replaced by the `noralm`
    model widened to FEATURE_COLUMNS (RALM's terms at 0), and the report says
    `ralm_clamped` with the weight the fit gave (`ralm_weight_fitted`); so is one whose RALM
    terms do not lower the held-out log loss beyond two standard errors (`heldout_gain`,
    `ralm_dropped`)."""
    noralm, noralm_report, noralm_late = _fit(learned_rows(x, ralm_logit, coldstart_logit, ralm=False), y, time,
                                              validation_from=validation_from, seed=seed)
    feature, feature_report, feature_late = _fit(learned_rows(x, ralm_logit, coldstart_logit), y, time,
                                                 validation_from=validation_from, seed=seed)
    report = {"ctr_feature": feature_report, "ctr_noralm": noralm_report, "ralm_weight": None,
              "warm_rows": int((~np.isnan(np.asarray(ralm_logit, np.float64))).sum())}
    if noralm is not None:
        noralm_report["weights"] = named_weights(noralm, NORALM_COLUMNS)
    if feature is not None:
        fitted = named_weights(feature, FEATURE_COLUMNS)["ralm_logit"]
        gain = heldout_gain(noralm_late, feature_late, y, time, validation_from=validation_from)
        feature_report["heldout_gain"] = gain
        # RALM's terms stay only where they predict held-out clicks better than the model
        # without them, beyond two standard errors: a weight fitted to noise is set to 0.
        feature_report["ralm_clamped"] = fitted < 0
        feature_report["ralm_dropped"] = not (gain is not None and gain["diff"] > 2 * gain["se"])
        if fitted < 0 or feature_report["ralm_dropped"]:
            feature_report["ralm_weight_fitted"] = fitted
            feature = widened(noralm, NORALM_COLUMNS, FEATURE_COLUMNS)
            feature_report["val_auc"] = noralm_report["val_auc"]  # the model that serves is noralm's
        feature_report["weights"] = named_weights(feature, FEATURE_COLUMNS)
        report["ralm_weight"] = feature_report["weights"]["ralm_logit"]
    return {"ctr_feature": feature, "ctr_noralm": noralm}, report


def heldout_gain(without: np.ndarray | None, with_: np.ndarray | None, y: np.ndarray, time: np.ndarray, *,
                 validation_from: float) -> dict | None:
    """What the extra columns of one model buy on the rows from `validation_from` on: the
    logits there of the two models fitted on the rows before (`_fit`'s third value), as the
    mean per-row log loss without them minus with them (> 0: they help), with its standard
    error over rows. None without such logits or without clicks and skips in those rows."""
    from scipy.special import log_expit

    y = np.asarray(y, np.float64)[np.asarray(time) >= validation_from]
    if without is None or with_ is None or not 0 < y.mean() < 1:
        return None

    def loss(z: np.ndarray) -> np.ndarray:
        return -(y * log_expit(z) + (1 - y) * log_expit(-z))

    d = loss(without) - loss(with_)
    return {"diff": float(d.mean()), "se": float(d.std(ddof=1) / np.sqrt(len(d))), "rows": int(len(d))}


def auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC (recsys.metrics.auc) to 4 places, None when one class is missing."""
    found = metrics.auc(y, score)
    return None if found is None else round(found, 4)


def fit_ctr(x: np.ndarray, y: np.ndarray, time: np.ndarray, *, validation_from: float,
            seed: int = 0) -> tuple[CtrModel | None, dict]:
    """Fit on the rows before `validation_from`, report AUC on the rest, then refit on all.
    None when the rows lack clicks or skips."""
    model, report, _ = _fit(x, y, time, validation_from=validation_from, seed=seed)
    return model, report


def _fit(x: np.ndarray, y: np.ndarray, time: np.ndarray, *, validation_from: float,
         seed: int = 0) -> tuple[CtrModel | None, dict, np.ndarray | None]:
    """`fit_ctr`, and the logits of its early model on the rows from `validation_from` on
    (None where it reports no validation AUC)."""
    y = np.asarray(y, np.float64)
    if len(y) == 0 or y.min() == y.max():
        return None, {"rows": int(len(y)), "error": "no clicks and skips to learn from"}, None
    early = np.asarray(time) < validation_from
    report: dict = {"rows": int(len(y)), "clicks": int(y.sum()), "val_auc": None}
    late_logits = None
    if early.any() and (~early).any() and 0 < y[early].mean() < 1:
        late_logits = CtrModel(random_state=seed).fit(x[early], y[early]).decision_function(x[~early])
        report["val_auc"] = auc(y[~early], late_logits)
    return CtrModel(random_state=seed).fit(x, y), report, late_logits
