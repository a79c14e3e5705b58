"""The feed ranker: CTR and look-alike similarity into one page.

Both inputs are P(click) on one calibrated scale: `ctr` from the CTR model (at position 0),
`similarity` from RALM for warm items and the calibrated cold-start model for cold ones.

Modes (settings FEED_RANKER_MODE, or per request):
  blend    final = (1 - w) * ctr + w * similarity
  feature  final = the CTR model that takes similarity as an input (`ctr_with_similarity`)
  gate     recall keeps only candidates with similarity >= threshold (topped up by the best
           of the rest when too few pass), then final = ctr
  ctr      final = ctr (blend at w = 0: the reference the others are compared against)

Every page holds at most `max_per_subcategory` stories of one subcategory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODES = ("blend", "feature", "gate", "ctr")


@dataclass(frozen=True)
class RankerConfig:
    mode: str = "blend"
    weight: float = 0.5  # w of the blend
    gate: float = 0.02  # the similarity threshold of the gate
    max_per_subcategory: int = 2

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError("weight must be within [0, 1]")
        if self.max_per_subcategory < 1:
            raise ValueError("max_per_subcategory must be at least 1")


def final_scores(config: RankerConfig, *, ctr: np.ndarray, similarity: np.ndarray,
                 ctr_with_similarity: np.ndarray | None = None, limit: int = 10) -> np.ndarray:
    """The score each candidate is ranked by; -inf for those the gate drops."""
    ctr = np.asarray(ctr, np.float64)
    sim = np.asarray(similarity, np.float64)
    if config.mode == "blend":
        return (1.0 - config.weight) * ctr + config.weight * sim
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


def ab_summary(*, mode: np.ndarray, request: np.ndarray, item: np.ndarray, clicked: np.ndarray, cold: np.ndarray,
               category: np.ndarray, catalog: np.ndarray, tail_share: float = 0.8) -> dict[str, dict]:
    """Per ranker mode, from logged impressions (arrays of shape (N,)): impressions, clicks,
    CTR, the share of impressions that went to cold items and to tail items (outside the most
    shown 1 - tail_share of the catalog over all modes), the exposure Gini over the catalog,
    and distinct categories per page. `catalog`: every item that was live."""
    catalog = np.unique(np.asarray(catalog, np.int64))
    shown_all = np.bincount(np.searchsorted(catalog, item), minlength=len(catalog))
    head_n = max(1, int(round(len(catalog) * (1 - tail_share))))
    head = set(catalog[np.argsort(-shown_all, kind="stable")[:head_n]].tolist())
    in_tail = np.fromiter((i not in head for i in item.tolist()), bool, count=len(item))
    out = {}
    for m in sorted(set(mode.tolist())):
        sel = mode == m
        per_item = np.bincount(np.searchsorted(catalog, item[sel]), minlength=len(catalog))
        pages: dict[str, set] = {}
        for q, c in zip(request[sel].tolist(), category[sel].tolist(), strict=True):
            pages.setdefault(q, set()).add(c)
        n = int(sel.sum())
        out[m] = {"impressions": n, "clicks": int(clicked[sel].sum()),
                  "ctr": round(float(clicked[sel].mean()), 5) if n else None,
                  "cold_share": round(float(cold[sel].mean()), 4) if n else None,
                  "tail_share": round(float(in_tail[sel].mean()), 4) if n else None,
                  "exposure_gini": round(exposure_gini(per_item), 4),
                  "categories_per_page": round(float(np.mean([len(v) for v in pages.values()])), 2) if pages else None,
                  "pages": len(pages)}
    return out
