"""Every error under /api/ (and at the health check and the metrics) answers JSON in the API's
one shape, {"detail": ...}: also those raised before a view runs or answered by Django itself
(a bad Host header, a body over the size limit, a method the view does not take, a URL too long)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from webapp.common.ids import ascii_digits

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
