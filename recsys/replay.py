"""The replay: test-period clicks in time order, each turned into a scoring group of the
clicked item and negatives, with every candidate's seed count and popularity *at that time*.

Seeds at time t are the readers with a train-period vector who clicked an item strictly
before t (train and earlier test events): the readers a look-alike model can use. Events
sharing a timestamp are grouped first and applied afterwards, so they never see each other. Views:
- overall: the click plus negatives drawn in proportion to test-period popularity among items
  live at t (first seen at or before t), excluding items the reader ever touched. With logged
  impressions (MIND), the real impression list instead.
- buckets: the click plus negatives drawn uniformly from live items whose seed count at t is
  in the clicked item's bucket (0, 1-4, 5-19, 20-99, 100+). With impressions, the impression's
  own candidates in that bucket (groups with none are dropped).
- unseen_readers: the overall view's groups for the clicks of readers with no train history
  (their first click falls in the test period); the other views leave them out. A scorer
  sees such a reader only through their clicks before each group's time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.interactions import Interactions
from recsys.stage2 import BUCKETS, bucket_of

NEGATIVES = 4
VIEWS = ("overall", "buckets", "unseen_readers")


@dataclass
class Groups:
    view: str
    reader: np.ndarray  # (G,)
    time: np.ndarray  # (G,)
    items: np.ndarray  # (G, C) item indices, column 0 the clicked one, -1 = padding
    seeds: np.ndarray  # (G, C) seeds before t (distinct clickers with a vector)
    pop: np.ndarray  # (G, C) clicks before t
    bucket: np.ndarray  # (G,) bucket index of the clicked item

    @property
    def valid(self) -> np.ndarray:
        return self.items >= 0

    def __len__(self) -> int:
        return len(self.reader)


class _BucketSets:
    """Live items per seed bucket, with O(1) add, remove and uniform draws."""

    def __init__(self, n_items: int) -> None:
        self.members: list[list[int]] = [[] for _ in BUCKETS]
        self.where = np.full(n_items, -1, dtype=np.int64)
        self.bucket = np.full(n_items, -1, dtype=np.int64)

    def put(self, item: int, bucket: int) -> None:
        old = self.bucket[item]
        if old == bucket:
            return
        if old >= 0:
            lst, pos = self.members[old], self.where[item]
            last = lst.pop()
            if last != item:
                lst[pos] = last
                self.where[last] = pos
        self.members[bucket].append(item)
        self.where[item], self.bucket[item] = len(self.members[bucket]) - 1, bucket


def _draw(pick, exclude: set[int], n: int, tries: int = 200) -> list[int] | None:
    out: list[int] = []
    for _ in range(tries):
        j = pick()
        if j is None:
            return None
        if j not in exclude and j not in out:
            out.append(j)
            if len(out) == n:
                return out
    return None


@dataclass
class Timeline:
    """What the replay needs of the log, computed once for all sampling seeds."""

    inter: Interactions
    train_before: float
    has_vector: np.ndarray  # (R,) bool: readers with a train-period vector (they can be seeds)
    eligible: np.ndarray  # (R,) bool: readers scored (enough train history)
    first_seen: np.ndarray  # (I,)
    touched: list[set[int]]  # per reader, every item clicked (or shown, with impressions) ever

    @classmethod
    def build(cls, inter: Interactions, *, train_before: float, min_history: int = 1) -> Timeline:
        train = inter.click_time < train_before
        counts = np.bincount(inter.click_reader[train], minlength=inter.n_readers)
        has_vector, eligible = counts >= 1, counts >= max(min_history, 1)
        first_seen = np.full(inter.n_items, np.inf)
        np.minimum.at(first_seen, inter.click_item, inter.click_time)
        if inter.has_impressions:
            np.minimum.at(first_seen, inter.imp_item, inter.imp_time)
        touched: list[set[int]] = [set() for _ in range(inter.n_readers)]
        for r, i in zip(inter.click_reader, inter.click_item, strict=True):
            touched[r].add(int(i))
        return cls(inter, train_before, has_vector, eligible, first_seen, touched)


class _Counts:
    """Per item, its seeds (distinct clickers with a vector) and clicks so far, and the
    bucket sets of the live items, updated click by click."""

    def __init__(self, tl: Timeline) -> None:
        self.tl = tl
        self.seeds = np.zeros(tl.inter.n_items, dtype=np.int64)
        self.clicks = np.zeros(tl.inter.n_items, dtype=np.int64)
        self.pairs: set[tuple[int, int]] = set()
        self.sets = _BucketSets(tl.inter.n_items)

    def click(self, r: int, i: int) -> None:
        self.clicks[i] += 1
        if self.tl.has_vector[r] and (r, i) not in self.pairs:
            self.pairs.add((int(r), int(i)))
            self.seeds[i] += 1
            if self.sets.bucket[i] >= 0:
                self.sets.put(i, int(bucket_of(self.seeds[i])))


def _events_by_time(tl: Timeline, test: np.ndarray, until: float) -> dict[float, list]:
    """The test period's events by time: impression lists (index lists, one per request)
    where the log has them, else click indices."""
    inter = tl.inter
    by_time: dict[float, list] = {}
    if not inter.has_impressions:
        for n in test:
            by_time.setdefault(float(inter.click_time[n]), []).append(n)
        return by_time
    imp_test = np.flatnonzero((inter.imp_time >= tl.train_before) & (inter.imp_time < until))
    requests = {}
    for n in imp_test:
        requests.setdefault(int(inter.imp_request[n]), []).append(n)
    for idx in requests.values():
        by_time.setdefault(float(inter.imp_time[idx[0]]), []).append(idx)
    return by_time


def _event_clicks(inter: Interactions, event) -> list[tuple[int, int]]:
    """(reader, item) of the clicks of one event."""
    if inter.has_impressions:
        return [(int(inter.imp_reader[n]), int(inter.imp_item[n])) for n in event if inter.imp_clicked[n]]
    return [(int(inter.click_reader[event]), int(inter.click_item[event]))]


def replay_groups(tl: Timeline, *, view: str, rng: np.random.Generator, until: float = np.inf) -> Groups:
    """Groups of every event from tl.train_before up to `until` (exclusive)."""
    assert view in VIEWS
    sample_view = "buckets" if view == "buckets" else "overall"  # unseen readers: the overall view's negatives
    inter = tl.inter
    counts = _Counts(tl)
    train = inter.click_time < tl.train_before
    for r, i in zip(inter.click_reader[train], inter.click_item[train], strict=True):
        counts.click(r, i)
    test = np.flatnonzero(~train & (inter.click_time < until))
    test_pop = np.bincount(inter.click_item[test], minlength=inter.n_items).astype(np.float64)
    live_order = np.argsort(tl.first_seen, kind="stable")
    live_time = tl.first_seen[live_order]
    cum_pop = np.cumsum(test_pop[live_order])
    n_live = 0
    by_time = _events_by_time(tl, test, until)
    rows: list[tuple[int, float, list[int], list[int], list[int], int]] = []
    for t in sorted(by_time):
        while n_live < len(live_order) and live_time[n_live] <= t:
            j = int(live_order[n_live])
            counts.sets.put(j, int(bucket_of(counts.seeds[j])))
            n_live += 1
        for event in by_time[t]:
            reader = int(inter.imp_reader[event[0]] if inter.has_impressions else inter.click_reader[event])
            if (tl.has_vector[reader] if view == "unseen_readers" else not tl.eligible[reader]):
                continue
            if inter.has_impressions:
                groups = _impression_groups(inter, event, counts.seeds, sample_view)
            else:
                pos = int(inter.click_item[event])
                groups = [_sampled_group(tl, reader, pos, counts.seeds, counts.sets, cum_pop[:n_live], live_order,
                                         sample_view, rng)]
            rows.extend((reader, t, c, counts.seeds[c].tolist(), counts.clicks[c].tolist(),
                         int(bucket_of(counts.seeds[c[0]]))) for c in groups if c is not None)
        # Apply this timestamp's clicks only after all of its groups are formed.
        for event in by_time[t]:
            for r, i in _event_clicks(inter, event):
                counts.click(r, i)
    return _packed(view, rows)


def _packed(view: str, rows: list[tuple[int, float, list[int], list[int], list[int], int]]) -> Groups:
    """Rows of (reader, time, items, their seeds, their clicks, bucket) as Groups, the item
    lists padded to the longest."""
    width = max((len(r[2]) for r in rows), default=1)

    def pad(column: int, fill: int) -> np.ndarray:
        return np.array([r[column] + [fill] * (width - len(r[column])) for r in rows],
                        dtype=np.int64).reshape(-1, width)

    return Groups(
        view=view,
        reader=np.array([r[0] for r in rows], dtype=np.int64),
        time=np.array([r[1] for r in rows], dtype=np.float64),
        items=pad(2, -1), seeds=pad(3, 0), pop=pad(4, 0),
        bucket=np.array([r[5] for r in rows], dtype=np.int64),
    )


def _sampled_group(tl, reader, pos, seeds, sets, cum, live_order, view, rng) -> list[int] | None:
    exclude = tl.touched[reader] | {pos}
    if view == "overall":
        if len(cum) == 0 or cum[-1] <= 0:
            return None
        negs = _draw(lambda: int(live_order[np.searchsorted(cum, rng.random() * cum[-1], side="right")]),
                     exclude, NEGATIVES)
    else:
        members = sets.members[int(bucket_of(seeds[pos]))]
        negs = _draw(lambda: members[rng.integers(len(members))] if members else None, exclude, NEGATIVES)
    return None if negs is None else [pos, *negs]


def _impression_groups(inter: Interactions, idx: list[int], seeds, view) -> list[list[int] | None]:
    shown = [(int(inter.imp_item[n]), bool(inter.imp_clicked[n])) for n in idx]
    negatives = [i for i, c in shown if not c]
    out = []
    for pos in (i for i, c in shown if c):
        if view == "overall":
            out.append([pos, *negatives] if negatives else None)
        else:
            same = [j for j in negatives if bucket_of(seeds[j]) == bucket_of(seeds[pos])]
            out.append([pos, *same] if same else None)
    return out
