from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html_join

from webapp.lookalike.models import LookalikeState, ModelRun, ReaderVector, SeedSet


@admin.register(ModelRun)
class ModelRunAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "version", "is_active", "headline", "created_at", "finished_at"]
    list_filter = ["kind", "is_active"]
    readonly_fields = ["metrics_table"]

    @admin.display(description="metrics")
    def headline(self, obj: ModelRun) -> str:
        m = obj.metrics or {}
        parts = [f"val AUC {m['val_auc']}" if m.get("val_auc") is not None else "",
                 f"CTR val AUC {m['ctr'].get('val_auc')}" if isinstance(m.get("ctr"), dict) else "",
                 f"samples {m['samples']:,}" if isinstance(m.get("samples"), int) else "",
                 f"{m['seconds']} s" if m.get("seconds") is not None else ""]
        return ", ".join(p for p in parts if p) or "-"

    @admin.display(description="all metrics")
    def metrics_table(self, obj: ModelRun) -> str:
        rows = [(k, json.dumps(v)[:300]) for k, v in sorted((obj.metrics or {}).items()) if k != "history"]
        return format_html_join("\n", "<div><strong>{}</strong>: <code>{}</code></div>", rows) or "-"


@admin.register(SeedSet)
class SeedSetAdmin(admin.ModelAdmin):
    list_display = ["item", "count", "dirty", "updated_at"]
    list_filter = ["dirty"]
    raw_id_fields = ["item"]
    search_fields = ["item__title"]


@admin.register(LookalikeState)
class LookalikeStateAdmin(admin.ModelAdmin):
    list_display = ["item", "model_run", "k", "dim", "computed_at"]
    raw_id_fields = ["item", "model_run"]
    exclude = ["centroids", "global_embedding"]


@admin.register(ReaderVector)
class ReaderVectorAdmin(admin.ModelAdmin):
    list_display = ["reader", "model_run", "dim", "computed_at"]
    list_filter = ["model_run"]
    raw_id_fields = ["reader", "model_run"]
    exclude = ["vector"]
