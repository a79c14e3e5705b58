from __future__ import annotations

from django import forms
from django.contrib import admin
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from webapp.news import services
from webapp.news.models import Click, Impression, Item, Reader


class ScoreForm(forms.Form):
    reader = forms.IntegerField(min_value=1, max_value=2**63 - 1, label="Score for reader id")


@admin.register(Reader)
class ReaderAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "source", "external_id", "region", "age_band", "device", "created_at"]
    list_filter = ["source", "region", "age_band", "device"]
    search_fields = ["name", "external_id"]


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
        """An item's seed readers, their clusters, a 2-D projection, the attention weights, and
        "score this item for reader X"."""
        from webapp.lookalike.insight import seed_view

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
        if text_changed:
            services.item_embed_later(item_id=obj.pk)


@admin.register(Impression)
class ImpressionAdmin(admin.ModelAdmin):
    list_display = ["id", "reader", "item", "position", "mode", "score", "shown_at"]
    list_filter = ["mode"]
    raw_id_fields = ["reader", "item"]
    search_fields = ["request_id"]


@admin.register(Click)
class ClickAdmin(admin.ModelAdmin):
    list_display = ["id", "reader", "item", "impression", "clicked_at"]
    raw_id_fields = ["reader", "item", "impression"]
