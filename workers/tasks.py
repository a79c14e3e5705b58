"""Thin task adapters: each takes its job's lock, calls one webapp service, re-queues itself
while work remains, and returns a small summary."""

from __future__ import annotations

from celery import shared_task

from webapp.common.locks import job_lock
from webapp.lookalike import refresh
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


@shared_task(name="workers.tasks.refresh_popularity")
def refresh_popularity() -> dict:
    return {"items_updated": services.item_popularity_refresh()}


@shared_task(name="workers.tasks.embed_items")
def embed_items(item_ids: list[int] | None = None) -> dict:
    """Text vectors for the given items, or for every item still without one."""
    return {"embedded": items_embed(item_ids=item_ids, progress=False)}


@shared_task(name="workers.tasks.refresh_seeds")
def refresh_seeds() -> dict:
    """Seeds of clicked items; then their states at once, and more seeds while dirty remain.
    First, a serving store that Redis lost (a restart without persistence) is rebuilt."""
    def run() -> dict:
        rebuilt = refresh.serving_store_heal()
        result = refresh.seeds_refresh()
        return {**result, "serving_store_rebuilt": rebuilt} if rebuilt else result

    return _then(_locked("refresh_seeds", run), "changed", refresh_states, again=refresh_seeds)


@shared_task(name="workers.tasks.refresh_states")
def refresh_states() -> dict:
    """Centroids and E_global of items whose seeds changed; then the cold/warm promotion."""
    return _then(_locked("refresh_states", refresh.states_refresh), "items", promote_items, again=refresh_states)


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
