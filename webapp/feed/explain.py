"""The page's "why this story" lines: which of the reader's clicks or topics led to each
story, or that nothing personal did. A warm story's line takes what the serving copy found
for the reader (webapp.lookalike.closeness.Why); the rest comes from the catalog copy."""

from __future__ import annotations

import numpy as np

from webapp.feed.catalog import Catalog
from webapp.lookalike.closeness import Why


def nearest_click(cat: Catalog, history: list[int], row: int) -> str | None:
    """The title of the reader's clicked story in the same category closest in text to the
    candidate (rows into the catalog); None without such a click."""
    same = [h for h in history if cat.category[h] == cat.category[row]]
    if not same:
        return None
    sims = cat.vectors[same] @ cat.vectors[row]
    return cat.titles[same[int(np.argmax(sims))]]


def why_line(*, warm: bool, found: Why | None, category: str, because: str | None, picked: bool, personal: bool,
             age_hours: float) -> str:
    """Which of the reader's clicks or topics led to the story (or that nothing personal did).
    Every line holds for this reader: a warm story says "readers like you" only when `found`
    (the reader against the story's calibrated closeness test,
    webapp.lookalike.closeness.closeness_bars) claims it, and then claims exactly the seeds of
    the clusters they are close to; otherwise it says what does hold (its readers, the topic
    the reader read or picked)."""
    if not personal:
        when = "New" if age_hours < 24 else "Popular"
        return f"{when} in {category}: the feed is popular and fresh stories until you click or pick topics."
    if warm:
        claim = found.claim if found is not None else None
        if claim:
            return f"Readers like you read it: {claim}." + (f" You read “{because}” in {category}." if because
                                                            else "")
        readers = f"Read by {found.seeds} recent readers" if found is not None else "Read by recent readers"
        if because:
            return f"{readers}, on a topic you read ({category}), like “{because}”."
        if picked:
            return f"{readers}, on a topic you picked: {category}."
        return f"{readers}, in {category}."
    if because:
        return f"New story on a topic you read ({category}), like “{because}”."
    if picked:
        return f"New story on a topic you picked: {category}."
    return f"New in {category}." if age_hours < 24 else f"Popular in {category}."
