"""The interaction log in the admin. Readers and stories have their admin pages in
webapp.lookalike.admin, beside what RALM knows of them (vectors, seeds)."""

from __future__ import annotations

from django.contrib import admin

from webapp.news.models import Click, Impression


@admin.register(Impression)
class ImpressionAdmin(admin.ModelAdmin):
    list_display = ["id", "reader", "item", "position", "arm", "score", "shown_at"]
    list_filter = ["arm"]
    raw_id_fields = ["reader", "item"]
    search_fields = ["request_id"]


@admin.register(Click)
class ClickAdmin(admin.ModelAdmin):
    list_display = ["id", "reader", "item", "impression", "clicked_at"]
    raw_id_fields = ["reader", "item", "impression"]
