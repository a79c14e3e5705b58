"""What a request had to do without: the parts of the feed that fell back, for the response.

A fallback (Redis unreachable, a model that cannot be loaded) is noted where it happens with
`note(reason, kind=...)`; the feed collects the notes of its request with `collect()` and
marks its page degraded with them. The kinds (REDIS, LOOKALIKE_MODEL, RANKER_MODEL) are the
few values the metrics count answers by; the reasons are the sentences a reader of the
response sees. Notes are per request (a context variable, so threads and
concurrent requests never mix them); outside `collect()` a note is ignored.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

REDIS, LOOKALIKE_MODEL, RANKER_MODEL = "redis", "lookalike_model", "ranker_model"


class Notes(list):
    """The reasons, in order, and the set of their kinds."""

    def __init__(self) -> None:
        super().__init__()
        self.kinds: set[str] = set()


_notes: ContextVar[Notes | None] = ContextVar("degraded_notes", default=None)


def note(reason: str, *, kind: str) -> None:
    """Record that this request fell back, and why (each reason once)."""
    notes = _notes.get()
    if notes is not None and reason not in notes:
        notes.append(reason)
        notes.kinds.add(kind)


@contextmanager
def collect() -> Iterator[Notes]:
    """The reasons noted inside the block, in order (empty: nothing fell back)."""
    token = _notes.set(Notes())
    try:
        yield _notes.get()
    finally:
        _notes.reset(token)
