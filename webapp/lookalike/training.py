"""Training from the Postgres logs: rows become recsys Interactions, recsys trains both RALM
stages, and the results become ModelRun rows, artifact folders and reader vectors (Postgres
for durability, Redis for serving)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from recsys.artifacts import save_coldstart, save_ctr, save_lookalike, save_tower
from recsys.calibration import CalibrationError
from recsys.ctr import FEATURE_COLUMNS, FEATURES, NORALM_COLUMNS, fit_ctr, fit_learned, impression_features
from recsys.hybrid import NotEnoughData, calibrate, fit_coldstart, impression_parts
from recsys.interactions import Interactions, build_interactions
from recsys.lookalike import LookalikeConfig
from recsys.online import OnlineTower
from recsys.serving import LookalikeScorer
from recsys.stage1 import Stage1Params, fit_tower, reader_vectors
from recsys.stage2 import SNAPSHOT_SHARES, Stage2Params, fit_lookalike, snapshots_for
from recsys.text import DIM
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
    """The reader source's log as Interactions; keys are database ids as strings."""
    catalog = Source.DEMO if source == Source.WEB else source
    items = list(Item.objects.filter(source=catalog).order_by("pk").values_list(
        "pk", "category", "subcategory", "title", "abstract", "published_at"))
    readers = list(Reader.objects.filter(source=source).order_by("pk").values_list(
        "pk", "region", "age_band", "device"))
    clicks = Click.objects.filter(reader__source=source, item__source=catalog).values_list(
        "reader_id", "item_id", "clicked_at")
    impressions = Impression.objects.filter(reader__source=source, item__source=catalog).values_list(
        "request_id", "reader_id", "item_id", "shown_at", "click__id")
    profiles = {f: [r[n] for r in readers] for n, f in enumerate(("region", "age_band", "device"), start=1)}
    if all(len(set(v)) <= 1 for v in profiles.values()):
        profiles = {}  # imported logs carry no profile
    return build_interactions(
        reader_keys=[str(r[0]) for r in readers], item_keys=[str(i[0]) for i in items],
        item_category=[i[1] for i in items], item_subcategory=[i[2] for i in items],
        item_text=[f"{i[3]}. {i[4]}" for i in items], profiles=profiles,
        item_published=[i[5].timestamp() if i[5] else None for i in items],
        clicks=[(str(r), str(i), t.timestamp()) for r, i, t in clicks.iterator(chunk_size=20_000)],
        impressions=[(q, str(r), str(i), t.timestamp(), c is not None)
                     for q, r, i, t, c in impressions.iterator(chunk_size=20_000)],
    )


def _item_vectors(inter: Interactions) -> np.ndarray:
    """Text vectors (I, 384) in the order of inter.item_keys; zero rows where still missing."""
    out = np.zeros((inter.n_items, DIM), dtype=np.float32)
    index = {int(k): n for n, k in enumerate(inter.item_keys)}
    for pk, raw in Item.objects.filter(pk__in=index, text_vector__isnull=False).values_list("pk", "text_vector"):
        out[index[pk]] = np.frombuffer(bytes(raw), dtype="<f4")
    return out


LEARNED_SLICE = 100_000  # logged impressions of the last window the learned-weight arms are fitted on, at most


def _fit_ctr_models(inter: Interactions, *, cuts: list[float], cold_model, item_vectors: np.ndarray,
                    ralm: LookalikeScorer, e_u: np.ndarray, seed: int) -> tuple[dict, dict]:
    """The CTR model on every logged impression (features as of the impression), and the
    learned-weight arms' models (`feature` and its ablation `noralm`, recsys.ctr.fit_learned)
    on the last window's impressions, whose RALM and cold-start logits come from models
    frozen as of the window's start."""
    reader_index = {int(k): n for n, k in enumerate(inter.reader_keys)}
    item_index = {int(k): n for n, k in enumerate(inter.item_keys)}
    rows = [(reader_index[r], item_index[i], p, t.timestamp(), c is not None)
            for r, i, p, t, c in Impression.objects.filter(reader_id__in=reader_index, item_id__in=item_index)
            .values_list("reader_id", "item_id", "position", "shown_at", "click__id").iterator(chunk_size=20_000)]
    models: dict = {"ctr": None, "ctr_feature": None, "ctr_noralm": None}
    if not rows:
        return models, {"error": "no impressions logged"}
    reader, item, position, when, clicked = (np.array(c) for c in zip(*rows, strict=True))
    x, prior = impression_features(reader=reader, item=item, time=when, position=position, clicked=clicked,
                                   item_category=inter.item_category, item_published=inter.item_published,
                                   n_categories=len(inter.categories))
    models["ctr"], report = fit_ctr(x, clicked, when, validation_from=cuts[-1], seed=seed)
    report = {"prior": prior, "ctr": report, "ctr_feature": None, "ctr_noralm": None, "ralm_weight": None,
              "columns": {"ctr_feature": list(FEATURE_COLUMNS), "ctr_noralm": list(NORALM_COLUMNS)}}
    late = np.flatnonzero(when >= cuts[-1])
    if models["ctr"] is not None and len(late):
        late = late[np.random.default_rng(seed).permutation(len(late))[:LEARNED_SLICE]]
        late = late[np.argsort(when[late], kind="stable")]
        ral, lin = impression_parts(inter, cal_from=cuts[-1], cold_model=cold_model, item_vectors=item_vectors,
                                    ralm=ralm, e_u=e_u, seed_cap=settings.SEED_CAP,
                                    threshold=settings.SEED_THRESHOLD, reader=reader[late], item=item[late],
                                    time=when[late])
        learned, learned_report = fit_learned(x[late], ral, lin, clicked[late], when[late],
                                              validation_from=float(np.median(when[late])), seed=seed)
        models |= learned
        report |= learned_report
    return models, report


def model_train(
    *, source: str = Source.DEMO, dim: int = 64, stage1_epochs: int = 20, stage2_epochs: int = 4, seed: int = 0,
    progress: Callable[[str, dict], None] | None = None, log: Callable[[str], None] = lambda m: None,
) -> TrainReport:
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
    version = now.strftime("%Y%m%d-%H%M%S")
    taken = set(ModelRun.objects.filter(version__startswith=f"{source}-{version}").values_list("version", flat=True))
    for n in range(1, 1000):  # two runs within one second get -2, -3, ...
        candidate = version if n == 1 else f"{version}-{n}"
        if f"{source}-{candidate}" not in taken and not (Path(settings.MODEL_DIR) / f"{source}-{candidate}").exists():
            version = candidate
            break
    folder = Path(settings.MODEL_DIR) / f"{source}-{version}"
    end = float(inter.click_time[-1]) + 1.0

    s1 = fit_tower(inter, train_before=end, tower={"dim": dim},
                   params=Stage1Params(epochs=stage1_epochs, seed=seed), progress=progress)
    seconds["stage1"] = round(s1.seconds, 1)
    e_u = reader_vectors(s1, before=end)
    cuts = [float(np.quantile(inter.click_time, q)) for q in SNAPSHOT_SHARES]
    snaps = snapshots_for(inter, vectors=lambda c: reader_vectors(s1, before=c), cuts=cuts, until=end,
                          seed_cap=settings.SEED_CAP, negatives=4, rng=np.random.default_rng(seed))
    if not snaps:
        raise TrainingError("no item had seeds before a window with clicks: too little history to train stage 2")
    s2 = fit_lookalike(snaps, config=LookalikeConfig(dim=dim),
                       params=Stage2Params(epochs=stage2_epochs, seed=seed, validation_from=cuts[-1]),
                       progress=progress)
    seconds["stage2"] = round(s2.seconds, 1)

    # The cold-start model, and the maps that put it and RALM on one P(click) scale.
    t = time.perf_counter()
    items_embed(progress=False)  # anything that slipped through the embedding task
    item_vectors = _item_vectors(inter)
    try:
        cold_model, n_cold = fit_coldstart(inter, item_vectors, cuts, seed=seed)
    except NotEnoughData as exc:
        raise TrainingError(f"cold-start model: {exc}") from None
    try:
        cal = calibrate(inter, cal_from=cuts[-1], until=end, cold_model=cold_model, item_vectors=item_vectors,
                        ralm=LookalikeScorer.from_model(s2.model), e_u=reader_vectors(s1, before=cuts[-1]),
                        seed_cap=settings.SEED_CAP, threshold=settings.SEED_THRESHOLD, seed=seed)
        cal_report = cal.report
    except (CalibrationError, NotEnoughData) as exc:
        cal, cal_report = None, {"error": str(exc)}
        log(f"calibration failed ({exc}); the feed will rank cold and warm items apart")
    seconds["coldstart"] = round(time.perf_counter() - t, 1)

    # The CTR model of the ranker, and the learned-weight arms' models with RALM's and the
    # cold-start model's logits as inputs.
    t = time.perf_counter()
    ctr_models, ctr_report = _fit_ctr_models(inter, cuts=cuts, cold_model=cold_model, item_vectors=item_vectors,
                                             ralm=LookalikeScorer.from_model(s2.model),
                                             e_u=reader_vectors(s1, before=cuts[-1]), seed=seed)
    seconds["ctr"] = round(time.perf_counter() - t, 1)
    if "weights" in (ctr_report.get("ctr_feature") or {}):  # not when the slice had no clicks to fit
        f = ctr_report["ctr_feature"]
        w = f["weights"]
        why = " (set to 0: the fit gave it a negative one)" if f["ralm_clamped"] else \
            " (set to 0: no held-out gain)" if f.get("ralm_dropped") else ""
        log(f"feature arm's learned weights: RALM's logit {w['ralm_logit']:.3f}{why}, "
            f"warm {w['warm']:.3f}, cold-start logit {w['coldstart_logit']:.3f}")

    t = time.perf_counter()
    save_tower(folder / "tower", s1)
    save_lookalike(folder / "lookalike", s2.model)
    save_coldstart(folder / "coldstart", model=cold_model, calibration=cal,
                   meta={"samples": n_cold, "threshold": settings.SEED_THRESHOLD, "calibration": cal_report})
    save_ctr(folder / "ctr", models=ctr_models, meta=ctr_report)
    with transaction.atomic():
        tower_run = ModelRun.objects.create(
            kind=ModelKind.USER_TOWER, version=f"{source}-{version}", artifact_path=str(folder / "tower"),
            config=s1.tower.config.to_dict(), finished_at=timezone.now(),
            metrics={"best_epoch": s1.best_epoch, "val_auc": s1.history[s1.best_epoch - 1]["val_auc"],
                     "history": s1.history, "seconds": seconds["stage1"], "clicks": n_clicks,
                     "readers": inter.n_readers})
        look_run = ModelRun.objects.create(
            kind=ModelKind.LOOKALIKE, version=f"{source}-{version}", artifact_path=str(folder / "lookalike"),
            config=s2.model.config.to_dict(), finished_at=timezone.now(),
            metrics={"best_epoch": s2.best_epoch, "val_auc": s2.history[s2.best_epoch - 1]["val_auc"],
                     "history": s2.history, "seconds": seconds["stage2"],
                     "samples": int(sum(len(s.samples.label) for s in snaps))})
        cold_run = ModelRun.objects.create(
            kind=ModelKind.COLDSTART, version=f"{source}-{version}", artifact_path=str(folder / "coldstart"),
            config={"C": cold_model.C, "threshold": settings.SEED_THRESHOLD}, finished_at=timezone.now(),
            metrics={"samples": n_cold, "seconds": seconds["coldstart"], "calibration": cal_report})
        ctr_run = ModelRun.objects.create(
            kind=ModelKind.CTR, version=f"{source}-{version}", artifact_path=str(folder / "ctr"),
            config={"features": list(FEATURES), "learned": [k for k in ("ctr_feature", "ctr_noralm")
                                                            if ctr_models[k] is not None]},
            finished_at=timezone.now(), metrics={**ctr_report, "seconds": seconds["ctr"]})
        reader_ids = [int(k) for k in inter.reader_keys]
        ReaderVector.objects.bulk_create(
            [ReaderVector(reader_id=r, model_run=tower_run, dim=dim, vector=v.astype("<f4").tobytes(), computed_at=now)
             for r, v in zip(reader_ids, e_u, strict=True)], batch_size=2000)
    # Redis under the new run's keys (nothing serves them yet), then the switch: seeds and
    # item states under the new models, active flags, and both Redis pointers at once.
    try:
        store.reader_vectors_write(run_id=tower_run.pk, vectors=zip(reader_ids, e_u, strict=True))
        redis_ok = True
    except redis.RedisError as exc:
        log(f"Redis unreachable ({exc.__class__.__name__}): the vectors are in Postgres only")
        redis_ok = False
    # Readers of this catalog the tower did not train on (web readers) get their vectors
    # under the new run too, before it serves: they stay personal and remain seeds.
    web_readers_embed(run=tower_run, tower=OnlineTower(s1), catalog=Source.DEMO if source == Source.WEB else source)
    switched = serving_switch(runs=[tower_run, look_run, cold_run, ctr_run], tower=tower_run, lookalike=look_run)
    redis_ok = redis_ok and switched["redis"]
    if redis_ok:
        item_status_refresh()  # the new seed counts decide which items are warm
    seconds["store"] = round(time.perf_counter() - t, 1)
    return TrainReport(tower_run, look_run, cold_run, len(reader_ids), n_clicks, seconds, redis_ok)
