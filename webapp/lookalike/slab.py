"""The recently-used slab: the item states a process last used of a serving store too large
to copy, padded in place so that a request only gathers rows."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from recsys.serving import ItemState


class Slab:
    """The states a process last used of a store too large to copy, padded in place: at most
    `capacity` items, the least recently used one's slot going to the next. The arrays are
    allocated whole but their pages are only taken as slots fill."""

    def __init__(self, capacity: int, k: int, dim: int) -> None:
        self.k = k
        self.cents = np.zeros((capacity, k, dim), np.float32)
        self.sizes = np.zeros((capacity, k), np.float32)
        self.mask = np.zeros((capacity, k), bool)
        self.e_global = np.zeros((capacity, dim), np.float32)
        self.slot: OrderedDict[int, int] = OrderedDict()
        self.free = list(range(capacity - 1, -1, -1))
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.slot)

    def put(self, item: int, state: ItemState) -> int:
        """The lock held: the item's state in a slot (a free one, else the least recently used)."""
        slot = self.slot.pop(item, None)
        if slot is None:
            slot = self.free.pop() if self.free else self.slot.popitem(last=False)[1]
        n = min(len(state.sizes), self.k)
        self.cents[slot], self.sizes[slot], self.mask[slot] = 0.0, 0.0, False
        self.cents[slot, :n], self.sizes[slot, :n], self.mask[slot, :n] = state.centroids[:n], state.sizes[:n], True
        self.e_global[slot] = state.e_global
        self.slot[item] = slot
        return slot

    def drop(self, item: int) -> None:
        """The lock held."""
        slot = self.slot.pop(item, None)
        if slot is not None:
            self.free.append(slot)

