"""The "readers like you" test recomputed from the durable copy (Postgres states, the reader's
vector in the serving store), for tests that hold the feed's "why" lines and the seeds page
to its definition (webapp.lookalike.closeness.closeness_bars)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from recsys.serving import LookalikeScorer
from webapp.lookalike import store
from webapp.lookalike.closeness import CLOSE_SHARE, Reference, Why, closeness, closeness_bars, reference_readers, why_of
from webapp.lookalike.models import LookalikeState, ModelKind, ModelRun
from webapp.lookalike.refresh import scorer_for

CLAIM = re.compile(r"^Readers like you read it: you match the average leanings of (?:its (\d+)|a group of (\d+) of its "
                   r"(\d+)|groups holding (\d+) of its (\d+)) recent readers better than (\d+)% of readers do")
READ_BY = re.compile(r"^Read by (\d+) recent readers")


@dataclass
class Story:
    """A warm story's state under the active look-alike run, and the test's parts."""

    scorer: LookalikeScorer
    cents: np.ndarray  # (k, h)
    sizes: np.ndarray  # (k,)
    reference: Reference
    bars: np.ndarray  # (k,)

    @classmethod
    def of(cls, item_id: int) -> Story:
        look = ModelRun.objects.get(kind=ModelKind.LOOKALIKE, is_active=True)
        scorer = scorer_for(look)
        state = LookalikeState.objects.get(item_id=item_id, model_run=look)
        cents = np.frombuffer(bytes(state.centroids), "<f4").reshape(state.k, state.dim).astype(np.float64)
        reference = reference_readers(scorer)
        return cls(scorer, cents, np.asarray(state.cluster_sizes, np.float64), reference,
                   closeness_bars(reference, cents))

    def cosines(self, e_u: np.ndarray) -> np.ndarray:
        """(k,) the reader's leaning to each centroid's."""
        return closeness(self.scorer, self.reference, e_u, self.cents)

    def why(self, e_u: np.ndarray) -> tuple[Why, np.ndarray]:
        return why_of(self.scorer, self.reference, e_u, self.cents, self.sizes, self.bars)

    def margin(self, e_u: np.ndarray) -> float:
        """How far the reader's best cluster is above its bar (negative: close to none)."""
        return float((self.cosines(e_u) - self.bars).max())

    def assert_calibrated(self, e_u: np.ndarray) -> None:
        """The definition's two promises, checked on the reference readers themselves: each
        cluster the reader is close to matches them better than at least 1 - CLOSE_SHARE of
        the reference readers do, and at most CLOSE_SHARE of the reference readers are close
        to some cluster of the story."""
        ref_cos = self.reference.units @ self.reference.leanings(self.cents).T  # (R, k)
        mine = self.cosines(e_u)
        for j in np.flatnonzero(mine > self.bars):
            assert (ref_cos[:, j] < mine[j]).mean() >= 1 - CLOSE_SHARE, (j, mine[j], self.bars[j])
        assert (ref_cos > self.bars).any(1).mean() <= CLOSE_SHARE


def served_vector(reader_id: int) -> np.ndarray:
    """The reader's E_u as the feed reads it (the serving store, the active tower's run)."""
    vec = store.reader_vector_get(reader_id=reader_id)
    assert vec is not None, f"reader {reader_id} has no served vector"
    return vec.astype(np.float64)


def assert_line_holds(line: str, item_id: int, reader_id: int) -> bool:
    """A warm story's "why" line for the reader says exactly what the test allows: the claim
    with its numbers when the reader is close to some cluster, else no claim and the story's
    seed count. Returns whether it made the claim."""
    story = Story.of(item_id)
    e_u = served_vector(reader_id)
    why, _ = story.why(e_u)
    claim = CLAIM.match(line)
    if why.close:
        assert claim, (line, why)
        found = [int(g) for g in claim.groups()[:5] if g is not None]
        close, seeds = found * 2 if len(found) == 1 else found
        assert (close, seeds, int(claim[6])) == (why.close, why.seeds, round(100 * (1 - CLOSE_SHARE))), (line, why)
        story.assert_calibrated(e_u)
        return True
    assert claim is None and "like you" not in line, (line, why)
    read_by = READ_BY.match(line)
    assert read_by and int(read_by[1]) == why.seeds, (line, why)
    return False
