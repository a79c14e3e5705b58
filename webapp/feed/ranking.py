"""The feed ranker on the hot path: rank one reader's page with recsys.ranker.rank and say
why each story is on it.

Per request, Postgres answers one round trip (the reader and their history, read by the
caller) and takes the page's impressions, and Redis answers twice (the catalog version and
the serving runs in one MGET; the states' version and the reader's vector in one pipeline);
everything else is in memory:
- the live catalog, a per-process copy (webapp.feed.catalog);
- the models of the active runs (cold-start + calibration, CTR), loaded once per run
  (webapp.feed.modelcache);
- RALM scores from webapp.lookalike.serving (reader vector from Redis, item states from the
  per-process serving copy), gathered with the candidates (webapp.feed.gathering);
- the "why" lines (webapp.feed.explain).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import redis

from recsys import ranker
from recsys.arms import Arm
from webapp.common import degraded
from webapp.common.connections import redis_client
from webapp.feed.catalog import Catalog, catalogs
from webapp.feed.explain import nearest_click, why_line
from webapp.feed.gathering import Gathered, gather
from webapp.feed.modelcache import models
from webapp.lookalike import store
from webapp.news.models import Item


@dataclass
class Ranked:
    """The page: item ids, their scores and parts, and the reasons."""

    arm: str
    item_ids: np.ndarray
    scores: np.ndarray
    parts: list[dict[str, float | bool | str | None]]
    why: list[str] = field(default_factory=list)
    warm: list[bool] = field(default_factory=list)
    items: list[Item] | None = None  # the page's items when the catalog copy has them
    candidates: int = 0  # the stories the ranker scored


def rank(*, reader_id: int, source: str, clicked: list[int], shown: dict[int, int], now: datetime, limit: int,
         arm: Arm, topics: list[str] | tuple[str, ...] = (), recall: bool = True) -> Ranked | None:
    """Rank the reader's candidates with the arm; None when no trained ranker serves (the
    caller uses the baseline). `clicked`: the reader's clicked item ids, newest first;
    `shown`: recent impressions per item; `topics`: categories the reader picked; `recall`
    off: every live story is scored (what a recalled page is measured against). A reader
    with neither clicks nor topics gets the calibrated popularity and freshness mix (every
    reader term of the models is zero)."""
    r = redis_client()
    try:  # one round trip for what the caches check (each asks on its own, and notes the outage, if it fails)
        pointers = store.pointers_get(r=r)
    except redis.RedisError:
        pointers = None
    m = models.get(r, pointers)
    if m.error is not None:
        degraded.note(f"ranker models unusable, baseline ranking: {m.error}", kind=degraded.RANKER_MODEL)
    if m.ranker is None:
        return None
    cat = catalogs.get(source, r, pointers)
    g = gather(reader_id=reader_id, cat=cat, m=m, clicked=clicked, shown=shown, now=now, topics=topics, r=r,
               pointers=pointers, recall=recall)
    out = ranker.rank(g.reader, g.candidates, g.scores, arm=arm, models=m.ranker, limit=limit)
    page = out.page
    ranked = Ranked(out.arm, g.candidates.ids[page], out.final[page], [out.parts(int(k)) for k in page],
                    items=[cat.items[g.rows[k]] for k in page] if cat.items is not None else None,
                    candidates=len(g.candidates.ids))
    ranked.warm, ranked.why = _reasons(cat, g, page)
    return ranked


def _reasons(cat: Catalog, g: Gathered, page: np.ndarray) -> tuple[list[bool], list[str]]:
    """Whether each story of the page is warm, and its "why" line; what RALM found of the
    reader is asked for the page's warm stories only, and only when the lines are personal."""
    personal = bool(g.history) or bool(g.picked)
    warm, why = [], []
    for k in page:
        item_id, c = int(g.candidates.ids[k]), int(g.candidates.category[k])
        is_warm = not np.isnan(g.scores.ralm_logit[k])
        found = g.warm.why(item_id) if personal and is_warm else None
        warm.append(is_warm)
        why.append(why_line(warm=is_warm, found=found, category=cat.categories[c],
                            because=nearest_click(cat, g.history, int(g.rows[k])), picked=c in g.picked,
                            personal=personal, age_hours=float(g.candidates.age_hours[k])))
    return warm, why
