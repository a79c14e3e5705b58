"""What recsys.ranker.rank is given for one request: the reader as of now, their candidates
(recalled out of a large catalog) with the CTR model's features, and RALM's logits.

Above FEED_RECALL_ABOVE live stories the ranker does not score them all: `gather` hands it
at most about a thousand, the union of the CTR model's exact top RECALL_CTR
(recsys.recall.CtrLists), the RECALL_RALM warm stories nearest the reader through the serving
copy's index (the paper's look-alike exposure gate used as recall), the RECALL_FRESH newest
cold stories and the RECALL_POPULAR most popular ones.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import redis
from django.conf import settings

from recsys import ranker
from recsys.ctr import FEATURES, assemble
from recsys.profiles import PROFILE_HISTORY, reader_profiles
from recsys.recall import CtrLists
from webapp.feed.catalog import Catalog
from webapp.feed.modelcache import Models
from webapp.lookalike import store
from webapp.lookalike.serving import NO_SCORES, ReaderView, WarmScores, reader_view

log = logging.getLogger(__name__)
RECALL_CTR, RECALL_RALM, RECALL_FRESH, RECALL_POPULAR = 400, 200, 100, 100


@dataclass
class Gathered:
    """What recsys.ranker.rank is given for one request, and what explains its page."""

    reader: ranker.Reader
    candidates: ranker.Candidates
    scores: ranker.Scores
    rows: np.ndarray  # (N,) the candidates' rows in the catalog copy
    history: list[int]  # the reader's clicks as catalog rows, oldest first
    picked: set[int]  # categories the reader picked
    warm: WarmScores


def gather(*, reader_id: int, cat: Catalog, m: Models, clicked: list[int], shown: dict[int, int], now: datetime,
           topics: list[str] | tuple[str, ...], r: redis.Redis, pointers: store.Pointers | None,
           recall: bool = True) -> Gathered:
    """The reader as of now (profile, affinity), their candidates (the live stories they
    have not clicked, recalled when there are more than FEED_RECALL_ABOVE, unless `recall`
    is off) with the CTR model's features, and RALM's logits for the warm ones."""
    t = now.timestamp()
    live = cat.published <= t
    if clicked:
        live[[cat.row[i] for i in clicked if i in cat.row]] = False
    history = [cat.row[i] for i in clicked[:PROFILE_HISTORY] if i in cat.row][::-1]  # oldest first
    picked = {cat.categories.index(c) for c in topics if c in cat.categories}
    profile = reader_profiles(item_vectors=cat.vectors, item_category=cat.category, n_categories=len(cat.categories),
                              histories=[np.asarray(history, np.int64)], picked=[picked])
    affinity = profile.category_affinity[0]
    view = ReaderView()
    try:
        view = reader_view(reader_id=reader_id, r=r, pointers=pointers)
    except redis.RedisError:
        log.warning("Redis unreachable: warm items scored by the cold-start model")
    n_live = int(live.sum())
    rows = _recalled(cat, m, live, affinity, view) if recall and n_live > settings.FEED_RECALL_ABOVE else \
        np.flatnonzero(live)
    age = (t - cat.published[rows]) / 3600.0
    ids = cat.ids[rows]
    ctr_x = assemble(affinity=affinity[cat.category[rows]], item_clicks=cat.clicked[rows],
                     item_impressions=cat.shown[rows], age_hours=age, position=0.0, prior=m.prior)
    scored = NO_SCORES
    if len(rows):
        try:
            scored = view.scores(ids)
        except redis.RedisError:
            log.warning("Redis unreachable: warm items scored by the cold-start model")
    ralm = np.full(len(rows), np.nan)
    ralm[np.searchsorted(ids, scored.item_ids)] = scored.logits  # ids are sorted (catalog in pk order)
    return Gathered(
        reader=ranker.Reader(profile.vectors[0], affinity, has_clicks=bool(history)),
        candidates=ranker.Candidates(ids=ids, category=cat.category[rows], group=cat.subcategory[rows],
                                     vectors=cat.vectors[rows], age_hours=age, seen=_seen(cat, rows, shown),
                                     ctr_features=ctr_x),
        scores=ranker.Scores(ralm), rows=rows, history=history, picked=picked, warm=scored)


def _seen(cat: Catalog, rows: np.ndarray, shown: dict[int, int]) -> np.ndarray:
    """(len(rows),) the recent impressions to the reader of each candidate (rows sorted)."""
    seen = np.zeros(len(rows))
    if shown and len(rows):
        pairs = [(cat.row[i], n) for i, n in shown.items() if i in cat.row]
        if pairs:
            where, n = np.array(pairs, np.int64).T
            k = np.minimum(np.searchsorted(rows, where), len(rows) - 1)
            seen[k[rows[k] == where]] = n[rows[k] == where]
    return seen


def _recalled(cat: Catalog, m: Models, live: np.ndarray, affinity: np.ndarray, view: ReaderView) -> np.ndarray:
    """The rows the ranker scores out of a large catalog, sorted: the CTR model's exact top
    RECALL_CTR, the RECALL_RALM stories nearest the reader by RALM, and the RECALL_FRESH
    newest cold and RECALL_POPULAR most popular live stories."""
    ctr = _ctr_lists(cat, m).top(m.ranker.ctr[0][FEATURES.index("affinity")] * affinity, RECALL_CTR, live)
    near = view.recall(RECALL_RALM)
    at = np.minimum(np.searchsorted(cat.ids, near), max(len(cat.ids) - 1, 0))
    nearest = at[cat.ids[at] == near] if len(cat.ids) else np.zeros(0, np.int64)
    fresh = _first(cat.newest, live & ~cat.warm, RECALL_FRESH)
    popular = _first(cat.most_popular, live, RECALL_POPULAR)
    rows = np.unique(np.concatenate([ctr, nearest, fresh, popular]))
    return rows[live[rows]]


def _ctr_lists(cat: Catalog, m: Models) -> CtrLists:
    """The catalog's stories per category by the story-only part of the CTR logit as of now,
    kept on the copy per models' key (the copy is reloaded with the counts each minute: the
    ages drift by that much)."""
    lists = cat.ctr_lists.get(m.key)
    if lists is None:
        coef, intercept = m.ranker.ctr
        x = assemble(affinity=np.zeros(len(cat.ids)), item_clicks=cat.clicked, item_impressions=cat.shown,
                     age_hours=(time.time() - cat.published) / 3600.0, position=0.0, prior=m.prior)
        lists = cat.ctr_lists[m.key] = CtrLists(cat.category, x.astype(np.float64) @ coef + intercept,
                                                len(cat.categories))
    return lists


def _first(order: np.ndarray, allowed: np.ndarray, n: int) -> np.ndarray:
    """The first n rows of `order` that are `allowed`."""
    take = order[: 2 * n]
    while (ok := allowed[take]).sum() < n and len(take) < len(order):
        take = order[: 2 * len(take)]
    return take[ok][:n]
