"""The feed ranker: one pure function from a reader, their candidates and the look-alike
scores to a page. The feed (webapp.feed.ranking gathers the inputs) and the replay
evaluation's `ranker` scorer (recsys.scorers.Ranker) both call `rank`, so the evaluated
ranker is the served one.

Per candidate it computes
- the cold-start model's logit from the reader's text profile and category affinity and
  the item's text vector and freshness (recsys.coldstart.reader_logits);
- the similarity, a calibrated P(click): the cold-start logit through the cold map, or,
  for a warm candidate (one RALM scored), (RALM logit, cold-start logit) through the warm
  map (`similarity`). The maps are fitted on replay groups (a click against sampled skips),
  so the similarity sits on a lower scale than the CTR;
- the CTR model's P(click) at the top of the page;
- for a learned-weight arm (`feature`, `noralm`), its model's P(click) at the top of the
  page: the CTR features with RALM's logit, whether RALM scored the story and the cold-start
  logit as separate terms (`learned_ctr`; `noralm` reads the cold-start logit only);
then ranks by what the arm says (recsys.arms), discounts stories the reader was shown
recently, and fills the page best first with at most `per_group` stories of one
subcategory. A blend with a budget checks the page against the CTR-only page and halves
its w until the page keeps (1 - budget) of the clicks the CTR model expects (`within_budget`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from scipy.special import expit

from recsys.arms import ARMS, Arm
from recsys.calibration import PlattCalibrator
from recsys.coldstart import reader_logits
from recsys.ctr import FEATURES, learned_rows

P = TypeVar("P")
EXPOSURE = FEATURES.index("exposure")  # the CTR features' log1p(impressions) column
UNEXPLORED_IMPRESSIONS = 500.0  # a cold story with fewer impressions gets an arm's exploration slots


@dataclass(frozen=True)
class Reader:
    """What the models know of the reader now."""

    profile: np.ndarray  # (d,) text profile: unit length, or zero without clicks
    affinity: np.ndarray  # (C,) category affinity (recsys.profiles)
    has_clicks: bool  # a reader without clicks keeps a blend's full w (see `_rank`)


@dataclass(frozen=True)
class Candidates:
    """The stories that may go on the page, as parallel arrays of length N."""

    ids: np.ndarray  # (N,) item ids; equal scores go to the larger id (the newer story)
    category: np.ndarray  # (N,) index into Reader.affinity
    group: np.ndarray  # (N,) subcategory code: at most arm.per_group of one on a page
    vectors: np.ndarray  # (N, d) text vectors (zero rows where an item has none yet)
    age_hours: np.ndarray  # (N,) hours since publication, NaN if unknown
    seen: np.ndarray  # (N,) times shown to the reader recently
    ctr_features: np.ndarray  # (N, F) the CTR model's input rows, at position 0

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Scores:
    """What the look-alike model said of the candidates."""

    ralm_logit: np.ndarray  # (N,) RALM's logit for the warm candidates, NaN for the others


@dataclass(frozen=True)
class Models:
    """The trained models the ranker reads, as linear maps (coef, intercept) where they are
    linear: one matrix-vector product per request instead of scikit-learn's checks."""

    coldstart: tuple[np.ndarray, float]  # ColdStartModel.linear()
    ctr: tuple[np.ndarray, float]  # CtrModel.linear() over Candidates.ctr_features
    cold_map: PlattCalibrator | None = None  # cold-start logit -> P(click); None: not calibrated
    warm_map: PlattCalibrator | None = None  # (RALM logit, cold-start logit) -> P(click)
    position_slope: float = 0.0  # the CTR model's weight on log1p(position) (0: it has no position term)
    ctr_feature: tuple[np.ndarray, float] | None = None  # the `feature` arm's model over recsys.ctr.FEATURE_COLUMNS
    ctr_noralm: tuple[np.ndarray, float] | None = None  # the `noralm` arm's model over recsys.ctr.NORALM_COLUMNS

    def learned(self, arm: Arm) -> tuple[np.ndarray, float] | None:
        """The learned-weight model a feature-kind arm ranks with (None: not fitted)."""
        return self.ctr_feature if arm.ralm else self.ctr_noralm

    @property
    def calibrated(self) -> bool:
        return self.cold_map is not None and self.warm_map is not None


def models_from(coldstart, ctr: dict, *, cold_map: PlattCalibrator | None,
                warm_map: PlattCalibrator | None) -> Models | None:
    """The ranker's Models of the trained ones, as the feed serves them: `coldstart` a
    fitted ColdStartModel, `ctr` the CTR models by name as recsys.pipeline.logged_ctr_train
    returns them ("ctr" over FEATURES; "ctr_feature", "ctr_noralm" each None or missing where
    not fitted, so that arm falls back). None without a CTR model."""
    if ctr.get("ctr") is None:
        return None
    coef, intercept = ctr["ctr"].linear()
    learned = {k: ctr[k].linear() if ctr.get(k) is not None else None for k in ("ctr_feature", "ctr_noralm")}
    return Models(coldstart=coldstart.linear(), ctr=(coef, intercept), cold_map=cold_map, warm_map=warm_map,
                  position_slope=float(coef[FEATURES.index("position")]), **learned)


@dataclass
class Ranking:
    """A ranked page: `page` holds candidate indices, best first; the arrays hold every
    candidate (length N)."""

    arm: str  # the arm asked for
    served_by: str  # the arm that ranked: `arm`, or its fallback
    page: np.ndarray  # (P,)
    final: np.ndarray  # (N,) what the page is sorted by (repeat discount in); -inf: dropped by a gate
    ctr: np.ndarray  # (N,)
    similarity: np.ndarray  # (N,)
    coldstart_logit: np.ndarray  # (N,)
    ralm_logit: np.ndarray  # (N,) NaN for the candidates RALM did not score
    seen: np.ndarray  # (N,)
    calibrated: bool
    weight: float | None = None  # a blend's w as the arm asks it
    weight_used: float | None = None  # the w the budget left the page
    learned_ctr: np.ndarray | None = None  # (N,) a learned-weight arm's P(click) (`learned_ctr`)

    def parts(self, k: int) -> dict[str, float | bool | str | None]:
        """What ranked candidate k, as the feed logs it with the impression."""
        out = {"ctr": round(float(self.ctr[k]), 6), "similarity": round(float(self.similarity[k]), 6),
               "coldstart_logit": round(float(self.coldstart_logit[k]), 4), "warm": bool(~np.isnan(self.ralm_logit[k])),
               "ralm_logit": None if np.isnan(self.ralm_logit[k]) else round(float(self.ralm_logit[k]), 4),
               "seen": int(self.seen[k]), "calibrated": self.calibrated}
        if self.weight is not None:
            out |= {"weight": self.weight, "weight_used": self.weight_used}
        if self.learned_ctr is not None:
            out["learned_ctr"] = round(float(self.learned_ctr[k]), 6)
        if self.served_by != self.arm:
            out["served_by"] = self.served_by
        return out


def similarity(coldstart_logit: np.ndarray, ralm_logit: np.ndarray, *, cold_map: PlattCalibrator | None,
               warm_map: PlattCalibrator | None) -> np.ndarray:
    """The calibrated P(click) of each candidate (arrays (N,)): the cold map on the
    cold-start logit, and the warm map on (RALM logit, cold-start logit) where RALM scored
    (not NaN). Without maps (a history too thin to fit them) the cold-start model's own
    probability stands for every candidate."""
    lin = np.asarray(coldstart_logit, np.float64)
    if cold_map is None or warm_map is None or not len(lin):
        return expit(lin)
    out = cold_map.predict(lin)
    warm = ~np.isnan(ralm_logit)
    if warm.any():
        out[warm] = warm_map.predict(np.stack([np.asarray(ralm_logit, np.float64)[warm], lin[warm]], 1))
    return out


def rank(reader: Reader, candidates: Candidates, scores: Scores, *, arm: Arm, models: Models,
         limit: int) -> Ranking:
    """The page of at most `limit` stories the arm makes of the candidates. Checks the
    inputs' shapes; `_rank` does the work."""
    n = len(candidates)
    d = len(reader.profile)
    if limit < 1:
        raise ValueError("limit must be at least 1")
    for name in ("ids", "category", "group", "age_hours", "seen"):
        if np.shape(getattr(candidates, name)) != (n,):
            raise ValueError(f"candidates.{name} must have shape ({n},)")
    if np.shape(candidates.vectors) != (n, d) or np.ndim(candidates.ctr_features) != 2 \
            or len(candidates.ctr_features) != n:
        raise ValueError(f"candidates.vectors must be ({n}, {d}) and ctr_features ({n}, F)")
    if np.shape(scores.ralm_logit) != (n,):
        raise ValueError(f"scores.ralm_logit must have shape ({n},)")
    if n and candidates.category.max() >= len(reader.affinity):
        raise ValueError("a candidate's category is outside the reader's affinity")
    return _rank(reader, candidates, scores, arm, models, limit)


def _rank(reader: Reader, cand: Candidates, scores: Scores, arm: Arm, models: Models, limit: int) -> Ranking:
    lin = reader_logits(*models.coldstart, profile=reader.profile, affinity=reader.affinity[cand.category],
                        item_vectors=cand.vectors, age_hours=cand.age_hours)
    sim = similarity(lin, scores.ralm_logit, cold_map=models.cold_map, warm_map=models.warm_map)
    ctr_logit = cand.ctr_features.astype(np.float64) @ models.ctr[0] + models.ctr[1]
    ctr = expit(ctr_logit)
    served = arm
    if arm.kind == "feature" and models.learned(arm) is None:
        served = ARMS[arm.fallback]
    learned = None
    if served.kind == "feature":
        learned = learned_ctr(models.learned(served), cand.ctr_features, scores.ralm_logit, lin, ralm=served.ralm)
    repeat = served.repeat_discount ** np.asarray(cand.seen, np.float64)

    # Exploration goes to cold stories that have not yet had the exposure a story needs to find
    # its seeds; a cold story shown that often already had its chance.
    cold = None
    if served.explore:
        impressions = np.expm1(np.asarray(cand.ctr_features[:, EXPOSURE], np.float64))
        cold = np.isnan(np.asarray(scores.ralm_logit, np.float64)) & (impressions < UNEXPLORED_IMPRESSIONS)

    def page_for(weight: float) -> tuple[np.ndarray, np.ndarray]:
        """(final scores, the page) with blend weight `weight`."""
        final = final_scores(served, ctr=ctr, similarity=sim, learned_ctr=learned, limit=limit,
                             weight=weight) * repeat
        page = diversified_top(final, cand.group, limit=limit, per_group=served.per_group, tie_break=cand.ids)
        return final, page if cold is None else explored(page, final, cold, slots=min(served.explore, limit))

    weight = used = None
    if served.kind == "blend":
        weight = served.weight
        # A reader without clicks keeps the full w: the CTR model knows nothing of them but
        # their picked topics, so its expected clicks are the population's, and the budget
        # would take back the one personal signal they gave (the similarity of their topics).
        if served.budget > 0 and weight > 0 and reader.has_clicks:
            used, (final, page) = within_budget(
                page_for, lambda p: expected_page_clicks(ctr_logit, p[1], position_slope=models.position_slope,
                                                         factor=repeat),
                weight=weight, budget=served.budget, steps=served.budget_steps)
        else:
            used, (final, page) = weight, page_for(weight)
    else:
        final, page = page_for(0.0)
    return Ranking(arm=arm.name, served_by=served.name, page=page, final=final, ctr=ctr, similarity=sim,
                   coldstart_logit=lin, ralm_logit=np.asarray(scores.ralm_logit, np.float64),
                   seen=np.asarray(cand.seen), calibrated=models.calibrated, weight=weight, weight_used=used,
                   learned_ctr=learned)


def learned_ctr(model: tuple[np.ndarray, float], ctr_features: np.ndarray, ralm_logit: np.ndarray,
                coldstart_logit: np.ndarray, *, ralm: bool = True) -> np.ndarray:
    """A learned-weight arm's P(click) (N,): its linear map (coef, intercept) on the CTR
    features (N, F) with the similarity's parts (recsys.ctr.learned_rows): RALM's logit
    (NaN where RALM did not score the candidate) and the cold-start logit; `ralm` false: the
    cold-start logit only (the `noralm` arm)."""
    w, b = model
    return expit(learned_rows(ctr_features, ralm_logit, coldstart_logit, ralm=ralm).astype(np.float64) @ w + b)


def final_scores(arm: Arm, *, ctr: np.ndarray, similarity: np.ndarray, learned_ctr: np.ndarray | None = None,
                 limit: int = 10, weight: float | None = None) -> np.ndarray:
    """The score each candidate is ranked by under the arm (before the repeat discount);
    -inf for those a gate drops. `weight`: the blend's w, if not the arm's own."""
    ctr = np.asarray(ctr, np.float64)
    sim = np.asarray(similarity, np.float64)
    if arm.kind == "blend":
        w = arm.weight if weight is None else weight
        return (1.0 - w) * ctr + w * sim
    if arm.kind == "feature":
        if learned_ctr is None:
            raise ValueError("a feature arm needs its learned-weight model's P(click)")
        return np.asarray(learned_ctr, np.float64).copy()
    passed = sim >= arm.threshold  # gate
    if passed.sum() < limit:  # too few pass: the most similar of the rest fill the recall set
        rest = np.flatnonzero(~passed)
        passed[rest[np.argsort(-sim[rest], kind="stable")[: limit - int(passed.sum())]]] = True
    return np.where(passed, ctr, -np.inf)


def explored(page: np.ndarray, final: np.ndarray, cold: np.ndarray, *, slots: int) -> np.ndarray:
    """The page with at least `slots` cold candidates where there are that many: the best
    cold ones off the page (by `final`) take the places of its lowest-scored warm ones, and
    the page is sorted by `final` again. A cold story reaches its first readers, and so its
    seeds, only through exposure; the slots buy that exposure at a bounded cost per page."""
    page = np.asarray(page, np.int64)
    missing = slots - int(cold[page].sum())
    if missing <= 0:
        return page
    on = np.zeros(len(final), bool)
    on[page] = True
    off = np.flatnonzero(cold & ~on & np.isfinite(final))
    add = off[np.argsort(-final[off], kind="stable")[:missing]]
    if not len(add):
        return page
    warm = page[~cold[page]]
    drop = set(warm[np.argsort(final[warm], kind="stable")[:len(add)]].tolist())
    kept = np.array([i for i in page.tolist() if i not in drop] + add.tolist(), np.int64)
    return kept[np.argsort(-final[kept], kind="stable")]


def weight_ladder(weight: float, steps: int) -> list[float]:
    """The blend weights `within_budget` tries, largest first: w, w/2, ..., w/2^steps, then 0."""
    return [weight / 2 ** k for k in range(steps + 1)] + [0.0]


def within_budget(page_for: Callable[[float], P], value: Callable[[P], float], *, weight: float, budget: float,
                  steps: int) -> tuple[float, P]:
    """The blend's page under a CTR budget: the largest w of `weight_ladder` whose page keeps
    value(page) >= (1 - budget) * value(the w = 0 page), with that page. `page_for(w)` ranks
    with blend weight w; `value` is what the CTR model expects of a page (its clicks). The
    blend trades some of the CTR model's expected clicks for similarity; the budget bounds
    that trade per request, so a similarity that stops paying is turned down for the readers
    where it costs and kept where it does not. budget = 0: the page at `weight`."""
    if budget <= 0.0 or weight <= 0.0:
        return weight, page_for(weight)
    reference = page_for(0.0)
    floor = (1.0 - budget) * value(reference)
    for w in weight_ladder(weight, steps)[:-1]:
        page = page_for(w)
        if value(page) >= floor:
            return w, page
    return 0.0, reference


def expected_page_clicks(logits: np.ndarray, page: np.ndarray, *, position_slope: float,
                         factor: np.ndarray | None = None) -> float:
    """The clicks a CTR model expects on a page: sigmoid(logit + slope * log1p(position)) per
    story (the model's position feature), times each story's `factor` (e.g. a repeat
    discount), summed. `page`: indices into `logits`, best first."""
    page = np.asarray(page, np.int64)
    p = expit(np.asarray(logits, np.float64)[page] + position_slope * np.log1p(np.arange(len(page))))
    return float(np.sum(p if factor is None else p * np.asarray(factor, np.float64)[page]))


def diversified_top(scores: np.ndarray, groups: np.ndarray, *, limit: int, per_group: int,
                    tie_break: np.ndarray | None = None) -> np.ndarray:
    """Indices of the best `limit` candidates, at most `per_group` from one group (e.g. one
    subcategory), best first. Ties go to the larger `tie_break` (e.g. the newer item id).
    When the cap leaves the page short, the best of the capped ones fill it."""
    scores = np.asarray(scores, np.float64)
    keys = (-scores,) if tie_break is None else (-np.asarray(tie_break), -scores)
    order = np.lexsort(keys)
    order = order[np.isfinite(scores[order])]
    chosen, spill, used = [], [], {}
    for i in order:
        g = groups[i]
        if used.get(g, 0) < per_group:
            used[g] = used.get(g, 0) + 1
            chosen.append(i)
            if len(chosen) == limit:
                break
        elif len(spill) < limit:
            spill.append(i)
    if len(chosen) < limit:
        chosen.extend(spill[: limit - len(chosen)])
        chosen.sort(key=lambda i: (-scores[i], -(tie_break[i] if tie_break is not None else 0)))
    return np.array(chosen, dtype=np.int64)
