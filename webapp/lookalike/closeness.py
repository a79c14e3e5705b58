"""The feed's "readers like you" test, which holds for the reader or is not made: the reader
is close to a seed cluster of a story when their leaning's cosine to the centroid's beats a bar
calibrated on a fixed sample of readers, so that few readers pass by chance. The serving copy
(webapp.lookalike.serving) keeps the sample and each story's bars; the seeds page shows the
same test."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db.models import F

from recsys.serving import LookalikeScorer
from webapp.lookalike.models import ModelKind, ReaderVector

# The "readers like you" test (`closeness_bars`): the share of readers who pass a story's test
# by chance, the readers it is calibrated on (a fixed sample of the active tower's), and the
# fewest that can tell such a share apart (below it nobody is called close).
CLOSE_SHARE = 0.05
REFERENCE_READERS = 1000
MIN_REFERENCE = 100


def unit(x: np.ndarray) -> np.ndarray:
    """Rows of x (..., h) at unit length (zero rows stay zero)."""
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def reference_vectors(limit: int = REFERENCE_READERS) -> np.ndarray:
    """E_u (R, h) of a fixed sample of readers under the active user tower: the first `limit`
    reader ids that are multiples of a step, the step a power of two so that it changes only
    when the readers double. The same readers in every process, so the feed and the admin
    reach the same answer; (0, 0) when nothing is trained."""
    rows = ReaderVector.objects.filter(model_run__kind=ModelKind.USER_TOWER, model_run__is_active=True)
    step = 1 << max(0, (rows.count() // limit).bit_length() - 1)
    if step > 1:
        rows = rows.annotate(slot=F("reader_id") % step).filter(slot=0)
    raws = [bytes(v) for v in rows.order_by("reader_id").values_list("vector", flat=True)[:limit]]
    dims = {len(v) for v in raws}
    if len(dims) != 1:  # nothing trained, or vectors of two widths (a switch half seen): no sample
        return np.zeros((0, 0))
    return np.frombuffer(b"".join(raws), "<f4").reshape(len(raws), -1).astype(np.float64)


@dataclass(frozen=True)
class Reference:
    """The readers the "readers like you" test is calibrated on, in RALM's look-alike space.
    A reader's *leaning* is their f(E_u) less the reference readers' mean, at unit length:
    look-alike vectors share a large common part, and without it taken out the readers nearest
    the average would be close to every story."""

    center: np.ndarray  # (h,) the reference readers' mean f(E_r)
    units: np.ndarray  # (R, h) their leanings

    def leanings(self, x: np.ndarray) -> np.ndarray:
        """Points of the look-alike space (..., h) as leanings (a centroid's: its seeds' mean)."""
        return unit(np.asarray(x, np.float64) - self.center)


def reference_readers(scorer: LookalikeScorer) -> Reference:
    """The reference readers (`reference_vectors`) under the scorer's transform."""
    x = reference_vectors()
    if x.ndim != 2 or x.shape[1] != scorer.dim or not len(x):
        return Reference(np.zeros(scorer.dim), np.zeros((0, scorer.dim)))
    fx = scorer.transform(x)
    center = fx.mean(0)
    return Reference(center, unit(fx - center))


def closeness_bars(reference: Reference, cents: np.ndarray) -> np.ndarray:
    """The "readers like you" test of one story: a reader is close to its cluster j when the
    cosine of their leaning (`Reference`) to the cluster centroid's exceeds bars[j]. `cents`
    (k, h): the story's centroids in the look-alike space.

    Calibrated on the reference readers: a cluster's bar is the cosine of the reader at rank m
    of that cluster (ranks from the farthest, 0), with m the smallest rank for which at most
    CLOSE_SHARE of the reference readers rank above it in some cluster of the story. So a
    reader drawn at random is close to no cluster of the story with probability about
    1 - CLOSE_SHARE however many clusters it has, and a reader close to a cluster matches its
    leaning better than at least 1 - CLOSE_SHARE of the reference readers do (m >= R - 1 -
    CLOSE_SHARE * R, since in each cluster only R - 1 - m readers rank above m). Infinite bars
    (nobody close) without MIN_REFERENCE reference readers."""
    units = reference.units
    k, r = len(cents), len(units)
    if r < MIN_REFERENCE or not k:
        return np.full(k, np.inf)
    cos = reference.leanings(cents) @ units.T  # (k, R): a cluster's row contiguous for the sort
    order = np.argsort(cos, axis=1)
    rank = np.empty_like(order)
    rank[np.arange(k)[:, None], order] = np.arange(r)
    at = r - 1 - int(CLOSE_SHARE * r)
    m = np.partition(rank.max(0), at)[at]
    # A hair above the rank-m reader's cosine: that reader, whose own cosine computed another
    # way (one vector, not a batch) differs only by rounding, is never close in one process and
    # not in another.
    return cos[np.arange(k), order[:, m]] + 1e-9


@dataclass(frozen=True)
class Why:
    """What a warm story's "why" line may claim for one reader (`WarmScores.why`)."""

    seeds: int  # the story's seeds: its latest readers with a vector
    close: int  # the seeds in the clusters the reader is close to (`closeness_bars`)
    groups: int  # those clusters
    percent: int  # a close reader matches such a cluster's leaning better than this share of readers do

    @property
    def claim(self) -> str | None:
        """The sentence the test supports, or None when the reader is close to no cluster."""
        if not self.close:
            return None
        if self.groups == 1 and self.close == self.seeds:  # one cluster: the story's whole audience
            whom = f"its {self.seeds} recent readers"
        elif self.groups == 1:
            whom = f"a group of {self.close} of its {self.seeds} recent readers"
        else:
            whom = f"groups holding {self.close} of its {self.seeds} recent readers"
        return f"you match the average leanings of {whom} better than {self.percent}% of readers do"


def why_of(scorer: LookalikeScorer, reference: Reference, e_u: np.ndarray, cents: np.ndarray, sizes: np.ndarray,
           bars: np.ndarray) -> tuple[Why, np.ndarray]:
    """The Why of one story for E_u (h,), from its centroids (k, h), seeds per centroid (k,)
    and closeness bars (k,); and which clusters the reader is close to (k,) bool."""
    close = closeness(scorer, reference, e_u, cents) > bars
    return why_from(close, sizes), close


def why_from(close: np.ndarray, sizes: np.ndarray) -> Why:
    seeds = np.asarray(sizes, np.float64)
    return Why(seeds=int(round(seeds.sum())), close=int(round(seeds[close].sum())), groups=int(close.sum()),
               percent=int(round(100 * (1 - CLOSE_SHARE))))


def closeness(scorer: LookalikeScorer, reference: Reference, e_u: np.ndarray, cents: np.ndarray) -> np.ndarray:
    """(k,) the cosine of the reader's leaning to each centroid's: what the bars are set on."""
    return reference.leanings(cents) @ reference.leanings(scorer.transform(np.asarray(e_u, np.float64)))
