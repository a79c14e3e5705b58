"""A past reading history of simulated readers, drawn in bulk: which stories each session
was shown, in which order, and which it clicked, under the hidden click model
(recsys.simulation) and an exploring logging policy.

The logging policy ranks a session's live stories by a Plackett-Luce draw (the Gumbel top-k
trick) over
    score = log_affinity * affinity(reader's clicks so far, per category)
          + log_popularity * log1p(story's clicks so far) - freshness
so pages lean to what the reader and everybody clicked, and every live story keeps a chance
at every position: the log holds the shown-and-not-clicked stories a CTR model and stage 2
learn from, and positions vary for the same story (the position effect is identifiable).
What the policy knows (clicks so far) is updated once per `block` of simulated time, as the
minute's jobs update counts; the truth the readers click by is never used to rank.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from recsys.profiles import category_affinity
from recsys.simulation import ClickModel, ItemTruth, ReaderTruth, reader_audiences


@dataclass(frozen=True)
class LoggingPolicy:
    log_affinity: float = 1.0  # weight of the reader's category affinity from their clicks so far
    log_popularity: float = 0.5  # weight of log1p(the story's clicks so far)
    freshness_per_day: float = 0.5  # score lost per day of age
    block_minutes: float = 20.0  # what the policy knows is updated this often


@dataclass
class TruthMatrix:
    """The click model's truth as arrays: the attraction logit of reader r for item i at age
    a is `base[r, i] - w_freshness * a / half_life`; `category_term` is its category part.
    What no label names (the taste match and the audience groups) is
    `reader_hidden @ item_hidden.T`: the readers' side carries the weights, the items' side
    is the stories' hidden features as they are (taste, one-hot audience)."""

    base: np.ndarray  # (R, I) float64
    category_term: np.ndarray  # (R, I) w_category * log interest in the item's category
    reader_hidden: np.ndarray | None = None  # (R, H) weighted taste and audience memberships
    item_hidden: np.ndarray | None = None  # (I, H) taste and one-hot audience group
    reader_traits: np.ndarray | None = None  # (R, H) taste and audience memberships, unweighted

    @classmethod
    def build(cls, model: ClickModel, readers: list[ReaderTruth], items: list[ItemTruth]) -> TruthMatrix:
        c, tax = model.config, model.taxonomy
        n_cat = len(tax)
        cats = sorted({it.category for it in items} | set(tax))
        subs = sorted({(it.category, it.subcategory) for it in items})
        cat_of = np.array([cats.index(it.category) for it in items])
        sub_of = np.array([subs.index((it.category, it.subcategory)) for it in items])
        log_cat = np.full((len(readers), len(cats)), c.min_log_interest)
        log_sub = np.full((len(readers), len(subs)), c.min_log_interest)
        for r, rd in enumerate(readers):
            for k, cat in enumerate(cats):
                p = rd.interests.get(cat, 0.0)
                if p > 0:
                    log_cat[r, k] = max(math.log(n_cat * p), c.min_log_interest)
            for k, (cat, sub) in enumerate(subs):
                p = rd.sub_interests.get(cat, {}).get(sub, 0.0)
                if p > 0:
                    n_sub = len(tax.get(cat, [sub]))
                    log_sub[r, k] = max(math.log(n_sub * p), c.min_log_interest)
        tastes_r = np.stack([rd.taste for rd in readers])
        tastes_i = np.stack([it.taste for it in items])
        quality = np.array([it.quality for it in items])
        members = np.stack([reader_audiences(rd, c) for rd in readers]) if c.n_audiences else \
            np.zeros((len(readers), 0))
        audience = np.zeros((len(items), c.n_audiences))
        has = np.array([it.audience >= 0 for it in items], bool)
        if c.n_audiences and has.any():
            audience[np.flatnonzero(has), [it.audience for it in items if it.audience >= 0]] = 1.0
        reader_hidden = np.hstack([c.w_taste * tastes_r / math.sqrt(c.taste_dim), c.w_audience * members])
        item_hidden = np.hstack([tastes_i, audience])
        category_term = c.w_category * log_cat[:, cat_of]
        base = (c.bias + category_term + c.w_subcategory * log_sub[:, sub_of] + reader_hidden @ item_hidden.T
                + quality[None, :])
        return cls(base, category_term, reader_hidden, item_hidden, np.hstack([tastes_r, members]))


@dataclass
class History:
    """One row per impression, in time order; `session` indexes the session arrays."""

    session_reader: np.ndarray  # (S,) reader index
    session_time: np.ndarray  # (S,) hours from the start
    session: np.ndarray  # (N,) session index of each impression
    item: np.ndarray  # (N,) item index
    position: np.ndarray  # (N,) 0 = top
    clicked: np.ndarray  # (N,) bool

    @property
    def reader(self) -> np.ndarray:
        return self.session_reader[self.session]

    @property
    def time(self) -> np.ndarray:
        return self.session_time[self.session]


def simulate_history(
    *, model: ClickModel, truth: TruthMatrix, item_category: np.ndarray, published: np.ndarray,
    session_reader: np.ndarray, session_time: np.ndarray, feed_size: int, n_categories: int,
    rng: np.random.Generator, policy: LoggingPolicy | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> History:
    """Sessions (reader index, time in hours, sorted by time) read pages of `feed_size` from
    the stories published by then (`published`, hours; NaN = never), minus those the reader
    clicked before the session's block. A reader clicks a story at most once.
    `progress(sessions, impressions, clicks)` is called after each block."""
    p = policy or LoggingPolicy()
    cfg = model.config
    n_readers, n_items = truth.base.shape
    exam = (1.0 + np.arange(feed_size)) ** -cfg.examination_decay
    reader_cat = np.zeros((n_readers, n_categories))
    item_clicks = np.zeros(n_items)
    clicked_set = np.zeros((n_readers, n_items), bool)
    pub = np.where(np.isnan(published), np.inf, published)
    out_session, out_item, out_pos, out_click = [], [], [], []
    order = np.argsort(session_time, kind="stable")
    session_reader, session_time = np.asarray(session_reader)[order], np.asarray(session_time, np.float64)[order]
    block = p.block_minutes / 60.0
    edges = np.arange(session_time[0] if len(session_time) else 0.0, (session_time[-1] if len(session_time) else 0.0)
                      + block, block)
    starts = np.searchsorted(session_time, edges, side="left")
    ends = np.append(starts[1:], len(session_time))
    for s0, s1 in zip(starts, ends, strict=True):
        if s1 <= s0:
            continue
        sess = np.arange(s0, s1)
        r, t = session_reader[sess], session_time[sess]
        age = t[:, None] - pub[None, :]  # (B, I) hours
        live = (age >= 0) & ~clicked_set[r]
        affinity = category_affinity(reader_cat[r], reader_cat[r].sum(1, keepdims=True), n_categories)
        score = (p.log_affinity * affinity[:, item_category] + p.log_popularity * np.log1p(item_clicks)[None, :]
                 - p.freshness_per_day * np.maximum(age, 0.0) / 24.0)
        score = np.where(live, score + rng.gumbel(size=score.shape), -np.inf)
        k = min(feed_size, n_items)
        top = np.argsort(-score, axis=1)[:, :k]  # (B, k)
        shown = np.take_along_axis(live, top, axis=1)
        logits = truth.base[r[:, None], top] - cfg.w_freshness * np.take_along_axis(age, top, 1) / \
            cfg.freshness_half_life_hours
        p_click = exam[None, :k] / (1.0 + np.exp(-logits))
        click = (rng.random(p_click.shape) < p_click) & shown
        # A reader seen twice in a block clicks a story once: later clicks of the same pair drop.
        rows, cols = np.nonzero(click)
        pairs = r[rows] * n_items + top[rows, cols]
        _, first = np.unique(pairs, return_index=True)
        keep = np.zeros(len(rows), bool)
        keep[first] = True
        click[rows[~keep], cols[~keep]] = False
        ss, pp = np.nonzero(shown)
        out_session.append(sess[ss])
        out_item.append(top[ss, pp])
        out_pos.append(pp)
        out_click.append(click[ss, pp])
        cr, ci = r[rows[keep]], top[rows[keep], cols[keep]]
        clicked_set[cr, ci] = True
        np.add.at(reader_cat, (cr, item_category[ci]), 1.0)
        np.add.at(item_clicks, ci, 1.0)
        if progress:
            progress(int(s1 - s0), int(shown.sum()), int(keep.sum()))
    cat = lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)  # noqa: E731
    return History(session_reader=session_reader, session_time=session_time, session=cat(out_session, np.int64),
                   item=cat(out_item, np.int64), position=cat(out_pos, np.int64), clicked=cat(out_click, bool))


def session_times(*, hours: float, sessions: int, end_hour_of_day: float,
                  rng: np.random.Generator) -> np.ndarray:
    """`sessions` times in [0, hours), busier in the day than at night (the live
    simulator's daily curve), sorted; `end_hour_of_day`: the clock hour at `hours`."""
    out = np.zeros(0)
    while len(out) < sessions:
        t = rng.uniform(0, hours, 2 * sessions)
        hour_of_day = (end_hour_of_day - (hours - t) + 0.5) % 24
        keep = rng.random(len(t)) < 0.35 + 0.65 * np.sin(np.pi * hour_of_day / 24) ** 2
        out = np.concatenate([out, t[keep]])
    return np.sort(out[:sessions])
