"""Loaded with `-p tests.testenv` before Django's settings: tests use their own Redis
database (15), so a demo running on the same machine never sees a test's keys or tasks."""

import os

os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
# Every test client comes from 127.0.0.1 and many tests sign in one staff account, so
# per-client and per-account counters would add up across the whole suite within a minute; the
# tests of those limits set them (tests/webapp/test_hostile.py, test_admin_insight.py).
os.environ.setdefault("FEED_CLIENT_RATE_LIMIT", "off")
os.environ.setdefault("CLICK_CLIENT_RATE_LIMIT", "off")
os.environ.setdefault("READER_CLIENT_RATE_LIMIT", "off")
os.environ.setdefault("ADMIN_PAGE_RATE_LIMIT", "off")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
