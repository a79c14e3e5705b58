"""The reader vector E_u of any reader, now, from the trained user tower: no retraining.

The tower is a function of a reader's features (recsys.features), so a reader who signed up
a minute ago, or whose last click came after training, gets a vector the moment they have
any: their clicked stories (ids the tower knows, and for every story its category,
subcategory and keywords, which new stories have too), the topics they picked (as
categories, the field a topic is) and their profile fields. A reader with none of these
gets the vector of the tower's constant field alone: the population's average reader.

    tower = OnlineTower(load_tower(folder))
    e_u = tower.vector(clicked=[ClickedStory(...), ...], topics=["sports"], profile={"region": "north"})
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from recsys.interactions import KEYWORDS_PER_ITEM, tokenize
from recsys.stage1 import Stage1Result


@dataclass(frozen=True)
class ClickedStory:
    """A story the reader clicked, as the database knows it (`key`: the id the tower was
    trained with, e.g. str(pk))."""

    key: str
    category: str
    subcategory: str = ""
    text: str = ""


@dataclass(frozen=True)
class ReaderFeatures:
    """What the vector was computed from (for the admin and the "why" of a feed)."""

    known_items: int  # clicked stories the tower was trained on
    new_items: int  # clicked stories published after training (category, keywords only)
    topics: int  # picked topics the tower has a category for
    profile_fields: int  # profile fields with a value the tower knows


class OnlineTower:
    """A trained tower with its vocabularies, for one reader at a time (about a millisecond)."""

    def __init__(self, result: Stage1Result) -> None:
        self.result = result
        inter = result.builder.inter
        self.max_history = result.builder.max_history
        self.dim = result.tower.config.dim
        self._item = {k: n for n, k in enumerate(inter.item_keys)}
        self._item_category = inter.item_category
        self._item_subcategory = inter.item_subcategory
        self._item_keywords = inter.item_keywords
        self._category = {c: n for n, c in enumerate(inter.categories) if n > 0}
        self._subcategory = {c: n for n, c in enumerate(inter.subcategories) if n > 0}
        self._keyword = {w: n for n, w in enumerate(inter.keywords) if n > 0}
        self._profile = {f: {v: n for n, v in enumerate(vocab) if n > 0} for f, vocab in inter.profile_vocab.items()}
        result.tower.eval()

    def fields(self, *, clicked: Sequence[ClickedStory], topics: Sequence[str] = (),
               profile: dict[str, str] | None = None) -> tuple[dict[str, np.ndarray], ReaderFeatures]:
        """The tower's input fields for one reader (each (1, length) int64). `clicked`:
        oldest first; the latest max_history count."""
        L, kw = self.max_history, KEYWORDS_PER_ITEM
        clicked = list(clicked)[-L:]
        items, cats, subs, words = [], [], [], []
        known = 0
        for story in clicked:
            n = self._item.get(story.key)
            if n is not None:  # a story the tower was trained on: its own codes
                known += 1
                items.append(n + 1)
                cats.append(int(self._item_category[n]))
                subs.append(int(self._item_subcategory[n]))
                words.extend(int(w) for w in self._item_keywords[n] if w)
            else:  # published after training: its category, subcategory and known words
                cats.append(self._category.get(story.category, 0))
                subs.append(self._subcategory.get(story.subcategory, 0))
                own = sorted({self._keyword[w] for w in tokenize(story.text) if w in self._keyword})
                words.extend(own[:kw])
        picked = [self._category[t] for t in dict.fromkeys(topics) if t in self._category]
        cats = (picked + cats)[-L:]
        out = {"item_ids": _row(items, L), "categories": _row(cats, L), "subcategories": _row(subs, L),
               "keywords": _row(words, L * kw)}
        n_profile = 0
        for name, vocab in self._profile.items():
            value = (profile or {}).get(name) or "unknown"
            code = vocab.get(value, 0)
            n_profile += code > 0 and value != "unknown"
            out[f"profile_{name}"] = np.array([[code]], np.int64)
        return out, ReaderFeatures(known, len(clicked) - known, len(picked), n_profile)

    def vector(self, *, clicked: Sequence[ClickedStory], topics: Sequence[str] = (),
               profile: dict[str, str] | None = None) -> np.ndarray:
        """E_u (dim,) float32."""
        return self.embed(self.fields(clicked=clicked, topics=topics, profile=profile)[0])

    def embed(self, fields: dict[str, np.ndarray]) -> np.ndarray:
        """E_u (dim,) float32 of one reader's fields (as `fields` returns them)."""
        with torch.no_grad():
            return self.result.tower({k: torch.from_numpy(v) for k, v in fields.items()})[0][0].numpy().astype(
                np.float32)

    def vectors(self, readers: Sequence[tuple[Sequence[ClickedStory], Sequence[str], dict | None]]) -> np.ndarray:
        """E_u of several readers at once: (R, dim) float32."""
        if not readers:
            return np.zeros((0, self.dim), np.float32)
        rows = [self.fields(clicked=c, topics=t, profile=p)[0] for c, t, p in readers]
        batch = {k: torch.from_numpy(np.concatenate([r[k] for r in rows])) for k in rows[0]}
        with torch.no_grad():
            return self.result.tower(batch)[0].numpy().astype(np.float32)


def _row(values: list[int], length: int) -> np.ndarray:
    out = np.zeros((1, length), np.int64)
    values = [v for v in values if v][-length:]
    out[0, : len(values)] = values
    return out
