"""The scorers of the replay. Each maps Groups to scores (G, C); higher is better.

Seed-based scorers look up an item's seeds at the group's time: the distinct readers with a
train-period vector who clicked it before t, the latest `seed_cap` of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from recsys import ranker
from recsys.arms import Arm
from recsys.baselines import ItemKNN
from recsys.calibration import PlattCalibrator
from recsys.clustering import pad_states
from recsys.coldstart import ColdStartModel, pair_features
from recsys.ctr import ImpressionCounts, click_log_features
from recsys.interactions import Interactions
from recsys.profiles import PROFILE_HISTORY, Profiles, reader_profiles
from recsys.replay import Groups
from recsys.serving import ItemState, LookalikeScorer
from recsys.stage1 import Stage1Result, vectors_for


@dataclass
class SeedTimeline:
    """Per item, its distinct clickers that have a vector, in time order, with times."""

    readers: list[np.ndarray]
    times: list[np.ndarray]

    @classmethod
    def build(cls, click_reader, click_item, click_time, has_vector, n_items) -> SeedTimeline:
        readers = [[] for _ in range(n_items)]
        times = [[] for _ in range(n_items)]
        seen = set()
        for r, i, t in zip(click_reader, click_item, click_time, strict=True):
            if has_vector[r] and (r, i) not in seen:
                seen.add((r, i))
                readers[i].append(int(r))
                times[i].append(float(t))
        return cls([np.array(r, np.int64) for r in readers], [np.array(t) for t in times])

    def count(self, item: int, t: float) -> int:
        return int(np.searchsorted(self.times[item], t, side="left"))

    def seeds(self, item: int, n: int, cap: int) -> np.ndarray:
        return self.readers[item][max(0, n - cap):n]


@dataclass
class SeedAverage:
    """Cosine between a reader's vector and the mean of the item's seeds' vectors (prefix
    sums make each lookup O(h))."""

    vectors: np.ndarray  # (R, h)
    timeline: SeedTimeline
    cap: int
    _prefix: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        h = self.vectors.shape[1]
        self._prefix = [np.vstack([np.zeros((1, h)), np.cumsum(self.vectors[r], 0)]) if len(r)
                        else np.zeros((1, h)) for r in self.timeline.readers]

    def __call__(self, groups: Groups, query: np.ndarray | None = None) -> np.ndarray:
        """`query` (G, h): each group's reader vector instead of vectors[reader]."""
        out = np.zeros(groups.items.shape)
        for g in range(len(groups)):
            u = self.vectors[groups.reader[g]] if query is None else query[g]
            t = float(groups.time[g])
            for c, item in enumerate(groups.items[g].tolist()):
                n = self.timeline.count(item, t) if item >= 0 else 0
                if n == 0:
                    continue
                lo = max(0, n - self.cap)
                mean = (self._prefix[item][n] - self._prefix[item][lo]) / (n - lo)
                out[g, c] = float(u @ mean / max(np.linalg.norm(u) * np.linalg.norm(mean), 1e-12))
        return out


@dataclass
class Lookalike:
    """A trained look-alike model through the numpy online scorer. `clustered=False` attends
    over the raw seeds instead of k-means centroids (`ralm_noclust`)."""

    scorer: LookalikeScorer
    vectors: np.ndarray  # (R, h) serving reader vectors
    timeline: SeedTimeline
    cap: int
    clustered: bool = True
    # (story, seed count) states kept at most: a long replay meets millions of them, and a
    # state is recomputed the same, so past this the cache starts over.
    cache_size: int = 100_000
    _cache: dict = field(default_factory=dict)

    def state(self, item: int, n: int) -> ItemState:
        key = (item, n)
        if key not in self._cache:
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            seeds = self.vectors[self.timeline.seeds(item, n, self.cap)]
            if self.clustered and self.scorer.mode == "attention":
                self._cache[key] = self.scorer.item_state(seeds)
            elif len(seeds) == 0:
                self._cache[key] = ItemState(np.zeros((0, self.scorer.dim), np.float32), np.zeros(0, np.float32),
                                             np.zeros(self.scorer.dim, np.float32))
            else:
                cents = self.scorer.transform(seeds).astype(np.float32)
                if self.scorer.mode == "mean":  # the size-weighted mean is the mean: one centroid
                    cents = cents.mean(0, keepdims=True)
                sizes = np.full(len(cents), len(seeds) / len(cents), np.float32)
                e_global = self.scorer.global_embedding(cents[None].astype(np.float64), sizes[None],
                                                        np.ones((1, len(cents)), bool))[0]
                self._cache[key] = ItemState(cents, sizes, e_global.astype(np.float32))
        return self._cache[key]

    def __call__(self, groups: Groups, query: np.ndarray | None = None) -> np.ndarray:
        """`query` (G, h): each group's reader vector instead of vectors[reader]."""
        out = np.zeros(groups.items.shape)
        width = self.scorer.k if self.clustered else self.cap
        for g in range(len(groups)):
            t, cands = float(groups.time[g]), groups.items[g]
            states = [self.state(int(i), self.timeline.count(int(i), t)) for i in cands if i >= 0]
            cents, sizes, mask = pad_states([(s.centroids, s.sizes) for s in states], width, self.scorer.dim)
            e_global = np.stack([s.e_global for s in states])
            u = self.vectors[groups.reader[g]] if query is None else query[g]
            out[g, : len(states)] = self.scorer.score_unchecked(
                u.astype(np.float64), cents.astype(np.float64), sizes, mask,
                e_global.astype(np.float64))
        return out


def dot_scorer(readers: np.ndarray, items: np.ndarray, item_bias: np.ndarray | None = None):
    """score = reader vector . item vector (+ item bias): `mf` and `als`."""
    def score(groups: Groups) -> np.ndarray:
        cand = np.maximum(groups.items, 0)
        s = np.einsum("gh,gch->gc", readers[groups.reader], items[cand])
        return s + (item_bias[cand] if item_bias is not None else 0.0)
    return score


def popularity(groups: Groups) -> np.ndarray:
    return groups.pop.astype(np.float64)


def random_scorer(seed: int):
    def score(groups: Groups) -> np.ndarray:
        return np.random.default_rng(seed).random(groups.items.shape)
    return score


def itemknn_scorer(knn: ItemKNN):
    return lambda groups: knn.scores(groups.reader, groups.items)


@dataclass
class ColdStart:
    """The cold-start linear model's logit for each candidate, with reader profiles frozen
    at some time and each item's age at the group's time."""

    model: ColdStartModel
    profiles: Profiles
    item_vectors: np.ndarray  # (I, d)
    item_category: np.ndarray  # (I,)
    published: np.ndarray  # (I,) publication times, NaN if unknown

    def __call__(self, groups: Groups, profiles: Profiles | None = None) -> np.ndarray:
        """`profiles`: one per group (row g for group g) instead of the frozen ones."""
        valid = groups.valid
        items = np.maximum(groups.items, 0)
        if not valid.any():
            return np.zeros(items.shape)
        owner = groups.reader if profiles is None else np.arange(len(groups))
        readers = np.broadcast_to(owner[:, None], items.shape)
        age = (groups.time[:, None] - self.published[items]) / 3600.0
        x = pair_features(self.profiles if profiles is None else profiles, readers[valid], self.item_vectors,
                          self.item_category, items[valid], age[valid])
        out = np.zeros(items.shape)
        out[valid] = self.model.decision_function(x)
        return out


@dataclass
class Hybrid:
    """Cold items (fewer seeds than the threshold) by the calibrated linear model; warm items
    by a calibrated blend of the look-alike score and the linear one. Both parts are P(click)
    on one scale, fitted on a held-out slice of the training period."""

    cold: ColdStart
    warm: Lookalike
    cold_calibration: PlattCalibrator
    warm_calibration: PlattCalibrator
    threshold: int

    def parts(self, groups: Groups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.cold(groups), self.warm(groups), groups.seeds >= self.threshold

    def __call__(self, groups: Groups) -> np.ndarray:
        lin, ralm, warm = self.parts(groups)
        return ranker.similarity(lin.ravel(), np.where(warm, ralm, np.nan).ravel(), cold_map=self.cold_calibration,
                                 warm_map=self.warm_calibration).reshape(lin.shape)


def group_click_features(inter: Interactions, groups: Groups) -> np.ndarray:
    """recsys.ctr.click_log_features of every valid candidate, as of its group's time."""
    v = groups.valid
    readers = np.broadcast_to(groups.reader[:, None], groups.items.shape)[v]
    times = np.broadcast_to(groups.time[:, None], groups.items.shape)[v]
    return click_log_features(reader=readers, item=groups.items[v], time=times, popularity=groups.pop[v],
                              click_reader=inter.click_reader, click_item=inter.click_item,
                              click_time=inter.click_time, item_category=inter.item_category,
                              item_published=inter.item_published, n_categories=len(inter.categories))


@dataclass
class ImpressionFeatures:
    """The CTR model's rows of every valid candidate, group by group, as the feed computes
    them from its impression log (recsys.ctr.ImpressionCounts: the log strictly before the
    group's time) at position 0, with the prior the model was fitted with: Ranker's
    `ctr_features` where the log has impressions."""

    counts: ImpressionCounts
    prior: float

    def __call__(self, groups: Groups) -> np.ndarray:
        v = groups.valid
        return self.counts.features(reader=np.broadcast_to(groups.reader[:, None], v.shape)[v], item=groups.items[v],
                                    time=np.broadcast_to(groups.time[:, None], v.shape)[v], position=0.0,
                                    prior=self.prior)


@dataclass
class Ranker:
    """The feed's ranker in the replay: recsys.ranker.rank, the function the feed serves
    with, on each group's candidates, for one arm. By default the CTR model sees what a click
    log gives as of each group's time (recsys.ctr.click_log_features; fitted on the
    calibration slice, like the hybrid's maps); where the models were fitted on logged
    impressions, `ctr_features` gives the served rows (ImpressionFeatures). A log has no
    page, so no candidate was shown before."""

    arm: Arm
    models: ranker.Models
    inter: Interactions
    item_vectors: np.ndarray  # (I, d) text vectors
    profiles: Callable[[Groups], Profiles]  # the reader's text profile and affinity, one row per group
    ralm: Callable[[Groups], np.ndarray] | None  # RALM logits (G, C); None: RALM scores nothing
    threshold: int  # seeds at which a candidate is warm (RALM scores it)
    # The CTR model's input rows of the valid candidates, group by group (default: the click log's).
    ctr_features: Callable[[Groups], np.ndarray] | None = None

    def inputs(self, groups: Groups) -> list[tuple[ranker.Reader, ranker.Candidates, ranker.Scores]]:
        """Per group, what `rank` is given: the reader as of the group, its valid candidates."""
        prof = self.profiles(groups)
        ralm = self.ralm(groups) if self.ralm is not None else np.full(groups.items.shape, np.nan)
        logits = np.where(groups.seeds >= self.threshold, ralm, np.nan)
        valid = groups.valid
        x = self.ctr_features(groups) if self.ctr_features is not None else group_click_features(self.inter, groups)
        rows = np.split(x, np.cumsum(valid.sum(1))[:-1])
        out = []
        for g in range(len(groups)):
            items = groups.items[g][valid[g]]
            reader = ranker.Reader(prof.vectors[g], prof.category_affinity[g], has_clicks=bool(prof.vectors[g].any()))
            cands = ranker.Candidates(
                ids=items.astype(np.int64), category=self.inter.item_category[items].astype(np.int64),
                group=self.inter.item_subcategory[items].astype(np.int64), vectors=self.item_vectors[items],
                age_hours=(groups.time[g] - self.inter.item_published[items]) / 3600.0,
                seen=np.zeros(len(items)), ctr_features=rows[g])
            out.append((reader, cands, ranker.Scores(logits[g][valid[g]])))
        return out

    def __call__(self, groups: Groups) -> np.ndarray:
        out = np.zeros(groups.items.shape)
        for g, (reader, cands, scores) in enumerate(self.inputs(groups)):
            r = ranker.rank(reader, cands, scores, arm=self.arm, models=self.models, limit=max(len(cands), 1))
            out[g, groups.valid[g]] = r.final
        return out


def frozen_profiles(profiles: Profiles) -> Callable[[Groups], Profiles]:
    """Each group's reader's row of profiles frozen at some time (readers with train history)."""
    return lambda groups: Profiles(profiles.vectors[groups.reader], profiles.category_affinity[groups.reader])


@dataclass
class AsOfReaders:
    """What a scorer can know of readers without train history, per group: their clicks
    strictly before the group's time, and the tower vector and text profile built from them
    (computed once per Groups and shared by the scorers of the `unseen_readers` view)."""

    inter: Interactions
    tower: Stage1Result
    item_vectors: np.ndarray  # (I, d) text vectors
    profile_history: int = PROFILE_HISTORY
    _memo: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        order = np.argsort(self.inter.click_reader, kind="stable")  # time order kept within a reader
        self._items, self._times = self.inter.click_item[order], self.inter.click_time[order]
        self._bounds = np.searchsorted(self.inter.click_reader[order], np.arange(self.inter.n_readers + 1))

    def _cached(self, key: str, groups: Groups, fn):
        k = (key, id(groups))
        if k not in self._memo:
            if len(self._memo) > 32:
                self._memo.clear()
            self._memo[k] = (groups, fn())  # holding the groups keeps their id unique
        return self._memo[k][1]

    def histories(self, groups: Groups, cap: int | None = None) -> list[np.ndarray]:
        out = []
        for r, t in zip(groups.reader.tolist(), groups.time.tolist(), strict=True):
            lo, hi = self._bounds[r], self._bounds[r + 1]
            n = lo + int(np.searchsorted(self._times[lo:hi], t, side="left"))
            out.append(self._items[lo if cap is None else max(lo, n - cap):n])
        return out

    def vectors(self, groups: Groups) -> np.ndarray:
        return self._cached("vectors", groups, lambda: vectors_for(
            self.tower, groups.reader, self.histories(groups, self.tower.builder.max_history)))

    def profiles(self, groups: Groups) -> Profiles:
        return self._cached("profiles", groups, lambda: reader_profiles(
            item_vectors=self.item_vectors, item_category=self.inter.item_category,
            n_categories=len(self.inter.categories), histories=self.histories(groups, self.profile_history)))

    def matrix(self, groups: Groups):
        import scipy.sparse as sp

        def build():
            hists = self.histories(groups)
            rows = np.repeat(np.arange(len(hists)), [len(h) for h in hists])
            cols = np.concatenate(hists) if hists else np.zeros(0, np.int64)
            return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(hists), self.inter.n_items))
        return self._cached("matrix", groups, build)


@dataclass
class Unseen:
    """A scorer for readers without train history: `inner` with each group's inputs as of
    its time. `needs`: "vector" (E_u from the tower: mf, seed averages, look-alikes),
    "profile" (the cold-start text profile) or "history" (itemknn's clicked items)."""

    inner: object
    asof: AsOfReaders
    needs: str

    def __call__(self, groups: Groups) -> np.ndarray:
        if self.needs == "vector":
            return self.inner(groups, query=self.asof.vectors(groups))
        if self.needs == "profile":
            return self.inner(groups, profiles=self.asof.profiles(groups))
        knn = object.__new__(ItemKNN)  # the trained item-item cosines, this group's clicks as the rows
        knn.x, knn.xn = self.asof.matrix(groups), self.inner.xn
        return knn.scores(np.arange(len(groups)), groups.items)


def query_dot_scorer(items: np.ndarray, item_bias: np.ndarray | None = None):
    """`mf` for per-group reader vectors: score = query . item vector (+ item bias)."""
    def score(groups: Groups, query: np.ndarray) -> np.ndarray:
        cand = np.maximum(groups.items, 0)
        s = np.einsum("gh,gch->gc", query, items[cand])
        return s + (item_bias[cand] if item_bias is not None else 0.0)
    return score
