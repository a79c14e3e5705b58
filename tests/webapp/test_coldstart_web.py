"""Text vectors for every item (demo load, import, admin via a real Celery worker), the
cold-start run of `manage.py train`, and the cold-to-warm promotion."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from django.core.management import call_command

from tests.conftest import DATA, wait_for
from tests.factories import ItemFactory
from webapp.lookalike.models import SeedSet
from webapp.lookalike.services import item_status_refresh
from webapp.news.models import Item, ItemStatus


@pytest.mark.django_db
def test_every_demo_and_imported_item_gets_a_unit_text_vector(demo_db):
    call_command("import_dataset", "--format", "mind", str(DATA / "mind_sample"), verbosity=0)
    assert not Item.objects.filter(text_vector__isnull=True).exists()
    for item in Item.objects.order_by("?")[:20]:
        v = item.text_array
        assert v.shape == (384,) and abs(float(np.linalg.norm(v)) - 1) < 1e-4
    a, b = Item.objects.get(external_id="sports-001"), Item.objects.get(external_id="sports-002")
    c = Item.objects.get(external_id="food-001")
    assert a.text_array @ b.text_array > a.text_array @ c.text_array


@pytest.mark.django_db
def test_embed_items_fills_what_is_missing():
    item = ItemFactory(title="Harbour ferry returns after storm repairs")
    assert item.text_vector is None
    call_command("embed_items", verbosity=0)
    item.refresh_from_db()
    assert item.text_array.shape == (384,)


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
    assert item.text_array.shape == (384,)


@pytest.mark.django_db
def test_items_turn_warm_at_the_threshold_and_do_not_flap(settings):
    """Seed counts as the refresh keeps them (distinct clickers with a vector)."""
    settings.SEED_THRESHOLD, settings.SEED_DEMOTE_BELOW = 3, 2
    item = ItemFactory()
    seeds = SeedSet.objects.create(item=item, count=2, dirty=False)
    expected = [(2, {"promoted": 0, "demoted": 0}, ItemStatus.COLD),
                (3, {"promoted": 1, "demoted": 0}, ItemStatus.WARM),
                (2, {"promoted": 0, "demoted": 0}, ItemStatus.WARM),  # hovering below: stays warm
                (3, {"promoted": 0, "demoted": 0}, ItemStatus.WARM),
                (1, {"promoted": 0, "demoted": 1}, ItemStatus.COLD)]  # far below: cold again
    for count, result, status in expected:
        SeedSet.objects.filter(pk=seeds.pk).update(count=count)
        assert item_status_refresh() == result
        item.refresh_from_db()
        assert item.status == status
