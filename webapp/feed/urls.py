from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from webapp.feed import views

app_name = "feed"
urlpatterns = [
    path("", views.home, name="home"),
    path("feed/", views.feed, name="feed"),
    path("click/", views.click, name="click"),
    path("items/<int:item_id>/", views.item_detail, name="item"),
    path("start/", views.start, name="start"),
    path("topics/", views.topics, name="topics"),
    path("me/", views.me, name="me"),
    path("accounts/signup/", views.signup, name="signup"),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
]
