"""Surviving a lost Postgres connection on the request path."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import InterfaceError, OperationalError, connection

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")
# SQLSTATEs of a connection the server ended: class 08 (connection exception), and an
# administrator's or a crash's shutdown (pg_terminate_backend, a restart, a failover).
_LOST_STATES = ("57P01", "57P02", "57P03")


def connection_lost(exc: Exception) -> bool:
    """Whether a database error says the connection is gone, rather than the statement failed.
    Django's error wraps the driver's: an SQLSTATE of a lost connection, or none at all
    (the driver found the socket closed, or could not connect)."""
    state = getattr(exc.__cause__, "sqlstate", None)
    return state is None or state.startswith("08") or state in _LOST_STATES


def reconnecting(fn: Callable[P, T]) -> Callable[P, T]:
    """Run `fn` once more on a new connection when Postgres dropped the current one under it
    (a server restart, a failover, pg_terminate_backend). Django's health check replaces a
    dead persistent connection only when a request starts, so without this a request whose
    connection is cut mid-way answers 500. Only a lost connection, outside any transaction of
    the caller, is retried: the work of `fn` was rolled back with the connection, so it runs
    again from the start (a server that is down fails the second try too, which is raised).
    Any other database error is raised as is."""
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            if connection.in_atomic_block or not connection_lost(exc):
                raise
            reason = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
            log.warning("%s: the Postgres connection was lost (%s), running it again on a new one",
                        fn.__qualname__, reason)
            connection.close()
            return fn(*args, **kwargs)

    return wrapper
