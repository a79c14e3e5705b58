from __future__ import annotations

from django.contrib import admin

from webapp.news import services
from webapp.news.models import Click, Impression, Item, Reader


@admin.register(Reader)
class ReaderAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "source", "external_id", "region", "age_band", "device", "created_at"]
    list_filter = ["source", "region", "age_band", "device"]
    search_fields = ["name", "external_id"]


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["id", "title", "category", "subcategory", "status", "has_vector", "popularity", "published_at"]
    list_filter = ["source", "status", "category"]
    search_fields = ["title", "external_id", "abstract"]
    date_hierarchy = "published_at"

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
