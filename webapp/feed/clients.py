"""Which client a request comes from: the browser session, else the address, or the reader
simulator (which proves itself with SIMULATOR_TOKEN). It keys the per-client limits on feeds
and clicks, besides the per-reader one, and ties each impression to the client it was shown
to, so that one client cannot click other clients' pages or warm any story it likes."""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings
from django.http import HttpRequest

from webapp.feed import ratelimit
from webapp.feed.services import RateLimited

SIMULATOR = "sim"
HEADER = "X-Simulator-Token"


def _digest(value: str) -> str:
    return hashlib.blake2b(value.encode(), digest_size=8, key=settings.SECRET_KEY.encode()[:64]).hexdigest()


def client_keys(request: HttpRequest) -> tuple[str, ...]:
    """The request's client keys, the one its impressions are logged under first: the
    simulator; or the session's (when the browser has one) and the address's (a click is
    the same client's when either matches, so a session started between a page and its
    click does not orphan the page)."""
    token, given = settings.SIMULATOR_TOKEN, request.headers.get(HEADER, "")
    if token and given and hmac.compare_digest(given.encode(), token.encode()):
        return (SIMULATOR,)
    session = getattr(request, "session", None)
    keys = [f"s:{_digest(session.session_key)}"] if session is not None and session.session_key else []
    return (*keys, f"a:{_digest(request.META.get('REMOTE_ADDR', ''))}")


def client_throttle(keys: tuple[str, ...], *, scope: str) -> None:
    """Count one request of `scope` ("feeds" or "clicks") for the client; RateLimited over
    FEED_CLIENT_RATE_LIMIT or CLICK_CLIENT_RATE_LIMIT. The simulator is not limited."""
    if keys[0] == SIMULATOR:
        return
    text = settings.FEED_CLIENT_RATE_LIMIT if scope == "feeds" else settings.CLICK_CLIENT_RATE_LIMIT
    rate = ratelimit.rate_parse(text)
    if rate is None:
        return
    retry_after = ratelimit.hit(scope=f"client-{scope}", key=keys[0], rate=rate)
    if retry_after is not None:
        raise RateLimited(f"Too many {scope} from this client: at most {rate.text}. Try again in {retry_after} s.",
                          limit=rate.text, retry_after=retry_after)
