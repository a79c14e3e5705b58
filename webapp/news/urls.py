from __future__ import annotations

from django.urls import path

from webapp.news import views

app_name = "news"
urlpatterns = [
    path("", views.home, name="home"),
    path("feed/", views.feed, name="feed"),
    path("click/", views.click, name="click"),
    path("items/<int:item_id>/", views.item_detail, name="item"),
]
