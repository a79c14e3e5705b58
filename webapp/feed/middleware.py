"""Every error under /api/ (and at the health check and the metrics) answers JSON in the API's
one shape, {"detail": ...}: also those raised before a view runs or answered by Django itself
(a bad Host header, a body over the size limit, a method the view does not take, a URL too long)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from webapp.common.ids import ascii_digits
from webapp.feed.clients import staff_page_limited

JSON_PATHS = ("/api/", "/healthz", "/metrics")
MAX_URL = 4096  # characters of path and query; gunicorn.conf.py lets longer lines through to here
KEPT_HEADERS = ("Allow", "Retry-After")


def _json_error(status: int, detail: str, source: HttpResponse | None = None) -> JsonResponse:
    response = JsonResponse({"detail": detail}, status=status)
    for name in KEPT_HEADERS:
        if source is not None and source.has_header(name):
            response[name] = source[name]
    return response


class ApiErrors:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith(JSON_PATHS):
            return self.get_response(request)
        if len(request.get_full_path()) > MAX_URL:
            return _json_error(414, f"URL longer than {MAX_URL} characters.")
        text = request.META.get("CONTENT_LENGTH") or "0"
        if not ascii_digits(text):
            return _json_error(400, "Content-Length is not a number.")
        length = int(text)
        if length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            return _json_error(413, f"Body larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.")
        response = self.get_response(request)
        if response.status_code >= 400 and not response.get("Content-Type", "").startswith("application/json"):
            return _json_error(response.status_code, response.reason_phrase or "Error.", response)
        return response


class StaffPageLimit:
    """The admin's heavy pages, the live dashboard and an item's seeds page (by URL name),
    counted per signed-in staff account (webapp.feed.clients.staff_page_limited): past
    ADMIN_PAGE_RATE_LIMIT a 429 before the view runs. Here rather than in the views, as the
    seeds page belongs to webapp.lookalike's admin, which the feed's rate limiter sits above."""

    HEAVY = frozenset({"dashboard", "admin:news_item_seeds"})

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs) -> HttpResponse | None:
        match = request.resolver_match
        if match is None or match.view_name not in self.HEAVY:
            return None
        user = getattr(request, "user", None)
        if user is None or not user.is_active or not user.is_staff:
            return None  # the view sends them to the log-in page, uncounted
        return staff_page_limited(request)
