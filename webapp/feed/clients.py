"""Which client a request comes from: the browser session, else the address, or the reader
simulator (which proves itself with SIMULATOR_TOKEN). It keys the per-client limits on feeds,
clicks and new readers, besides the per-reader click limit, and ties each impression to the
client it was shown to, so that one client cannot click other clients' pages or warm any
story it likes."""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from webapp.common.addresses import client_address
from webapp.feed import ratelimit
from webapp.feed.errors import RateLimited

SIMULATOR = "sim"
HEADER = "X-Simulator-Token"
# What each scope counts, and the setting that limits it.
LIMITS = {"feeds": "FEED_CLIENT_RATE_LIMIT", "clicks": "CLICK_CLIENT_RATE_LIMIT",
          "readers": "READER_CLIENT_RATE_LIMIT"}


def _digest(value: str) -> str:
    return hashlib.blake2b(value.encode(), digest_size=8, key=settings.SECRET_KEY.encode()[:64]).hexdigest()


def address_key(address: str) -> str:
    return f"a:{_digest(address)}"


def _session_key(request: HttpRequest) -> str | None:
    """The key of a session Django has loaded and found. Before it is loaded a session's key
    is whatever the cookie says; loading a cookie that names no stored session, or an expired
    one, leaves no key, so a made-up cookie is no client of its own."""
    session = getattr(request, "session", None)
    if session is None:
        return None
    session.keys()  # loads it
    return session.session_key


def client_keys(request: HttpRequest) -> tuple[str, ...]:
    """The request's client keys, the one its impressions are logged under first: the
    simulator; or the session's (when the browser has one) and the address's (a click is
    the same client's when either matches, so a session started between a page and its
    click does not orphan the page)."""
    token, given = settings.SIMULATOR_TOKEN, request.headers.get(HEADER, "")
    if token and given and hmac.compare_digest(given.encode(), token.encode()):
        return (SIMULATOR,)
    session = _session_key(request)
    keys = [f"s:{_digest(session)}"] if session else []
    return (*keys, address_key(client_address(request)))


def client_throttle(keys: tuple[str, ...], *, scope: str) -> None:
    """Count one request of `scope` (a key of LIMITS) for the client; RateLimited over its
    setting. Feeds and clicks count per session, else address; new readers per address, since
    each starts a session of its own. The simulator is not limited."""
    if keys[0] == SIMULATOR:
        return
    rate = ratelimit.rate_parse(getattr(settings, LIMITS[scope]))
    if rate is None:
        return
    key = keys[-1] if scope == "readers" else keys[0]
    retry_after = ratelimit.hit(scope=f"client-{scope}", key=key, rate=rate)
    if retry_after is not None:
        what = "new readers" if scope == "readers" else scope
        raise RateLimited(f"Too many {what} from this client: at most {rate.text}. Try again in {retry_after} s.",
                          limit=rate.text, retry_after=retry_after)


def staff_page_limited(request: HttpRequest) -> HttpResponse | None:
    """Count one heavy admin page (the live dashboard, an item's seeds page) for the signed-in
    staff user: a 429 with Retry-After over ADMIN_PAGE_RATE_LIMIT, else None. Staff pages
    share the web processes with readers' feeds, so one account reloading them in a loop
    must not take those processes from readers."""
    rate = ratelimit.rate_parse(settings.ADMIN_PAGE_RATE_LIMIT)
    if rate is None:
        return None
    retry_after = ratelimit.hit(scope="staff-pages", key=request.user.pk, rate=rate)
    if retry_after is None:
        return None
    response = render(request, "feed/rate_limited.html", {
        "detail": f"Too many admin pages from this account: at most {rate.text}. Try again in {retry_after} s."},
        status=429)
    response["Retry-After"] = str(retry_after)
    return response
