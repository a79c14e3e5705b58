"""Seeds kept incrementally and states warm-started from their previous centroids, against
what a refresh from scratch makes of the same clicks (real Postgres and Redis, a model
trained on a small demo history)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import numpy as np
from django.db import connection
from django.utils import timezone

from webapp.feed import services
from webapp.lookalike.models import LookalikeState, ModelKind, ModelRun, ReaderVector, SeedDelta, SeedSet
from webapp.lookalike.refresh import scorer_for, states_compute, states_refresh
from webapp.lookalike.seeds import SEEDS_SQL, seeds_refresh
from webapp.lookalike.services import seedset_mark_dirty
from webapp.news.models import Click, Impression, Reader

CAP = 60


def _refresh() -> dict:
    """Seeds, then states, until nothing is dirty; how many states were warm-started."""
    warm = items = 0
    while seeds_refresh()["remaining"]:
        pass
    while True:
        done = states_refresh()
        warm, items = warm + done.get("warm_started", 0), items + done["items"]
        if not done["remaining"]:
            return {"warm_started": warm, "items": items}


def _click(item_id: int, reader_id: int) -> None:
    """The reader is shown the item (an impression as the feed logs it) and clicks it."""
    shown = Impression.objects.create(reader_id=reader_id, item_id=item_id, request_id=uuid.uuid4().hex, position=0)
    services.click_record(impression_id=shown.pk, reader_id=reader_id)


def _from_scratch(tower: ModelRun) -> dict[int, tuple[list[int], list]]:
    """Every seed set as the rebuild computes it from the click table."""
    items = list(SeedSet.objects.values_list("item_id", flat=True))
    with connection.cursor() as cur:
        cur.execute(SEEDS_SQL, {"run": tower.pk, "items": items, "cap": CAP})
        return {i: (list(ids), list(ats)) for i, ids, ats in cur.fetchall()}


def _sse(points: np.ndarray, cents: np.ndarray) -> float:
    """k-means' objective: squared distance of each point to its closest centroid, summed."""
    return float(((points[:, None, :] - cents[None]) ** 2).sum(-1).min(1).sum())


def _seed_points(tower: ModelRun, lookalike: ModelRun, seeds: list[int]) -> np.ndarray:
    vectors = dict(ReaderVector.objects.filter(model_run=tower, reader_id__in=seeds).values_list("reader_id", "vector"))
    raw = np.stack([ReaderVector.vector_from(vectors[r]) for r in seeds]).astype(np.float64)
    return scorer_for(lookalike).transform(raw)


def test_incremental_refresh_equals_a_refresh_from_scratch(trained, settings):
    settings.SEED_CAP = CAP
    tower = ModelRun.objects.get(kind=ModelKind.USER_TOWER, is_active=True)
    lookalike = ModelRun.objects.get(kind=ModelKind.LOOKALIKE, is_active=True)
    SeedSet.objects.update(dirty=True, rebuild=True)  # the world's lists under this cap, with click times
    _refresh()
    rng = np.random.default_rng(3)
    items = list(SeedSet.objects.filter(count__gte=25).order_by("item_id").values_list("item_id", flat=True)[:40])
    readers = np.array(ReaderVector.objects.filter(model_run=tower).values_list("reader_id", flat=True))
    assert len(items) >= 20
    warm_started = 0
    for batch in range(6):
        for item in items:  # 1-3 new clickers (some of them seeds already, clicking again)
            for reader in rng.choice(readers, rng.integers(1, 4), replace=False):
                _click(item, int(reader))
        if batch == 2:  # an import of older clicks: merged by ranking the union again
            old = timezone.now() - timedelta(hours=int(rng.integers(1, 12)))
            Click.objects.bulk_create([Click(reader_id=int(r), item_id=items[0], clicked_at=old)
                                       for r in rng.choice(readers, 30, replace=False)])
            seedset_mark_dirty(item_ids=[items[0]])
        if batch == 3:  # a seed's click deleted: the set is rebuilt from the click table
            Click.objects.filter(item_id=items[1], reader_id=SeedSet.objects.get(item_id=items[1])
                                 .seed_reader_ids[0]).delete()
            assert SeedSet.objects.get(item_id=items[1]).rebuild
        if batch == 4:  # a reader without a vector yet: their click waits for it
            newcomer = Reader.objects.create(source="web", external_id=uuid.uuid4().hex, name="newcomer")
            Click.objects.create(reader=newcomer, item_id=items[2], clicked_at=timezone.now())
            seedset_mark_dirty(item_ids=[items[2]])
        done = _refresh()
        warm_started += done["warm_started"]
        if batch == 4:
            assert SeedDelta.objects.filter(reader_id=newcomer.pk).exists()
            ReaderVector.objects.create(reader=newcomer, model_run=tower, dim=len(ReaderVector.vector_from(
                ReaderVector.objects.filter(model_run=tower).first().vector)),
                vector=ReaderVector.objects.filter(model_run=tower).first().vector)
            _click(items[2], int(readers[0]))
            _refresh()
            assert newcomer.pk in SeedSet.objects.get(item_id=items[2]).seed_reader_ids
        # Every list, exactly as from scratch: the same readers in the same order, the same times.
        scratch = _from_scratch(tower)
        stored = {s.item_id: (s.seed_reader_ids, s.seed_clicked_at) for s in SeedSet.objects.all()}
        assert {i: v for i, v in stored.items() if v[0]} == scratch
    assert warm_started > len(items)  # most refreshes of a few new clickers started from the centroids
    assert not SeedSet.objects.filter(rebuild=True).exists()

    # The served states against states computed from scratch from the same seeds. k-means stops
    # at a local optimum: from scratch and warm-started it may stop at different ones, as it
    # does from two random starts. So the tolerance is k-means' own, measured against four random
    # starts from scratch: the served states' objectives and the look-alike logits they serve
    # 300 readers, over the stories, as far from the starts' as the starts are from each other.
    seeds = {i: list(s) for i, s in SeedSet.objects.filter(item_id__in=items).values_list("item_id", "seed_reader_ids")}
    served = {s.item_id: s.item_state for s in LookalikeState.objects.filter(model_run=lookalike, item_id__in=items)}
    starts = [states_compute(items=list(seeds.items()), tower=tower, lookalike=lookalike, seed=s) for s in range(4)]
    scorer = scorer_for(lookalike)
    audience = np.stack([ReaderVector.vector_from(v) for v in ReaderVector.objects.filter(model_run=tower)
                         .order_by("reader_id").values_list("vector", flat=True)[:300]])
    ratios, spreads, per_start, gap_served, gap_starts = [], [], [], [], []
    for i, ids in seeds.items():
        assert served[i].sizes.sum() == len(ids)
        pts = _seed_points(tower, lookalike, ids)
        sse = [_sse(pts, st[i].centroids) for st in starts]
        ratios.append(_sse(pts, served[i].centroids) / min(sse))
        spreads.append(max(sse) / min(sse))
        per_start.append([x / min(sse) for x in sse])
        logits = [scorer.audience(audience, st[i]) for st in starts]
        gap_served.append(float(np.abs(scorer.audience(audience, served[i]) - logits[0]).max()))
        gap_starts.append(max(float(np.abs(x - logits[0]).max()) for x in logits[1:]))
    print(f"objective / best of 4 starts: median {np.median(ratios):.4f}, max {max(ratios):.4f}; worst start / "
          f"best: median {np.median(spreads):.4f}, max {max(spreads):.4f}; "
          f"logit gap served vs scratch: median {np.median(gap_served):.4f} max {max(gap_served):.4f}; "
          f"scratch vs scratch: median {np.median(gap_starts):.4f} max {max(gap_starts):.4f}")
    # One story's worse optimum is k-means' luck, as the starts show: over the stories, the
    # served states are within 2% of the best start in the median, on average no further above
    # it than the worst of the four starts is (plus 2%), and nowhere far beyond any start's spread.
    assert np.median(ratios) <= 1.02 and np.mean(ratios) <= max(np.mean(per_start, axis=0)) + 0.02
    assert max(ratios) <= 1.5 * max(spreads)
    # Over the items: typically as close as another start, and never much further than one can be
    # (the world is trained afresh in each session, so its optima vary from run to run).
    assert np.median(gap_served) <= np.median(gap_starts) and max(gap_served) <= 1.5 * max(gap_starts)
