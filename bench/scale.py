"""Scale: the parts of the platform whose cost must follow the traffic or the page, not the
history or the catalog, measured at 100× the demo (100,000 stories and readers).

- **Feed.** A world of STORIES × READERS with its own click model and models fitted on it
  (`_feed_world`), half the stories warm; one web process (a process of its own, the Django
  stack through the test client) answers FEED_REQUESTS feeds through recall, its peak resident
  memory is read, then FEED_KEPT_READERS readers' pages are ranked both ways (recalled, and
  every live story scored) for the share of the full ranking's top 10 the served page keeps.
- **Counts.** A history of 1M impressions, then of 10M (the same traffic rate over a ten
  times longer past, 3% of them clicked, written by COPY in chunks), and at each size one
  minute of traffic as the feed writes it (one INSERT per page of 10, one per click); then
  the counts job (`item_popularity_refresh`: the decayed popularity and the impression and
  click counts) is timed. Its time at 10M must stay within 1.5× of its time at 1M.
- **Refresh** (bench/scalerefresh.py). From scratch: 10,000 brand-new stories with 200 seeds
  each. Steady state: 100,000 warm stories with 200 seeds each, and a minute in which 10,000
  of them get 1-5 new clickers. Each refreshed by real Celery workers (prefork) with one
  process and with two: beat's `refresh_seeds` fans out into one task per partition
  (workers.tasks), and the clock stops when no seed set or state is dirty any more.

A scratch database and Redis db 12; writes results.json["scale"]; `python bench/scale.py
feed|counts|refresh` measures one part and keeps the others. Tiny mode (bench/common.py):
2,000 stories and readers with recall from 500 live stories, 10,000 and 100,000 impressions,
400 dirty stories × 20 seeds (from scratch; 2,000 warm with 400 dirty, steady)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from common import ROOT, TINY, save, scratch_database, sized, table
from scalerefresh import refresh_scratch, refresh_steady

STORIES, READERS = sized(100_000, 2_000), sized(100_000, 2_000)
SIZES = sized((1_000_000, 10_000_000), (10_000, 100_000))  # impressions of history
RATE_PER_HOUR = sized(1_000_000 / 72, 10_000 / 72)  # the history's traffic: 1M impressions in three days
CTR = 0.03
MINUTE_PAGES = sized(2_000, 50)  # one minute of traffic before each timing: pages of 10
RUNS = 3  # timings of the counts job at each size (median)
CHUNK = 1_000_000  # rows per COPY
REDIS_DB = "redis://127.0.0.1:6379/12"


def _history(cur, *, start_id: int, n: int, end: float, rng: np.random.Generator, item_ids: np.ndarray,
             reader_ids: np.ndarray) -> None:
    """n impressions (CTR of them clicked) at the history's rate, ending at `end` (epoch s)."""
    from tqdm import tqdm

    from webapp.common.bulk import copy_columns, timestamps_text
    from webapp.news.models import Click, Impression

    span = n / RATE_PER_HOUR * 3600.0
    with tqdm(total=n, unit="impression", unit_scale=True, desc="history", disable=TINY) as bar:
        for lo in range(0, n, CHUNK):
            m = min(CHUNK, n - lo)
            ids = np.arange(start_id + lo, start_id + lo + m)
            shown = end - span + (lo + np.arange(m)) / n * span
            items = item_ids[rng.zipf(1.3, m) % len(item_ids)]  # a long tail of stories
            readers = reader_ids[rng.integers(0, len(reader_ids), m)]
            copy_columns(cur, Impression, {
                "id": ids, "reader": readers, "item": items, "request_id": [f"h{i}" for i in ids.tolist()],
                "position": ids % 10, "shown_at": timestamps_text(shown), "arm": ["history"] * m}, m)
            c = np.flatnonzero(rng.random(m) < CTR)
            copy_columns(cur, Click, {"reader": readers[c], "item": items[c], "impression": ids[c],
                                      "clicked_at": timestamps_text(shown[c] + 20)}, len(c))
            bar.update(m)


def _minute(*, rng: np.random.Generator, item_ids: np.ndarray, reader_ids: np.ndarray) -> None:
    """A minute of traffic as the feed and the click API write it: a statement per page and click."""
    from django.db import connection
    from django.utils import timezone

    from webapp.feed.services import _IMPRESSIONS_SQL
    from webapp.news.models import Click

    now = timezone.now()
    with connection.cursor() as cur:
        for _ in range(MINUTE_PAGES):
            reader = int(rng.choice(reader_ids))
            page = [{"item_id": int(i), "position": p, "score": 0.0, "score_parts": {}}
                    for p, i in enumerate(rng.choice(item_ids, 10, replace=False))]
            cur.execute(_IMPRESSIONS_SQL, {"reader": reader, "request": uuid.uuid4().hex, "now": now, "arm": "blend",
                                           "client": "", "page": json.dumps(page)})
            shown = cur.fetchall()
            if rng.random() < 10 * CTR:
                impression, position = shown[int(rng.integers(0, len(shown)))]
                Click.objects.create(impression_id=impression, reader_id=reader, item_id=page[position]["item_id"],
                                     clicked_at=now)


def _counts() -> dict:
    from django.db import connection, transaction
    from django.utils import timezone

    from webapp.common.bulk import copy_rows
    from webapp.news.models import Item, ItemCountDelta, Reader
    from webapp.news.services import item_popularity_refresh

    rng = np.random.default_rng(0)
    now = timezone.now()
    print(f"counts: {STORIES:,} stories, {READERS:,} readers, a history of {SIZES[0]:,} then {SIZES[-1]:,} "
          "impressions", flush=True)
    with connection.cursor() as cur, transaction.atomic():
        copy_rows(cur, Reader, ({"id": r, "external_id": f"s{r}", "name": f"Reader {r}", "created_at": now}
                                for r in range(1, READERS + 1)))
        copy_rows(cur, Item, ({"id": i, "external_id": f"s{i}", "title": f"Story {i}", "category": "news",
                               "created_at": now, "published_at": now} for i in range(1, STORIES + 1)))
    item_ids, reader_ids = np.arange(1, STORIES + 1), np.arange(1, READERS + 1)
    out, done, rows = {}, 0, []
    end = now.timestamp()
    for size in SIZES:
        with connection.cursor() as cur, transaction.atomic():
            cur.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM news_impression")
            first = cur.fetchone()[0]
            # The older part of the longer past: the history grows backwards from the first one.
            _history(cur, start_id=first, n=size - done, end=end - done / RATE_PER_HOUR * 3600.0, rng=rng,
                     item_ids=item_ids, reader_ids=reader_ids)
            cur.execute("SELECT setval(pg_get_serial_sequence('news_impression', 'id'), %s)", [first + size - done])
        done = size
        with connection.cursor() as cur:
            cur.execute("VACUUM ANALYZE news_impression")
            cur.execute("VACUUM ANALYZE news_click")
        item_popularity_refresh()  # the history's own deltas in: the steady state
        seconds = []
        for _ in range(RUNS):
            _minute(rng=rng, item_ids=item_ids, reader_ids=reader_ids)
            pending = ItemCountDelta.objects.count()
            started = time.perf_counter()
            item_popularity_refresh()
            seconds.append(time.perf_counter() - started)
        key = f"{size // 1_000_000}M_s" if size >= 1_000_000 else f"{size // 1000}k_s"
        out[key] = round(float(np.median(seconds)), 3)
        rows.append((f"{size:,}", f"{pending:,}", f"{np.median(seconds) * 1000:.0f}",
                     f"{min(seconds) * 1000:.0f}-{max(seconds) * 1000:.0f}"))
    shown = Item.objects.filter(shown_count__gt=0).count()
    print(table(rows, ("history impressions", "delta rows of a minute", "counts job ms (median)", "range ms")))
    first, last = (out[k] for k in list(out)[:2])
    out["ratio"] = round(last / first, 2) if first else None
    out["stories_shown"] = shown
    return out


FEED_WARM_SHARE, FEED_SEEDS, FEED_HISTORY = 0.5, sized(50, 10), 10  # warm stories, seeds each, clicks per reader
FEED_REQUESTS, FEED_KEPT_READERS = sized(600, 20), sized(100, 10)
FEED_ARTIFACTS = "feed-models"


def _feed_world(folder: Path) -> dict:
    """The feed's world at STORIES × READERS, in the scratch database and Redis, with models
    fitted on its own click model; returns what it is made of.

    - Stories take the demo corpus's categories and subcategories, and titles made of words
      from that subcategory's titles. Their text vectors are not MiniLM's (100,000 encodings
      would take about six minutes here) but a category direction, a subcategory direction
      and noise, unit length: what the models read of text is its geometry.
    - The click model: each reader prefers two categories; a story has a quality (its base
      CTR, log-normal around 3%) that preferred categories multiply by 2.5 and the others by
      0.4; stories are shown by a long-tailed popularity. Each story's counts are those of
      SIZES[-1] impressions of history drawn from it (the counts part writes such a history
      row by row; here only its counts matter).
    - Each reader has FEED_HISTORY clicks (their profile); half the stories are warm, each
      with FEED_SEEDS seeds drawn by the click model; a reader's E_u is a fixed projection
      of their categories' directions plus noise (a stand-in for the user tower, which is
      not what is measured).
    - The CTR and cold-start models and both calibration maps are fitted on impressions
      drawn from the same click model; the look-alike model is untrained (its cost does not
      depend on what it learned)."""
    from django.db import connection, transaction
    from django.utils import timezone
    from tqdm import tqdm

    from fixtures.corpus import load_stories
    from recsys.artifacts import save_coldstart, save_ctr, save_lookalike
    from recsys.coldstart import ColdStartModel, pair_features
    from recsys.ctr import CtrModel, assemble, learned_rows
    from recsys.hybrid import Calibration
    from recsys.lookalike import LookalikeConfig, LookalikeModel
    from recsys.pipeline import PipelineConfig, calibration_maps
    from recsys.profiles import reader_profiles
    from recsys.serving import LookalikeScorer
    from webapp.common.bulk import copy_rows
    from webapp.lookalike import store
    from webapp.lookalike.models import ModelKind, ModelRun
    from webapp.news.models import Click, Item, ItemStatus, Reader

    rng = np.random.default_rng(7)
    now = timezone.now()
    t_now = now.timestamp()
    corpus = load_stories()
    subs = sorted({(s.category, s.subcategory) for s in corpus})
    categories = sorted({c for c, _ in subs})
    words = {sub: sorted({w.strip(",.:;'\"").lower() for s in corpus if (s.category, s.subcategory) == sub
                          for w in s.title.split() if len(w) > 3}) for sub in subs}
    n_cat, text = len(categories), 384
    cat_dir = rng.standard_normal((n_cat, text))
    sub_dir = rng.standard_normal((len(subs), text))
    sub_of = rng.integers(0, len(subs), STORIES)
    cat_of = np.array([categories.index(subs[k][0]) for k in sub_of])
    vectors = cat_dir[cat_of] * 1.0 + sub_dir[sub_of] * 0.7 + rng.standard_normal((STORIES, text)) * 0.9
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype("<f4")
    quality = np.clip(rng.lognormal(np.log(0.025), 0.6, STORIES), 0.002, 0.3)
    age_h = rng.uniform(0.0, 7 * 24.0, STORIES)
    reach = rng.permutation(STORIES) + 1.0  # popularity rank
    reach = reach ** -0.9 / (reach ** -0.9).sum()
    shown = rng.poisson(SIZES[-1] * reach)
    prefs = np.stack([rng.choice(n_cat, 2, replace=False) for _ in range(READERS)])

    def click_p(readers: np.ndarray, items: np.ndarray) -> np.ndarray:
        liked = (prefs[readers] == cat_of[items][:, None]).any(1)
        return np.minimum(quality[items] * np.where(liked, 2.5, 0.4), 0.9)

    clicks = rng.binomial(shown, np.minimum(quality * (2 / n_cat * 2.5 + (1 - 2 / n_cat) * 0.4), 0.9))
    # A reader's history: FEED_HISTORY stories of their categories (80%) or any, clicked by the model.
    by_cat = [np.flatnonzero(cat_of == c) for c in range(n_cat)]
    history = np.zeros((READERS, FEED_HISTORY), np.int64)
    for r in tqdm(range(READERS), desc="histories", unit="reader", disable=TINY, mininterval=2):
        own = rng.random(FEED_HISTORY) < 0.8
        picks = [rng.choice(by_cat[prefs[r][rng.integers(2)]]) if o else rng.integers(STORIES) for o in own]
        history[r] = picks
    warm = np.zeros(STORIES, bool)
    warm[rng.choice(STORIES, int(FEED_WARM_SHARE * STORIES), replace=False)] = True
    # Reader vectors: the user tower's stand-in, of the size the pipeline trains.
    config = PipelineConfig()
    dim = config.dim
    proj = rng.standard_normal((text, dim)) / np.sqrt(text)
    e_u = (cat_dir[prefs].sum(1) @ proj + rng.standard_normal((READERS, dim)) * 0.5).astype(np.float32)

    # Models fitted on the click model: readers' profiles from their histories.
    sample_readers = rng.choice(READERS, sized(5_000, 300), replace=False)
    hist = [history[r][::-1] for r in sample_readers]
    prof = reader_profiles(item_vectors=vectors, item_category=cat_of, n_categories=n_cat, histories=hist,
                           picked=[set()] * len(sample_readers))
    per = 40
    ri = np.repeat(np.arange(len(sample_readers)), per)
    items = rng.choice(STORIES, len(ri), p=reach)
    y = rng.random(len(ri)) < click_p(sample_readers[ri], items)
    position = rng.integers(0, 10, len(ri))
    y &= rng.random(len(ri)) < 1 / (1 + 0.15 * position)
    prior = float(clicks.sum() / max(shown.sum(), 1))
    x5 = assemble(affinity=prof.category_affinity[ri, cat_of[items]], item_clicks=clicks[items],
                  item_impressions=shown[items], age_hours=age_h[items], position=position.astype(float), prior=prior)
    ctr_model = CtrModel().fit(x5, y)
    x_cold = pair_features(prof, ri, vectors, cat_of, items, age_h[items])
    cold_model = ColdStartModel().fit(x_cold, y)
    cold_logit = cold_model.decision_function(x_cold)
    save_lookalike(folder / "lookalike", LookalikeModel(LookalikeConfig(dim=dim, k=config.k)))
    from recsys.artifacts import load_lookalike

    scorer = LookalikeScorer.from_model(load_lookalike(folder / "lookalike"))
    # Seeds: FEED_SEEDS readers per warm story, drawn by the click model.
    warm_ids = np.flatnonzero(warm)
    fans = [np.flatnonzero((prefs == c).any(1)) for c in range(n_cat)]
    seeds = [np.where(rng.random(FEED_SEEDS) < 0.85, rng.choice(fans[cat_of[i]], FEED_SEEDS),
                      rng.integers(0, READERS, FEED_SEEDS)) for i in warm_ids]
    print(f"feed world: states of {len(warm_ids):,} warm stories ...", flush=True)
    states = scorer.item_states([e_u[s] for s in seeds])
    state_of = dict(zip(warm_ids.tolist(), states, strict=True))
    is_warm = warm[items]
    ralm = np.full(len(ri), np.nan)
    for k in np.flatnonzero(is_warm):
        st = state_of[int(items[k])]
        ralm[k] = scorer.audience(e_u[sample_readers[ri[k]]][None], st)[0]
    cold_map, warm_map = calibration_maps(cold_logit, ralm, y, is_warm)
    save_coldstart(folder / "coldstart", model=cold_model,
                   calibration=Calibration(cold_map, warm_map, config.seed_threshold, {}),
                   meta={"threshold": config.seed_threshold})
    save_ctr(folder / "ctr", models={"ctr": ctr_model,
                                     "ctr_feature": CtrModel().fit(learned_rows(x5, ralm, cold_logit), y),
                                     "ctr_noralm": CtrModel().fit(learned_rows(x5, ralm, cold_logit, ralm=False), y)},
             meta={"prior": prior})

    runs = {k: ModelRun.objects.create(kind=k, version="scale", is_active=True, artifact_path=str(folder / name))
            for k, name in ((ModelKind.USER_TOWER, "tower"), (ModelKind.LOOKALIKE, "lookalike"),
                            (ModelKind.COLDSTART, "coldstart"), (ModelKind.CTR, "ctr"))}
    print(f"feed world: {STORIES:,} stories, {READERS:,} readers, {READERS * FEED_HISTORY:,} clicks (COPY) ...",
          flush=True)
    with connection.cursor() as cur, transaction.atomic():
        copy_rows(cur, Reader, ({"id": r, "external_id": f"s{r}", "name": f"Reader {r}", "created_at": now}
                                for r in range(1, READERS + 1)))
        title_rng = np.random.default_rng(8)
        copy_rows(cur, Item, ({
            "id": i + 1, "external_id": f"s{i + 1}", "category": subs[sub_of[i]][0], "subcategory": subs[sub_of[i]][1],
            "title": " ".join(title_rng.choice(words[subs[sub_of[i]]], 6)).capitalize(),
            "published_at": datetime.fromtimestamp(t_now - age_h[i] * 3600, tz=UTC),
            "created_at": now, "status": ItemStatus.WARM if warm[i] else ItemStatus.COLD,
            "shown_count": int(shown[i]), "click_count": int(clicks[i]),
            "popularity": float(clicks[i] * np.exp(-age_h[i] / 24)), "text_vector": vectors[i].tobytes()}
            for i in range(STORIES)))
        copy_rows(cur, Click, ({"reader_id": r + 1, "item_id": int(history[r, k]) + 1,
                                "clicked_at": datetime.fromtimestamp(t_now - (FEED_HISTORY - k) * 3600, tz=UTC)}
                               for r in range(READERS) for k in range(FEED_HISTORY)))
    with connection.cursor() as cur:
        cur.execute("ANALYZE")
    store.reader_vectors_write(run_id=runs[ModelKind.USER_TOWER].pk,
                               vectors=((r + 1, e_u[r]) for r in range(READERS)))
    store.item_states_write(run_id=runs[ModelKind.LOOKALIKE].pk,
                            states={int(i) + 1: store.pack_state(st, warm=True) for i, st in state_of.items()})
    store.active_runs_set(tower_run=runs[ModelKind.USER_TOWER].pk, lookalike_run=runs[ModelKind.LOOKALIKE].pk)
    return {"warm": int(warm.sum()), "seeds_per_warm": FEED_SEEDS, "history_clicks": READERS * FEED_HISTORY}


def _web_process() -> None:
    """One web process on the scale world (run by `_feed` in a process of its own): feed
    requests through the Django stack timed, its memory read, then recalled pages against
    full rankings. Prints one JSON line."""
    import django

    django.setup()
    from django.test import Client
    from django.utils import timezone

    from recsys.arms import arm
    from webapp.feed import ranking
    from webapp.feed.selectors import reader_with_history
    from webapp.news.models import Source

    rng = np.random.default_rng(11)
    client = Client(HTTP_HOST="127.0.0.1")
    started = time.perf_counter()
    assert client.get("/api/feed?reader=1&limit=10").status_code == 200
    first_s = time.perf_counter() - started
    for reader in rng.integers(1, READERS + 1, 20):  # the catalog, the models and the caches warm
        assert client.get(f"/api/feed?reader={reader}&limit=10").status_code == 200
    times = []
    for reader in rng.integers(1, READERS + 1, FEED_REQUESTS):
        started = time.perf_counter()
        resp = client.get(f"/api/feed?reader={reader}&limit=10")
        times.append((time.perf_counter() - started) * 1000)
        assert resp.status_code == 200, resp.content[:300]
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    rss_mib = int(status["VmHWM"].split()[0]) / 1024  # the peak resident set so far
    # What the recalled page keeps of the full ranking's top 10 (the full ranking scores every
    # live story: slow, and done after the memory is read).
    kept, now, blend = [], timezone.now(), arm("blend")
    for reader_id in rng.integers(1, READERS + 1, FEED_KEPT_READERS):
        reader, clicked, shown = reader_with_history(reader_id=int(reader_id), now=now)
        args = dict(reader_id=int(reader_id), source=Source.DEMO, clicked=clicked, shown=shown, now=now, limit=10,
                    arm=blend, topics=reader.topics)
        served = ranking.rank(**args)
        full = ranking.rank(**args, recall=False)
        kept.append(len(set(served.item_ids.tolist()) & set(full.item_ids.tolist())) / len(full.item_ids))
    print(json.dumps({"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)),
                      "first_request_s": first_s, "requests": len(times), "rss_mib": rss_mib,
                      "kept": kept}))


def _feed() -> tuple[dict, float]:
    folder = Path(os.environ["MODEL_DIR"]) / FEED_ARTIFACTS
    folder.mkdir(parents=True, exist_ok=True)
    world = _feed_world(folder)
    from django.db import connection as conn

    db = conn.settings_dict
    env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
           "FEED_CLIENT_RATE_LIMIT": "100000000/minute", "PYTHONUNBUFFERED": "1"}
    if TINY:  # the tiny world is at the default threshold: recall and the index from 500 on
        env["FEED_RECALL_ABOVE"] = "500"
    print(f"feed: one web process, {FEED_REQUESTS} feed requests, then {FEED_KEPT_READERS} full rankings ...",
          flush=True)
    done = subprocess.run([sys.executable, __file__, "web-process"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=3600)
    if done.returncode:
        raise SystemExit(f"the web process failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    got = json.loads(done.stdout.strip().splitlines()[-1])
    kept = np.array(got["kept"])
    feed = {"p50_ms": round(got["p50_ms"], 2), "p99_ms": round(got["p99_ms"], 2), "requests": got["requests"],
            "top10_kept": round(float(kept.mean()), 3),
            "top10_kept_se": round(float(kept.std(ddof=1) / np.sqrt(len(kept))), 3) if len(kept) > 1 else None,
            "readers_compared": len(kept), "first_request_s": round(got["first_request_s"], 1),
            "warm_stories": world["warm"], "seeds_per_warm": world["seeds_per_warm"]}
    print(table([("feed p50 ms", feed["p50_ms"]), ("feed p99 ms", feed["p99_ms"]),
                 ("top 10 kept", f"{feed['top10_kept']:.3f} ± {feed['top10_kept_se'] or 0:.3f}"),
                 ("web process peak RSS MiB", f"{got['rss_mib']:.0f}"),
                 ("first request s", feed["first_request_s"])],
                (f"feed at {STORIES:,} stories, {world['warm']:,} warm", "value")))
    return feed, round(got["rss_mib"], 1)


def main() -> int:
    import argparse
    import json

    from common import RESULTS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("only", nargs="?", choices=("counts", "refresh", "feed", "web-process"),
                    help="measure only this part (the others of results.json['scale'] are kept)")
    args = ap.parse_args()
    if args.only == "web-process":
        _web_process()
        return 0
    os.environ["REDIS_URL"] = REDIS_DB
    os.environ["MODEL_DIR"] = tempfile.mkdtemp(prefix="ralm-bench-scale-")
    kept = json.loads(RESULTS.read_text()).get("scale", {}) if args.only and RESULTS.exists() else {}
    counts, refresh, feed, rss = kept.get("counts"), kept.get("refresh"), kept.get("feed"), kept.get("web_rss_mib")
    from webapp.common.connections import redis_client

    if args.only in (None, "feed"):
        with scratch_database("ralm_feed_bench_scale"):
            redis_client().flushdb()
            feed, rss = _feed()
            redis_client().flushdb()
    if args.only in (None, "counts"):
        with scratch_database("ralm_feed_bench_scale"):
            redis_client().flushdb()
            counts = _counts()
    if args.only in (None, "refresh"):
        with scratch_database("ralm_feed_bench_scale"):
            from workers.celery import app

            app.control.purge()
            refresh = refresh_scratch()
            redis_client().flushdb()
        with scratch_database("ralm_feed_bench_scale"):
            app.control.purge()
            refresh = refresh_steady(refresh)
            redis_client().flushdb()
    if counts is None or refresh is None or feed is None:
        print("results.json has no earlier scale run to keep: run every part", file=sys.stderr)
        return 1
    result = {"stories": STORIES, "readers": READERS, "impressions": SIZES[-1], "feed": feed, "counts": counts,
              "refresh": refresh, "web_rss_mib": rss}
    save("scale", result)
    print(f"feed p50 {feed['p50_ms']} ms, p99 {feed['p99_ms']} ms, top 10 kept {feed['top10_kept']}, web process "
          f"{rss} MiB; counts job at {SIZES[-1]:,} / at {SIZES[0]:,} impressions: {counts['ratio']}×; refresh with "
          f"two worker processes {refresh['two_workers_s']} s, {refresh['speedup']}× one; a steady minute "
          f"{refresh.get('steady_two_workers_s')} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
