"""gunicorn's settings that every way of starting the web server shares (Procfile, rundemo,
Dockerfile, docker-compose.yml): gunicorn reads this file from the working directory."""

import os
import shutil
import sys
import tempfile

# The `gunicorn` script runs from the virtualenv's bin folder: this file's folder holds webapp.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from webapp.common import logs  # noqa: E402 -- after the path

# Request lines up to gunicorn's maximum reach Django, which answers a URL over its own limit
# with a JSON 414 (webapp/feed/middleware.py) rather than gunicorn's HTML page. The proxy in
# front (ops/nginx) refuses longer lines itself, in the API's JSON shape.
limit_request_line = 8190
# The proxy's limits on header lines and on the header block (ops/nginx) bind first and answer
# in the API's shape: gunicorn's sit above them, so that it refuses no header the proxy passed
# (the proxy may add a byte to a line it forwards, and its 32 KB block holds fewer lines than this).
limit_request_field_size = 8300
limit_request_fields = 10000
# The proxy keeps idle connections to gunicorn for 60 s and closes them itself: gunicorn waits
# longer, so that it never closes one the proxy is about to send a request on.
keepalive = 75

# gunicorn's own lines (its start, each worker's boot and exit, a timeout) are JSON objects
# like the application's, on the same stream, so that a log collector reads one format.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": logs.formatter()},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    "root": {"level": "INFO", "handlers": ["console"]},
    # Not passed on to the root's handler as well: Django's settings give it the same one.
    "loggers": {name: {"level": "INFO", "handlers": ["console"], "propagate": False}
                for name in ("gunicorn.error", "gunicorn.access")},
}

# Prometheus metrics add up over the worker processes (prometheus-client's multiprocess
# mode): each writes its counters to files in one folder, and /metrics, whichever worker
# answers it, reads them all. The folder is this server's own, made before the workers fork
# and removed when the server exits, so a restart starts every counter from zero (Prometheus
# reads that as a counter reset).
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="ralm-metrics-web-")
    _own_metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
else:
    _own_metrics_dir = None


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    if _own_metrics_dir:
        shutil.rmtree(_own_metrics_dir, ignore_errors=True)
