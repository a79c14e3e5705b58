"""The Celery app: configured from Django settings (CELERY_*), Redis as broker, JSON only,
time limits from the settings. The beat schedule: workers/schedule.py.

Operations: every process logs JSON lines through Django's LOGGING (webapp.common.logs),
one line per task; a worker serves its processes' Prometheus metrics (the refresh's, from
webapp.common.metrics) on WORKER_METRICS_PORT; its task events feed Flower, whose /metrics
has every task's runtime and failures."""

from __future__ import annotations

import logging
import logging.config
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import structlog
from celery import Celery
from celery.signals import (
    beat_init,
    setup_logging,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_shutdown,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")


def _a_worker() -> bool:
    """This process is `celery ... worker` (not beat, flower, the web or a test)."""
    return Path(sys.argv[0]).name in ("celery", "__main__.py") and "worker" in sys.argv[1:]


# The pool's processes count into files of one folder that the worker's metrics server reads
# (prometheus-client's multiprocess mode), set before any metric exists. prometheus-client
# picks how to keep values when first imported, which Celery's command line has done by
# now (it loads Flower's `celery flower` command): it picks again.
_own_metrics_dir = None
if _a_worker() and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _own_metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="ralm-metrics-worker-")
    from prometheus_client import values as _values

    _values.ValueClass = _values.get_value_class()

app = Celery("ralm_feed")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"], related_name="tasks")


# The schedule lives in the database (see workers/schedule.py), not in app.conf: the
# DatabaseScheduler would otherwise rewrite every entry from code at each start.
app.conf.beat_schedule = {}


@beat_init.connect
def _sync_schedule(**_kwargs) -> None:
    from workers.schedule import schedule_sync

    schedule_sync()


_pool = {"processes": 1}  # the worker's pool size, read by its forked processes


@worker_init.connect
def _remember_pool_size(sender=None, **_kwargs) -> None:
    concurrency = getattr(sender, "concurrency", None)
    _pool["processes"] = concurrency if isinstance(concurrency, int) and concurrency > 0 else os.cpu_count() or 1


@worker_process_init.connect
def _share_the_cores(**_kwargs) -> None:
    """Each pool process takes its share of the cores for torch and BLAS. The refresh's
    partitions run side by side in a worker's processes; with every process running a thread
    per core they contend for the cores and run slower together than one process alone."""
    threads = max(1, (os.cpu_count() or 1) // _pool["processes"])
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)


@setup_logging.connect
def _django_logging(**_kwargs) -> None:
    """Django's LOGGING (JSON lines) instead of Celery's own set-up."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


@worker_init.connect
def _serve_metrics(**_kwargs) -> None:
    from django.conf import settings

    if not settings.METRICS_ENABLED or not settings.WORKER_METRICS_PORT or not os.environ.get(
            "PROMETHEUS_MULTIPROC_DIR"):
        return
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    try:
        start_http_server(settings.WORKER_METRICS_PORT, addr=settings.WORKER_METRICS_ADDR, registry=registry)
    except OSError as exc:
        logging.getLogger(__name__).error("worker metrics not served on %s:%s: %s", settings.WORKER_METRICS_ADDR,
                                          settings.WORKER_METRICS_PORT, exc)


@worker_shutdown.connect
def _metrics_dir_remove(**_kwargs) -> None:
    if _own_metrics_dir:
        shutil.rmtree(_own_metrics_dir, ignore_errors=True)


_task_log = structlog.get_logger("ralm.task")
_started: dict[str, float] = {}


@task_prerun.connect
def _task_start(task_id=None, task=None, **_kwargs) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, task=task.name if task else None)
    _started[task_id] = time.perf_counter()


@task_postrun.connect
def _task_line(task_id=None, state=None, retval=None, **_kwargs) -> None:
    """One line per task: its name, id, state, milliseconds and, when small, its summary."""
    start = _started.pop(task_id, None)
    ms = round((time.perf_counter() - start) * 1000, 2) if start is not None else None
    summary = retval if isinstance(retval, dict) and len(retval) <= 8 else None
    level = logging.INFO if state == "SUCCESS" else logging.WARNING
    _task_log.log(level, "task", state=state, ms=ms, result=summary)
    structlog.contextvars.clear_contextvars()
