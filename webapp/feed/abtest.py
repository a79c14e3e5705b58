"""Paired comparison of ranker variants on the simulated readers: every variant ranks the
same reader at the same moment (nothing is logged or served) and the simulator's hidden click
model scores each page. The reader-to-reader spread, the bulk of the noise between the arms
of a live A/B, cancels out, so a few hundred readers measure a 1% difference of expected CTR.
Used by `bench/ab.py` and by `manage.py ab_report --paired N` on the running demo."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from recsys.ranker import clustered_mean, exposure_gini, head_items
from webapp.lookalike import store
from webapp.news import ranking
from webapp.news.models import Reader
from webapp.news.selectors import exposure_before, reader_history
from webapp.news.simulator import Shown, Simulator


@dataclass
class Paired:
    """Per variant label, one entry per ranked page."""

    sim: Simulator
    expected: dict[str, list[float]] = field(default_factory=dict)  # expected clicks per impression
    cold: dict[str, list[float]] = field(default_factory=dict)  # share of the page that is cold
    tail: dict[str, list[float]] = field(default_factory=dict)  # share in the long tail
    categories: dict[str, list[int]] = field(default_factory=dict)
    shown: dict[str, Counter] = field(default_factory=dict)
    served_as: dict[str, str] = field(default_factory=dict)
    snapshots: dict[str, list[int]] = field(default_factory=dict)  # the snapshot each page was ranked in
    snapshot: int = 0  # the current one: set by a caller that ranks at several moments

    def rank(self, k: int, *, now: datetime, head: set[int], source: str = "demo") -> None:
        """Every variant ranks simulated reader k at `now`; `head`: the popular stories (the
        rest is the long tail)."""
        reader = Reader.objects.get(pk=self.sim.db_ids[k])
        clicked, shown = reader_history(reader=reader, now=now)
        for label, mode, weight, evidence, budget in self.sim.variants:
            r = ranking.rank(reader_id=reader.pk, source=source, clicked=clicked, shown=shown, now=now,
                             limit=self.sim.feed_size, config=ranking.ranker_config(mode, weight, evidence, budget),
                             topics=reader.topics or ())
            if r is None or not len(r.item_ids):
                continue
            page = [Shown(0, pos, i.external_id, i.category, i.subcategory, i.published_at)
                    for pos, i in enumerate(r.items)]
            n = len(page)
            self.expected.setdefault(label, []).append(self.sim.expected_clicks(k, page, now) / n)
            self.cold.setdefault(label, []).append(sum(not w for w in r.warm) / n)
            self.tail.setdefault(label, []).append(sum(int(i) not in head for i in r.item_ids) / n)
            self.categories.setdefault(label, []).append(len({i.category for i in r.items}))
            self.shown.setdefault(label, Counter()).update(int(i) for i in r.item_ids)
            self.served_as[label] = r.mode
            self.snapshots.setdefault(label, []).append(self.snapshot)

    def summary(self, catalog: np.ndarray, reference: str = "ctr") -> dict[str, dict]:
        """Per variant: expected CTR, cold and tail shares, exposure Gini over `catalog`,
        categories per page; against `reference`, the paired change (relative for expected
        CTR, in points for the shares) with its standard error over pages, clustered by
        snapshot when the pages were ranked at several moments (the live state moves between
        them, and that spread belongs in the error)."""
        out: dict[str, dict] = {}
        ref = reference if reference in self.expected else None
        for label in self.expected:
            e, c, t = (np.array(x[label]) for x in (self.expected, self.cold, self.tail))
            counts = np.array([self.shown[label].get(int(i), 0) for i in catalog])
            row = {"pages": len(e), "expected_ctr": round(float(e.mean()), 5), "cold_share": round(float(c.mean()), 4),
                   "tail_share": round(float(t.mean()), 4), "exposure_gini": round(exposure_gini(counts), 4),
                   "categories_per_page": round(float(np.mean(self.categories[label])), 2),
                   "served_as": self.served_as.get(label)}
            if ref and label != ref and len(e) == len(self.expected[ref]) and len(e) > 1:
                base = np.array(self.expected[ref])
                d = e - base
                groups = np.array(self.snapshots.get(label, []))
                row["expected_ctr_vs_ctr_only"] = round(float(d.mean() / base.mean()), 4)
                row["expected_ctr_vs_ctr_only_se"] = round(_mean_se(d, groups) / float(base.mean()), 4)
                for name, v, per_page in (("cold_share", c, self.cold), ("tail_share", t, self.tail)):
                    dv = v - np.array(per_page[ref])
                    row[f"{name}_diff"] = round(float(dv.mean()), 4)
                    row[f"{name}_diff_se"] = round(_mean_se(dv, groups), 4)
            elif label == ref:
                row["expected_ctr_vs_ctr_only"] = 0.0
            out[label] = row
        return out


def _mean_se(d: np.ndarray, groups: np.ndarray) -> float:
    """Standard error of d's mean: clustered by group (snapshot) when there are at least two,
    else over pages (each page its own cluster)."""
    clusters = groups if len(np.unique(groups)) > 1 else np.arange(len(d))
    return clustered_mean(d, clusters)[1]


def head_of(*, source: str, now: datetime, tail_share: float = 0.8) -> tuple[np.ndarray, set[int]]:
    """The live catalog and its head: the stories most shown before `now` (recsys.ranker.head_items)."""
    catalog = ranking.catalogs.get(source, store.client())
    ids = np.sort(catalog.ids[catalog.published <= now.timestamp()])
    return ids, head_items(ids, exposure_before(catalog=ids, before=now, source=source), tail_share)
