"""Fixtures for the web tests."""

from __future__ import annotations

import itertools

import pytest

from webapp.feed import ratelimit

# Each pinned clock starts in windows of its own (minute, hour and day), 30 s into its minute,
# so no test shares a rate window with another or straddles two.
_days = itertools.count(1)


class PinnedClock:
    """A clock that stands still at `now` until a test moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rate_clock(monkeypatch) -> PinnedClock:
    """The rate limiter's clock, pinned: every hit of the test falls in one window."""
    clock = PinnedClock(1_000_000_000 // 86400 * 86400 + next(_days) * 86400 + 12 * 3600 + 30)
    monkeypatch.setattr(ratelimit.limiter, "clock", clock)
    return clock
