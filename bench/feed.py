"""Feed latency through the Django stack (URL routing, DRF, the ranker, the impression
insert, JSON), for 100, 1,000 and 5,000 candidate stories, half of them warm; and the
look-alike scoring step with attention over k=20 centroids against attention over 500 raw
seeds per item. Scratch database and Redis db 14; the models are fitted on synthetic data
(latency does not depend on what they learned). Writes results.json["feed"]. Tiny mode
(bench/common.py): 50 and 100 candidates, a few requests each.

What the metrics and the request log cost the feed: one web process (`--child`, in
prometheus-client's multiprocess mode as under gunicorn) answers each reader's feed at 1,000
candidates three times in a row, once per arm (metrics off; on; on with a JSON line per
request), the order rotating; the arms' medians and their differences, with bootstrap
standard errors over readers. Paired request by request, the comparison is not at the mercy
of how fast one process happens to run against another (which varies by more than the
effect). The table above runs without the request lines, as its earlier runs did.
BENCH_PROFILE_OUT=PATH: that process writes its cProfile stats to PATH."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
from common import REDIS_URL, save, scratch_database, sized, table

READERS, DIM, TEXT, K, SEEDS, RAW = sized(2_000, 100), 64, 384, 20, sized(200, 20), sized(500, 50)
CANDIDATES = sized((100, 1_000, 5_000), (50, 100))
SCORED = sized(1_000, 50)  # candidates of the look-alike scoring step timed alone
REQUESTS = sized(400, 10)
METRICS_REQUESTS = sized(1500, 10)  # readers whose feed each arm of ARMS answers (bench/feed.py --child)


def _synthetic_models(folder: Path, rng: np.random.Generator) -> None:
    from recsys.artifacts import save_coldstart, save_ctr, save_lookalike
    from recsys.calibration import PlattCalibrator
    from recsys.coldstart import ColdStartModel
    from recsys.ctr import CtrModel
    from recsys.hybrid import Calibration
    from recsys.lookalike import LookalikeConfig, LookalikeModel

    save_lookalike(folder / "lookalike", LookalikeModel(LookalikeConfig(dim=DIM, k=K)))
    x, y = rng.standard_normal((2000, TEXT + 4)), rng.random(2000) < 0.1
    s1, s2 = rng.standard_normal(500), rng.standard_normal((500, 2))  # maps that increase with the scores
    cal = Calibration(PlattCalibrator().fit(s1, rng.random(500) < 1 / (1 + np.exp(2 - s1))),
                      PlattCalibrator().fit(s2, rng.random(500) < 1 / (1 + np.exp(2 - s2.sum(1)))), 20, {})
    save_coldstart(folder / "coldstart", model=ColdStartModel().fit(x, y), calibration=cal, meta={"threshold": 20})
    x5, x6, x8 = (rng.standard_normal((2000, n)) for n in (5, 6, 8))  # the CTR, noralm and feature columns
    save_ctr(folder / "ctr", models={"ctr": CtrModel().fit(x5, y), "ctr_feature": CtrModel().fit(x8, y),
                                     "ctr_noralm": CtrModel().fit(x6, y)}, meta={"prior": 0.05})


def main() -> None:
    os.environ["REDIS_URL"] = REDIS_URL
    os.environ["LOG_LEVEL"] = "WARNING"  # no line per request here (the observability sets measure them)
    # One client asks for every feed here: its per-client limit stays on (each request pays
    # its counter, as a browser's does) but out of reach.
    os.environ["FEED_CLIENT_RATE_LIMIT"] = "100000000/minute"
    # What ranking N candidates costs: every live story is one, at 5,000 too (bench/scale.py
    # measures the feed with recall in front).
    os.environ["FEED_RECALL_ABOVE"] = str(10**9)
    folder = Path(tempfile.mkdtemp(prefix="ralm-bench-feed-"))
    rng = np.random.default_rng(0)
    with scratch_database("ralm_feed_bench_feed"):
        from django.conf import settings
        from django.db import connection
        from django.test import Client
        from django.utils import timezone

        from recsys.artifacts import load_lookalike
        from recsys.serving import LookalikeScorer
        from webapp.common.catalog import CATALOG_VERSION_KEY
        from webapp.common.connections import redis_client
        from webapp.lookalike import store
        from webapp.lookalike.models import ModelKind, ModelRun
        from webapp.news.models import Click, Item, ItemStatus, Reader

        r = redis_client()
        r.flushdb()
        _synthetic_models(folder, rng)
        runs = {k: ModelRun.objects.create(kind=k, version="bench", is_active=True, artifact_path=str(folder / name))
                for k, name in ((ModelKind.USER_TOWER, "tower"), (ModelKind.LOOKALIKE, "lookalike"),
                                (ModelKind.COLDSTART, "coldstart"), (ModelKind.CTR, "ctr"))}
        now = timezone.now()
        n_items = max(CANDIDATES)
        print(f"setting up {READERS:,} readers and {n_items:,} stories, half warm ...", flush=True)
        readers = Reader.objects.bulk_create([Reader(external_id=f"b{i}", name=f"Reader {i}") for i in range(READERS)])
        text = rng.standard_normal((n_items, TEXT)).astype("<f4")
        text /= np.linalg.norm(text, axis=1, keepdims=True)
        items = Item.objects.bulk_create([
            Item(external_id=f"s{i}", title=f"Story {i}", category=f"c{i % 12}", subcategory=f"s{i % 40}",
                 published_at=now - timedelta(minutes=int(rng.integers(1, 48 * 60))),
                 status=ItemStatus.WARM if i % 2 else ItemStatus.COLD, shown_count=int(rng.integers(0, 500)),
                 click_count=int(rng.integers(0, 25)), text_vector=text[i].tobytes())
            for i in range(n_items)], batch_size=2000)
        Click.objects.bulk_create([Click(reader=readers[i], item=items[int(j)], clicked_at=now - timedelta(hours=1))
                                   for i in range(READERS) for j in rng.choice(n_items, 5, replace=False)],
                                  batch_size=5000)
        e_u = rng.standard_normal((READERS, DIM)).astype(np.float32)
        store.reader_vectors_write(run_id=runs[ModelKind.USER_TOWER].pk,
                                   vectors=((rd.pk, v) for rd, v in zip(readers, e_u, strict=True)))
        scorer = LookalikeScorer.from_model(load_lookalike(folder / "lookalike"))
        warm = [it for it in items if it.status == ItemStatus.WARM]
        seed_sets = [rng.integers(0, READERS, SEEDS) for _ in warm]
        states = scorer.item_states([e_u[s] for s in seed_sets])
        packed = {it.pk: store.pack_state(s, warm=True) for it, s in zip(warm, states, strict=True)}
        store.item_states_write(run_id=runs[ModelKind.LOOKALIKE].pk, states=packed)
        store.active_runs_set(tower_run=runs[ModelKind.USER_TOWER].pk, lookalike_run=runs[ModelKind.LOOKALIKE].pk)
        with connection.cursor() as cur:
            cur.execute("ANALYZE")

        client = Client(HTTP_HOST="127.0.0.1")
        default_arm = settings.FEED_ARM  # the arm the feed serves unless a request names one
        rows, result = [], {"candidates": {}}
        ids = [it.pk for it in items]
        for n in CANDIDATES:
            Item.objects.filter(pk__in=ids[n:]).update(published_at=None)
            Item.objects.filter(pk__in=ids[:n]).update(published_at=now - timedelta(hours=1))
            r.incr(CATALOG_VERSION_KEY)
            for k in range(min(20, READERS)):  # warm up: model loads, the catalog and serving copies
                assert client.get(f"/api/feed?reader={readers[k].pk}&limit=10").status_code == 200
            times = []
            for _ in range(REQUESTS):
                reader = readers[int(rng.integers(READERS))]
                started = time.perf_counter()
                resp = client.get(f"/api/feed?reader={reader.pk}&limit=10")
                times.append((time.perf_counter() - started) * 1000)
                assert resp.status_code == 200 and resp.json()["arm"] == default_arm, resp.content[:300]
            if os.environ.get("BENCH_PROFILE") and n == 1_000:
                import cProfile
                import pstats

                prof = cProfile.Profile()
                prof.runcall(lambda: [client.get(f"/api/feed?reader={readers[k].pk}&limit=10") for k in range(100)])
                pstats.Stats(prof).sort_stats("tottime").print_stats(30)
            p50, p99 = np.percentile(times, 50), np.percentile(times, 99)
            result["candidates"][str(n)] = {"p50_ms": round(float(p50), 2), "p99_ms": round(float(p99), 2),
                                            "requests": REQUESTS}
            rows.append((f"{n:,}", f"{p50:.1f}", f"{p99:.1f}", f"{1000 / np.mean(times):.0f}"))

        # The scoring step alone, 1,000 candidates: k=20 centroids against 500 raw seeds each.
        c = SCORED
        cents = np.stack([np.pad(s.centroids, ((0, K - len(s.sizes)), (0, 0))) for s in states[:c]]).astype(np.float64)
        sizes = np.stack([np.pad(s.sizes, (0, K - len(s.sizes))) for s in states[:c]])
        e_global = np.stack([s.e_global for s in states[:c]]).astype(np.float64)
        raw = scorer.transform(e_u[rng.integers(0, READERS, (c, RAW))].astype(np.float64))
        target = e_u[0].astype(np.float64)

        def best_of(fn, repeat: int = 15) -> float:
            out = []
            for _ in range(repeat):
                started = time.perf_counter()
                fn()
                out.append(time.perf_counter() - started)
            return float(np.median(out)) * 1000

        centroid_ms = best_of(lambda: scorer.score_unchecked(target, cents, sizes, sizes > 0, e_global))
        raw_ms = best_of(lambda: scorer.score_unchecked(target, raw, np.ones((c, RAW)), np.ones((c, RAW), bool),
                                                        e_global))
        result["scoring_1000_ms"] = {"centroids_k20": round(centroid_ms, 2), "raw_seeds_500": round(raw_ms, 2)}
        result["raw_seed_ratio_500"] = round(raw_ms / centroid_ms, 1)
        result["scored_candidates"], result["raw_seeds"] = c, RAW
        result["observability"] = _metrics_cost(n=CANDIDATES[1], ids=ids, now=now, readers=[rd.pk for rd in readers])
        r.flushdb()
    save("feed", result)
    print(table(rows, ("candidates", "p50 ms", "p99 ms", "requests/s (1 client)")))
    print(table([("k = 20 centroids", f"{centroid_ms:.2f}"), (f"{RAW} raw seeds", f"{raw_ms:.2f}"),
                 ("ratio", f"{raw_ms / centroid_ms:.1f}x")], (f"look-alike scoring, {c:,} candidates", "ms")))
    m = result["observability"]
    print(table([*((arm, f"{v:.2f}") for arm, v in m["p50_ms"].items()),
                 ("metrics - off", f"{m['metrics_cost']['ms']:+.3f} ± {m['metrics_cost']['se_ms']:.3f}"),
                 ("logs - metrics", f"{m['log_line_cost']['ms']:+.3f} ± {m['log_line_cost']['se_ms']:.3f}")],
                (f"{m['candidates']:,} candidates, {m['requests']:,} readers × 3 arms", "p50 ms")))


ARMS = ("off", "metrics", "metrics+logs")  # nothing recorded; the metrics; the metrics and a JSON line per request


def _metrics_cost(*, n: int, ids: list[int], now, readers: list[int]) -> dict:
    """One web process (`--child`: multiprocess mode, as under gunicorn) answers the same
    reader's feed under each arm of ARMS in turn (order rotating), for many readers at `n`
    candidates; each arm's median, and the differences of the medians with bootstrap SEs."""
    import subprocess

    from django.db import connection

    from webapp.common.catalog import CATALOG_VERSION_KEY
    from webapp.common.connections import redis_client
    from webapp.news.models import Item

    Item.objects.filter(pk__in=ids[n:]).update(published_at=None)
    Item.objects.filter(pk__in=ids[:n]).update(published_at=now - timedelta(hours=1))
    redis_client().incr(CATALOG_VERSION_KEY)
    db = connection.settings_dict
    sample = np.random.default_rng(0).choice(readers, METRICS_REQUESTS).tolist()
    with tempfile.TemporaryDirectory(prefix="ralm-bench-metrics-") as folder:
        env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
               "METRICS_TOKEN": "", "METRICS_ENABLED": "1", "LOG_LEVEL": "INFO", "PROMETHEUS_MULTIPROC_DIR": folder,
               "CONN_MAX_AGE": "3600"}
        out = subprocess.run([sys.executable, __file__, "--child", *map(str, sample)], env=env,
                             capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"bench child failed:\n{out.stderr[-3000:]}")
    times = {arm: np.array(v) for arm, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}
    rng = np.random.default_rng(1)
    boot = rng.integers(0, len(sample), (1000, len(sample)))  # readers resampled, arms kept paired

    def diff(a: str, b: str) -> dict:
        d = np.median(times[a][boot], axis=1) - np.median(times[b][boot], axis=1)
        return {"ms": round(float(np.median(times[a]) - np.median(times[b])), 3), "se_ms": round(float(d.std()), 3)}

    return {"candidates": n, "requests": len(sample), "p50_ms": {a: round(float(np.median(t)), 3)
                                                                 for a, t in times.items()},
            "metrics_cost": diff("metrics", "off"), "log_line_cost": diff("metrics+logs", "metrics")}


def child(readers: list[int]) -> None:
    """The arms in one web process, request by request: Django's stack through a test client
    whose middleware includes django-prometheus's or not, the database cursors counted by
    django-prometheus's or not, our metrics on or off, the request's log line at INFO or
    not. Prints {arm: [ms per request]}."""
    import logging

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test import Client, override_settings

    from webapp.common import metrics

    with_metrics = Client(HTTP_HOST="127.0.0.1")
    with_metrics.get(f"/api/feed?reader={readers[0]}&limit=10")  # builds its middleware chain
    with override_settings(MIDDLEWARE=[m for m in settings.MIDDLEWARE if m != "webapp.common.metrics.RequestMetrics"]):
        without = Client(HTTP_HOST="127.0.0.1")
        without.get(f"/api/feed?reader={readers[0]}&limit=10")
    counted = connection.connection.cursor_factory  # django-prometheus's subclass of the plain cursor
    plain = counted.__mro__[1]
    request_log = logging.getLogger("ralm.request")
    times: dict[str, list[float]] = {arm: [] for arm in ARMS}

    def one(arm: str, reader: int) -> float:
        on = arm != "off"
        metrics.ENABLED = on
        connection.ensure_connection()
        connection.connection.cursor_factory = counted if on else plain
        request_log.setLevel(logging.INFO if arm == "metrics+logs" else logging.WARNING)
        started = time.perf_counter()
        resp = (with_metrics if on else without).get(f"/api/feed?reader={reader}&limit=10")
        elapsed = (time.perf_counter() - started) * 1000
        assert resp.status_code == 200, resp.content[:300]
        return elapsed

    for k, reader in enumerate(readers[:50]):  # warm up
        one(ARMS[k % 3], reader)
    profile = os.environ.get("BENCH_PROFILE_OUT")
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    for k, reader in enumerate(readers):
        for arm in ARMS[k % 3:] + ARMS[:k % 3]:
            times[arm].append(one(arm, reader))
    if profile:
        prof.disable()
        prof.dump_stats(profile)
    metrics.ENABLED = True
    scraped = with_metrics.get("/metrics")
    assert scraped.status_code == 200 and b"ralm_feed_latency_seconds_count" in scraped.content
    print(json.dumps(times))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        os.environ["REDIS_URL"] = REDIS_URL
        sys.exit(child([int(x) for x in sys.argv[2:]]))
    sys.exit(main())
