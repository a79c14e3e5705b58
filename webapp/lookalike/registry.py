"""The model registry: each model run's loaded model, once per process, shared by the feed,
the refresh, the online tower and the admin pages.

Keyed by (kind, model run id): the first `get` of a key calls its loader, later ones return
what it loaded. A hit takes no lock; a load holds its key's lock, so two threads never load one
run twice and a slow load does not hold up another key. A loader's error is not kept: the next
`get` tries again. A kind keeps its latest KEEP_PER_KIND runs, so a run switch leaves the
previous run's model to the requests still on it and the process does not grow with every
retraining.

`clear()` forgets every model and whatever was built on them (`on_clear`): what a process
starting now would have. Tests clear it, their databases reusing run ids.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

from recsys.artifacts import load_lookalike, load_tower
from recsys.online import OnlineTower
from recsys.serving import LookalikeScorer
from webapp.lookalike.models import ModelKind

T = TypeVar("T")
KEEP_PER_KIND = 2  # runs of one kind kept loaded: the serving one and the one it replaced


class ModelRegistry:
    """Loaded models keyed by (kind, model run id); `get` loads a key once, thread-safe."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, Hashable], Any] = {}
        self._current: dict[str, tuple[Hashable, Any]] = {}
        self._loading: dict[tuple[str, Hashable], threading.Lock] = {}
        self._lock = threading.Lock()  # held briefly, around changes of the dicts
        self._hooks: list[Callable[[], None]] = []

    def get(self, kind: str, run: Hashable, load: Callable[[], T]) -> T:
        """The model of this kind of the run, `load()`ed by the first get in this process (its
        exception, if any, propagates and nothing is kept)."""
        key = (kind, run)
        model = self._models.get(key)
        if model is None:
            model = self._load(key, load)
        self._used(kind, run, model)
        return model

    def _used(self, kind: str, run: Hashable, model: Any) -> None:
        if self._current.get(kind, (None,))[0] != run:
            self._current[kind] = (run, model)

    def _load(self, key: tuple[str, Hashable], load: Callable[[], T]) -> T:
        with self._lock:
            lock = self._loading.setdefault(key, threading.Lock())
        with lock:
            model = self._models.get(key)
            if model is not None:  # loaded by the thread this one waited for
                return model
            model = load()
            with self._lock:
                self._models[key] = model
                self._loading.pop(key, None)
                of_kind = [k for k in self._models if k[0] == key[0]]
                for old in of_kind[:-KEEP_PER_KIND]:
                    del self._models[old]
            return model

    def find(self, kind: str, run: Hashable) -> Any | None:
        """The run's model if this process loaded it, else None (nothing is loaded); a model
        found counts as used, as one got does (`current`)."""
        model = self._models.get((kind, run))
        if model is not None:
            self._used(kind, run, model)
        return model

    def current(self, kind: str) -> tuple[Hashable, Any] | None:
        """(run, model) last got or found of this kind, for when the serving run cannot be asked."""
        return self._current.get(kind)

    def on_clear(self, hook: Callable[[], None]) -> Callable[[], None]:
        """Call `hook` at every `clear`: a per-process copy built on a model forgets it too."""
        with self._lock:
            self._hooks.append(hook)
        return hook

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            self._current.clear()
            self._loading.clear()
            hooks = list(self._hooks)
        for hook in hooks:
            hook()


registry = ModelRegistry()


def clear() -> None:
    """Forget every loaded model and every copy built on one, as in a process starting now."""
    registry.clear()


def lookalike_scorer(run: int, path: str) -> LookalikeScorer:
    """The run's look-alike model as a numpy scorer (ArtifactError if it cannot be loaded)."""
    return registry.get(ModelKind.LOOKALIKE, run, lambda: LookalikeScorer.from_model(load_lookalike(Path(path))))


def online_tower(run: int, path: str) -> OnlineTower:
    """The run's user tower, ready to embed a reader (ArtifactError if it cannot be loaded)."""
    return registry.get(ModelKind.USER_TOWER, run, lambda: OnlineTower(load_tower(Path(path))))
