"""New readers: the time from a click to the reader's new vector E_u, through the Django
stack. The click request (POST /api/clicks) stores the click and recomputes E_u with the
trained user tower (one query for the reader's clicks, the tower, a Postgres upsert, a Redis
write) before it answers, so when the 201 arrives the next feed already reads the new vector.

On a scratch database (and Redis db 14): the demo corpus, a simulated history, models trained
as `make demo` trains them; then new web readers each click a few stories of their feeds.
Writes results.json["readers"]. Tiny mode (bench/common.py): 6 readers on the tiny demo world."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings

import numpy as np
from common import REDIS_URL, demo_world, save, scratch_database, sized, table

READERS, CLICKS, WARM = sized(60, 6), 5, 3  # the first WARM readers warm the process up (not measured)


def main() -> None:
    warnings.filterwarnings("ignore", message="No directory at")  # whitenoise: static files not collected here
    os.environ["REDIS_URL"] = REDIS_URL
    os.environ["MODEL_DIR"] = tempfile.mkdtemp(prefix="ralm-bench-readers-")
    # Every new reader here comes from one address, past the limit a stranger gets.
    os.environ["READER_CLIENT_RATE_LIMIT"] = "off"
    with scratch_database("ralm_feed_bench_readers"):
        from django.test import Client

        from webapp.common.connections import redis_client
        from webapp.feed.access import SESSION_KEY
        from webapp.lookalike import store
        from webapp.lookalike.online import reader_vector_refresh

        r = redis_client()
        r.flushdb()
        sessions = 1500  # (tiny mode: its own world, bench/common.py)
        print(f"demo corpus, {sessions:,} simulated sessions, training ...", flush=True)
        demo_world(sessions=sessions, hours=24, seed=1)

        click_ms, vector_ms, feed_ms = [], [], []
        for n in range(READERS):
            client = Client(HTTP_HOST="127.0.0.1")
            client.get("/")  # sets the CSRF cookie
            token = client.cookies["csrftoken"].value
            client.post("/start/")
            reader_id = client.session[SESSION_KEY]
            for k in range(CLICKS):
                started = time.perf_counter()
                page = client.get(f"/api/feed?reader={reader_id}&limit=10").json()
                feed_ms.append((time.perf_counter() - started) * 1000)
                before = store.reader_vector_get(reader_id=reader_id)
                started = time.perf_counter()
                resp = client.post("/api/clicks", {"impression": page["items"][k % 10]["impression"]},
                                   content_type="application/json", HTTP_X_CSRFTOKEN=token)
                elapsed = (time.perf_counter() - started) * 1000
                after = store.reader_vector_get(reader_id=reader_id)
                assert resp.status_code == 201, resp.content
                assert after is not None and (before is None or not np.array_equal(before, after))
                if n >= WARM:  # the first readers warm the process (tower load, catalog copy)
                    click_ms.append(elapsed)
            if n >= WARM:
                vector_ms.append(reader_vector_refresh(reader_id=reader_id).seconds * 1000)
        r.flushdb()

    def pct(xs, q):
        return round(float(np.percentile(xs, q)), 2)

    result = {"readers": READERS - WARM, "clicks": len(click_ms),
              "click_to_vector_ms": {"p50": pct(click_ms, 50), "p99": pct(click_ms, 99)},
              "vector_recompute_ms": {"p50": pct(vector_ms, 50), "p99": pct(vector_ms, 99)},
              "feed_ms": {"p50": pct(feed_ms, 50), "p99": pct(feed_ms, 99)}}
    save("readers", result)
    print(table([
        ("click → new E_u (POST /api/clicks, stored in Postgres and Redis)", len(click_ms), pct(click_ms, 50),
         pct(click_ms, 99)),
        ("E_u recompute alone (read clicks, tower, upsert, Redis)", len(vector_ms), pct(vector_ms, 50),
         pct(vector_ms, 99)),
        ("the next feed (GET /api/feed)", len(feed_ms), pct(feed_ms, 50), pct(feed_ms, 99)),
    ], ("new readers", "n", "p50 ms", "p99 ms")))


if __name__ == "__main__":
    sys.exit(main())
