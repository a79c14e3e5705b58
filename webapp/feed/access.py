"""Who may act as which reader.

Demo and imported readers are public personas: anyone may open their feed (the demo's
reader picker, the simulator). A reader created on the web belongs to one browser session
and, once they sign up, to their account: only they can see their feed and profile, click
as them, or change them. Everyone else is told the reader does not exist (404), so ids
cannot be probed.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import SessionAuthentication

from webapp.news.models import Reader, Source

SESSION_KEY = "reader_id"


def session_reader_id(request: HttpRequest) -> int | None:
    """The web reader this browser reads as: the account's, else the session's."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        reader = Reader.objects.filter(user=user).values_list("pk", flat=True).first()
        if reader is not None:
            return reader
    session = getattr(request, "session", None)
    value = session.get(SESSION_KEY) if session is not None else None
    return int(value) if isinstance(value, int) else None


def may_act_as(request: HttpRequest, reader: Reader) -> bool:
    return reader.source != Source.WEB or reader.pk == session_reader_id(request)


class SessionReader(SessionAuthentication):
    """API requests from a browser that reads as a web reader: `request.auth` is that
    reader's id, and unsafe methods must carry the CSRF token (DRF's own session class only
    checks it for logged-in users). A logged-in account without a reader (staff) is that
    user, with no reader; other requests stay anonymous."""

    def authenticate(self, request):
        django_request = request._request
        reader_id = session_reader_id(django_request)
        if reader_id is None:
            user = getattr(django_request, "user", None)
            if user is not None and user.is_authenticated:
                self.enforce_csrf(request)
                return user, None
            return None
        self.enforce_csrf(request)
        user = getattr(django_request, "user", None)
        return (user if user is not None and user.is_authenticated else AnonymousUser()), reader_id


class SessionReaderScheme(OpenApiAuthenticationExtension):
    """SessionReader in the OpenAPI schema: Django's session cookie."""

    target_class = SessionReader
    name = "session"

    def get_security_definition(self, auto_schema) -> dict:
        return {"type": "apiKey", "in": "cookie", "name": settings.SESSION_COOKIE_NAME}


def context(request: HttpRequest) -> dict:
    """Templates' `me`: the web reader this browser reads as, if any (the header's links)."""
    if request.path.startswith(("/admin/", "/api/")):
        return {}
    reader_id = session_reader_id(request)
    return {"me": Reader.objects.filter(pk=reader_id).first() if reader_id is not None else None}
