"""The Celery app: configured from Django settings (CELERY_*), Redis as broker, JSON only,
time limits from the settings. The beat schedule: workers/schedule.py."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import beat_init, worker_init, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

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
