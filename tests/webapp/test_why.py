"""The feed's "why this story" line for a warm story holds for the reader it is shown to: it
says "readers like you" only when the reader passes the story's calibrated closeness test
(webapp.lookalike.closeness.closeness_bars), and then claims exactly the seeds of the clusters
they are close to."""

from __future__ import annotations

import numpy as np
import pytest
from django.utils import timezone

from recsys.arms import ARMS
from recsys.serving import LookalikeScorer
from tests.factories import ReaderFactory
from tests.webapp.whycheck import CLAIM, READ_BY, Story, assert_line_holds, served_vector
from webapp.feed import ranking
from webapp.feed.selectors import reader_history
from webapp.lookalike import closeness, serving, store
from webapp.lookalike.models import ModelKind, ModelRun, ReaderVector, SeedSet
from webapp.news.models import Item, ItemStatus, Reader


def _population(n: int, rng: np.random.Generator) -> np.ndarray:
    """Look-alike vectors as trained ones come: a large common part and a small personal one."""
    return 5.0 * np.eye(8)[0] + rng.normal(size=(n, 8))


def _reference(x: np.ndarray) -> closeness.Reference:
    return closeness.Reference(x.mean(0), closeness.unit(x - x.mean(0)))


IDENTITY = LookalikeScorer(w=np.eye(8), b=np.zeros(8), slope=1.0, w_g=np.eye(8), v_g=np.ones(8), w_l=np.eye(8),
                           tau=1.0, alpha=0.5, beta=0.5, temperature=1.0, bias=0.0, k=20)


@pytest.mark.parametrize("k", [1, 3, 20])
def test_the_bars_let_few_random_readers_through_and_only_close_ones(k):
    rng = np.random.default_rng(k)
    population = _population(1000, rng)
    reference = _reference(population)
    # Each centroid the mean of a group of 20 readers who lean one way.
    cents = np.stack([_population(20, rng).mean(0) + rng.normal(size=8) for _ in range(k)])
    sizes = np.full(k, 20.0)
    bars = closeness.closeness_bars(reference, cents)
    cos = reference.units @ reference.leanings(cents).T
    # At most CLOSE_SHARE of the reference readers are close to some cluster, however many
    # clusters the story has; each close one matches it better than 1 - CLOSE_SHARE of them.
    assert (cos > bars).any(1).mean() <= closeness.CLOSE_SHARE
    for j in range(k):
        assert (cos[:, j] <= bars[j]).mean() >= 1 - closeness.CLOSE_SHARE
    # Fresh readers of the same population pass about as rarely.
    passed = [closeness.why_of(IDENTITY, reference, x, cents, sizes, bars)[0].close > 0
              for x in _population(4000, rng)]
    assert np.mean(passed) < 2 * closeness.CLOSE_SHARE
    # A reader at a centroid is close to it (and the claim counts its seeds); the average
    # reader, close to every centroid in plain distance, is close to none; nor is one leaning
    # the other way.
    why, close = closeness.why_of(IDENTITY, reference, cents[0], cents, sizes, bars)
    assert close[0] and why.close == 20 * close.sum() and why.groups == close.sum() and why.seeds == 20 * k
    assert not closeness.why_of(IDENTITY, reference, reference.center, cents, sizes, bars)[1].any()
    assert not closeness.why_of(IDENTITY, reference, 2 * reference.center - cents[0], cents, sizes, bars)[1][0]


def test_too_few_reference_readers_call_nobody_close():
    rng = np.random.default_rng(0)
    cents = rng.normal(size=(2, 8))
    assert np.isinf(closeness.closeness_bars(_reference(_population(closeness.MIN_REFERENCE - 1, rng)), cents)).all()
    assert closeness.closeness_bars(_reference(_population(500, rng)), np.zeros((0, 8))).shape == (0,)


def test_the_claim_says_what_the_test_found():
    assert closeness.Why(seeds=26, close=0, groups=0, percent=95).claim is None
    whole = closeness.Why(seeds=26, close=26, groups=1, percent=95).claim
    assert whole == "you match the average leanings of its 26 recent readers better than 95% of readers do"
    part = closeness.Why(seeds=60, close=21, groups=1, percent=95).claim
    assert part == "you match the average leanings of a group of 21 of its 60 recent readers better than 95% of " \
        "readers do"
    several = closeness.Why(seeds=60, close=40, groups=2, percent=95).claim
    assert several == "you match the average leanings of groups holding 40 of its 60 recent readers better than 95% " \
        "of readers do"
    for claim in (whole, part, several):
        assert CLAIM.match(f"Readers like you read it: {claim}.")


def _warm_stories() -> list[int]:
    return list(Item.objects.filter(status=ItemStatus.WARM, source="demo").order_by("pk").values_list("pk", flat=True))


def _line(reader_id: int, item_id: int, *, topics: list[str] = (), clicked: list[int] = ()) -> str:
    ranked = ranking.rank(reader_id=reader_id, source="demo", clicked=list(clicked), shown={}, now=timezone.now(),
                          limit=10_000, arm=ARMS["blend"], topics=topics)
    lines = {int(i): (w, why) for i, w, why in zip(ranked.item_ids, ranked.warm, ranked.why, strict=True)}
    warm, line = lines[item_id]
    assert warm, line
    return line


def _newcomer_like(e_u: np.ndarray, topic: str) -> Reader:
    """A reader with no clicks and one picked topic (so the feed's lines are personal) whose
    served vector is `e_u`."""
    reader = ReaderFactory(topics=[topic])
    tower = ModelRun.objects.get(kind=ModelKind.USER_TOWER, is_active=True)
    store.reader_vectors_write(run_id=tower.pk, vectors=[(reader.pk, e_u.astype(np.float32))])
    return reader


def _all_vectors() -> tuple[np.ndarray, np.ndarray]:
    tower = ModelRun.objects.get(kind=ModelKind.USER_TOWER, is_active=True)
    rows = list(ReaderVector.objects.filter(model_run=tower).values_list("reader_id", "vector"))
    return np.array([r for r, _ in rows]), np.stack([np.frombuffer(bytes(v), "<f4") for _, v in rows]).astype(
        np.float64)


def test_a_reader_far_from_every_seed_gets_no_readers_like_you(trained):
    item = Item.objects.get(pk=_warm_stories()[0])
    story = Story.of(item.pk)
    seeds = SeedSet.objects.get(item=item).seed_reader_ids
    ids, vectors = _all_vectors()
    fx = story.reference.leanings(story.scorer.transform(vectors))
    seed_fx = fx[np.isin(ids, seeds)]
    # The reader whose nearest seed (the cosine of their leanings) is farthest of all readers.
    far = vectors[int(np.argmin((fx @ seed_fx.T).max(1)))]
    assert story.margin(far) < 0  # close to no cluster, by the definition
    reader = _newcomer_like(far, item.category)
    line = _line(reader.pk, item.pk, topics=[item.category])
    assert not CLAIM.match(line) and "like you" not in line and "share your taste" not in line
    assert line == f"Read by {int(story.sizes.sum())} recent readers, on a topic you picked: {item.category}."
    assert not assert_line_holds(line, item.pk, reader.pk)


def test_a_seed_like_reader_gets_the_claim_with_the_tests_numbers(trained):
    """A newcomer with a seed's vector: close to that seed's cluster (the seed with the widest
    margin over its bar, of the first story that has one), and the line says so exactly."""
    found = None
    for item_id in _warm_stories():
        story = Story.of(item_id)
        seeds = SeedSet.objects.get(item_id=item_id).seed_reader_ids
        ids, vectors = _all_vectors()
        seed_vectors = vectors[np.isin(ids, seeds)]
        margins = [story.margin(v) for v in seed_vectors]
        if max(margins) > 0:
            found = item_id, story, seed_vectors[int(np.argmax(margins))]
            break
    assert found, "no seed of any warm story passes its story's test"
    item_id, story, e_u = found
    item = Item.objects.get(pk=item_id)
    why, close = story.why(e_u)
    reader = _newcomer_like(e_u, item.category)
    line = _line(reader.pk, item_id, topics=[item.category])
    assert line.startswith("Readers like you read it: ") and why.claim in line
    assert why.close == int(round(story.sizes[close].sum())) and why.seeds == int(round(story.sizes.sum()))
    assert assert_line_holds(line, item_id, reader.pk)


def test_every_warm_line_of_demo_readers_holds_by_the_definition(trained):
    """Demo readers' whole candidate lists: each warm story's line makes the claim exactly when
    the reader passes its test, with the test's numbers; random readers rarely pass."""
    claims = lines = 0
    for reader in Reader.objects.filter(source="demo", clicks__isnull=False).distinct().order_by("pk")[:12]:
        clicked, shown = reader_history(reader=reader, now=timezone.now())
        ranked = ranking.rank(reader_id=reader.pk, source="demo", clicked=clicked, shown=shown, now=timezone.now(),
                              limit=10_000, arm=ARMS["blend"])
        for item_id, warm, line in zip(ranked.item_ids, ranked.warm, ranked.why, strict=True):
            if warm:
                assert CLAIM.match(line) or READ_BY.match(line), line
                claims += assert_line_holds(line, int(item_id), reader.pk)
                lines += 1
    assert lines and claims < 0.5 * lines, (claims, lines)


def test_the_line_is_the_same_from_every_process_copy(trained):
    """The reference readers are a fixed sample: a fresh process (an emptied serving copy)
    reaches the same line."""
    reader = Reader.objects.filter(source="demo", clicks__isnull=False).order_by("pk").first()
    clicked, _ = reader_history(reader=reader, now=timezone.now())
    first = ranking.rank(reader_id=reader.pk, source="demo", clicked=clicked, shown={}, now=timezone.now(),
                         limit=10_000, arm=ARMS["blend"]).why
    serving.cache.clear()
    again = ranking.rank(reader_id=reader.pk, source="demo", clicked=clicked, shown={}, now=timezone.now(),
                         limit=10_000, arm=ARMS["blend"]).why
    assert first == again
    assert served_vector(reader.pk).shape == (Story.of(_warm_stories()[0]).scorer.dim,)
