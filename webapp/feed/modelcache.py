"""The ranker's models of the active runs (cold-start with its calibration, CTR): loaded once
per pair of runs through the model registry, and re-checked when the look-alike pointer moves."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from recsys import ranker
from recsys.artifacts import ArtifactError, load_coldstart, load_ctr
from webapp.common import degraded
from webapp.lookalike import store
from webapp.lookalike.models import ModelKind, ModelRun
from webapp.lookalike.registry import registry

log = logging.getLogger(__name__)
RANKER = "ranker"  # the registry's kind for the ranker's models, keyed by (cold-start run, CTR run)


@dataclass
class Models:
    """The ranker's models of the active runs (recsys.ranker.Models), and the CTR model's
    prior CTR (its item-CTR feature's smoothing)."""

    key: tuple[int | None, int | None] = (None, None)
    ranker: ranker.Models | None = None
    prior: float = 0.05
    error: str | None = None


class ModelCache:
    """Reloaded when the look-alike pointer in Redis moves (every run switch moves it) or,
    without Redis, once a minute."""

    def __init__(self) -> None:
        self._models = Models()
        self._pointer: int | None = -1
        self._checked = 0.0
        self._lock = threading.Lock()
        registry.on_clear(self.clear)

    def clear(self) -> None:
        with self._lock:
            self._models, self._pointer = Models(), -1

    def get(self, r: redis.Redis | None, pointers: store.Pointers | None = None) -> Models:
        """`pointers`: the look-alike pointer as the request read it (else asked here)."""
        try:
            pointer = pointers.lookalike if pointers is not None else store.active_lookalike_get(r=r)
        except redis.RedisError as exc:
            pointer = self._pointer if time.monotonic() - self._checked < 60 else -2
            degraded.note(f"redis unreachable ({exc.__class__.__name__}): models as of the last check",
                          kind=degraded.REDIS)
        if pointer == self._pointer:
            return self._models
        with self._lock:
            runs = {k: ModelRun.objects.filter(kind=k, is_active=True).values_list("pk", "artifact_path").first()
                    for k in (ModelKind.COLDSTART, ModelKind.CTR)}
            key = tuple(v[0] if v else None for v in runs.values())
            if key != self._models.key:
                self._models = registry.get(RANKER, key, lambda: self._load(runs, key))
            self._pointer, self._checked = pointer, time.monotonic()
            return self._models

    @staticmethod
    def _load(runs: dict, key) -> Models:
        if not runs[ModelKind.COLDSTART] or not runs[ModelKind.CTR]:
            return Models(key=key)
        try:
            cold = load_coldstart(Path(runs[ModelKind.COLDSTART][1]))
            ctr = load_ctr(Path(runs[ModelKind.CTR][1]))
        except ArtifactError as exc:
            log.error("ranker models not loaded, the feed falls back to the baseline: %s", exc)
            return Models(key=key, error=str(exc))
        cal = cold["calibration"]
        # An artifact without a learned-weight model (too little to fit it, or written before
        # there was one) lacks its key: that arm falls back.
        served = ranker.models_from(cold["model"], ctr, cold_map=cal.cold if cal is not None else None,
                                    warm_map=cal.warm if cal is not None else None)
        if served is None:
            return Models(key=key)
        return Models(key=key, prior=float(ctr["meta"].get("prior", 0.05)), ranker=served)


models = ModelCache()
