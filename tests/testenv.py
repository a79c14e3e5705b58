"""Loaded with `-p tests.testenv` before Django's settings: tests use their own Redis
database, so a demo running on the same machine never sees a test's keys or tasks. Each
pytest-xdist worker gets one of its own (as pytest-django gives each its own test database);
the benchmarks use 10 to 14 and `ab_report --closed-loop` 8 and 9."""

import os

TEST_REDIS_DBS = (15, 7, 6, 5, 4, 3, 2, 1)
_worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:])  # "gw<N>" in an xdist worker
if _worker >= len(TEST_REDIS_DBS):
    raise SystemExit(f"at most {len(TEST_REDIS_DBS)} pytest-xdist workers: one Redis database each")
# The workers inherit the main process's environment: a REDIS_URL chosen here (not given by
# the caller) is marked so that each worker replaces it with its own.
if "REDIS_URL" not in os.environ or os.environ.get("RALM_TEST_REDIS_CHOSEN") == "1":
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:6379/{TEST_REDIS_DBS[_worker]}"
    os.environ["RALM_TEST_REDIS_CHOSEN"] = "1"
# Every test client comes from 127.0.0.1, so per-client counters would add up across the whole
# suite within a minute; the tests of those limits set them (tests/webapp/test_hostile.py).
os.environ.setdefault("FEED_CLIENT_RATE_LIMIT", "off")
os.environ.setdefault("CLICK_CLIENT_RATE_LIMIT", "off")
os.environ.setdefault("READER_CLIENT_RATE_LIMIT", "off")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
