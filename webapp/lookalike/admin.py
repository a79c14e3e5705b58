from __future__ import annotations

from django.contrib import admin

from webapp.lookalike.models import LookalikeState, ModelRun, ReaderVector, SeedSet


@admin.register(ModelRun)
class ModelRunAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "version", "is_active", "created_at", "finished_at"]
    list_filter = ["kind", "is_active"]


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
