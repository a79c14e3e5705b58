"""Thin task adapters: each takes its job's lock, calls one webapp service, re-queues itself
while work remains, and returns a small summary.

The refresh fans out: beat's run of `refresh_seeds` or `refresh_states` sends one task per
partition of the items (item id modulo LOOKALIKE_REFRESH_PARTITIONS), each under a lock of
its own, so that the partitions run side by side on as many worker processes as there are.
"""

from __future__ import annotations

from celery import group, shared_task
from django.conf import settings

from webapp.common.locks import job_lock
from webapp.lookalike import refresh, seeds
from webapp.lookalike.services import item_status_refresh
from webapp.lookalike.training import model_train
from webapp.news import services
from webapp.news.embedding import items_embed


def _locked(name: str, run) -> dict:
    """The job, unless another run of it holds its lock (a Postgres advisory lock, freed when
    its holder's process dies: see webapp.common.locks.job_lock)."""
    with job_lock(name) as acquired:
        return run() if acquired else {"skipped": "another run holds the lock"}


def _then(result: dict, key: str, follow, *, again) -> dict:
    """Queue `follow` when the run did something (`result[key]`), and the task itself again
    while work remains; return the run's summary."""
    if result.get(key):
        follow.delay()
    if result.get("remaining"):
        again.delay()
    return result


def _part_lock(job: str, part: int, parts: int) -> str:
    """The lock of one partition of a job: its own name when the job is not split."""
    return job if parts == 1 else f"{job}:{part}/{parts}"


def _fan_out(task, result: dict | None = None) -> dict:
    """One `task` per partition (a Celery group); with a single partition, run it here."""
    parts = settings.LOOKALIKE_REFRESH_PARTITIONS
    if parts == 1:
        return {**(result or {}), **task(part=0)}
    group(task.si(part=n) for n in range(parts)).apply_async()
    return {**(result or {}), "parts": parts}


@shared_task(name="workers.tasks.refresh_popularity")
def refresh_popularity() -> dict:
    return {"items_updated": services.item_popularity_refresh()}


@shared_task(name="workers.tasks.embed_items")
def embed_items(item_ids: list[int] | None = None) -> dict:
    """Text vectors for the given items, or for every item still without one."""
    return {"embedded": items_embed(item_ids=item_ids, progress=False)}


@shared_task(name="workers.tasks.refresh_seeds")
def refresh_seeds(part: int | None = None) -> dict:
    """Seeds of clicked items of one partition; then their states at once, and more seeds
    while dirty ones remain. Beat's run (no partition) first rebuilds a serving store that
    Redis lost (a restart without persistence), then sends one run per partition."""
    if part is None:
        healed = _locked("refresh_seeds", lambda: {"serving_store_rebuilt": refresh.serving_store_heal()})
        return _fan_out(refresh_seeds, {} if not healed.get("serving_store_rebuilt") else healed)
    parts = settings.LOOKALIKE_REFRESH_PARTITIONS
    result = _locked(_part_lock("refresh_seeds", part, parts), lambda: seeds.seeds_refresh(part=(part, parts)))
    return _then(result, "changed", refresh_states.si(part=part), again=refresh_seeds.si(part=part))


@shared_task(name="workers.tasks.refresh_states")
def refresh_states(part: int | None = None) -> dict:
    """Centroids and E_global of the items of one partition whose seeds changed; then the
    cold/warm promotion. Beat's run (no partition) sends one run per partition."""
    if part is None:
        return _fan_out(refresh_states)
    parts = settings.LOOKALIKE_REFRESH_PARTITIONS
    result = _locked(_part_lock("refresh_states", part, parts), lambda: refresh.states_refresh(part=(part, parts)))
    return _then(result, "items", promote_items, again=refresh_states.si(part=part))


@shared_task(name="workers.tasks.promote_items")
def promote_items() -> dict:
    """Cold items that reached the seed threshold turn warm (and back only far below it)."""
    return _locked("promote_items", item_status_refresh)


@shared_task(name="workers.tasks.retrain", time_limit=3 * 3600, soft_time_limit=3 * 3600 - 60)
def retrain() -> dict:
    """Nightly: train every model from the logs and switch serving to the new runs."""
    def run() -> dict:
        report = model_train()
        return {"runs": [report.tower_run.pk, report.lookalike_run.pk, report.coldstart_run.pk],
                "seconds": report.seconds}
    return _locked("retrain", run)
