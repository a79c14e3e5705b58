"""`manage.py train` on the demo data: model runs, artifacts, and E_u for every demo reader in
Postgres and in Redis."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from recsys.artifacts import load_coldstart, load_ctr, load_lookalike, load_tower
from recsys.ctr import FEATURE_COLUMNS, NORALM_COLUMNS, named_weights
from webapp.common.connections import redis_client
from webapp.lookalike import store
from webapp.lookalike.models import ModelRun, ReaderVector
from webapp.news.models import Reader


def test_train_writes_runs_artifacts_and_every_readers_vector(trained, settings, tmp_path):
    """On the trained world's history: the new runs replace the fixture's."""
    settings.MODEL_DIR = tmp_path / "models"
    r = redis_client()
    call_command("train", "--stage1-epochs", "3", "--stage2-epochs", "1", "--dim", "16", verbosity=0)
    tower = ModelRun.objects.get(kind="user_tower", is_active=True)
    look = ModelRun.objects.get(kind="lookalike", is_active=True)
    assert tower.metrics["clicks"] > 50 and 0 < tower.metrics["val_auc"] <= 1 and look.metrics["samples"] > 0
    assert load_tower(tmp_path / "models" / tower.version / "tower").tower.config.dim == 16
    assert load_lookalike(tmp_path / "models" / look.version / "lookalike").config.dim == 16
    cold = ModelRun.objects.get(kind="coldstart", is_active=True)
    saved = load_coldstart(tmp_path / "models" / cold.version / "coldstart")
    assert cold.metrics["samples"] > 0 and saved["model"].n_features_in_ == 384 + 4
    assert saved["meta"]["threshold"] == cold.config["threshold"]
    # The learned-weight arms' models: each column's weight by name in the run's metrics, the
    # same as the artifact's models give; RALM's never negative.
    ctr = ModelRun.objects.get(kind="ctr", is_active=True)
    feature, noralm = ctr.metrics["ctr_feature"], ctr.metrics["ctr_noralm"]
    assert set(feature["weights"]) == {*FEATURE_COLUMNS, "intercept"}
    assert set(noralm["weights"]) == {*NORALM_COLUMNS, "intercept"}
    assert ctr.metrics["ralm_weight"] == feature["weights"]["ralm_logit"] >= 0
    assert feature["rows"] == noralm["rows"] > 0 and isinstance(feature["ralm_clamped"], bool)
    assert (feature["ralm_clamped"] or feature["ralm_dropped"]) == ("ralm_weight_fitted" in feature)
    assert feature["ralm_dropped"] == (feature["heldout_gain"] is None
                                       or feature["heldout_gain"]["diff"] <= 2 * feature["heldout_gain"]["se"])
    assert ctr.metrics["warm_rows"] > 0 and ctr.config["learned"] == ["ctr_feature", "ctr_noralm"]
    models = load_ctr(tmp_path / "models" / ctr.version / "ctr")
    assert named_weights(models["ctr_feature"]) == pytest.approx(feature["weights"])
    assert named_weights(models["ctr_noralm"], NORALM_COLUMNS) == pytest.approx(noralm["weights"])

    readers = set(Reader.objects.filter(source="demo").values_list("pk", flat=True))
    assert len(readers) >= 1000
    rows = {v.reader_id: np.frombuffer(bytes(v.vector), "<f4") for v in ReaderVector.objects.filter(model_run=tower)}
    assert set(rows) == readers
    assert store.active_tower_get(r=r) == tower.pk
    some = sorted(readers)[:25]
    for reader_id in some:
        served = store.reader_vector_get(reader_id=reader_id, r=r)
        assert served is not None and served.shape == (16,) and np.array_equal(served, rows[reader_id])
    assert r.hlen(f"ralm:run:{tower.pk}:eu") == len(readers)

    # A second training switches the serving pointer; one run per kind stays active.
    call_command("train", "--stage1-epochs", "2", "--stage2-epochs", "1", "--dim", "16", "--seed", "1", verbosity=0)
    assert ModelRun.objects.filter(is_active=True).count() == 4  # tower, look-alike, cold start, CTR
    new = ModelRun.objects.get(kind="user_tower", is_active=True)
    assert new.pk != tower.pk and store.active_tower_get(r=r) == new.pk
    r.delete(*r.keys(f"{store.PREFIX}:run:*"))


@pytest.mark.django_db
def test_train_without_history_is_a_clear_error(demo_db):
    with pytest.raises(CommandError, match="only 0 clicks"):
        call_command("train", verbosity=0)
    assert not ModelRun.objects.exists()


def test_train_rejects_bad_arguments():
    with pytest.raises(CommandError, match="--dim must be at least 2"):
        call_command("train", "--dim", "1")


def test_train_with_redis_down_keeps_the_vectors_in_postgres(trained, settings, tmp_path):
    from webapp.lookalike.training import model_train

    settings.MODEL_DIR = tmp_path / "models"
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    messages = []
    report = model_train(dim=8, stage1_epochs=1, stage2_epochs=1, log=messages.append)
    assert not report.redis_ok and any("Redis unreachable" in m for m in messages)
    assert ReaderVector.objects.filter(model_run=report.tower_run).count() == Reader.objects.filter(
        source="demo").count()


def test_the_training_log_read_by_binary_copy_is_the_orms(trained):
    """interactions_from_db reads clicks and impressions by binary COPY: the same rows, with
    each impression's position and click, as the ORM gives them."""
    from django.db import connection

    from webapp.common.bulk import copy_out_columns
    from webapp.lookalike.training import interactions_from_db
    from webapp.news.models import Click, Impression

    inter = interactions_from_db(source="demo")
    reader, item = np.array(inter.reader_keys, dtype=np.int64), np.array(inter.item_keys, dtype=np.int64)
    got = sorted(zip(reader[inter.click_reader].tolist(), item[inter.click_item].tolist(),
                     np.round(inter.click_time, 6).tolist(), strict=True))
    want = sorted((r, i, round(t.timestamp(), 6)) for r, i, t in Click.objects.filter(
        reader__source="demo").values_list("reader_id", "item_id", "clicked_at"))
    assert got == want and len(got) > 50 and np.all(np.diff(inter.click_time) >= 0)
    got = sorted(zip(reader[inter.imp_reader].tolist(), item[inter.imp_item].tolist(),
                     inter.imp_position.tolist(), inter.imp_clicked.tolist(), strict=True))
    want = sorted((r, i, p, c is not None) for r, i, p, c in Impression.objects.filter(
        reader__source="demo").values_list("reader_id", "item_id", "position", "click__id"))
    assert got == want and any(c for *_, c in got)
    pages = Impression.objects.filter(reader__source="demo").values("request_id").distinct().count()
    assert len(np.unique(inter.imp_request)) == pages
    with connection.cursor() as cur, pytest.raises(ValueError, match="NULL"):
        copy_out_columns(cur, "SELECT NULL::int8", {}, ["int8"])
