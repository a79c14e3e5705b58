"""The models the replay evaluation (recsys.evaluate) measures, trained through recsys.pipeline
on the clicks before the train cut, and the scorer of each by name."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from tqdm import tqdm

from recsys import ranker
from recsys.arms import ARMS, REFERENCE
from recsys.baselines import ItemKNN, fit_als, reader_item_matrix
from recsys.calibration import CalibrationError
from recsys.hybrid import Calibration, NotEnoughData, profiles_at
from recsys.interactions import Interactions
from recsys.pipeline import (
    PipelineConfig,
    RalmFit,
    calibration_fit,
    coldstart_train,
    ralm_train,
    replay_ranker_train,
    time_cut,
)
from recsys.scorers import (
    AsOfReaders,
    ColdStart,
    Hybrid,
    Lookalike,
    Ranker,
    SeedAverage,
    SeedTimeline,
    Unseen,
    dot_scorer,
    frozen_profiles,
    itemknn_scorer,
    popularity,
    query_dot_scorer,
    random_scorer,
)
from recsys.text import TextEncoder

Scorers = dict[str, Callable]


class TooLittleData(ValueError):
    pass


class _Bars:
    """One progress bar per training stage, each closed when the next one opens."""

    def __init__(self, config: PipelineConfig, quiet: bool) -> None:
        self.config, self.quiet = config, quiet
        self.stage, self.bar = None, None

    def tick(self, stage: str, epoch: dict) -> None:
        if stage != self.stage:
            self.close()
            first = stage == "stage1"
            self.stage = stage
            self.bar = tqdm(total=self.config.stage1_epochs if first else self.config.stage2_epochs,
                            desc="stage 1" if first else f"stage 2 ({stage.partition('_')[2] or 'attention'})",
                            unit="epoch", leave=False, disable=self.quiet)
        self.bar.update(1)
        self.bar.set_postfix(val_auc=epoch["val_auc"])

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def build_models(inter: Interactions, config: PipelineConfig, *, train_share: float, arm: str, quiet: bool,
                 log: Callable[[str], None], train_before: float | None = None) -> tuple[Scorers, dict]:
    """Every scorer, trained on the first `train_share` of the clicks (or on the clicks
    before `train_before`, where given); and what the results report of the training
    (seconds, histories, calibration, the unseen readers' scorers)."""
    seconds: dict[str, float] = {}
    cut = time_cut(inter.click_time, train_share) if train_before is None else float(train_before)
    train = inter.click_time < cut
    has_vector = np.bincount(inter.click_reader[train], minlength=inter.n_readers) >= 1

    t = time.perf_counter()
    matrix = reader_item_matrix(inter.click_reader[train], inter.click_item[train], (inter.n_readers, inter.n_items))
    als = fit_als(matrix, factors=config.dim, seed=config.seed)
    knn = ItemKNN(matrix)
    seconds["als_and_itemknn"] = round(time.perf_counter() - t, 1)

    bars = _Bars(config, quiet)
    try:
        fit = ralm_train(inter, train_before=cut, config=config, modes=("attention", "mean"), progress=bars.tick,
                         log=log)
    except NotEnoughData:
        raise TooLittleData("no returning reader clicked an item with seeds during training; nothing for stage 2"
                            ) from None
    finally:
        bars.close()
    seconds["stage1"] = round(fit.stage1.seconds, 1)
    seconds |= {f"stage2_{mode}": round(f.seconds, 1) for mode, f in fit.stage2.items()}

    timeline = SeedTimeline.build(inter.click_reader, inter.click_item, inter.click_time, has_vector, inter.n_items)
    scorers = _ralm_scorers(fit, timeline, als, knn, config)
    training = {"stage1": {"best_epoch": fit.stage1.best_epoch, "history": fit.stage1.history},
                "stage2": {m: {"best_epoch": f.best_epoch, "history": f.history} for m, f in fit.stage2.items()},
                "stage2_final": {m: {k: round(float(getattr(f.model, k).detach()), 4) for k in
                                     ("alpha", "beta", "temperature", "bias")} for m, f in fit.stage2.items()},
                "stage2_samples": fit.samples}

    t = time.perf_counter()
    item_vectors = TextEncoder().encode(inter.item_text, progress=not quiet)
    seconds["text_vectors"] = round(time.perf_counter() - t, 1)
    calibration, models = _hybrid_scorers(inter, fit, item_vectors, scorers, config, arm=arm, log=log,
                                          seconds=seconds)
    t = time.perf_counter()
    unseen = _unseen_scorers(inter, fit, item_vectors, scorers, knn, config, calibration=calibration, models=models,
                             arm=arm)
    if models is not None:
        seconds["ranker_ctr"] = round(seconds["ranker_ctr"] + time.perf_counter() - t, 1)
    return scorers, {"seconds": seconds, "training": training, "train_before": cut, "unseen": unseen,
                     "readers_with_vector": int(has_vector.sum()), "calibration": calibration}


def _ralm_scorers(fit: RalmFit, timeline: SeedTimeline, als: tuple[np.ndarray, np.ndarray], knn: ItemKNN,
                  config: PipelineConfig) -> Scorers:
    """The baselines and the look-alike scorers; `als` the reader and item factors."""
    e_u, cap, s1 = fit.e_u, config.seed_cap, fit.stage1
    ralm, avg = fit.scorers["attention"], fit.scorers["mean"]
    bias = s1.softmax.bias.weight.detach().numpy().ravel()
    return {
        "random": random_scorer(config.seed),
        "popularity": popularity,
        "itemknn": itemknn_scorer(knn),
        "mf": dot_scorer(e_u, s1.softmax.weight.weight.detach().numpy(), bias),
        "als": dot_scorer(*als),
        "als_seed_avg": SeedAverage(als[0], timeline, cap),
        # Diagnostic: our E_u in place of ALS factors, untrained seed average (E_u vs ALS).
        "eu_seed_avg": SeedAverage(e_u, timeline, cap),
        "ralm_avg": Lookalike(avg, e_u, timeline, cap),
        "ralm_noclust": Lookalike(ralm, e_u, timeline, cap, clustered=False),
        "ralm": Lookalike(ralm, e_u, timeline, cap),
    }


def _hybrid_scorers(inter: Interactions, fit: RalmFit, item_vectors: np.ndarray, scorers: Scorers,
                    config: PipelineConfig, *, arm: str, log: Callable[[str], None],
                    seconds: dict) -> tuple[Calibration | dict, ranker.Models | None]:
    """Adds `coldstart_linear`, and where the calibration and the CTR model fit, `hybrid`,
    `ranker_ctr` and `ranker`. Cold start: the linear model on text features, trained on the
    windows before the last cut; the last window [cuts[-1], cut) is replayed to calibrate
    both parts of the hybrid. Returns the calibration (or its error) and the ranker's models."""
    t = time.perf_counter()
    cold_model, n_cold = coldstart_train(inter, item_vectors, fit, config)
    seconds["coldstart"] = round(time.perf_counter() - t, 1)
    log(f"cold start: linear model on {n_cold:,} samples")
    cold = ColdStart(cold_model, profiles_at(inter, item_vectors, fit.train_before), item_vectors,
                     inter.item_category, inter.item_published)
    scorers["coldstart_linear"] = cold
    t = time.perf_counter()
    try:
        cal = calibration_fit(inter, fit, cold_model=cold_model, item_vectors=item_vectors, config=config)
    except (CalibrationError, NotEnoughData) as exc:  # no hybrid, said in the JSON and on stderr
        log(f"no hybrid: calibration slice: {exc}")
        seconds["calibration"] = round(time.perf_counter() - t, 1)
        return {"error": str(exc), "threshold": config.seed_threshold}, None
    scorers["hybrid"] = Hybrid(cold, scorers["ralm"], cal.cold, cal.warm, config.seed_threshold)
    seconds["calibration"] = round(time.perf_counter() - t, 1)
    # The feed ranker: a CTR model from the same slice, blended with the hybrid.
    t = time.perf_counter()
    models = replay_ranker_train(inter, cal, cold_model=cold_model, cold=cold, ralm=scorers["ralm"], config=config,
                                 log=log)
    if models is not None:
        for name, a in _served(arm).items():
            scorers[name] = Ranker(a, models, inter, item_vectors, frozen_profiles(cold.profiles), scorers["ralm"],
                                   config.seed_threshold)
        seconds["ranker_ctr"] = time.perf_counter() - t
    return cal, models  # run() adds how the maps hold on the test period


def _served(arm: str) -> dict:
    return {"ranker_ctr": ARMS[REFERENCE], "ranker": ARMS[arm]}


def _unseen_scorers(inter: Interactions, fit: RalmFit, item_vectors: np.ndarray, scorers: Scorers, knn: ItemKNN,
                    config: PipelineConfig, *, calibration: Calibration | dict, models: ranker.Models | None,
                    arm: str) -> Scorers:
    """Readers with no train history, scored from their clicks before each group (no refit):
    E_u from the tower, the text profile, itemknn's rows. ALS factors would need a fold-in,
    so `als` and `als_seed_avg` have no unseen view."""
    s1 = fit.stage1
    asof = AsOfReaders(inter, s1, item_vectors)
    bias = s1.softmax.bias.weight.detach().numpy().ravel()
    unseen = {"random": scorers["random"], "popularity": popularity, "itemknn": Unseen(knn, asof, "history"),
              "mf": Unseen(query_dot_scorer(s1.softmax.weight.weight.detach().numpy(), bias), asof, "vector"),
              "coldstart_linear": Unseen(scorers["coldstart_linear"], asof, "profile")}
    for name in ("eu_seed_avg", "ralm_avg", "ralm_noclust", "ralm"):
        unseen[name] = Unseen(scorers[name], asof, "vector")
    if "hybrid" in scorers:
        unseen["hybrid"] = Hybrid(unseen["coldstart_linear"], unseen["ralm"], calibration.cold, calibration.warm,
                                  config.seed_threshold)
    if models is not None:  # the same rankers with each group's reader as of its time
        for name, a in _served(arm).items():
            unseen[name] = Ranker(a, models, inter, item_vectors, asof.profiles, unseen["ralm"],
                                  config.seed_threshold)
    return unseen
