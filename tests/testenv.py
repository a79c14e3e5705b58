"""Loaded with `-p tests.testenv` before Django's settings: tests use their own Redis
database (15), so a demo running on the same machine never sees a test's keys or tasks."""

import os

os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
