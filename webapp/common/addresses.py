"""The address a request comes from.

Behind the reverse proxy (ops/nginx) every request reaches gunicorn from the proxy, so the
peer address names the proxy, not the client. The proxy sets X-Forwarded-For to the address
it saw (a proxy that appends it instead leaves it last); that last entry is believed only from
a peer in TRUSTED_PROXIES (or over a unix socket, which only processes on this machine reach),
so that a client talking to gunicorn directly cannot choose its own address. The per-client limits, the login lockout
and the loopback-only metrics all key on this address.
"""

from __future__ import annotations

import functools
import ipaddress

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest


@functools.lru_cache(maxsize=4)
def _networks(entries: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(e.strip(), strict=False) for e in entries if e.strip())
    except ValueError as exc:
        raise ImproperlyConfigured(f"TRUSTED_PROXIES: {exc}") from None


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def trusted_proxy(peer: str) -> bool:
    if peer == "":  # a unix socket
        return True
    ip = _ip(peer)
    return ip is not None and any(ip in net for net in _networks(tuple(settings.TRUSTED_PROXIES)))


def client_address(request: HttpRequest) -> str:
    """The client's IP address as text: the proxy's word for it when the peer is a trusted
    proxy, else the peer's."""
    peer = request.META.get("REMOTE_ADDR", "")
    if trusted_proxy(peer):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").rsplit(",", 1)[-1].strip()
        if _ip(forwarded) is not None:
            return forwarded
    return peer


def is_loopback(request: HttpRequest) -> bool:
    ip = _ip(client_address(request))
    return ip is not None and ip.is_loopback
