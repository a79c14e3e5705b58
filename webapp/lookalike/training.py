"""Training from the Postgres logs: rows become recsys Interactions, recsys trains both RALM
stages, and the results become ModelRun rows, artifact folders and reader vectors (Postgres
for durability, Redis for serving)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import redis
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from recsys.artifacts import save_coldstart, save_ctr, save_lookalike, save_tower
from recsys.calibration import CalibrationError
from recsys.coldstart import ColdStartModel
from recsys.ctr import FEATURES
from recsys.hybrid import Calibration, NotEnoughData
from recsys.interactions import Interactions, build_interactions, clicks_set, impressions_set
from recsys.online import OnlineTower
from recsys.pipeline import (
    PipelineConfig,
    RalmFit,
    calibration_fit,
    coldstart_train,
    impression_log,
    logged_ctr_train,
    ralm_train,
)
from recsys.text import DIM
from webapp.common.bulk import copy_out_columns
from webapp.lookalike import store
from webapp.lookalike.models import ModelKind, ModelRun, ReaderVector
from webapp.lookalike.online import web_readers_embed
from webapp.lookalike.refresh import serving_switch
from webapp.lookalike.services import item_status_refresh
from webapp.news.embedding import items_embed
from webapp.news.models import Click, Impression, Item, Reader, Source


class TrainingError(RuntimeError):
    """Not enough data to train, or nothing to train on."""


@dataclass
class TrainReport:
    tower_run: ModelRun
    lookalike_run: ModelRun
    coldstart_run: ModelRun
    readers: int
    clicks: int
    seconds: dict[str, float] = field(default_factory=dict)
    redis_ok: bool = True


def interactions_from_db(*, source: str) -> Interactions:
    """The reader source's log as Interactions; keys are database ids as strings. Clicks and
    impressions come by binary COPY (millions of rows at MIND's size) and find their reader
    and item indices by id."""
    catalog = Source.DEMO if source == Source.WEB else source
    items = list(Item.objects.filter(source=catalog).order_by("pk").values_list(
        "pk", "category", "subcategory", "title", "abstract", "published_at"))
    readers = list(Reader.objects.filter(source=source).order_by("pk").values_list(
        "pk", "region", "age_band", "device"))
    profiles = {f: [r[n] for r in readers] for n, f in enumerate(("region", "age_band", "device"), start=1)}
    if all(len(set(v)) <= 1 for v in profiles.values()):
        profiles = {}  # imported logs carry no profile
    inter = build_interactions(
        reader_keys=[str(r[0]) for r in readers], item_keys=[str(i[0]) for i in items],
        item_category=[i[1] for i in items], item_subcategory=[i[2] for i in items],
        item_text=[f"{i[3]}. {i[4]}" for i in items], profiles=profiles,
        item_published=[i[5].timestamp() if i[5] else None for i in items], clicks=[])
    reader_ids = np.array([r[0] for r in readers], np.int64)
    item_ids = np.array([i[0] for i in items], np.int64)
    tables = {m.__name__.lower(): m._meta.db_table for m in (Click, Impression, Item, Reader)}
    scope = (f"JOIN {tables['reader']} r ON r.id = e.reader_id AND r.source = %(source)s "
             f"JOIN {tables['item']} i ON i.id = e.item_id AND i.source = %(catalog)s")
    params = {"source": source, "catalog": catalog}
    with connection.cursor() as cur:
        reader, item, at = copy_out_columns(
            cur, f"SELECT e.reader_id, e.item_id, e.clicked_at FROM {tables['click']} e {scope}",  # noqa: S608
            params, ["int8", "int8", "timestamptz"])
        clicks_set(inter, reader=np.searchsorted(reader_ids, reader), item=np.searchsorted(item_ids, item), time=at)
        # A request's code is its rank among the log's request ids (any dense numbering serves).
        clicked_sql = f"EXISTS (SELECT 1 FROM {tables['click']} c WHERE c.impression_id = e.id)"  # noqa: S608
        request, reader, item, at, clicked, position = copy_out_columns(
            cur, f"SELECT dense_rank() OVER (ORDER BY e.request_id)::int8, e.reader_id, e.item_id, e.shown_at, "  # noqa: S608
                 f"{clicked_sql}, e.position::int4 FROM {tables['impression']} e {scope}",
            params, ["int8", "int8", "int8", "timestamptz", "bool", "int4"])
    if len(request):
        impressions_set(inter, request=request - 1, reader=np.searchsorted(reader_ids, reader),
                        item=np.searchsorted(item_ids, item), time=at, clicked=clicked, position=position)
    return inter


def _item_vectors(inter: Interactions) -> np.ndarray:
    """Text vectors (I, 384) in the order of inter.item_keys; zero rows where still missing."""
    out = np.zeros((inter.n_items, DIM), dtype=np.float32)
    index = {int(k): n for n, k in enumerate(inter.item_keys)}
    for pk, raw in Item.objects.filter(pk__in=index, text_vector__isnull=False).values_list("pk", "text_vector"):
        out[index[pk]] = Item.vector_from(raw)
    return out


def web_config(**overrides) -> PipelineConfig:
    """The pipeline's config of the served models, with `overrides` (PipelineConfig fields)."""
    # Stage 1 stops at 20 epochs to keep `make demo` and the nightly retrain short (the best
    # epoch is kept either way). The seed cap and threshold are serving's, so training sees
    # the seed sets the feed serves from. The snapshot cuts are interpolated quantiles.
    return replace(PipelineConfig(stage1_epochs=20, seed_cap=settings.SEED_CAP, seed_threshold=settings.SEED_THRESHOLD,
                                  interpolated_cuts=True), **overrides)


@dataclass
class _Trained:
    """What one training produced, before it is saved."""

    fit: RalmFit
    cold_model: ColdStartModel
    n_cold: int
    calibration: Calibration | None
    calibration_report: dict
    ctr_models: dict
    ctr_report: dict


def _models_train(inter: Interactions, config: PipelineConfig, *, progress: Callable[[str, dict], None] | None,
                  log: Callable[[str], None], seconds: dict[str, float]) -> _Trained:
    """Both RALM stages on every click, then the cold-start model, the maps that put it and
    RALM on one P(click) scale, and the CTR models; each step's seconds go to `seconds`."""
    try:
        fit = ralm_train(inter, train_before=float(inter.click_time[-1]) + 1.0, config=config, progress=progress)
    except NotEnoughData:
        raise TrainingError("no item had seeds before a window with clicks: too little history to train stage 2"
                            ) from None
    seconds["stage1"] = round(fit.stage1.seconds, 1)
    seconds["stage2"] = round(fit.stage2["attention"].seconds, 1)
    t = time.perf_counter()
    items_embed(progress=False)  # anything that slipped through the embedding task
    item_vectors = _item_vectors(inter)
    try:
        cold_model, n_cold = coldstart_train(inter, item_vectors, fit, config)
    except NotEnoughData as exc:
        raise TrainingError(f"cold-start model: {exc}") from None
    try:
        cal = calibration_fit(inter, fit, cold_model=cold_model, item_vectors=item_vectors, config=config)
        cal_report = cal.report
    except (CalibrationError, NotEnoughData) as exc:
        cal, cal_report = None, {"error": str(exc)}
        log(f"calibration failed ({exc}); the feed will rank cold and warm items apart")
    seconds["coldstart"] = round(time.perf_counter() - t, 1)
    # The CTR model of the ranker, and the learned-weight arms' models with RALM's and the
    # cold-start model's logits as inputs.
    t = time.perf_counter()
    ctr_models, ctr_report = logged_ctr_train(inter, impression_log(inter), fit, cold_model=cold_model,
                                              item_vectors=item_vectors, config=config)
    seconds["ctr"] = round(time.perf_counter() - t, 1)
    _learned_log(ctr_report, log)
    return _Trained(fit, cold_model, n_cold, cal, cal_report, ctr_models, ctr_report)


def _learned_log(ctr_report: dict, log: Callable[[str], None]) -> None:
    if "weights" not in (ctr_report.get("ctr_feature") or {}):  # the slice had no clicks to fit
        return
    f = ctr_report["ctr_feature"]
    w = f["weights"]
    why = " (set to 0: the fit gave it a negative one)" if f["ralm_clamped"] else \
        " (set to 0: no held-out gain)" if f.get("ralm_dropped") else ""
    log(f"feature arm's learned weights: RALM's logit {w['ralm_logit']:.3f}{why}, "
        f"warm {w['warm']:.3f}, cold-start logit {w['coldstart_logit']:.3f}")


def _version_free(source: str, now: datetime) -> str:
    """The run's version: the time, with -2, -3, ... for two runs within one second."""
    version = now.strftime("%Y%m%d-%H%M%S")
    taken = set(ModelRun.objects.filter(version__startswith=f"{source}-{version}").values_list("version", flat=True))
    for n in range(1, 1000):
        candidate = version if n == 1 else f"{version}-{n}"
        if f"{source}-{candidate}" not in taken and not (Path(settings.MODEL_DIR) / f"{source}-{candidate}").exists():
            return candidate
    return version


def _artifacts_save(folder: Path, m: _Trained, config: PipelineConfig) -> None:
    save_tower(folder / "tower", m.fit.stage1)
    save_lookalike(folder / "lookalike", m.fit.stage2["attention"].model)
    save_coldstart(folder / "coldstart", model=m.cold_model, calibration=m.calibration,
                   meta={"samples": m.n_cold, "threshold": config.seed_threshold,
                         "calibration": m.calibration_report})
    save_ctr(folder / "ctr", models=m.ctr_models, meta=m.ctr_report)


def _runs_create(*, version: str, folder: Path, m: _Trained, config: PipelineConfig, seconds: dict[str, float],
                 n_clicks: int, n_readers: int) -> dict[str, ModelRun]:
    """One ModelRun per model, by kind."""
    s1, s2 = m.fit.stage1, m.fit.stage2["attention"]
    run = lambda kind, name, **kw: ModelRun.objects.create(  # noqa: E731
        kind=kind, version=version, artifact_path=str(folder / name), finished_at=timezone.now(), **kw)
    return {
        ModelKind.USER_TOWER: run(
            ModelKind.USER_TOWER, "tower", config=s1.tower.config.to_dict(),
            metrics={"best_epoch": s1.best_epoch, "val_auc": s1.history[s1.best_epoch - 1]["val_auc"],
                     "history": s1.history, "seconds": seconds["stage1"], "clicks": n_clicks, "readers": n_readers}),
        ModelKind.LOOKALIKE: run(
            ModelKind.LOOKALIKE, "lookalike", config=s2.model.config.to_dict(),
            metrics={"best_epoch": s2.best_epoch, "val_auc": s2.history[s2.best_epoch - 1]["val_auc"],
                     "history": s2.history, "seconds": seconds["stage2"], "samples": m.fit.samples}),
        ModelKind.COLDSTART: run(
            ModelKind.COLDSTART, "coldstart", config={"C": m.cold_model.C, "threshold": config.seed_threshold},
            metrics={"samples": m.n_cold, "seconds": seconds["coldstart"], "calibration": m.calibration_report}),
        ModelKind.CTR: run(
            ModelKind.CTR, "ctr", config={"features": list(FEATURES), "learned": [
                k for k in ("ctr_feature", "ctr_noralm") if m.ctr_models[k] is not None]},
            metrics={**m.ctr_report, "seconds": seconds["ctr"]}),
    }


def _serve(runs: dict[str, ModelRun], *, tower: OnlineTower, vectors: list[tuple[int, np.ndarray]], source: str,
           log: Callable[[str], None]) -> bool:
    """Redis under the new run's keys (nothing serves them yet), then the switch: seeds and
    item states under the new models, active flags, and both Redis pointers at once. True
    when Redis took every write."""
    tower_run, look_run = runs[ModelKind.USER_TOWER], runs[ModelKind.LOOKALIKE]
    try:
        store.reader_vectors_write(run_id=tower_run.pk, vectors=vectors)
        redis_ok = True
    except redis.RedisError as exc:
        log(f"Redis unreachable ({exc.__class__.__name__}): the vectors are in Postgres only")
        redis_ok = False
    # Readers of this catalog the tower did not train on (web readers) get their vectors
    # under the new run too, before it serves: they stay personal and remain seeds.
    web_readers_embed(run=tower_run, tower=tower, catalog=Source.DEMO if source == Source.WEB else source)
    switched = serving_switch(runs=list(runs.values()), tower=tower_run, lookalike=look_run)
    redis_ok = redis_ok and switched["redis"]
    if redis_ok:
        item_status_refresh()  # the new seed counts decide which items are warm
    return redis_ok


def model_train(*, source: str = Source.DEMO, progress: Callable[[str, dict], None] | None = None,
                log: Callable[[str], None] = lambda m: None, **overrides) -> TrainReport:
    """Train every model on the reader source's log (web_config with `overrides`: dim,
    stage1_epochs, stage2_epochs, seed, ...), record the runs and make them the serving ones."""
    config = web_config(**overrides)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    inter = interactions_from_db(source=source)
    seconds["load"] = round(time.perf_counter() - t, 1)
    n_clicks = len(inter.click_item)
    if n_clicks < 50 or inter.n_readers < 2:
        raise TrainingError(f"only {n_clicks} clicks by {inter.n_readers} readers of source {source!r}: "
                            "run the simulator (or import a dataset) first")
    log(f"loaded {inter.n_readers:,} readers, {inter.n_items:,} items, {n_clicks:,} clicks, "
        f"{len(inter.imp_item):,} impressions in {seconds['load']} s")
    now = timezone.now()
    version = f"{source}-{_version_free(source, now)}"
    folder = Path(settings.MODEL_DIR) / version
    m = _models_train(inter, config, progress=progress, log=log, seconds=seconds)

    t = time.perf_counter()
    _artifacts_save(folder, m, config)
    reader_ids = [int(k) for k in inter.reader_keys]
    with transaction.atomic():
        runs = _runs_create(version=version, folder=folder, m=m, config=config, seconds=seconds, n_clicks=n_clicks,
                            n_readers=inter.n_readers)
        ReaderVector.objects.bulk_create(
            [ReaderVector(reader_id=r, model_run=runs[ModelKind.USER_TOWER], dim=config.dim,
                          vector=v.astype("<f4").tobytes(), computed_at=now)
             for r, v in zip(reader_ids, m.fit.e_u, strict=True)], batch_size=2000)
    redis_ok = _serve(runs, tower=OnlineTower(m.fit.stage1), vectors=zip(reader_ids, m.fit.e_u, strict=True),
                      source=source, log=log)
    seconds["store"] = round(time.perf_counter() - t, 1)
    return TrainReport(runs[ModelKind.USER_TOWER], runs[ModelKind.LOOKALIKE], runs[ModelKind.COLDSTART],
                       len(reader_ids), n_clicks, seconds, redis_ok)
