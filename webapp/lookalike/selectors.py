"""Reads of look-alike state."""

from __future__ import annotations

from webapp.lookalike.models import ModelRun


def active_run(*, kind: str) -> ModelRun | None:
    return ModelRun.objects.filter(kind=kind, is_active=True).first()
