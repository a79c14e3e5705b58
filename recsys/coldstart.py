"""The cold-start model: a linear model on semantic features of a (reader, item) pair, for
items too new to have seeds.

Features: the item's text vector crossed (element-wise) with the reader's text profile (the
recency-weighted mean vector of what they clicked), their cosine, the reader's affinity to the
item's category, and the item's freshness.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, check_X_y

from recsys.profiles import Profiles, freshness


def pair_features(profiles: Profiles, readers: np.ndarray, item_vectors: np.ndarray, item_category: np.ndarray,
                  items: np.ndarray, age_hours: np.ndarray) -> np.ndarray:
    """(N,) reader and item indices and item ages (NaN: unknown) -> (N, d + 4) features:
    the crossed vectors, their cosine, the category affinity, log1p(age), age unknown."""
    p = profiles.vectors[readers]
    v = item_vectors[items]
    cos = (p * v).sum(1, keepdims=True)
    aff = profiles.category_affinity[readers, item_category[items]][:, None]
    unknown = np.isnan(age_hours)
    return np.hstack([p * v, cos, aff, freshness(age_hours)[:, None], unknown[:, None]]).astype(np.float32)


class ColdStartModel(ClassifierMixin, BaseEstimator):
    """Standardised features into a logistic regression (scikit-learn's estimator contract:
    hyperparameters in __init__, learned state ending in `_`)."""

    def __init__(self, C: float = 0.1, max_iter: int = 500, random_state: int | None = 0) -> None:
        self.C = C
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> ColdStartModel:
        X, y = check_X_y(X, y)
        self.scaler_ = StandardScaler().fit(X)
        self.model_ = LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.random_state)
        self.model_.fit(self.scaler_.transform(X), y)
        self.classes_ = self.model_.classes_
        self.n_features_in_ = X.shape[1]
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self.model_.decision_function(self.scaler_.transform(np.asarray(X, dtype=np.float32)))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self.model_.predict_proba(self.scaler_.transform(np.asarray(X, dtype=np.float32)))

    def linear(self) -> tuple[np.ndarray, float]:
        """The decision function as one weight vector and intercept on the raw features (the
        scaler folded in), for scoring many rows with one matrix-vector product."""
        check_is_fitted(self, "model_")
        coef = self.model_.coef_[0] / self.scaler_.scale_
        return coef, float(self.model_.intercept_[0] - (coef * self.scaler_.mean_).sum())

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[(self.decision_function(X) > 0).astype(int)]


def reader_logits(coef: np.ndarray, intercept: float, *, profile: np.ndarray, affinity: np.ndarray,
                  item_vectors: np.ndarray, age_hours: np.ndarray) -> np.ndarray:
    """ColdStartModel.decision_function of one reader against many items, without building
    the (N, d + 4) feature rows: with (coef, intercept) = model.linear(), profile (d,), the
    reader's affinity to each item's category (N,), item_vectors (N, d), ages (N,). Equal to
    decision_function(pair_features(...)) up to float rounding (a test holds them together)."""
    d = item_vectors.shape[1]
    u = profile.astype(np.float64) * (coef[:d] + coef[d])  # the crossed terms and the cosine
    unknown = np.isnan(age_hours)
    return (item_vectors @ u + coef[d + 1] * affinity + coef[d + 2] * freshness(age_hours) + coef[d + 3] * unknown
            + intercept)
