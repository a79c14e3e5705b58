"""A/B statistics of the ranker's arms, in one place: from logged impressions (`ab_summary`,
`ab_compare`, `ab_within_readers`) and from paired pages (`PairedPages`: every arm ranks the
same reader at the same moment and a known click model scores each page). The web side
gathers the rows (webapp.feed.abtest, `manage.py ab_report`, the dashboard); this module
only counts.

The long tail is fixed by exposure *before* the traffic compared (`tail_mask`); standard
errors count pages (or moments), not impressions, as the independent draws.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np


def arm_label(arm: str, parts: dict | None) -> str:
    """The name an impression's arm is reported under: the arm, or "feature as blend" when
    a fallback served it."""
    if isinstance(parts, dict) and parts.get("served_by"):
        return f"{arm} as {parts['served_by']}"
    return arm


def was_cold(parts: dict | None, status_now: str) -> bool:
    """Whether the item was cold when shown (the ranker logs `warm`); the item's current
    status for impressions logged without it (the baseline ranker's)."""
    if isinstance(parts, dict) and "warm" in parts:
        return not parts["warm"]
    return status_now == "cold"


def exposure_gini(counts: np.ndarray) -> float:
    """Gini coefficient of impressions over items (0: every item shown equally; 1: one item
    gets everything). Items never shown count, so pass the whole live catalog."""
    x = np.sort(np.asarray(counts, np.float64))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return 0.0
    cum = np.cumsum(x)
    return float((n + 1 - 2 * (cum / cum[-1]).sum()) / n)


def clustered_mean(values: np.ndarray, request: np.ndarray) -> tuple[float, float]:
    """Mean of per-impression values and its standard error with the impressions of one page
    (request) as a cluster: pages, not impressions, are the independent draws."""
    values = np.asarray(values, np.float64)
    _, page = np.unique(request, return_inverse=True)
    y, n = np.bincount(page, weights=values), np.bincount(page).astype(np.float64)
    mean = y.sum() / n.sum()
    k = len(n)
    se = float(np.sqrt(((y - mean * n) ** 2).sum() * k / max(k - 1, 1)) / n.sum())
    return float(mean), se


def tail_mask(item: np.ndarray, catalog: np.ndarray, tail_share: float = 0.8,
              popularity: np.ndarray | None = None) -> np.ndarray:
    """Per impression: whether its item is in the long tail, outside the most popular
    1 - tail_share of the catalog. `popularity`: each catalog item's exposure *before* the
    impressions compared (aligned with the sorted, unique catalog), the usual definition, so
    the head is fixed before any arm serves and a story new in the window is in the tail.
    Without it the head is the most shown over these impressions themselves; then an arm
    that concentrates on a few stories makes them the head (its concentration shows better
    in exposure_gini)."""
    catalog = np.unique(np.asarray(catalog, np.int64))
    if popularity is None:
        popularity = np.bincount(np.searchsorted(catalog, item), minlength=len(catalog))
    head = head_items(catalog, popularity, tail_share)
    return np.fromiter((i not in head for i in item.tolist()), bool, count=len(item))


def head_items(catalog: np.ndarray, popularity: np.ndarray, tail_share: float = 0.8) -> set[int]:
    """The short head: the most popular 1 - tail_share of `catalog` (sorted, unique ids;
    `popularity` aligned with it), ties to the smaller id."""
    if len(popularity) != len(catalog):
        raise ValueError("popularity must have one entry per catalog item")
    head_n = max(1, int(round(len(catalog) * (1 - tail_share))))
    return set(np.asarray(catalog)[np.argsort(-np.asarray(popularity), kind="stable")[:head_n]].tolist())


def ab_summary(*, arm: np.ndarray, request: np.ndarray, item: np.ndarray, clicked: np.ndarray, cold: np.ndarray,
               category: np.ndarray, catalog: np.ndarray, tail_share: float = 0.8,
               expected: np.ndarray | None = None, popularity: np.ndarray | None = None) -> dict[str, dict]:
    """Per ranker arm (or any grouping of the impressions), from logged impressions (arrays
    of shape (N,)): impressions, clicks, CTR, the share of impressions that went to cold
    items and to tail items (`tail_mask`: outside the most popular 1 - tail_share of the
    catalog by `popularity`, the exposure before these impressions; without it, by these
    impressions), the exposure Gini over the catalog, coverage (distinct items shown per 1,000
    impressions) and distinct categories per page;
    `*_se` are page-clustered standard errors. `expected`: each impression's click
    probability under a known click model (the demo's simulated readers; NaN where it does
    not know the reader), averaged into `expected_ctr`, free of the noise of the clicks
    themselves. `catalog`: every item that was live."""
    catalog = np.unique(np.asarray(catalog, np.int64))
    in_tail = tail_mask(item, catalog, tail_share, popularity)
    out = {}
    for m in sorted(set(arm.tolist())):
        sel = arm == m
        per_item = np.bincount(np.searchsorted(catalog, item[sel]), minlength=len(catalog))
        pages: dict[str, set] = {}
        for q, c in zip(request[sel].tolist(), category[sel].tolist(), strict=True):
            pages.setdefault(q, set()).add(c)
        n = int(sel.sum())
        out[m] = {"impressions": n, "clicks": int(clicked[sel].sum())}
        columns = [("ctr", clicked, 5), ("cold_share", cold, 4), ("tail_share", in_tail, 4)]
        if expected is not None:
            columns.append(("expected_ctr", expected, 5))
        for name, values, digits in columns:
            v = np.asarray(values, np.float64)[sel]
            known = np.isfinite(v)  # expected: NaN where the click model does not know the reader
            mean, se = clustered_mean(v[known], request[sel][known]) if known.any() else (None, None)
            out[m][name] = round(mean, digits) if mean is not None else None
            out[m][f"{name}_se"] = round(se, digits) if se is not None else None
        out[m] |= {"exposure_gini": round(exposure_gini(per_item), 4),
                   "coverage": round(1000.0 * int((per_item > 0).sum()) / n, 2) if n else None,
                   "categories_per_page": round(float(np.mean([len(v) for v in pages.values()])), 2) if pages else None,
                   "pages": len(pages)}
    return out


def ab_compare(summary: dict[str, dict], reference: str = "ctr") -> dict[str, dict]:
    """Each arm against the reference (the `ctr` arm, w = 0): relative change of CTR
    (and of expected CTR when the summary has it) and the change of the cold and tail
    shares in points, each with its standard error (the arms are independent samples)."""
    ref = summary.get(reference)
    if not ref or not ref["impressions"]:
        return {}
    out = {}
    for m, s in summary.items():
        if m == reference or not s["impressions"]:
            continue
        row = {}
        for key in ("ctr", "expected_ctr"):
            if s.get(key) is not None and ref.get(key):
                row[f"{key}_change"] = round(s[key] / ref[key] - 1.0, 4)
                row[f"{key}_change_se"] = round(float(np.hypot(s[f"{key}_se"], ref[f"{key}_se"])) / ref[key], 4)
        for key in ("cold_share", "tail_share"):
            row[f"{key}_diff"] = round(s[key] - ref[key], 4)
            row[f"{key}_diff_se"] = round(float(np.hypot(s[f"{key}_se"], ref[f"{key}_se"])), 4)
        out[m] = row
    return out


def ab_within_readers(*, arm: np.ndarray, reader: np.ndarray, values: dict[str, np.ndarray],
                      reference: str = "ctr") -> dict[str, dict]:
    """Each arm against the reference *within readers*: for every reader who saw both,
    the difference of their mean value (per impression) between the two arms, averaged over
    those readers, with its standard error. When sessions rotate each reader through the
    arms, reader-to-reader spread drops out; `*_change` is the mean difference relative to
    the reference's mean over the same readers. NaN values (unknown) are left out."""
    out: dict[str, dict] = {}
    if reference not in set(arm.tolist()):
        return out
    for m in sorted(set(arm.tolist()) - {reference}):
        row: dict = {}
        for name, v in values.items():
            v = np.asarray(v, np.float64)
            per = {}
            for a in (m, reference):
                sel = (arm == a) & np.isfinite(v)
                ids, inv = np.unique(reader[sel], return_inverse=True)
                per[a] = dict(zip(ids.tolist(), (np.bincount(inv, weights=v[sel]) / np.bincount(inv)).tolist(),
                                    strict=True))
            both = sorted(set(per[m]) & set(per[reference]))
            if len(both) < 2:
                continue
            d = np.array([per[m][r] - per[reference][r] for r in both])
            base = float(np.mean([per[reference][r] for r in both]))
            se = float(d.std(ddof=1) / np.sqrt(len(d)))
            row[f"{name}_diff"], row[f"{name}_diff_se"] = round(float(d.mean()), 5), round(se, 5)
            if base:
                row[f"{name}_change"] = round(float(d.mean()) / base, 4)
                row[f"{name}_change_se"] = round(se / base, 4)
            row["readers"] = len(both)
        if row:
            out[m] = row
    return out


@dataclass
class PairedPages:
    """Pages of several arms ranked for the same readers at the same moments, each scored
    by a known click model: per arm, one entry per page. The reader-to-reader spread, the
    bulk of the noise between the arms of a live A/B, cancels out of the differences."""

    expected: dict[str, list[float]] = field(default_factory=dict)  # expected clicks per impression
    cold: dict[str, list[float]] = field(default_factory=dict)  # share of the page that is cold
    tail: dict[str, list[float]] = field(default_factory=dict)  # share in the long tail
    categories: dict[str, list[int]] = field(default_factory=dict)
    shown: dict[str, Counter] = field(default_factory=dict)
    served_by: dict[str, str] = field(default_factory=dict)
    snapshots: dict[str, list[int]] = field(default_factory=dict)  # the moment each page was ranked at

    def add(self, arm: str, *, expected: float, cold: float, tail: float, categories: int, items: list[int],
            served_by: str, snapshot: int = 0) -> None:
        """One page of `arm`: its expected clicks per impression, cold and tail shares, distinct
        categories and item ids."""
        self.expected.setdefault(arm, []).append(expected)
        self.cold.setdefault(arm, []).append(cold)
        self.tail.setdefault(arm, []).append(tail)
        self.categories.setdefault(arm, []).append(categories)
        self.shown.setdefault(arm, Counter()).update(items)
        self.served_by[arm] = served_by
        self.snapshots.setdefault(arm, []).append(snapshot)

    def summary(self, catalog: np.ndarray, reference: str = "ctr") -> dict[str, dict]:
        """Per arm: expected CTR, cold and tail shares, exposure Gini over `catalog`,
        categories per page; against `reference`, the paired change (relative for expected
        CTR, in points for the shares) with its standard error over pages, clustered by
        snapshot when the pages were ranked at several moments (the live state moves between
        them, and that spread belongs in the error)."""
        out: dict[str, dict] = {}
        ref = reference if reference in self.expected else None
        for arm in self.expected:
            e, c, t = (np.array(x[arm]) for x in (self.expected, self.cold, self.tail))
            counts = np.array([self.shown[arm].get(int(i), 0) for i in catalog])
            row = {"pages": len(e), "expected_ctr": round(float(e.mean()), 5), "cold_share": round(float(c.mean()), 4),
                   "tail_share": round(float(t.mean()), 4), "exposure_gini": round(exposure_gini(counts), 4),
                   "categories_per_page": round(float(np.mean(self.categories[arm])), 2),
                   "served_by": self.served_by.get(arm)}
            if ref and arm != ref and len(e) == len(self.expected[ref]) and len(e) > 1:
                base = np.array(self.expected[ref])
                d = e - base
                moments = np.array(self.snapshots[arm])
                row["expected_ctr_vs_ctr_only"] = round(float(d.mean() / base.mean()), 4)
                row["expected_ctr_vs_ctr_only_se"] = round(_mean_se(d, moments) / float(base.mean()), 4)
                for name, v, per_page in (("cold_share", c, self.cold), ("tail_share", t, self.tail)):
                    dv = v - np.array(per_page[ref])
                    row[f"{name}_diff"] = round(float(dv.mean()), 4)
                    row[f"{name}_diff_se"] = round(_mean_se(dv, moments), 4)
            elif arm == ref:
                row["expected_ctr_vs_ctr_only"] = 0.0
            out[arm] = row
        return out


def _mean_se(d: np.ndarray, moments: np.ndarray) -> float:
    """Standard error of d's mean: clustered by moment when there are at least two, else
    over pages (each page its own cluster)."""
    clusters = moments if len(np.unique(moments)) > 1 else np.arange(len(d))
    return clustered_mean(d, clusters)[1]


# The closed loop's figures (webapp.feed.closedloop runs each arm in a copy of the world):
# per copy, then each arm against the reference within a replicate (the copies of one
# replicate share their arrivals, publications and click draws), then mean and standard
# error over replicates, the independent draws.
LOOP_RELATIVE = ("expected_ctr", "tail_exposure")  # compared as a relative change
LOOP_DIFFERENCE = ("minutes_to_warm", "never_warm_share", "cold_share", "categories_per_page", "exposure_gini",
                   "coverage")  # compared as a difference


def loop_figures(run: dict) -> dict[str, float]:
    """One copy's figures from its result (closedloop.LoopResult.to_json()): expected CTR
    under the hidden click model and the shares of impressions to tail and to cold stories
    (per impression), the median minutes from publication to warm of the stories published
    during the run (a story that never turned warm counts as never: the median is infinite
    when over half did not) and the share that never did, distinct categories per page,
    the exposure Gini over every story live during the run, and coverage: distinct stories
    shown per 1,000 impressions."""
    size = np.asarray(run["size"], np.float64)
    n = size.sum()
    if n == 0:
        raise ValueError(f"arm {run['arm']}: the run served no page")
    warm = np.array([np.inf if m is None else m for m in run["minutes_to_warm"].values()], np.float64)
    shown = {int(k): v for k, v in run["shown"].items()}
    live = sorted(set(int(i) for i in run["live"]) | set(shown))
    return {"expected_ctr": float(np.dot(run["expected"], size) / n),
            "tail_exposure": float(np.sum(run["tail"]) / n),
            "cold_share": float(np.sum(run["cold"]) / n),
            "minutes_to_warm": float(np.median(warm)) if len(warm) else float("nan"),
            "never_warm_share": float(np.isinf(warm).mean()) if len(warm) else float("nan"),
            "categories_per_page": float(np.mean(run["categories"])),
            "exposure_gini": exposure_gini(np.array([shown.get(i, 0) for i in live])),
            "coverage": 1000.0 * len(shown) / n,
            "impressions": float(n)}


def loop_compare(replicates: list[dict[str, dict]], reference: str = "ctr") -> dict[str, dict]:
    """Per arm: each figure's mean over replicates with its standard error, and against
    `reference` the mean of the per-replicate changes (`<figure>_rel` relative for
    LOOP_RELATIVE, `<figure>_diff` for LOOP_DIFFERENCE) with their standard error over
    replicates (None with one replicate, or where a difference is undefined: both medians
    infinite). `replicates`: one {arm: copy result} per replicate, every arm in each."""
    figures = [{a: loop_figures(r) for a, r in rep.items()} for rep in replicates]
    arms = list(figures[0]) if figures else []
    out: dict[str, dict] = {}
    for a in arms:
        row: dict = {}
        for key in figures[0][a]:
            row[key], row[f"{key}_se"] = _mean_and_se([f[a][key] for f in figures])
        if a != reference and reference in figures[0]:
            vs = {}
            for key in LOOP_RELATIVE:
                vs[f"{key}_rel"], vs[f"{key}_rel_se"] = _mean_and_se(
                    [f[a][key] / f[reference][key] - 1.0 if f[reference][key] else float("nan") for f in figures])
            for key in LOOP_DIFFERENCE:
                vs[f"{key}_diff"], vs[f"{key}_diff_se"] = _mean_and_se(
                    [f[a][key] - f[reference][key] for f in figures])
            row[f"vs_{reference}"] = vs
        out[a] = row
    return out


def _mean_and_se(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and standard error of the values (None for both unless every one is finite; None
    for the SE with one value)."""
    v = np.asarray(values, np.float64)
    if not len(v) or not np.isfinite(v).all():
        return None, None
    se = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None
    return round(float(v.mean()), 6), None if se is None else round(se, 6)
