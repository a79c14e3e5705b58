"""Paired comparison of ranker arms on the simulated readers: every arm ranks the same reader
at the same moment (nothing is logged or served) and the simulator's hidden click model
scores each page (recsys.abtest.PairedPages counts). The reader-to-reader spread, the bulk
of the noise between the arms of a live A/B, cancels out, so a few hundred readers measure
a 1% difference of expected CTR. Used by `bench/ab.py` and by `manage.py ab_report --paired N`
on the running demo; `impressions_expected` scores logged impressions the same way."""

from __future__ import annotations

from datetime import datetime

import numpy as np
from django.conf import settings

from fixtures.corpus import CorpusError, click_model, load_readers
from recsys.abtest import PairedPages, head_items
from recsys.arms import Arm
from recsys.simulation import item_truth
from webapp.common.connections import redis_client
from webapp.feed import ranking
from webapp.feed.catalog import catalogs
from webapp.feed.selectors import exposure_before, reader_history
from webapp.feed.simulator import Shown, Simulator
from webapp.news.models import Reader


def pages_rank(pages: PairedPages, sim: Simulator, k: int, *, arms: list[Arm], now: datetime, head: set[int],
               source: str = "demo", snapshot: int = 0) -> None:
    """Every arm ranks simulated reader k at `now`; `head`: the popular stories (the rest
    is the long tail). Each page goes into `pages`, scored by the hidden click model."""
    reader = Reader.objects.get(pk=sim.db_ids[k])
    clicked, shown = reader_history(reader=reader, now=now)
    for arm in arms:
        r = ranking.rank(reader_id=reader.pk, source=source, clicked=clicked, shown=shown, now=now,
                         limit=sim.feed_size, arm=arm, topics=reader.topics or ())
        if r is None or not len(r.item_ids):
            continue
        page = [Shown(0, pos, i.external_id, i.category, i.subcategory, i.published_at)
                for pos, i in enumerate(r.items)]
        n = len(page)
        served_by = next((p["served_by"] for p in r.parts if "served_by" in p), arm.name)
        pages.add(arm.name, expected=sim.expected_clicks(k, page, now) / n, cold=sum(not w for w in r.warm) / n,
                  tail=sum(int(i) not in head for i in r.item_ids) / n, categories=len({i.category for i in r.items}),
                  items=[int(i) for i in r.item_ids], served_by=served_by, snapshot=snapshot)


def head_of(*, source: str, now: datetime, tail_share: float = 0.8) -> tuple[np.ndarray, set[int]]:
    """The live catalog and its head: the stories most shown before `now` (recsys.abtest.head_items)."""
    catalog = catalogs.get(source, redis_client())
    ids = np.sort(catalog.ids[catalog.published <= now.timestamp()])
    return ids, head_items(ids, exposure_before(catalog=ids, before=now, source=source), tail_share)


def impressions_expected(rows: list[tuple]) -> np.ndarray | None:
    """Each demo impression's click probability under the simulator's hidden click model
    (fixtures/readers.jsonl and the stories' seeded truths): the simulated CTR without the
    noise of the clicks. `rows`: (reader external id or None, item external id, category,
    subcategory, position, shown_at, published_at). NaN for readers who are not simulated
    (people reading the demo); None without the fixtures or without any simulated reader."""
    try:
        readers = {r.id: r.truth for r in load_readers()}
        model = click_model(settings.DEMO_WORLD)
    except CorpusError:
        return None
    truths: dict[str, object] = {}
    out = np.full(len(rows), np.nan)
    for n, (reader, item, category, subcategory, position, shown_at, published_at) in enumerate(rows):
        if reader not in readers:
            continue
        if item not in truths:
            truths[item] = item_truth(external_id=item, category=category, subcategory=subcategory,
                                      config=model.config)
        age = (shown_at - (published_at or shown_at)).total_seconds() / 3600.0
        out[n] = model.click_probability(readers[reader], truths[item], position=position, age_hours=age)
    return out if np.isfinite(out).any() else None
