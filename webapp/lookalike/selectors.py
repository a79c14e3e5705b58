"""Reads of look-alike state."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count

from webapp.lookalike.models import ModelKind, ModelRun, ReaderVector
from webapp.news.models import Click


def active_run(*, kind: str) -> ModelRun | None:
    return ModelRun.objects.filter(kind=kind, is_active=True).first()


def seed_counts(*, item_ids: Iterable[int] | None = None) -> dict[int, int]:
    """Per item, how many distinct readers with a vector under the active tower clicked it."""
    run = active_run(kind=ModelKind.USER_TOWER)
    if run is None:
        return {}
    with_vector = ReaderVector.objects.filter(model_run=run).values("reader_id")
    clicks = Click.objects.filter(reader_id__in=with_vector)
    if item_ids is not None:
        clicks = clicks.filter(item_id__in=list(item_ids))
    return dict(clicks.values("item_id").annotate(n=Count("reader_id", distinct=True)).values_list("item_id", "n"))
