"""Training the cold-start model and calibrating the hybrid, shared by the replay evaluation
and `manage.py train`.

The training period is cut into windows (recsys.stage2.SNAPSHOT_SHARES). The cold-start model
learns from every window but the last; the last window is replayed with every model frozen as
of its start, and one Platt map per part of the hybrid is fitted on it: the linear model's
logit for cold items, (RALM logit, linear logit) for warm ones. The test period is never seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recsys import ranker
from recsys.calibration import PlattCalibrator
from recsys.coldstart import ColdStartModel, pair_features
from recsys.ctr import CtrModel, learned_rows, named_weights, widened
from recsys.interactions import Interactions, histories_before
from recsys.profiles import PROFILE_HISTORY, Profiles, reader_profiles
from recsys.replay import Groups, Timeline, replay_groups
from recsys.scorers import ColdStart, Hybrid, Lookalike, SeedTimeline, group_click_features
from recsys.serving import LookalikeScorer
from recsys.stage2 import seeds_before, training_samples


class NotEnoughData(ValueError):
    pass


def profiles_at(inter: Interactions, item_vectors: np.ndarray, before: float) -> Profiles:
    return reader_profiles(item_vectors=item_vectors, item_category=inter.item_category,
                           n_categories=len(inter.categories),
                           histories=histories_before(inter, before=before, cap=PROFILE_HISTORY))


def fit_coldstart(inter: Interactions, item_vectors: np.ndarray, cuts: list[float], *,
                  seed: int = 0) -> tuple[ColdStartModel, int]:
    """Train on the windows between consecutive cuts (the last window is left for
    calibration); a reader's profile is as of the window's start. Returns the model and the
    number of samples."""
    live_from = Timeline.build(inter, train_before=cuts[-1]).first_seen  # when an item can be a negative
    for returning_only in (True, False):
        # Returning readers (a click before the window) are the ones the model is for; on a
        # history too thin to give them both clicks and skips, every reader's pairs are used
        # (a first-time reader's text profile is empty, the item and freshness terms remain).
        xs, ys = _coldstart_samples(inter, item_vectors, cuts, live_from, returning_only, seed)
        y = np.concatenate(ys) if ys else np.zeros(0)
        if len(y) and y.min() != y.max():
            return ColdStartModel(random_state=seed).fit(np.vstack(xs), y), len(y)
    raise NotEnoughData("no reader clicked (and skipped) items during training")


def _coldstart_samples(inter: Interactions, item_vectors: np.ndarray, cuts: list[float], live_from: np.ndarray,
                       returning_only: bool, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    xs, ys = [], []
    rng = np.random.default_rng(seed)
    for start, end in zip(cuts[:-1], cuts[1:], strict=True):
        before = inter.click_time < start
        has = np.bincount(inter.click_reader[before], minlength=inter.n_readers) >= 1
        if not returning_only:
            has = np.ones(inter.n_readers, dtype=bool)
        seeds = np.array([len(s) for s in seeds_before(inter, before=start, has_vector=has, cap=10**9)])
        smp = training_samples(inter, seed_counts=seeds, seed_before=start, until=end, has_history=has,
                               negatives=4, rng=rng, first_seen=live_from)
        if not len(smp.label):
            continue
        xs.append(pair_features(profiles_at(inter, item_vectors, start), smp.reader, item_vectors,
                                inter.item_category, smp.item, (smp.time - inter.item_published[smp.item]) / 3600.0))
        ys.append(smp.label)
    return xs, ys


@dataclass
class Calibration:
    cold: PlattCalibrator
    warm: PlattCalibrator
    threshold: int
    report: dict
    groups: list[Groups] = field(default_factory=list)  # the slice's replay groups (overall, buckets)


def labelled(groups: list[Groups], parts) -> tuple[np.ndarray, ...]:
    lin, ral, label, warm = [], [], [], []
    for g in groups:
        g_lin, g_ral, g_warm = parts(g)
        v = g.valid
        lin.append(g_lin[v])
        ral.append(g_ral[v])
        label.append(np.broadcast_to(np.arange(g.items.shape[1]) == 0, g.items.shape)[v])
        warm.append(g_warm[v])
    return tuple(np.concatenate(a) for a in (lin, ral, label, warm))


def reliability(cal: Calibration, lin: np.ndarray, ral: np.ndarray, label: np.ndarray, warm: np.ndarray) -> dict:
    """Mean predicted P(click) against the observed share of clicks, per part."""
    def part(p: np.ndarray, m: np.ndarray) -> dict:
        return {"predicted": round(float(p.mean()), 4) if m.any() else None,
                "observed": round(float(label[m].mean()), 4) if m.any() else None, "candidates": int(m.sum())}
    return {"cold": part(cal.cold.predict(lin[~warm]), ~warm),
            "warm": part(cal.warm.predict(np.stack([ral[warm], lin[warm]], 1)), warm)}


def calibrate(inter: Interactions, *, cal_from: float, until: float, cold_model: ColdStartModel,
              item_vectors: np.ndarray, ralm: LookalikeScorer, e_u: np.ndarray, seed_cap: int, threshold: int,
              min_history: int = 1, seed: int = 0) -> Calibration:
    """Replay [cal_from, until) with the models frozen as of cal_from (`e_u`: reader vectors
    from clicks before it) and fit the two maps. Raises CalibrationError if a map would not
    increase with its scores, NotEnoughData if a part has no clicks."""
    tl = Timeline.build(inter, train_before=cal_from, min_history=min_history)
    groups = [replay_groups(tl, view=v, rng=np.random.default_rng(seed + 7), until=until)
              for v in ("overall", "buckets")]
    has_then = np.bincount(inter.click_reader[inter.click_time < cal_from], minlength=inter.n_readers) >= 1
    timeline = SeedTimeline.build(inter.click_reader, inter.click_item, inter.click_time, has_then, inter.n_items)
    cold = ColdStart(cold_model, profiles_at(inter, item_vectors, cal_from), item_vectors, inter.item_category,
                     inter.item_published)
    warm = Lookalike(ralm, e_u, timeline, seed_cap)
    if not sum(len(g) for g in groups):
        raise NotEnoughData("no returning reader clicked in the calibration slice")
    frozen = Hybrid(cold, warm, PlattCalibrator(), PlattCalibrator(), threshold)
    lin, ral, label, is_warm = labelled(groups, frozen.parts)
    for name, mask in (("cold", ~is_warm), ("warm", is_warm)):
        if label[mask].sum() == 0 or label[mask].sum() == mask.sum():
            raise NotEnoughData(f"the calibration slice has no {name} items with both clicks and skips")
    cold_cal = PlattCalibrator().fit(lin[~is_warm], label[~is_warm])
    warm_cal = PlattCalibrator().fit(np.stack([ral[is_warm], lin[is_warm]], 1), label[is_warm])
    cal = Calibration(cold_cal, warm_cal, threshold, {}, groups)
    cal.report = {
        "threshold": threshold,
        "cold_map": {"coef": cold_cal.coef_.round(4).tolist(), "intercept": round(cold_cal.intercept_, 4)},
        "warm_map": {"coef_ralm_lin": warm_cal.coef_.round(4).tolist(), "intercept": round(warm_cal.intercept_, 4)},
        "calibration_slice": reliability(cal, lin, ral, label, is_warm),
    }
    return cal


def fit_replay_ctr(inter: Interactions, cal: Calibration, *, seed: int = 0) -> CtrModel:
    """The replay's CTR model (recsys.scorers.Ranker) on the calibration slice's groups:
    each group's clicked item against its sampled negatives, features as of the group."""
    x = np.vstack([group_click_features(inter, g) for g in cal.groups])
    y = np.concatenate([np.broadcast_to(np.arange(g.items.shape[1]) == 0, g.items.shape)[g.valid]
                        for g in cal.groups]).astype(np.float64)
    if len(y) == 0 or y.min() == y.max():
        raise NotEnoughData("the calibration slice has no clicks and skips for the CTR model")
    return CtrModel(random_state=seed).fit(x, y)


REPLAY_CTR_COLUMNS = ("affinity", "popularity", "freshness")  # recsys.ctr.click_log_features


def fit_replay_learned(inter: Interactions, cal: Calibration, *, cold: ColdStart, ralm, seed: int = 0
                       ) -> dict[str, tuple[np.ndarray, float]]:
    """The learned-weight arms' models (recsys.ranker.Models.ctr_feature, .ctr_noralm) for the
    replay's `ranker`, on the calibration slice's groups as `fit_replay_ctr` fits the CTR
    model: each group's clicked item against its sampled negatives, the click log's features
    as of the group with the similarity's parts (recsys.ctr.learned_rows), RALM's logit where
    the story had `cal.threshold` seeds then and the cold-start logit. A log of clicks has no
    impressions, so the skips a feed would log are the sampled negatives the replay scores
    against. As served, RALM's weight is never negative: such a fit gives way to the model
    without RALM's terms. `cold`, `ralm`: the replay's scorers of the two logits (G, C)."""
    xs, ral, lin, ys = [], [], [], []
    for g in cal.groups:
        v = g.valid
        xs.append(group_click_features(inter, g))
        ral.append(np.where(g.seeds >= cal.threshold, ralm(g), np.nan)[v])
        lin.append(cold(g)[v])
        ys.append(np.broadcast_to(np.arange(g.items.shape[1]) == 0, g.items.shape)[v])
    if not xs:
        raise NotEnoughData("the calibration slice has no groups for the learned-weight models")
    x, r, c, y = (np.concatenate(a) for a in (xs, ral, lin, ys))
    y = y.astype(np.float64)
    if y.min() == y.max():
        raise NotEnoughData("the calibration slice has no clicks and skips for the learned-weight models")
    without, with_ = (*REPLAY_CTR_COLUMNS, "coldstart_logit"), (*REPLAY_CTR_COLUMNS, "ralm_logit", "warm",
                                                                "coldstart_logit")
    noralm = CtrModel(random_state=seed).fit(learned_rows(x, r, c, ralm=False), y)
    feature = CtrModel(random_state=seed).fit(learned_rows(x, r, c), y)
    if named_weights(feature, with_)["ralm_logit"] < 0:
        feature = widened(noralm, without, with_)
    return {"ctr_feature": feature.linear(), "ctr_noralm": noralm.linear()}


def impression_parts(inter: Interactions, *, cal_from: float, cold_model: ColdStartModel, item_vectors: np.ndarray,
                     ralm: LookalikeScorer, e_u: np.ndarray, seed_cap: int, threshold: int, reader: np.ndarray,
                     item: np.ndarray, time: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The similarity's raw parts for logged (reader, item, time) impressions after cal_from,
    with every model frozen as of cal_from: (RALM's logit, NaN where the story had fewer than
    `threshold` seeds then; the cold-start logit), each (N,). The inputs of the learned-weight
    ranker arms (recsys.ctr.fit_learned). The impressions of one reader at one time (a page)
    are scored as one group."""
    reader, item = np.asarray(reader, np.int64), np.asarray(item, np.int64)
    time = np.asarray(time, np.float64)
    n = len(item)
    if not n:
        return np.zeros(0), np.zeros(0)
    has_then = np.bincount(inter.click_reader[inter.click_time < cal_from], minlength=inter.n_readers) >= 1
    timeline = SeedTimeline.build(inter.click_reader, inter.click_item, inter.click_time, has_then, inter.n_items)
    cold = ColdStart(cold_model, profiles_at(inter, item_vectors, cal_from), item_vectors, inter.item_category,
                     inter.item_published)
    look = Lookalike(ralm, e_u, timeline, seed_cap)
    seeds = np.array([timeline.count(int(i), float(w)) for i, w in zip(item, time, strict=True)], np.int64)
    groups, at = _pages(reader, time, item, seeds)
    lin = cold(groups)[at]
    ral = np.full(n, np.nan)
    warm = np.flatnonzero(seeds >= threshold)
    if len(warm):  # RALM scores the warm stories only, as it does when it serves
        if ralm.mode == "attention":
            # Every (story, seed count) state the rows need, clustered in batches as the
            # serving refresh clusters them (one k-means per state would cost far more).
            keys = sorted(set(zip(item[warm].tolist(), seeds[warm].tolist(), strict=True)))
            states = ralm.item_states([timeline.seeds(i, count, seed_cap) for i, count in keys],
                                      matrix=ralm.transform(np.asarray(e_u, np.float64)).astype(np.float32))
            look._cache.update(zip(keys, states, strict=True))
        groups, at = _pages(reader[warm], time[warm], item[warm], seeds[warm])
        ral[warm] = look(groups)[at]
    return ral, lin


def _pages(reader: np.ndarray, time: np.ndarray, item: np.ndarray, seeds: np.ndarray
           ) -> tuple[Groups, tuple[np.ndarray, np.ndarray]]:
    """Rows (N,) as replay groups, one per (reader, time) (a page), its items packed from
    column 0 and padded with -1; and each row's (group, column)."""
    n = len(item)
    order = np.lexsort((time, reader))
    r, t = reader[order], time[order]
    starts = np.flatnonzero(np.r_[True, (r[1:] != r[:-1]) | (t[1:] != t[:-1])])
    page = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, n]))
    slot = np.arange(n) - starts[page]
    items = np.full((len(starts), int(slot.max()) + 1), -1, np.int64)
    counts = np.zeros(items.shape, np.int64)
    items[page, slot], counts[page, slot] = item[order], seeds[order]
    groups = Groups(view="impressions", reader=r[starts], time=t[starts], items=items, seeds=counts,
                    pop=np.zeros(items.shape), bucket=np.zeros(len(starts), np.int64))
    g, c = np.empty(n, np.int64), np.empty(n, np.int64)
    g[order], c[order] = page, slot
    return groups, (g, c)


def impression_similarity(inter: Interactions, cal: Calibration, *, cal_from: float, cold_model: ColdStartModel,
                          item_vectors: np.ndarray, ralm: LookalikeScorer, e_u: np.ndarray, seed_cap: int,
                          reader: np.ndarray, item: np.ndarray, time: np.ndarray) -> np.ndarray:
    """The calibrated hybrid's P(click) of logged (reader, item, time) pairs after cal_from,
    with every model frozen as of cal_from: `impression_parts` through the calibration maps."""
    ral, lin = impression_parts(inter, cal_from=cal_from, cold_model=cold_model, item_vectors=item_vectors, ralm=ralm,
                                e_u=e_u, seed_cap=seed_cap, threshold=cal.threshold, reader=reader, item=item,
                                time=time)
    return ranker.similarity(lin, ral, cold_map=cal.cold, warm_map=cal.warm)
