"""Interaction logs as integer arrays: the one input format of every model and of the replay.

Both the offline evaluation (from recsys.datasets files) and `manage.py train` (from Postgres)
build an `Interactions`; nothing downstream knows where the data came from.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from recsys.datasets import Dataset

PAD = "<pad>"
KEYWORDS_PER_ITEM = 5
_TOKEN = re.compile(r"[a-z][a-z'-]{2,}")
_STOP = frozenset("""the and for with that this from have has had was were are will would into over after
about than then they their them its his her she him who what when where which while been being also more
most such some any all not but out off one two new said says can could may might our your you says
genres tags none""".split())


def tokenize(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in _STOP]


@dataclass
class Interactions:
    """Readers, items and their clicks (sorted by time) as integer codes.

    Code 0 of every vocabulary is padding; real categories, keywords and profile values
    start at 1. Times are float seconds since the epoch.
    """

    reader_keys: list[str]
    item_keys: list[str]
    item_category: np.ndarray  # (I,) int32
    item_subcategory: np.ndarray  # (I,) int32
    item_keywords: np.ndarray  # (I, KEYWORDS_PER_ITEM) int32, 0-padded
    item_text: list[str]
    categories: list[str]
    subcategories: list[str]
    keywords: list[str]
    profile: dict[str, np.ndarray]  # field -> (R,) int32
    profile_vocab: dict[str, list[str]]
    click_reader: np.ndarray  # (N,) int32
    click_item: np.ndarray  # (N,) int32
    click_time: np.ndarray  # (N,) float64, non-decreasing
    # When each item came out (publication, release), NaN if unknown: the freshness feature.
    # Never derived from clicks: "first clicked now" would give the click away.
    item_published: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    # Logged impressions, when the source has them (MIND, the demo): one row per item shown.
    imp_request: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    imp_reader: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    imp_item: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    imp_time: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    imp_clicked: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    imp_position: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # on the page, 0 first

    @property
    def n_readers(self) -> int:
        return len(self.reader_keys)

    @property
    def n_items(self) -> int:
        return len(self.item_keys)

    @property
    def has_impressions(self) -> bool:
        return len(self.imp_item) > 0


def _codes(values: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    vocab = [PAD, *sorted(set(values))]
    index = {v: i for i, v in enumerate(vocab)}
    return np.array([index[v] for v in values], dtype=np.int32), vocab


def _keywords(texts: Sequence[str], per_item: int, min_df: int = 2) -> tuple[np.ndarray, list[str]]:
    """Each item's most specific shared words: the rarest (highest idf) with df >= min_df."""
    docs = [set(tokenize(t)) for t in texts]
    df = Counter(w for d in docs for w in d)
    vocab = [PAD, *sorted(w for w, c in df.items() if c >= min_df and c <= 0.2 * len(docs))]
    index = {w: i for i, w in enumerate(vocab)}
    out = np.zeros((len(docs), per_item), dtype=np.int32)
    for row, words in enumerate(docs):
        kept = sorted((w for w in words if w in index), key=lambda w: (df[w], w))[:per_item]
        out[row, : len(kept)] = [index[w] for w in kept]
    return out, vocab


def build_interactions(
    *,
    reader_keys: Sequence[str],
    item_keys: Sequence[str],
    item_category: Sequence[str],
    item_subcategory: Sequence[str],
    item_text: Sequence[str],
    clicks: Sequence[tuple[str, str, float]],
    profiles: dict[str, Sequence[str]] | None = None,
    impressions: Sequence[tuple[str, str, str, float, bool]] = (),
    item_published: Sequence[float | None] | None = None,
) -> Interactions:
    """`clicks` are (reader key, item key, time); `impressions` are (request key, reader key,
    item key, time, clicked); `profiles` maps a field to one value per reader, in order."""
    r_index = {k: i for i, k in enumerate(reader_keys)}
    i_index = {k: i for i, k in enumerate(item_keys)}
    cat, categories = _codes(item_category)
    sub, subcategories = _codes(item_subcategory)
    kw, keywords = _keywords(item_text, KEYWORDS_PER_ITEM)
    prof, prof_vocab = {}, {}
    for name, values in (profiles or {}).items():
        prof[name], prof_vocab[name] = _codes([v or "unknown" for v in values])
    inter = Interactions(
        reader_keys=list(reader_keys), item_keys=list(item_keys), item_category=cat,
        item_subcategory=sub, item_keywords=kw, item_text=list(item_text), categories=categories,
        subcategories=subcategories, keywords=keywords, profile=prof, profile_vocab=prof_vocab,
        click_reader=np.zeros(0, np.int32), click_item=np.zeros(0, np.int32), click_time=np.zeros(0, np.float64),
        item_published=np.array([np.nan if p is None else p for p in (item_published or [None] * len(item_keys))],
                                dtype=np.float64),
    )
    clicks_set(inter, reader=np.array([r_index[c[0]] for c in clicks], dtype=np.int32),
               item=np.array([i_index[c[1]] for c in clicks], dtype=np.int32),
               time=np.array([c[2] for c in clicks], dtype=np.float64))
    if impressions:
        requests = {k: n for n, k in enumerate(dict.fromkeys(i[0] for i in impressions))}
        request = np.array([requests[i[0]] for i in impressions], dtype=np.int64)
        impressions_set(inter, request=request, reader=np.array([r_index[i[1]] for i in impressions], dtype=np.int32),
                        item=np.array([i_index[i[2]] for i in impressions], dtype=np.int32),
                        time=np.array([i[3] for i in impressions], dtype=np.float64),
                        clicked=np.array([i[4] for i in impressions], dtype=bool), position=shown_order(request))
    return inter


def clicks_set(inter: Interactions, *, reader: np.ndarray, item: np.ndarray, time: np.ndarray) -> None:
    """Give `inter` its clicks, (N,) reader and item indices and times, sorted by time."""
    order = np.argsort(time, kind="stable")
    inter.click_reader = np.asarray(reader, np.int32)[order]
    inter.click_item = np.asarray(item, np.int32)[order]
    inter.click_time = np.asarray(time, np.float64)[order]


def impressions_set(inter: Interactions, *, request: np.ndarray, reader: np.ndarray, item: np.ndarray,
                    time: np.ndarray, clicked: np.ndarray, position: np.ndarray) -> None:
    """Give `inter` its logged impressions, each (N,): request codes, reader and item indices,
    times, clicked, positions on the page."""
    inter.imp_request = np.asarray(request, np.int64)
    inter.imp_reader = np.asarray(reader, np.int32)
    inter.imp_item = np.asarray(item, np.int32)
    inter.imp_time = np.asarray(time, np.float64)
    inter.imp_clicked = np.asarray(clicked, bool)
    inter.imp_position = np.asarray(position, np.int64)


def shown_order(request: np.ndarray) -> np.ndarray:
    """Each row's place among the earlier rows of its request (0 first): the position of rows
    given in shown order. (N,) -> (N,)."""
    request = np.asarray(request, np.int64)
    order = np.argsort(request, kind="stable")
    req = request[order]
    starts = np.flatnonzero(np.r_[True, req[1:] != req[:-1]]) if len(req) else np.zeros(0, np.int64)
    out = np.empty(len(request), np.int64)
    out[order] = np.arange(len(request)) - np.repeat(starts, np.diff(np.r_[starts, len(request)]))
    return out


def from_dataset(ds: Dataset) -> Interactions:
    """Interactions of a parsed MovieLens or MIND dataset. An item's publication time is its
    release date where the data has one (MovieLens titles), else its first impression (MIND)."""
    first_shown: dict[str, float] = {}
    for imp in ds.impressions:
        t = imp.shown_at.timestamp()
        first_shown[imp.item] = min(first_shown.get(imp.item, t), t)
    published = [i.released_at.timestamp() if i.released_at else first_shown.get(i.external_id) for i in ds.items]
    return build_interactions(
        item_published=published,
        reader_keys=ds.readers,
        item_keys=[i.external_id for i in ds.items],
        item_category=[i.category for i in ds.items],
        item_subcategory=[i.subcategory for i in ds.items],
        item_text=[f"{i.title}. {i.abstract}" for i in ds.items],
        clicks=[(c.reader, c.item, c.clicked_at.timestamp()) for c in ds.clicks],
        impressions=[(i.request_id, i.reader, i.item, i.shown_at.timestamp(), i.clicked)
                     for i in ds.impressions],
    )


def histories_before(inter: Interactions, *, before: float, cap: int,
                     readers: np.ndarray | None = None) -> list[np.ndarray]:
    """Each reader's latest `cap` clicked items before `before`, oldest first (item indices).
    `readers` defaults to all."""
    keep = inter.click_time < before
    r, i = inter.click_reader[keep], inter.click_item[keep]
    order = np.argsort(r, kind="stable")  # stable: time order kept within a reader
    r, i = r[order], i[order]
    bounds = np.searchsorted(r, np.arange(inter.n_readers + 1))
    wanted = np.arange(inter.n_readers) if readers is None else readers
    return [i[max(bounds[u], bounds[u + 1] - cap): bounds[u + 1]] for u in wanted]
