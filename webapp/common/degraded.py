"""What a request had to do without: the parts of the feed that fell back, for the response.

A fallback (Redis unreachable, a model that cannot be loaded) is noted where it happens with
`note(reason)`; the feed collects the notes of its request with `collect()` and marks its
page degraded with them. Notes are per request (a context variable, so threads and
concurrent requests never mix them); outside `collect()` a note is ignored.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_notes: ContextVar[list[str] | None] = ContextVar("degraded_notes", default=None)


def note(reason: str) -> None:
    """Record that this request fell back, and why (each reason once)."""
    notes = _notes.get()
    if notes is not None and reason not in notes:
        notes.append(reason)


@contextmanager
def collect() -> Iterator[list[str]]:
    """The reasons noted inside the block, in order (empty: nothing fell back)."""
    token = _notes.set([])
    try:
        yield _notes.get()
    finally:
        _notes.reset(token)
