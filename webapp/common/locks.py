"""One run of a job at a time, across processes and machines: a Postgres advisory lock that
lives exactly as long as the process holding it (the workers' tasks take it; see `job_lock`)."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.db import connection

log = logging.getLogger(__name__)


LOCK_NAMESPACE = 0x52414C4D  # "RALM": the first key of our advisory locks (the second names the job)


def job_lock_key(name: str) -> tuple[int, int]:
    """The job's advisory lock key: (namespace, a 32-bit hash of the name), as pg_locks shows
    it (classid, objid)."""
    return LOCK_NAMESPACE, zlib.crc32(name.encode()) - 2**31


@contextmanager
def job_lock(name: str) -> Iterator[bool]:
    """One run of a job at a time: yields True to the run that holds the job's lock, False
    (and the caller skips) while another run holds it.

    The lock is a Postgres *session* advisory lock (pg_try_advisory_lock) held by a
    connection opened for it alone. It lives exactly as long as the run's process: when a
    worker is killed (SIGKILL, out of memory, a lost container), the kernel closes its
    sockets, Postgres ends the session and the lock is free for the next beat run at once.
    The Redis lock this replaces had to carry a timeout (CELERY_TASK_TIME_LIMIT, 5 minutes):
    a killed worker's lock blocked every run until it expired, and a run that outlived it
    lost its lock to a second run while it still worked. A short timeout renewed per batch
    would shrink the first problem, not remove it, and would add a renewal to every loop.
    Nothing here needs a timeout or a renewal. Its own connection keeps the lock independent
    of the job's transactions and of Django closing or replacing its connection (the lock
    would silently go with it); TCP keepalives, asked of the server, free it within about
    a minute even if the worker's machine vanishes without closing the connection. Advisory
    locks are per database, so the demo and a test database never contend."""
    params = {k: v for k, v in connection.get_connection_params().items()
              if k not in ("cursor_factory", "context", "prepare_threshold")}  # Django's adapters: not needed
    params["application_name"] = f"ralm job lock: {name}"[:63]
    params["options"] = " ".join(filter(None, [params.get("options"), "-c tcp_keepalives_idle=30",
                                               "-c tcp_keepalives_interval=10", "-c tcp_keepalives_count=3"]))
    key = job_lock_key(name)
    lock_conn = psycopg.connect(**params, autocommit=True)
    try:
        held = lock_conn.execute("SELECT pg_try_advisory_lock(%s, %s)", key).fetchone()[0]
        try:
            yield held
        finally:
            if held:
                try:
                    lock_conn.execute("SELECT pg_advisory_unlock(%s, %s)", key)
                except psycopg.Error:  # the session is gone, and its lock with it
                    log.warning("lock %s: its connection was lost before the job finished", name)
    finally:
        lock_conn.close()
