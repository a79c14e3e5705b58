"""The Redis serving store and the per-process copy the feed scores from."""

from __future__ import annotations

import numpy as np
from django.core.management import call_command

from recsys.artifacts import load_lookalike
from recsys.clustering import pad_states
from recsys.serving import LookalikeScorer
from webapp.common.connections import redis_client
from webapp.lookalike import store
from webapp.lookalike.models import LookalikeState, ModelKind, ModelRun, ReaderVector, SeedSet
from webapp.lookalike.refresh import states_refresh
from webapp.lookalike.serving import ServingCache, lookalike_scores
from webapp.news.models import Item, ItemStatus


def _run(kind: str) -> ModelRun:
    return ModelRun.objects.get(kind=kind, is_active=True)


def test_scores_from_redis_equal_scores_from_the_durable_copy(trained):
    from pathlib import Path

    look, tower = _run(ModelKind.LOOKALIKE), _run(ModelKind.USER_TOWER)
    warm = list(Item.objects.filter(status=ItemStatus.WARM, lookalike_states__model_run=look)
                .values_list("pk", flat=True))
    assert warm, "the trained demo should have warm items"
    reader = ReaderVector.objects.filter(model_run=tower).first()
    served = lookalike_scores(reader_id=reader.reader_id, item_ids=warm + [10**9])
    assert set(served) == set(warm)
    scorer = LookalikeScorer.from_model(load_lookalike(Path(look.artifact_path)))
    rows = [LookalikeState.objects.get(item_id=i, model_run=look) for i in warm]
    states = [(np.frombuffer(bytes(s.centroids), "<f4").reshape(s.k, s.dim), np.array(s.cluster_sizes, np.float32))
              for s in rows]
    cents, sizes, mask = pad_states(states, scorer.k, scorer.dim)
    e_global = np.stack([np.frombuffer(bytes(s.global_embedding), "<f4") for s in rows])
    expected = scorer.score(np.frombuffer(bytes(reader.vector), "<f4"), cents, sizes, mask, e_global)
    assert np.allclose([served[i] for i in warm], expected, atol=1e-5)


def test_the_process_copy_follows_the_version_key(trained):
    r = redis_client()
    cache = ServingCache()
    first = cache.sync(r)
    look = _run(ModelKind.LOOKALIKE)
    version = first.version
    assert first.run == look.pk and version == int(r.get(store.version_key(look.pk)))
    item = SeedSet.objects.exclude(count=0).first().item_id
    assert cache.sync(r).version == version  # nothing changed: nothing fetched
    SeedSet.objects.filter(item_id=item).update(state_dirty=True)
    r.hset(store.items_key(look.pk), str(item), b"\x00")  # a stale value the copy must not keep
    states_refresh()
    third = cache.sync(r)
    assert third.version == version + 1 and len(third.states[item][0].e_global) == 16


def test_a_new_run_switches_the_store_atomically_and_rebuild_restores_it(trained):
    r = redis_client()
    old = (_run(ModelKind.USER_TOWER).pk, _run(ModelKind.LOOKALIKE).pk)
    call_command("train", "--stage1-epochs", "2", "--stage2-epochs", "1", "--dim", "16", "--seed", "1",
                 verbosity=0)
    new = (_run(ModelKind.USER_TOWER).pk, _run(ModelKind.LOOKALIKE).pk)
    assert new != old
    assert (store.active_tower_get(r=r), store.active_lookalike_get(r=r)) == new
    assert ServingCache().sync(r).run == new[1]
    n_states = r.hlen(store.items_key(new[1]))
    assert n_states == LookalikeState.objects.filter(model_run_id=new[1]).count() > 0
    reader = ReaderVector.objects.filter(model_run_id=new[0]).first()
    before = store.reader_vector_get(reader_id=reader.reader_id, r=r)
    store.run_drop(run_id=new[0], r=r)  # Redis loses the serving copy...
    store.run_drop(run_id=new[1], r=r)
    assert store.reader_vector_get(reader_id=reader.reader_id, r=r) is None
    call_command("rebuild_serving_store", verbosity=0)  # ...and gets it back from Postgres
    assert np.array_equal(store.reader_vector_get(reader_id=reader.reader_id, r=r), before)
    assert r.hlen(store.items_key(new[1])) == n_states
