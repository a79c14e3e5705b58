"""Headers and cookie flags for the HTML pages and the browser's cookies.

Served over HTTPS (as the request says, or as the reverse proxy says in X-Forwarded-Proto),
the session and CSRF cookies are marked Secure, so that a browser never sends them over plain
HTTP afterwards; over plain HTTP (the local demo) a Secure cookie would be dropped, so they
are not. With SECURE_SSL_REDIRECT on, every request is HTTPS and the settings mark them
always. HSTS rides on Django's SecurityMiddleware, which sends it over HTTPS only.

Every HTML page carries a Content-Security-Policy: scripts, styles, images and forms from this
site only, no plugins, no framing, no <base>. Inline styles are allowed: the pages and the
admin's change list set a few; nothing on the site is an inline script.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse

CSP = "; ".join([
    "default-src 'self'", "script-src 'self'", "style-src 'self' 'unsafe-inline'", "img-src 'self' data:",
    "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'", "form-action 'self'",
])


class SecureResponses:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.is_secure():
            for name in (settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME):
                if name in response.cookies:
                    response.cookies[name]["secure"] = True
        if response.get("Content-Type", "").startswith("text/html"):
            response.headers.setdefault("Content-Security-Policy", CSP)
        return response
