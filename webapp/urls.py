from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from webapp.feed import api, metrics, views

api_patterns = [
    path("feed", api.FeedView.as_view(), name="feed"),
    path("clicks", api.ClickView.as_view(), name="clicks"),
    path("items/<int:item_id>", api.ItemView.as_view(), name="item"),
    path("readers/<int:reader_id>", api.ReaderView.as_view(), name="reader"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
]


FAVICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" '
           'fill="#0b63ce"/><path d="M4 12V4h4a2.5 2.5 0 0 1 0 5H4m4 0 3 3" stroke="#fff" stroke-width="1.6" '
           'fill="none"/></svg>')


def favicon(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(FAVICON, content_type="image/svg+xml")
    response["Cache-Control"] = "public, max-age=86400"
    return response


urlpatterns = [
    path("favicon.ico", favicon, name="favicon"),
    path("admin/dashboard/", views.dashboard, name="dashboard"),
    path("admin/", admin.site.urls),
    path("api/", include((api_patterns, "api"))),
    path("healthz", api.healthz, name="healthz"),
    *([path("metrics", metrics.metrics, name="metrics")] if settings.METRICS_ENABLED else []),
    path("", include("webapp.feed.urls")),
]


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return api.json_404(request, exception)
    return render(request, "feed/not_found.html", {"what": "page"}, status=404)


def handler500(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return api.json_500(request)
    return HttpResponse("Server error.", status=500, content_type="text/plain")
