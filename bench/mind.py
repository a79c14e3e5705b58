"""MIND at MIND-small's size: the real path, timed step by step as a user runs it, on a
MIND-format world with a known truth (fixtures/mindworld.py: 50,000 stories and readers,
150,000 train impressions of about 37 stories over six days, a dev day).

1. The world's files are written (MINDsmall_train, MINDsmall_dev, the truth beside them).
2. `manage.py import_dataset --format mind MINDsmall_train`: parse and store, then the text
   vectors of every story (the command does both; its own line splits the time). The dev
   day is not imported: it is what the evaluation holds out.
3. `manage.py train --source mind`: every stage, as `make demo` trains.
4. A fresh web process (the Django stack through the test client): its first feed after
   training, then FEED_REQUESTS feeds for imported readers, p50 and p99.
5. MIND's own protocol: `python -m recsys.evaluate --format mind --train TRAIN --test DEV`.

A scratch database (ralm_feed_bench_mind) and Redis db 7; writes results.json["mind"].
`--users/--news/--impressions` run it at another size (results.json is written only at the
default size or in tiny mode); `--keep DIR` writes the world there and leaves it. Tiny
mode (bench/common.py): 300 readers, 400 stories, 600 impressions, small models."""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, TINY, save, scratch_database, sized, table

NEWS, USERS, IMPRESSIONS = sized((50_000, 50_000, 150_000), (400, 300, 600))
FEED_REQUESTS = sized(500, 20)
REDIS_DB = "redis://127.0.0.1:6379/7"
TRAIN_ARGS = sized([], ["--dim", "16", "--stage1-epochs", "2", "--stage2-epochs", "1"])


def _run(step: str, argv: list[str], env: dict, *, echo: bool = True) -> tuple[float, str]:
    """Run one command as a user would (its progress bars on the terminal); its seconds and
    its standard output (echoed unless `echo` is false)."""
    print(f"== {step}: {' '.join(argv)}", flush=True)
    started = time.perf_counter()
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=None if echo else log, text=True)
    out = []
    for line in proc.stdout:
        if echo:
            print(line, end="", flush=True)
        out.append(line)
    if proc.wait():
        log.seek(0)
        raise SystemExit(f"{step} failed (exit {proc.returncode}){log.read()[-4000:]}")
    return time.perf_counter() - started, "".join(out)


def _peak_mib() -> float:
    """The largest resident set of any command run so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def _web_process() -> None:
    """A fresh web process: the first feed after training, then feeds for imported readers.
    Prints one JSON line."""
    import django

    django.setup()
    from django.test import Client

    from webapp.news.models import Reader

    readers = list(Reader.objects.filter(source="mind").values_list("pk", flat=True))
    rng = np.random.default_rng(5)
    client = Client(HTTP_HOST="127.0.0.1")
    started = time.perf_counter()
    assert client.get(f"/api/feed?reader={readers[0]}&limit=10").status_code == 200
    first_s = time.perf_counter() - started
    times, degraded = [], 0
    for reader in rng.choice(readers, FEED_REQUESTS):
        started = time.perf_counter()
        resp = client.get(f"/api/feed?reader={reader}&limit=10")
        times.append((time.perf_counter() - started) * 1000)
        assert resp.status_code == 200, resp.content[:300]
        degraded += bool(resp.json()["degraded"])  # a fallback page is fast for the wrong reason
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    print(json.dumps({"first_s": first_s, "p50_ms": float(np.percentile(times, 50)),
                      "p99_ms": float(np.percentile(times, 99)), "requests": len(times), "degraded": degraded,
                      "rss_mib": int(status["VmHWM"].split()[0]) / 1024}))


def _evaluate(train: Path, dev: Path, env: dict) -> tuple[float, dict]:
    """MIND's own protocol (python -m recsys.evaluate --format mind --train --test): its
    seconds and each scorer's auc, auc_se, mrr, ndcg5 and ndcg10."""
    out = Path(tempfile.mkdtemp(prefix="ralm-bench-mind-eval-")) / "mind.json"
    extra = ["--stage1-epochs", "2", "--stage2-epochs", "1", "--dim", "16"] if TINY else []
    seconds, _ = _run("evaluate", [sys.executable, "-m", "recsys.evaluate", "--format", "mind", "--train",
                                   str(train), "--test", str(dev), "--out", str(out), *extra], env)
    keys = ("auc", "auc_se", "mrr", "ndcg5", "ndcg10")
    return seconds, {scorer: {k: r[k] for k in keys} for scorer, r in json.loads(out.read_text())["scorers"].items()}


def _steps(world: Path, meta: dict, env: dict) -> dict:
    train_dir, dev_dir = world / "MINDsmall_train", world / "MINDsmall_dev"
    manage = [sys.executable, "manage.py"]
    import_s, out = _run("import", [*manage, "import_dataset", "--format", "mind", str(train_dir)], env)
    split = re.search(r"stored in ([\d.]+)s; (\d+) text vectors computed in ([\d.]+)s", out)
    stored_s, embed_s = (float(split[1]), float(split[3])) if split else (import_s, 0.0)
    import_peak = _peak_mib()
    train_s, out = _run("train", [*manage, "train", "--source", "mind", *TRAIN_ARGS], env)
    stages = re.search(r"seconds: (.*?); val AUC", out)
    train_peak = _peak_mib()
    feed_s, out = _run("feed", [sys.executable, __file__, "web-process"],
                       env | {"FEED_CLIENT_RATE_LIMIT": "100000000/minute"}, echo=False)  # a log line a request
    feed = json.loads(out.strip().splitlines()[-1])
    eval_s, view = _evaluate(train_dir, dev_dir, env)
    m = meta["MINDsmall_train"]
    return {"impressions": m["impressions"], "shown": m["shown"], "news": m["news"], "users": m["users"],
            "clicks": m["clicks"], "history_clicks": meta["history_clicks"], "import_s": round(stored_s, 1),
            "embed_s": round(embed_s, 1), "import_command_s": round(import_s, 1), "train_s": round(train_s, 1),
            "train_stages": stages[1] if stages else None, "first_feed_s": round(feed["first_s"], 2),
            "feed": {"p50_ms": round(feed["p50_ms"], 2), "p99_ms": round(feed["p99_ms"], 2),
                     "requests": feed["requests"], "degraded": feed["degraded"]}, "web_rss_mib": round(feed["rss_mib"]),
            "import_peak_rss_mib": round(import_peak), "train_peak_rss_mib": round(train_peak),
            "web_process_s": round(feed_s, 1), "eval_s": round(eval_s, 1), "eval": view}


def _print(r: dict, write_s: float) -> None:
    rows = [("write the world", f"{write_s:.1f}", ""),
            ("import: parse and store", f"{r['import_s']:.1f}", f"peak RSS {r['import_peak_rss_mib']:,} MiB"),
            ("import: text vectors", f"{r['embed_s']:.1f}", f"{r['news']:,} stories"),
            ("train (every stage)", f"{r['train_s']:.1f}", r["train_stages"] or ""),
            ("first feed after training", f"{r['first_feed_s']:.2f}", f"web process {r['web_process_s']:.0f} s"),
            ("feed p50 / p99 ms", f"{r['feed']['p50_ms']:.2f} / {r['feed']['p99_ms']:.2f}",
             f"{r['feed']['requests']} requests ({r['feed']['degraded']} degraded), web RSS {r['web_rss_mib']:,} MiB"),
            ("MIND view (recsys.evaluate)", f"{r['eval_s']:.1f}", "")]
    print(table(rows, (f"{r['users']:,} readers, {r['news']:,} stories, {r['impressions']:,} impressions "
                       f"({r['shown']:,} shown)", "seconds", "")))
    for scorer, v in (r["eval"] or {}).items():
        print(f"  {scorer}: " + ", ".join(f"{k} {x:.3f}" for k, x in v.items()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("only", nargs="?", choices=("web-process",), help=argparse.SUPPRESS)
    ap.add_argument("--news", type=int, default=NEWS)
    ap.add_argument("--users", type=int, default=USERS)
    ap.add_argument("--impressions", type=int, default=IMPRESSIONS)
    ap.add_argument("--keep", type=Path, help="write the world here and leave it (default: a temp folder)")
    args = ap.parse_args()
    if args.only == "web-process":
        _web_process()
        return 0
    from fixtures.mindworld import write_mind_world

    world = args.keep or Path(tempfile.mkdtemp(prefix="ralm-bench-mind-"))
    started = time.perf_counter()
    meta = write_mind_world(world, news=args.news, users=args.users, impressions=args.impressions, progress=not TINY)
    write_s = time.perf_counter() - started
    os.environ["REDIS_URL"] = REDIS_DB
    os.environ["MODEL_DIR"] = tempfile.mkdtemp(prefix="ralm-bench-mind-models-")
    with scratch_database("ralm_feed_bench_mind"):
        from webapp.common.connections import redis_client

        redis_client().flushdb()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        result = _steps(world, meta, env)
        redis_client().flushdb()
    _print(result, write_s)
    if (args.news, args.users, args.impressions) == (NEWS, USERS, IMPRESSIONS):
        save("mind", result)
    else:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
