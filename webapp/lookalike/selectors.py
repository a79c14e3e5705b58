"""Reads of look-alike state."""

from __future__ import annotations

from datetime import datetime

from webapp.lookalike.models import LookalikeState, ModelKind, ModelRun, ReaderVector, SeedSet
from webapp.news.models import Reader, Source


def active_run(*, kind: str) -> ModelRun | None:
    return ModelRun.objects.filter(kind=kind, is_active=True).first()


def item_seed_stats(*, item_id: int, sample: int = 20) -> dict:
    """An item's seed set and its clusters under the active look-alike run, for anyone to
    read: the sample names the latest seeds that are public personas (demo and imported
    readers); readers created on the web are counted, never named."""
    seeds = SeedSet.objects.filter(item_id=item_id).first()
    state = LookalikeState.objects.filter(item_id=item_id, model_run__kind=ModelKind.LOOKALIKE,
                                          model_run__is_active=True).first()
    ids = list(seeds.seed_reader_ids) if seeds else []
    public = set(Reader.objects.filter(pk__in=ids).exclude(source=Source.WEB).values_list("pk", flat=True))
    return {"count": seeds.count if seeds else 0, "updated_at": seeds.updated_at if seeds else None,
            "sample": [r for r in ids if r in public][:sample],
            "clusters": list(state.cluster_sizes) if state else [],
            "computed_at": state.computed_at if state else None}


def reader_vector_computed_at(*, reader_id: int) -> datetime | None:
    """When the reader's vector under an active tower run was last computed (None: never)."""
    return ReaderVector.objects.filter(reader_id=reader_id, model_run__is_active=True).order_by(
        "-computed_at").values_list("computed_at", flat=True).first()
