"""The feed service's refusals, which the pages and the API turn into answers (404, 400,
429): a module of their own, so that the helpers the service calls (webapp.feed.clients)
raise them too."""

from __future__ import annotations


class NotFound(Exception):
    """The thing asked for does not exist (the API answers 404)."""


class Rejected(ValueError):
    """The request is well-formed but not allowed (the API answers 400); `field` names the
    input at fault."""

    def __init__(self, message: str, *, field: str = "non_field_errors") -> None:
        super().__init__(message)
        self.field = field


class RateLimited(Exception):
    """Over a rate limit (the API answers 429 with Retry-After); nothing was stored."""

    def __init__(self, message: str, *, limit: str, retry_after: int) -> None:
        super().__init__(message)
        self.limit, self.retry_after = limit, retry_after
