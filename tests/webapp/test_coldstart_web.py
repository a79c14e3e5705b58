"""Text vectors for every item (demo load, import, admin via a real Celery worker), the
cold-start run of `manage.py train`, and the cold-to-warm promotion."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from django.core.management import call_command

from tests.conftest import DATA, wait_for
from tests.factories import ClickFactory, ItemFactory, ReaderFactory
from webapp.lookalike.models import ModelRun, ReaderVector
from webapp.lookalike.services import item_status_refresh
from webapp.news.embedding import item_vector
from webapp.news.models import Item, ItemStatus


@pytest.mark.django_db
def test_every_demo_and_imported_item_gets_a_unit_text_vector(demo_db):
    call_command("import_dataset", "--format", "mind", str(DATA / "mind_sample"), verbosity=0)
    assert not Item.objects.filter(text_vector__isnull=True).exists()
    for item in Item.objects.order_by("?")[:20]:
        v = item_vector(item)
        assert v.shape == (384,) and abs(float(np.linalg.norm(v)) - 1) < 1e-4
    a, b = Item.objects.get(external_id="sports-001"), Item.objects.get(external_id="sports-002")
    c = Item.objects.get(external_id="food-001")
    assert item_vector(a) @ item_vector(b) > item_vector(a) @ item_vector(c)


@pytest.mark.django_db
def test_embed_items_fills_what_is_missing():
    item = ItemFactory(title="Harbour ferry returns after storm repairs")
    assert item.text_vector is None
    call_command("embed_items", verbosity=0)
    item.refresh_from_db()
    assert item_vector(item).shape == (384,)


def test_an_item_added_in_the_admin_gets_a_vector_from_the_worker(celery_env, spawn, admin_client):
    spawn([sys.executable, "-m", "celery", "-A", "workers", "worker", "--pool", "solo", "--without-mingle",
           "--without-gossip", "--loglevel", "INFO"], celery_env)
    resp = admin_client.post("/admin/news/item/add/", {
        "source": "demo", "external_id": "admin-001", "title": "Night trains return to the valley line",
        "abstract": "The regional operator restores two sleeper services next month.", "category": "travel",
        "subcategory": "rail", "url": "", "status": "cold", "popularity": "0", "created_at_0": "2026-11-28",
        "created_at_1": "10:00:00"})
    assert resp.status_code == 302, resp.content[:2000]
    item = Item.objects.get(external_id="admin-001")
    assert item.text_vector is None  # not computed in the request

    def embedded() -> bool:
        item.refresh_from_db()
        return item.text_vector is not None

    assert wait_for(embedded, timeout=90), "the worker never embedded the new item"
    assert item_vector(item).shape == (384,)


@pytest.mark.django_db
def test_items_turn_warm_at_the_threshold_and_do_not_flap(settings):
    from webapp.lookalike.models import ModelKind

    settings.SEED_THRESHOLD, settings.SEED_DEMOTE_BELOW = 3, 2
    run = ModelRun.objects.create(kind=ModelKind.USER_TOWER, version="t", is_active=True)
    item = ItemFactory()
    readers = ReaderFactory.create_batch(4)
    for r in readers:
        ReaderVector.objects.create(reader=r, model_run=run, dim=2, vector=b"\0" * 8)
    ClickFactory(item=item, reader=ReaderFactory())  # a reader with no vector is no seed
    for r in readers[:2]:
        ClickFactory(item=item, reader=r)
    assert item_status_refresh() == {"promoted": 0, "demoted": 0}
    ClickFactory(item=item, reader=readers[2])
    assert item_status_refresh() == {"promoted": 1, "demoted": 0}
    item.refresh_from_db()
    assert item.status == ItemStatus.WARM
    ReaderVector.objects.filter(reader=readers[2]).delete()  # hovering just under the threshold
    assert item_status_refresh() == {"promoted": 0, "demoted": 0}
    item.refresh_from_db()
    assert item.status == ItemStatus.WARM
    ReaderVector.objects.filter(reader__in=readers[:2]).delete()  # far below: cold again
    assert item_status_refresh() == {"promoted": 0, "demoted": 1}
