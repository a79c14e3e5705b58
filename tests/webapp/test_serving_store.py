"""The Redis serving store and the per-process copy the feed scores from."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.management import call_command

from recsys.artifacts import load_lookalike
from recsys.clustering import pad_states
from recsys.serving import LookalikeScorer
from webapp.common.connections import redis_client
from webapp.lookalike import store
from webapp.lookalike.models import LookalikeState, ModelKind, ModelRun, ReaderVector, SeedSet
from webapp.lookalike.refresh import states_refresh
from webapp.lookalike.serving import reader_view
from webapp.lookalike.storecopy import ServingCache
from webapp.news.models import Item, ItemStatus


def lookalike_scores(*, reader_id: int, item_ids: list[int]) -> dict[int, float]:
    """The reader's RALM logits for the warm items among `item_ids`, as the feed reads them."""
    return reader_view(reader_id=reader_id).scores(np.asarray(item_ids, np.int64)).as_dict()


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
    # Redis loses the serving copy...
    r.delete(store.vectors_key(new[0]), *(key(new[1]) for key in (store.items_key, store.changed_key,
                                                                    store.version_key)))
    assert store.reader_vector_get(reader_id=reader.reader_id, r=r) is None
    call_command("rebuild_serving_store", verbosity=0)  # ...and gets it back from Postgres
    assert np.array_equal(store.reader_vector_get(reader_id=reader.reader_id, r=r), before)
    assert r.hlen(store.items_key(new[1])) == n_states


def _warm_ids(look: ModelRun) -> list[int]:
    return list(Item.objects.filter(status=ItemStatus.WARM, lookalike_states__model_run=look)
                .values_list("pk", flat=True))


def test_a_store_above_the_recall_threshold_is_indexed_not_copied_and_scores_the_same(trained, settings,
                                                                                      monkeypatch):
    from webapp.lookalike import serving, storecopy

    look, tower = _run(ModelKind.LOOKALIKE), _run(ModelKind.USER_TOWER)
    warm = _warm_ids(look)
    readers = list(ReaderVector.objects.filter(model_run=tower).values_list("reader_id", flat=True)[:5])
    copied = {r: lookalike_scores(reader_id=r, item_ids=warm) for r in readers}
    assert serving.cache.sync(redis_client()).index is None  # the demo's store is copied whole
    serving.cache.clear()
    settings.FEED_RECALL_ABOVE = 10
    monkeypatch.setattr(storecopy, "STATE_CACHE_ITEMS", 7)
    for reader in readers:  # (a request asks for at most what the process keeps)
        got = {}
        for start in range(0, len(warm), 5):
            got |= lookalike_scores(reader_id=reader, item_ids=warm[start:start + 5])
        assert got == pytest.approx(copied[reader], abs=1e-5)
    assert len(lookalike_scores(reader_id=readers[0], item_ids=warm)) == 7  # one asking for more: the first 7
    copy = serving.cache.sync(redis_client())
    assert copy.index is not None and copy.cents is None and not copy.states  # no state is held whole
    assert len(copy.used) == 7 and len(copy.warm_ids) == len(warm)
    assert len(copy.index) == len(warm)  # an E_global each

    # A refreshed state replaces the used one and its vectors in the index.
    item = copy.ids_sorted[0]
    SeedSet.objects.filter(item_id=item).update(state_dirty=True)
    r = redis_client()
    r.hset(store.items_key(look.pk), str(item), b"\x00")  # a stale value the next sync must not keep
    states_refresh()
    after = serving.cache.sync(r)
    assert after.version == copy.version + 1 and after.index is copy.index
    fresh = store.unpack_state(r.hget(store.items_key(look.pk), str(item)))[0]
    assert len(after.index) == len(copy.index) and int(item) in after.warm_ids
    got = serving.reader_view(reader_id=readers[0]).scores(np.array([item]))
    cents, sizes, mask = pad_states([(fresh.centroids, fresh.sizes)], got.scorer.k, got.scorer.dim)
    expected = got.scorer.score_unchecked(got.e_u, cents, sizes, mask, fresh.e_global[None])[0]
    assert got.logits[0] == pytest.approx(expected)


def test_recall_through_the_index_finds_the_items_nearest_the_reader(trained, settings):
    from recsys.recall import unit_rows
    from webapp.lookalike import serving

    settings.FEED_RECALL_ABOVE = 10
    look, tower = _run(ModelKind.LOOKALIKE), _run(ModelKind.USER_TOWER)
    warm = _warm_ids(look)
    overlap = []
    for reader in ReaderVector.objects.filter(model_run=tower).order_by("reader_id")[:20]:
        view = serving.reader_view(reader_id=reader.reader_id)
        assert view.copy.index is not None and view.copy.index.exact  # a small index: exact
        got = view.recall(15)
        assert len(got) == 15 and set(got.tolist()) <= set(warm)
        query = unit_rows(view.copy.scorer.transform(view.e_u.astype(np.float64)))
        cos = {s.item_id: float(unit_rows(np.frombuffer(bytes(s.global_embedding), "<f4")) @ query)
               for s in LookalikeState.objects.filter(model_run=look, item_id__in=warm)}
        assert got.tolist() == sorted(cos, key=lambda i: -cos[i])[:15]
        # What it is for: the items RALM scores highest for the reader are among them.
        exact = lookalike_scores(reader_id=reader.reader_id, item_ids=warm)
        overlap.append(len(set(sorted(exact, key=lambda i: -exact[i])[:5]) & set(got.tolist())) / 5)
    assert np.mean(overlap) >= 0.8


def test_without_redis_an_indexed_process_fetches_states_from_postgres(trained, settings):
    from webapp.lookalike import serving

    settings.FEED_RECALL_ABOVE = 10
    look, tower = _run(ModelKind.LOOKALIKE), _run(ModelKind.USER_TOWER)
    warm = _warm_ids(look)
    reader = ReaderVector.objects.filter(model_run=tower).first()
    served = lookalike_scores(reader_id=reader.reader_id, item_ids=warm)
    cache = ServingCache()
    copy = cache.durable()  # a process that never reached Redis
    assert copy.durable and copy.index is not None and copy.cents is None
    view = serving.ReaderView(copy, np.frombuffer(bytes(reader.vector), "<f4"), None)
    assert view.scores(np.array(warm)).as_dict() == pytest.approx(served, abs=1e-5)
