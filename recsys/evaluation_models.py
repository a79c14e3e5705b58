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
from recsys.ctr import ImpressionCounts
from recsys.hybrid import Calibration, NotEnoughData, profiles_at
from recsys.interactions import Interactions
from recsys.pipeline import (
    ImpressionLog,
    PipelineConfig,
    RalmFit,
    calibration_fit,
    coldstart_train,
    impression_log,
    logged_ranker_train,
    ralm_train,
    replay_ranker_train,
    time_cut,
)
from recsys.scorers import (
    AsOfReaders,
    ColdStart,
    Hybrid,
    ImpressionFeatures,
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
            self.bar = tqdm(total=epoch.get("of", self.config.stage1_epochs if first else self.config.stage2_epochs),
                            desc="stage 1" if first else f"stage 2 ({stage.partition('_')[2] or 'attention'})",
                            unit="epoch", leave=False, disable=self.quiet)
        self.bar.update(1)
        self.bar.set_postfix(val_auc=epoch["val_auc"])

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def build_models(inter: Interactions, config: PipelineConfig, *, train_share: float, arm: str, quiet: bool,
                 log: Callable[[str], None], train_before: float | None = None,
                 served_ctr: bool = False) -> tuple[Scorers, dict]:
    """Every scorer, trained on the first `train_share` of the clicks (or on the clicks
    before `train_before`, where given); and what the results report of the training
    (seconds, histories, calibration, the unseen readers' scorers). `served_ctr`: where the
    log has impressions before the cut, the ranker's models are fitted and fed as the feed's
    are (`_logged_ranker`) and the report says so under `ranker_models`; otherwise, and by
    default, as the replay fits them on the calibration slice's groups."""
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
    calibration, models, served = _hybrid_scorers(inter, fit, item_vectors, scorers, config, arm=arm, log=log,
                                                  seconds=seconds, served_ctr=served_ctr)
    t = time.perf_counter()
    unseen = _unseen_scorers(inter, fit, item_vectors, scorers, knn, config, calibration=calibration, models=models,
                             arm=arm, ctr_features=served.get("ctr_features"))
    if models is not None:
        seconds["ranker_ctr"] = round(seconds["ranker_ctr"] + time.perf_counter() - t, 1)
    out = {"seconds": seconds, "training": training, "train_before": cut, "unseen": unseen,
           "readers_with_vector": int(has_vector.sum()), "calibration": calibration}
    if "report" in served:
        out["ranker_models"] = served["report"]
    return scorers, out


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
                    config: PipelineConfig, *, arm: str, log: Callable[[str], None], seconds: dict,
                    served_ctr: bool = False) -> tuple[Calibration | dict, ranker.Models | None, dict]:
    """Adds `coldstart_linear`, and where the calibration and the CTR model fit, `hybrid`,
    `ranker_ctr` and `ranker`. Cold start: the linear model on text features, trained on the
    windows before the last cut; the last window [cuts[-1], cut) is replayed to calibrate
    both parts of the hybrid. Returns the calibration (or its error), the ranker's models and,
    where they were fitted on logged impressions (`served_ctr`), their `ctr_features` and
    `report` (`_logged_ranker`)."""
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
        return {"error": str(exc), "threshold": config.seed_threshold}, None, {}
    scorers["hybrid"] = Hybrid(cold, scorers["ralm"], cal.cold, cal.warm, config.seed_threshold)
    seconds["calibration"] = round(time.perf_counter() - t, 1)
    # The feed ranker: its CTR models from the logged impressions where the view asks for the
    # served fit and the log has them, else from the calibration slice's groups.
    t = time.perf_counter()
    impressions = impression_log(inter, before=fit.train_before) if served_ctr else None
    served: dict = {}
    if impressions is not None:
        models, served = _logged_ranker(inter, impressions, fit, cal, cold_model=cold_model, item_vectors=item_vectors,
                                        config=config, log=log)
    else:
        models = replay_ranker_train(inter, cal, cold_model=cold_model, cold=cold, ralm=scorers["ralm"],
                                     config=config, log=log)
    if models is not None:
        for name, a in _served(arm).items():
            scorers[name] = Ranker(a, models, inter, item_vectors, frozen_profiles(cold.profiles), scorers["ralm"],
                                   config.seed_threshold, ctr_features=served.get("ctr_features"))
        seconds["ranker_ctr"] = time.perf_counter() - t
    return cal, models, served  # run() adds how the maps hold on the test period


def _logged_ranker(inter: Interactions, impressions: ImpressionLog, fit: RalmFit, cal: Calibration, *,
                   cold_model, item_vectors: np.ndarray, config: PipelineConfig,
                   log: Callable[[str], None]) -> tuple[ranker.Models | None, dict]:
    """The ranker's models as the feed fits them (recsys.pipeline.logged_ranker_train) on the
    impressions logged before the cut, and how the feed computes their CTR rows: from the
    whole log strictly before each group's time (the test period's earlier impressions are
    in the feed's log by then), at position 0, with the fit's prior. Returns the models and
    {"report": the fit's report, "ctr_features": the rows' function} ({"report"} alone when
    the log cannot fit the CTR model)."""
    models, report = logged_ranker_train(inter, impressions, fit, cal, cold_model=cold_model,
                                         item_vectors=item_vectors, config=config)
    report = {"fitted_on": "logged impressions", "impressions": len(impressions.item), **report}
    if models is None:
        log(f"no ranker: the logged impressions fit no CTR model ({report['ctr'].get('error')})")
        return None, {"report": report}
    counts = ImpressionCounts(reader=inter.imp_reader, item=inter.imp_item, time=inter.imp_time,
                              clicked=inter.imp_clicked, item_category=inter.item_category,
                              item_published=inter.item_published, n_categories=len(inter.categories),
                              clicks=(inter.click_reader, inter.click_item, inter.click_time))
    _weights_log(report, log)
    return models, {"report": report, "ctr_features": ImpressionFeatures(counts, report["prior"])}


def _weights_log(report: dict, log: Callable[[str], None]) -> None:
    """The learned weights of the CTR model and of the `feature` arm's model, one line each."""
    for name in ("ctr", "ctr_feature", "ctr_noralm"):
        weights = (report.get(name) or {}).get("weights")
        if weights:
            log(f"{name} on {report[name]['rows']:,} logged impressions: "
                + ", ".join(f"{k} {v:+.3f}" for k, v in weights.items()))


def _served(arm: str) -> dict:
    return {"ranker_ctr": ARMS[REFERENCE], "ranker": ARMS[arm]}


def _unseen_scorers(inter: Interactions, fit: RalmFit, item_vectors: np.ndarray, scorers: Scorers, knn: ItemKNN,
                    config: PipelineConfig, *, calibration: Calibration | dict, models: ranker.Models | None,
                    arm: str, ctr_features: Callable | None = None) -> Scorers:
    """Readers with no train history, scored from their clicks before each group (no refit):
    E_u from the tower, the text profile, itemknn's rows. ALS factors would need a fold-in,
    so `als` and `als_seed_avg` have no unseen view. `ctr_features`: the rankers' CTR rows,
    as the seen readers' rankers get them (None: the click log's)."""
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
                                  config.seed_threshold, ctr_features=ctr_features)
    return unseen
