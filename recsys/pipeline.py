"""The one training pipeline: both RALM stages, the cold-start model with its calibration, and
the CTR models, as `manage.py train` (webapp.lookalike.training), the replay evaluation
(recsys.evaluate) and the benchmarks train them.

PipelineConfig holds every training default. Each step is a function of the config and of
arrays; a caller that trains differently passes its overrides and says why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from recsys import ranker
from recsys.calibration import PlattCalibrator
from recsys.coldstart import ColdStartModel
from recsys.ctr import (
    FEATURE_COLUMNS,
    FEATURES,
    NORALM_COLUMNS,
    fit_ctr,
    fit_learned,
    impression_features,
    named_weights,
)
from recsys.hybrid import (
    Calibration,
    NotEnoughData,
    calibrate,
    fit_coldstart,
    fit_replay_ctr,
    fit_replay_learned,
    impression_parts,
)
from recsys.interactions import Interactions
from recsys.lookalike import LookalikeConfig
from recsys.serving import LookalikeScorer
from recsys.stage1 import Stage1Params, Stage1Result, fit_tower, reader_vectors
from recsys.stage2 import SNAPSHOT_SHARES, Snapshot, Stage2Params, Stage2Result, fit_lookalike, snapshots_for

Progress = Callable[[str, dict], None]  # (stage, that epoch's history entry)


@dataclass(frozen=True)
class PipelineConfig:
    dim: int = 64  # size of E_u and of the look-alike space (h)
    k: int = 20  # seed clusters per item, at most
    seed_cap: int = 200  # latest seeds per item in stage 2's snapshots, the calibration and the replay
    seed_threshold: int = 20  # seeds at which a story turns warm (the hybrid's switch)
    min_history: int = 1  # clicks before the calibration slice a reader needs to be replayed in it
    snapshot_shares: tuple[float, ...] = SNAPSHOT_SHARES  # stage 2's cut times, as shares of the train clicks
    # Cut at interpolated quantiles of the click times, or at the time of the click at that share.
    interpolated_cuts: bool = False
    negatives: int = 4  # stage 2's negatives per click: sampled, or kept of the unclicked impressions
    stage1_epochs: int = 30  # a fixed cap; the best validation epoch is kept
    stage1_lr: float = 3e-3
    stage1_batch_size: int = 256
    stage2_epochs: int = 4
    stage2_lr: float = 1e-3
    stage2_scalar_lr: float = 1e-2  # temperature, bias, alpha, beta, tau learn faster
    stage2_batch_size: int = 256
    learned_slice: int = 100_000  # logged impressions the learned-weight arms are fitted on, at most
    seed: int = 0

    def __post_init__(self) -> None:
        assert self.dim >= 2 and self.k >= 1 and self.seed_cap >= 1
        assert self.stage1_epochs >= 1 and self.stage2_epochs >= 1

    def stage1_params(self) -> Stage1Params:
        return Stage1Params(epochs=self.stage1_epochs, lr=self.stage1_lr, batch_size=self.stage1_batch_size,
                            seed=self.seed)

    def stage2_params(self, *, validation_from: float) -> Stage2Params:
        return Stage2Params(epochs=self.stage2_epochs, lr=self.stage2_lr, scalar_lr=self.stage2_scalar_lr,
                            batch_size=self.stage2_batch_size, negatives=self.negatives, seed_cap=self.seed_cap,
                            validation_from=validation_from, seed=self.seed)


def time_cut(times: np.ndarray, share: float) -> float:
    """The time before which `share` of the events fall (ties stay on one side); `times` sorted."""
    return float(times[min(int(share * len(times)), len(times) - 1)])


def snapshot_cuts(times: np.ndarray, config: PipelineConfig) -> list[float]:
    """Stage 2's cut times through the train clicks' times `times` (sorted, (N,))."""
    if config.interpolated_cuts:
        return [float(np.quantile(times, q)) for q in config.snapshot_shares]
    return [time_cut(times, q) for q in config.snapshot_shares]


@dataclass
class RalmFit:
    """Both RALM stages trained on the clicks before `train_before`."""

    stage1: Stage1Result
    e_u: np.ndarray  # (R, dim) reader vectors from the clicks before train_before
    cuts: list[float]  # stage 2's cut times; the last one starts the calibration slice
    snapshots: list[Snapshot]
    stage2: dict[str, Stage2Result]  # by attention mode
    scorers: dict[str, LookalikeScorer]  # by attention mode
    train_before: float

    @property
    def samples(self) -> int:
        return int(sum(len(s.samples.label) for s in self.snapshots))

    def vectors_before(self, before: float) -> np.ndarray:
        """(R, dim) reader vectors from the clicks before `before`."""
        return reader_vectors(self.stage1, before=before)


def ralm_train(inter: Interactions, *, train_before: float, config: PipelineConfig,
               modes: tuple[str, ...] = ("attention",), progress: Progress | None = None,
               log: Callable[[str], None] = lambda m: None) -> RalmFit:
    """Stage 1 (the user tower), then stage 2 (the look-alike model) in each attention mode
    from snapshots through the training period. Progress stages: `stage1`, `stage2` for the
    attention model and `stage2_<mode>` for another mode. Raises NotEnoughData when no item
    had seeds before a window with clicks."""
    train = inter.click_time < train_before
    log(f"stage 1: user tower on {int(train.sum()):,} train clicks")
    s1 = fit_tower(inter, train_before=train_before, tower={"dim": config.dim}, params=config.stage1_params(),
                   progress=progress)
    e_u = reader_vectors(s1, before=train_before)
    # Stage 2 learns from snapshots through the training period: seeds and vectors as of a
    # cut, labels from the window after it.
    cuts = snapshot_cuts(inter.click_time[train], config)
    snaps = snapshots_for(inter, vectors=lambda c: reader_vectors(s1, before=c), cuts=cuts, until=train_before,
                          seed_cap=config.seed_cap, negatives=config.negatives,
                          rng=np.random.default_rng(config.seed))
    n_samples = sum(len(x.samples.label) for x in snaps)
    if n_samples == 0:
        raise NotEnoughData("no item had seeds before a window with clicks")
    log(f"stage 2: {len(snaps)} snapshots, {n_samples:,} samples "
        f"({int(sum(x.samples.label.sum() for x in snaps)):,} clicks)")
    fits = {}
    for mode in modes:
        stage = "stage2" if mode == "attention" else f"stage2_{mode}"
        fits[mode] = fit_lookalike(snaps, config=LookalikeConfig(dim=config.dim, k=config.k, mode=mode),
                                   params=config.stage2_params(validation_from=cuts[-1]),
                                   progress=(lambda _s, e, stage=stage: progress(stage, e)) if progress else None)
    return RalmFit(s1, e_u, cuts, snaps, fits, {m: LookalikeScorer.from_model(f.model) for m, f in fits.items()},
                   train_before)


def coldstart_train(inter: Interactions, item_vectors: np.ndarray, fit: RalmFit,
                    config: PipelineConfig) -> tuple[ColdStartModel, int]:
    """The cold-start model on the windows before the last cut (recsys.hybrid.fit_coldstart);
    `item_vectors` (I, 384). Returns the model and its number of samples."""
    return fit_coldstart(inter, item_vectors, fit.cuts, seed=config.seed)


def calibration_fit(inter: Interactions, fit: RalmFit, *, cold_model: ColdStartModel, item_vectors: np.ndarray,
                    config: PipelineConfig) -> Calibration:
    """The hybrid's two maps, from the last window replayed with every model frozen as of its
    start (recsys.hybrid.calibrate). Raises CalibrationError or NotEnoughData."""
    return calibrate(inter, cal_from=fit.cuts[-1], until=fit.train_before, cold_model=cold_model,
                     item_vectors=item_vectors, ralm=fit.scorers["attention"], e_u=fit.vectors_before(fit.cuts[-1]),
                     seed_cap=config.seed_cap, threshold=config.seed_threshold, min_history=config.min_history,
                     seed=config.seed)


def calibration_maps(lin: np.ndarray, ral: np.ndarray, label: np.ndarray,
                     warm: np.ndarray) -> tuple[PlattCalibrator, PlattCalibrator]:
    """The cold map on the cold rows' linear logits, the warm map on the warm rows' (RALM
    logit, linear logit); every argument (N,), `warm` boolean."""
    return (PlattCalibrator().fit(lin[~warm], label[~warm]),
            PlattCalibrator().fit(np.stack([ral[warm], lin[warm]], 1), label[warm]))


@dataclass
class ImpressionLog:
    """Logged impressions as item and reader indices of an Interactions; each (N,)."""

    reader: np.ndarray
    item: np.ndarray
    position: np.ndarray
    time: np.ndarray
    clicked: np.ndarray


def logged_ctr_train(inter: Interactions, log: ImpressionLog | None, fit: RalmFit, *, cold_model: ColdStartModel,
                     item_vectors: np.ndarray, config: PipelineConfig) -> tuple[dict, dict]:
    """The CTR model on every logged impression (features as of the impression), and the
    learned-weight arms' models (`feature` and its ablation `noralm`, recsys.ctr.fit_learned)
    on the last window's impressions, whose RALM and cold-start logits come from models
    frozen as of the window's start. Returns the models by name and the report."""
    models: dict = {"ctr": None, "ctr_feature": None, "ctr_noralm": None}
    if log is None:
        return models, {"error": "no impressions logged"}
    cut = fit.cuts[-1]
    x, prior = impression_features(reader=log.reader, item=log.item, time=log.time, position=log.position,
                                   clicked=log.clicked, item_category=inter.item_category,
                                   item_published=inter.item_published, n_categories=len(inter.categories),
                                   clicks=(inter.click_reader, inter.click_item, inter.click_time))
    models["ctr"], report = fit_ctr(x, log.clicked, log.time, validation_from=cut, seed=config.seed)
    report = {"prior": prior, "ctr": report, "ctr_feature": None, "ctr_noralm": None, "ralm_weight": None,
              "columns": {"ctr_feature": list(FEATURE_COLUMNS), "ctr_noralm": list(NORALM_COLUMNS)}}
    late = np.flatnonzero(log.time >= cut)
    if models["ctr"] is not None and len(late):
        late = late[np.random.default_rng(config.seed).permutation(len(late))[:config.learned_slice]]
        late = late[np.argsort(log.time[late], kind="stable")]
        ral, lin = impression_parts(inter, cal_from=cut, cold_model=cold_model, item_vectors=item_vectors,
                                    ralm=fit.scorers["attention"], e_u=fit.vectors_before(cut),
                                    seed_cap=config.seed_cap, threshold=config.seed_threshold,
                                    reader=log.reader[late], item=log.item[late], time=log.time[late])
        learned, learned_report = fit_learned(x[late], ral, lin, log.clicked[late], log.time[late],
                                              validation_from=float(np.median(log.time[late])), seed=config.seed)
        models |= learned
        report |= learned_report
    return models, report


def impression_log(inter: Interactions, *, before: float = np.inf) -> ImpressionLog | None:
    """The logged impressions of `inter` before `before` (None without any)."""
    rows = np.flatnonzero(inter.imp_time < before)
    if not len(rows):
        return None
    return ImpressionLog(reader=inter.imp_reader[rows].astype(np.int64), item=inter.imp_item[rows].astype(np.int64),
                         position=inter.imp_position[rows], time=inter.imp_time[rows],
                         clicked=inter.imp_clicked[rows].astype(bool))


def logged_ranker_train(inter: Interactions, log: ImpressionLog, fit: RalmFit, cal: Calibration, *,
                        cold_model: ColdStartModel, item_vectors: np.ndarray,
                        config: PipelineConfig) -> tuple[ranker.Models | None, dict]:
    """The ranker's models as the feed trains and loads them: the CTR models on the logged
    impressions (`logged_ctr_train`) with the cold-start model and both maps
    (recsys.ranker.models_from). None when the log cannot fit the CTR model; without the
    learned-weight models those arms serve by their fallback. Returns the report too, with
    the CTR model's weights by name (recsys.ctr.named_weights)."""
    models, report = logged_ctr_train(inter, log, fit, cold_model=cold_model, item_vectors=item_vectors,
                                      config=config)
    if models["ctr"] is not None:
        report["ctr"]["weights"] = named_weights(models["ctr"], FEATURES)
    return ranker.models_from(cold_model, models, cold_map=cal.cold, warm_map=cal.warm), report


def replay_ranker_train(inter: Interactions, cal: Calibration, *, cold_model: ColdStartModel, cold, ralm,
                        config: PipelineConfig, log: Callable[[str], None] = lambda m: None) -> ranker.Models | None:
    """The replay's ranker models: the CTR model and the learned-weight arms' models on the
    calibration slice's groups (recsys.hybrid.fit_replay_ctr, fit_replay_learned), with the
    cold-start model and both maps. None when the slice cannot fit the CTR model; without the
    learned-weight models those arms serve by their fallback. `cold`, `ralm`: the replay's
    scorers of the two logits."""
    try:
        ctr = fit_replay_ctr(inter, cal, seed=config.seed)
    except NotEnoughData as exc:
        log(f"no ranker: {exc}")
        return None
    try:
        learned = fit_replay_learned(inter, cal, cold=cold, ralm=ralm, seed=config.seed)
    except NotEnoughData as exc:
        log(f"no learned-weight models: {exc}")
        learned = {}
    return ranker.Models(coldstart=cold_model.linear(), ctr=ctr.linear(), cold_map=cal.cold, warm_map=cal.warm,
                         **learned)
