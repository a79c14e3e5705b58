"""A/B figures of the ranker arms: the live traffic's summary by arm and by 5-minute window
(the admin's dashboard, webapp.feed.dashboard), and the paired comparison of the arms on the
simulated readers.

The paired comparison: every arm ranks the same reader
at the same moment (nothing is logged or served) and the simulator's hidden click model
scores each page (recsys.abtest.PairedPages counts). The reader-to-reader spread, the bulk
of the noise between the arms of a live A/B, cancels out, so a few hundred readers measure
a 1% difference of expected CTR. Used by `bench/ab.py` and by `manage.py ab_report --paired N`
on the running demo; `impressions_expected` scores logged impressions the same way."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.conf import settings

from fixtures.corpus import CorpusError, click_model, load_readers
from recsys.abtest import PairedPages, ab_summary, arm_label, head_items, was_cold
from recsys.arms import ARMS, Arm
from recsys.simulation import item_truth
from webapp.common.connections import redis_client
from webapp.feed import ranking
from webapp.feed.catalog import catalogs
from webapp.feed.selectors import exposure_before, reader_history
from webapp.feed.simulator import Shown, Simulator
from webapp.news.models import Impression, Reader


@dataclass
class Traffic:
    """The A/B figures of the impressions logged in a window."""

    impressions: int
    cold_share: np.ndarray  # (windows,) per 5-minute window, NaN in one without impressions
    tail_share: np.ndarray  # (windows,)
    gini: np.ndarray  # (windows,) the exposure Gini
    arms: list[dict]  # per arm label: impressions, clicks, ctr, tail, cold, coverage, budget


def traffic_summary(*, since: datetime, now: datetime, windows: int, live: np.ndarray) -> Traffic:
    """The impressions shown after `since` up to `now`: the share going to cold and to tail
    stories and the exposure Gini per 5-minute window, and by ranker arm (recsys.abtest.ab_summary)
    with the w a CTR budget left each blend arm. `live`: the ids of the live stories (with the
    stories shown, the catalog whose tail is fixed by the exposure before `since`)."""
    imps = list(Impression.objects.filter(shown_at__gt=since, shown_at__lte=now).values_list(
        "shown_at", "item_id", "score_parts", "item__status", "arm", "click__id", "request_id", "item__category"))
    cold_share, tail_share, gini = np.full(windows, np.nan), np.full(windows, np.nan), np.full(windows, np.nan)
    by_arm: dict[str, dict] = {}
    if imps:
        items = np.array([r[1] for r in imps], np.int64)
        catalog = np.union1d(live, items)
        logged = {"request": np.array([r[6] for r in imps]), "item": items,
                  "clicked": np.array([r[5] is not None for r in imps]),
                  "cold": np.array([was_cold(r[2], r[3]) for r in imps]),
                  "category": np.array([r[7] for r in imps]), "catalog": catalog,
                  "popularity": exposure_before(catalog=catalog, before=since)}
        slot = np.array([str(min(windows - 1, int((r[0] - since).total_seconds() // 300))) for r in imps])
        for w, stats in ab_summary(arm=slot, **logged).items():
            cold_share[int(w)], tail_share[int(w)], gini[int(w)] = (stats["cold_share"], stats["tail_share"],
                                                                    stats["exposure_gini"])
        by_arm = ab_summary(arm=np.array([arm_label(r[4], r[2]) for r in imps]), **logged)
    budget = _budget_use(imps)
    arms = [{"arm": m, "impressions": v["impressions"], "clicks": v["clicks"], "ctr": v["ctr"],
             "tail": v["tail_share"], "cold": v["cold_share"], "coverage": v["coverage"], "budget": budget.get(m)}
            for m, v in by_arm.items()]
    return Traffic(len(imps), cold_share, tail_share, gini, arms)


def _budget_use(imps: list[tuple]) -> dict[str, dict]:
    """Per blend arm with a CTR budget (recsys.arms): how much of its w the budget left the
    pages (the parts log the w asked for and the w used, the same on every row of a page)."""
    pages: dict[str, dict[str, tuple[float, float]]] = {}
    for _, _, parts, _, arm, _, request, _ in imps:
        budgeted = arm in ARMS and ARMS[arm].budget > 0
        if budgeted and isinstance(parts, dict) and parts.get("weight_used") is not None and parts.get("weight"):
            pages.setdefault(arm_label(arm, parts), {})[request] = (float(parts["weight_used"]),
                                                                    float(parts["weight"]))
    out = {}
    for label, seen in pages.items():
        used = np.array(list(seen.values()))
        out[label] = {"pages": len(used), "full_share": float(np.mean(used[:, 0] >= used[:, 1])),
                      "zero_share": float(np.mean(used[:, 0] == 0)), "mean_w": float(used[:, 0].mean())}
    return out


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
