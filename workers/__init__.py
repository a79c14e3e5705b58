"""Celery app and tasks. `celery -A workers worker` / `celery -A workers beat`."""

from workers.celery import app

__all__ = ["app"]
