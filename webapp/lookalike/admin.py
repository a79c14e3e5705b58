"""The admin of RALM's state, and of readers and stories with what RALM knows of them: a
reader's vector age, an item's seeds page (clusters, projection, attention, "score this
item for reader X")."""

from __future__ import annotations

import json
from datetime import timedelta

from django import forms
from django.contrib import admin
from django.db import transaction
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince

from webapp.common.catalog import catalog_changed
from webapp.common.ids import ID_MAX, IntegerFormField
from webapp.lookalike.insight import seed_view
from webapp.lookalike.models import LookalikeState, ModelRun, ReaderVector, SeedSet
from webapp.news.models import Click, Item, Reader, Source
from webapp.news.services import item_edited


class ScoreForm(forms.Form):
    reader = IntegerFormField(min_value=1, max_value=ID_MAX, label="Score for reader id")


class NewReaderFilter(admin.SimpleListFilter):
    title = "new readers"
    parameter_name = "new"

    def lookups(self, request, model_admin):
        return [("web", "signed up on the web"), ("day", "created in the last day")]

    def queryset(self, request, queryset):
        if self.value() == "web":
            return queryset.filter(source=Source.WEB)
        if self.value() == "day":
            return queryset.filter(created_at__gte=timezone.now() - timedelta(days=1))
        return queryset


@admin.register(Reader)
class ReaderAdmin(admin.ModelAdmin):
    """Readers, newest first; for each, the clicks so far and how old their serving vector
    (E_u under the active user tower) is: a web reader's is recomputed after every click."""

    list_display = ["id", "name", "source", "user", "topics_list", "clicks", "created_at", "vector_age",
                    "region", "age_band", "device"]
    list_filter = [NewReaderFilter, "source", "region", "age_band", "device"]
    search_fields = ["name", "external_id", "user__username"]
    ordering = ["-created_at", "-id"]
    list_select_related = ["user"]
    readonly_fields = ["vector_age"]

    def get_queryset(self, request):
        vector_at = ReaderVector.objects.filter(reader=OuterRef("pk"), model_run__is_active=True) \
            .order_by("-computed_at").values("computed_at")[:1]
        n_clicks = Click.objects.filter(reader=OuterRef("pk")).order_by().values("reader") \
            .annotate(n=Count("id")).values("n")[:1]
        return super().get_queryset(request).annotate(vector_at=Subquery(vector_at),
                                                      n_clicks=Coalesce(Subquery(n_clicks), 0))

    @admin.display(description="topics")
    def topics_list(self, obj: Reader) -> str:
        return ", ".join(obj.topics) or "-"

    @admin.display(description="clicks", ordering="n_clicks")
    def clicks(self, obj: Reader) -> int:
        return getattr(obj, "n_clicks", 0)

    @admin.display(description="vector age", ordering="-vector_at")
    def vector_age(self, obj: Reader) -> str:
        at = getattr(obj, "vector_at", None)
        if at is None:
            return "no vector (popular and fresh feed)"
        return f"{timesince(at, timezone.now())} ago" if timezone.now() - at > timedelta(seconds=60) else \
            f"{int((timezone.now() - at).total_seconds())} s ago"


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["id", "title", "category", "subcategory", "status", "has_vector", "popularity", "published_at",
                    "seeds_link"]
    list_filter = ["source", "status", "category"]
    search_fields = ["title", "external_id", "abstract"]
    date_hierarchy = "published_at"
    readonly_fields = ["seeds_link", "shown_count", "click_count", "warm_since"]

    @admin.display(description="seeds")
    def seeds_link(self, obj: Item) -> str:
        if obj.pk is None:
            return "-"
        return format_html('<a href="{}">seeds and clusters</a>', reverse("admin:news_item_seeds", args=[obj.pk]))

    def get_urls(self):
        return [path("<int:item_id>/seeds/", self.admin_site.admin_view(self.seeds_view), name="news_item_seeds"),
                *super().get_urls()]

    def seeds_view(self, request, item_id: int):
        """An item's seed readers and the cluster each is in, what each cluster holds (its share
        of the seeds, what its readers read most), a 2-D projection, the attention weights, and
        "score this item for reader X" (RALM's logit, the calibrated P(click), the feed's
        "readers like you" test). Past ADMIN_PAGE_RATE_LIMIT a 429
        (webapp.feed.middleware.StaffPageLimit)."""
        item = get_object_or_404(Item, pk=item_id)
        form = ScoreForm(request.GET or None)
        reader_id = form.cleaned_data["reader"] if form.is_bound and form.is_valid() else None
        view = seed_view(item=item, reader_id=reader_id)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "title": f"Seeds of {item}",
                   "view": view, "form": form, "original": item}
        return TemplateResponse(request, "admin/news/item/seeds.html", context,
                                status=400 if form.is_bound and not form.is_valid() else 200)

    @admin.display(boolean=True, description="text vector")
    def has_vector(self, obj: Item) -> bool:
        return obj.text_vector is not None

    def save_model(self, request, obj: Item, form, change: bool) -> None:
        text_changed = not change or {"title", "abstract"} & set(form.changed_data)
        if text_changed:
            obj.text_vector = None  # stale until the task re-embeds it
        super().save_model(request, obj, form, change)
        item_edited(item=obj, text_changed=bool(text_changed))

    def delete_model(self, request, obj: Item) -> None:
        super().delete_model(request, obj)
        item_edited(item=obj, text_changed=False)

    def delete_queryset(self, request, queryset) -> None:
        live = queryset.filter(published_at__isnull=False).exists()
        super().delete_queryset(request, queryset)
        if live:
            transaction.on_commit(catalog_changed)




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
