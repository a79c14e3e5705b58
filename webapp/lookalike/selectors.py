"""Reads of look-alike state."""

from __future__ import annotations

from datetime import datetime

from webapp.lookalike.models import LookalikeState, ModelKind, ModelRun, ReaderVector, SeedSet


def active_run(*, kind: str) -> ModelRun | None:
    return ModelRun.objects.filter(kind=kind, is_active=True).first()


def item_seed_stats(*, item_id: int, sample: int = 20) -> dict:
    """An item's seed set and its clusters under the active look-alike run."""
    seeds = SeedSet.objects.filter(item_id=item_id).first()
    state = LookalikeState.objects.filter(item_id=item_id, model_run__kind=ModelKind.LOOKALIKE,
                                          model_run__is_active=True).first()
    return {"count": seeds.count if seeds else 0, "updated_at": seeds.updated_at if seeds else None,
            "sample": list(seeds.seed_reader_ids[:sample]) if seeds else [],
            "clusters": list(state.cluster_sizes) if state else [],
            "computed_at": state.computed_at if state else None}


def reader_vector_computed_at(*, reader_id: int) -> datetime | None:
    """When the reader's vector under an active tower run was last computed (None: never)."""
    return ReaderVector.objects.filter(reader_id=reader_id, model_run__is_active=True).order_by(
        "-computed_at").values_list("computed_at", flat=True).first()
