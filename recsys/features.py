"""Reader features for the user tower: one field per kind of signal, built from a reader's
clicks before a cut time and their profile. Multi-valued fields are index lists (0 = pad)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.interactions import Interactions, histories_before


@dataclass(frozen=True)
class FieldSpec:
    name: str
    vocab: int  # embedding rows, including padding row 0
    length: int  # values per reader (1 for a single-valued field)


class FeatureBuilder:
    """Turns (reader, history) pairs into padded field arrays.

    Fields: `item_ids` (ids of the latest clicked items), `categories` and `subcategories` of
    those items, `keywords` of their title/abstract, and one field per profile attribute.
    """

    def __init__(self, inter: Interactions, max_history: int = 50) -> None:
        self.inter, self.max_history = inter, max_history
        kw = inter.item_keywords.shape[1]
        self.specs = [
            FieldSpec("item_ids", inter.n_items + 1, max_history),
            FieldSpec("categories", len(inter.categories), max_history),
            FieldSpec("subcategories", len(inter.subcategories), max_history),
            FieldSpec("keywords", len(inter.keywords), max_history * kw),
        ] + [FieldSpec(f"profile_{n}", len(v), 1) for n, v in inter.profile_vocab.items()]

    def histories(self, *, before: float, readers: np.ndarray | None = None,
                  extra: int = 0) -> list[np.ndarray]:
        """Each reader's latest `max_history + extra` clicked items before `before`, oldest
        first, as item indices. `readers` defaults to all."""
        return histories_before(self.inter, before=before, cap=self.max_history + extra, readers=readers)

    def batch(self, readers: np.ndarray, histories: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Field arrays for B readers: each of shape (B, length), int64."""
        inter, L = self.inter, self.max_history
        items = np.zeros((len(readers), L), dtype=np.int64)  # item index + 1; 0 = pad
        for row, hist in enumerate(histories):
            hist = hist[-L:]
            items[row, : len(hist)] = hist + 1
        present = items > 0
        idx = np.maximum(items - 1, 0)
        out = {
            "item_ids": items,
            "categories": np.where(present, inter.item_category[idx], 0),
            "subcategories": np.where(present, inter.item_subcategory[idx], 0),
            "keywords": np.where(present[..., None], inter.item_keywords[idx], 0).reshape(len(readers), -1),
        }
        for name, codes in inter.profile.items():
            out[f"profile_{name}"] = codes[readers][:, None].astype(np.int64)
        return {k: v.astype(np.int64) for k, v in out.items()}
