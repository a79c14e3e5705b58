"""Structured logs (structlog): every log line of every process is one JSON object, and every
HTTP request and every Celery task writes one line of its own.

A request's line carries its request id, which the response returns as X-Request-ID and a
feed page gives its impressions (Impression.request_id), so one answer can be followed from
the log to what it showed and from there to its clicks. Code on the request path adds
fields to the line with `bind(...)` (the feed: reader, arm, candidates; a click: the
impression and the request that showed it). The id is made here, never taken from the
client: impressions key on it.
"""

from __future__ import annotations

import logging
import time
import uuid

import structlog

# What every line gets, from structlog and from the standard library's loggers alike.
SHARED_PROCESSORS = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def formatter() -> dict:
    """The logging formatter (for settings.LOGGING): one JSON object per line."""
    return {
        "()": structlog.stdlib.ProcessorFormatter,
        "processors": [structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                       structlog.processors.format_exc_info, structlog.processors.JSONRenderer()],
        "foreign_pre_chain": [*SHARED_PROCESSORS, structlog.stdlib.ExtraAdder()],
    }


def configure() -> None:
    # A library's warning is a line like any other (logger "py.warnings"), not raw text.
    logging.captureWarnings(True)
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *SHARED_PROCESSORS,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


log = structlog.get_logger("ralm.request")


def bind(**fields) -> None:
    """Add fields to the current request's (or task's) line; outside either (a command
    calling a service), nothing, so that a long-running command's lines do not gather them."""
    bound = structlog.contextvars.get_contextvars()
    if "request_id" in bound or "task_id" in bound:
        structlog.contextvars.bind_contextvars(**fields)


def request_id() -> str | None:
    """The current request's id; None outside a request."""
    return structlog.contextvars.get_contextvars().get("request_id")


class RequestLog:
    """One line per request: method, path, status, milliseconds, request id and whatever the
    view bound. Outermost middleware, so that it times and sees every answer."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        structlog.contextvars.clear_contextvars()
        rid = uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=rid)
        start = time.perf_counter()
        try:
            response = self.get_response(request)
        except Exception:
            log.exception("request", method=request.method, path=request.path, status=500,
                          ms=round((time.perf_counter() - start) * 1000, 2))
            structlog.contextvars.clear_contextvars()
            raise
        response["X-Request-ID"] = rid
        level = logging.WARNING if response.status_code >= 500 else logging.INFO
        log.log(level, "request", method=request.method, path=request.path, status=response.status_code,
                ms=round((time.perf_counter() - start) * 1000, 2))
        structlog.contextvars.clear_contextvars()
        return response


class Brief(logging.Filter):
    """A line without its traceback, its message cut short: for events a client causes at will
    (a Host header this site does not serve), whose stack says nothing and whose text the
    client writes."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = str(record.getMessage())[:200], None
        record.exc_info = record.exc_text = None
        return True
