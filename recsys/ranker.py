"""The feed ranker: CTR and look-alike similarity into one page.

Both inputs are calibrated probabilities: `ctr` from the CTR model, P(click) at the top of the
page; `similarity` from RALM for warm items and the cold-start model for cold ones, through
calibration maps fitted on replay groups (a click against sampled skips), so on a lower scale
(in the demo about a third of the CTR's; `on_ctr_scale`).

Modes (settings FEED_RANKER_MODE, or per request):
  blend    final = (1 - w_i) * ctr + w_i * similarity, with w_i = w for every story, or with
           `evidence` n0 > 0, w_i = w * n0 / (n0 + impressions_i) and the similarity put on the
           CTR's scale: the similarity speaks for a story until its own impressions do
           (`blend_weights`). With a `budget` b > 0 the page keeps at least (1 - b) of the
           clicks the CTR model expects of the CTR-only page: w is halved until it does, down
           to w = 0 (`within_budget`)
  feature  final = the CTR model that takes similarity as an input (`ctr_with_similarity`)
  gate     recall keeps only candidates with similarity >= threshold (topped up by the best
           of the rest when too few pass), then final = ctr
  ctr      final = ctr (blend at w = 0: the reference the others are compared against)

Every page holds at most `max_per_subcategory` stories of one subcategory.

The similarity can be recalibrated per story (`story_factor`) before blend and gate use it:
the calibration maps are fitted once per training run, so they know nothing of a story's
own appeal, which the live clicks reveal within minutes (and which the CTR model's item CTR
picks up). The feed leaves it off by default: in the demo it bought a little CTR and tail
exposure with cold stories' exposure (README).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

MODES = ("blend", "feature", "gate", "ctr")
BUDGET_STEPS = 4  # halvings of w that within_budget tries before w = 0
P = TypeVar("P")


@dataclass(frozen=True)
class RankerConfig:
    mode: str = "blend"
    weight: float = 0.5  # w of the blend
    gate: float = 0.02  # the similarity threshold of the gate
    max_per_subcategory: int = 2
    evidence: float = 0.0  # n0 of blend_weights: impressions that halve a story's w (0: w for all)
    budget: float = 0.0  # the share of the CTR-only page's expected clicks the blend may give up (0: no limit)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError("weight must be within [0, 1]")
        if self.max_per_subcategory < 1:
            raise ValueError("max_per_subcategory must be at least 1")
        if not self.evidence >= 0.0:
            raise ValueError("evidence must be >= 0")
        if not 0.0 <= self.budget < 1.0:
            raise ValueError("budget must be within [0, 1)")


def blend_weights(weight: float, evidence: float, shown: np.ndarray | None) -> np.ndarray | float:
    """Each story's w in the blend. The CTR model learns a story's own appeal from its
    impressions (its smoothed item CTR); the similarity is what is known of the story before
    that. So with evidence = n0 > 0 the similarity's weight decays with the story's
    impressions, w * n0 / (n0 + shown): full for a story never shown, half at n0 impressions,
    and a story shown thousands of times is ranked by CTR alone. evidence = 0: w for every
    story (the plain blend)."""
    if evidence == 0.0 or shown is None:
        return weight
    return weight * evidence / (evidence + np.maximum(np.asarray(shown, np.float64), 0.0))


def on_ctr_scale(ctr: np.ndarray, similarity: np.ndarray) -> float:
    """The factor that puts the similarity on the CTR model's scale over one reader's
    candidates (their means equal). The CTR model predicts P(click) at the top of the page;
    the similarity's calibration maps were fitted on replay groups (a click against sampled
    skips), a rate several times lower. With one w for every story the scale only
    reparametrises w; with a w per story the lower scale would hold back every story whose
    w is high (the least shown), so the evidence blend mixes the two on one scale."""
    mean = float(np.mean(similarity))
    return float(np.mean(ctr)) / mean if mean > 0 else 1.0


def final_scores(config: RankerConfig, *, ctr: np.ndarray, similarity: np.ndarray,
                 ctr_with_similarity: np.ndarray | None = None, limit: int = 10,
                 shown: np.ndarray | None = None) -> np.ndarray:
    """The score each candidate is ranked by; -inf for those the gate drops. `shown`: each
    candidate's impressions so far (the blend's `evidence` reads them)."""
    ctr = np.asarray(ctr, np.float64)
    sim = np.asarray(similarity, np.float64)
    if config.mode == "blend":
        w = blend_weights(config.weight, config.evidence, shown)
        if np.ndim(w) and len(sim):
            sim = sim * on_ctr_scale(ctr, sim)
        return (1.0 - w) * ctr + w * sim
    if config.mode == "ctr":
        return ctr.copy()
    if config.mode == "feature":
        if ctr_with_similarity is None:
            raise ValueError("the feature mode needs the CTR model with similarity as an input")
        return np.asarray(ctr_with_similarity, np.float64).copy()
    passed = sim >= config.gate  # gate
    if passed.sum() < limit:  # too few pass: the most similar of the rest fill the recall set
        rest = np.flatnonzero(~passed)
        passed[rest[np.argsort(-sim[rest], kind="stable")[: limit - int(passed.sum())]]] = True
    return np.where(passed, ctr, -np.inf)


def weight_ladder(weight: float, steps: int = BUDGET_STEPS) -> list[float]:
    """The blend weights `within_budget` tries, largest first: w, w/2, ..., w/2^steps, then 0."""
    return [weight / 2 ** k for k in range(steps + 1)] + [0.0]


def within_budget(page_for: Callable[[float], P], value: Callable[[P], float], *, weight: float, budget: float,
                  steps: int = BUDGET_STEPS) -> tuple[float, P]:
    """The blend's page under a CTR budget: the largest w of `weight_ladder` whose page keeps
    value(page) >= (1 - budget) * value(the w = 0 page), with that page. `page_for(w)` ranks
    the candidates with blend weight w; `value` is what the CTR model expects of a page (its
    clicks). The blend trades some of the CTR model's expected clicks for similarity; the
    budget bounds that trade per request, so a similarity that stops paying (in the demo the
    blend's cost grew with the time since training on two runs of four) is turned down for
    the readers where it costs, and kept where it does not. budget = 0: the page at `weight`.
    (The feed applies it to readers with clicks: webapp.news.ranking.)"""
    if budget <= 0.0 or weight <= 0.0:
        return weight, page_for(weight)
    reference = page_for(0.0)
    floor = (1.0 - budget) * value(reference)
    for w in weight_ladder(weight, steps)[:-1]:
        page = page_for(w)
        if value(page) >= floor:
            return w, page
    return 0.0, reference


def expected_page_clicks(logits: np.ndarray, page: np.ndarray, *, position_slope: float,
                         factor: np.ndarray | None = None) -> float:
    """The clicks a CTR model expects on a page: sigmoid(logit + slope * log1p(position)) per
    story (the model's position feature), times each story's `factor` (e.g. a repeat
    discount), summed. `page`: indices into `logits`, best first."""
    page = np.asarray(page, np.int64)
    z = np.asarray(logits, np.float64)[page] + position_slope * np.log1p(np.arange(len(page)))
    p = 1.0 / (1.0 + np.exp(-z))
    return float(np.sum(p if factor is None else p * np.asarray(factor, np.float64)[page]))


def story_factor(clicks: np.ndarray, expected: np.ndarray, prior: float) -> np.ndarray:
    """Per story, how far its readers out- or under-click the similarity: the posterior mean
    (clicks + prior) / (expected + prior) of a Poisson rate with a Gamma(prior, prior) prior
    (mean 1), where `clicks` are the clicks on the story's impressions that logged a
    similarity and `expected` the clicks the similarity predicted for them. Multiplies the
    story's similarity. A story never shown keeps 1 (nothing is known of it yet, so a cold
    story is not held back), and `prior` pseudo-clicks shrink thin evidence towards 1;
    prior = 0 turns the recalibration off (every factor 1)."""
    clicks = np.asarray(clicks, np.float64)
    expected = np.asarray(expected, np.float64)
    if prior < 0:
        raise ValueError("prior must be >= 0")
    if prior == 0:
        return np.ones(np.broadcast(clicks, expected).shape)
    return (clicks + prior) / (expected + prior)


def diversified_top(scores: np.ndarray, groups: np.ndarray, *, limit: int, per_group: int,
                    tie_break: np.ndarray | None = None) -> np.ndarray:
    """Indices of the best `limit` candidates, at most `per_group` from one group (e.g. one
    subcategory), best first. Ties go to the larger `tie_break` (e.g. the newer item id).
    When the cap leaves the page short, the best of the capped ones fill it."""
    scores = np.asarray(scores, np.float64)
    keys = (-scores,) if tie_break is None else (-np.asarray(tie_break), -scores)
    order = np.lexsort(keys)
    order = order[np.isfinite(scores[order])]
    chosen, spill, used = [], [], {}
    for i in order:
        g = groups[i]
        if used.get(g, 0) < per_group:
            used[g] = used.get(g, 0) + 1
            chosen.append(i)
            if len(chosen) == limit:
                break
        elif len(spill) < limit:
            spill.append(i)
    if len(chosen) < limit:
        chosen.extend(spill[: limit - len(chosen)])
        chosen.sort(key=lambda i: (-scores[i], -(tie_break[i] if tie_break is not None else 0)))
    return np.array(chosen, dtype=np.int64)


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


def ab_summary(*, mode: np.ndarray, request: np.ndarray, item: np.ndarray, clicked: np.ndarray, cold: np.ndarray,
               category: np.ndarray, catalog: np.ndarray, tail_share: float = 0.8,
               expected: np.ndarray | None = None, popularity: np.ndarray | None = None) -> dict[str, dict]:
    """Per ranker mode, from logged impressions (arrays of shape (N,)): impressions, clicks,
    CTR, the share of impressions that went to cold items and to tail items (`tail_mask`:
    outside the most popular 1 - tail_share of the catalog by `popularity`, the exposure
    before these impressions; without it, by these impressions), the exposure Gini over the catalog,
    and distinct categories per page; `*_se` are page-clustered standard errors. `expected`:
    each impression's click probability under a known click model (the demo's simulated
    readers; NaN where it does not know the reader), averaged into `expected_ctr`, free of
    the noise of the clicks themselves.
    `catalog`: every item that was live."""
    catalog = np.unique(np.asarray(catalog, np.int64))
    in_tail = tail_mask(item, catalog, tail_share, popularity)
    out = {}
    for m in sorted(set(mode.tolist())):
        sel = mode == m
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
                   "categories_per_page": round(float(np.mean([len(v) for v in pages.values()])), 2) if pages else None,
                   "pages": len(pages)}
    return out


def ab_compare(summary: dict[str, dict], reference: str = "ctr") -> dict[str, dict]:
    """Each variant against the reference (the `ctr` mode, w = 0): relative change of CTR
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


def ab_within_readers(*, mode: np.ndarray, reader: np.ndarray, values: dict[str, np.ndarray],
                      reference: str = "ctr") -> dict[str, dict]:
    """Each variant against the reference *within readers*: for every reader who saw both,
    the difference of their mean value (per impression) between the two arms, averaged over
    those readers, with its standard error. When sessions rotate each reader through the
    arms, reader-to-reader spread drops out; `*_change` is the mean difference relative to
    the reference's mean over the same readers. NaN values (unknown) are left out."""
    out: dict[str, dict] = {}
    if reference not in set(mode.tolist()):
        return out
    for m in sorted(set(mode.tolist()) - {reference}):
        row: dict = {}
        for name, v in values.items():
            v = np.asarray(v, np.float64)
            per = {}
            for arm in (m, reference):
                sel = (mode == arm) & np.isfinite(v)
                ids, inv = np.unique(reader[sel], return_inverse=True)
                per[arm] = dict(zip(ids.tolist(), (np.bincount(inv, weights=v[sel]) / np.bincount(inv)).tolist(),
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
