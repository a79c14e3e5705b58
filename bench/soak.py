"""Soak with faults: 100 human-paced simulated readers for 10 minutes against the whole
platform as the Procfile runs it (the proxy, nginx, in front of gunicorn 2 × 4 on a unix
socket; a Celery worker; beat), on a Redis server of the soak's own, while the parts fail one
after another:

    steady             nothing happens
    worker killed      the Celery worker gets SIGKILL (inside a refresh when it can catch one),
                       and a new one starts WORKER_DOWN_S later
    redis down         the soak's Redis is killed (the serving store, the broker, the limits)
    redis back         it starts again, empty, as ours keep nothing on disk
    postgres cut       every Postgres connection of the platform is terminated, several times
    recovery           nothing happens

For each phase: requests, 5xx, dropped connections, feeds answered 200, feeds marked degraded,
clicks sent, acknowledged and stored in Postgres, and the p50/p99. Required: no 5xx and no
dropped connection in any phase, every feed answered 200, every feed that ran wholly inside
the Redis outage marked degraded, every click sent acknowledged and stored (sent = stored),
and, after the readers stop, the refresh catches up (no dirty seed set left) with every
process of the platform still running. Anything else fails the run (exit 1).

The shared Redis (127.0.0.1:6379) and Postgres server are never stopped; only this soak's
Redis, worker and connections are. Beat runs the refresh every REFRESH_S seconds instead of
every minute, so that the faults land on running refreshes and the catch-up is seen within
the soak. Errors in nginx's log fail the run too. Writes results.json["soak"]. Tiny mode
(bench/common.py): 8 readers, phases of 2-3 s, on the tiny demo world."""

from __future__ import annotations

import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from common import ROOT, demo_world, save, scratch_database, sized, table
from front import proxy_command, proxy_errors, web_command
from load import TOKEN, SimReader, _drive, _pct, _wait_healthy
from procs import PrivateRedis, free_port, wait_for

CLIENTS = sized(100, 8)
# (phase, seconds): the faults happen at the start of their phase.
PHASES = sized([("steady", 90), ("worker killed", 110), ("redis down", 40), ("redis back", 80),
                ("postgres cut", 110), ("recovery", 170)],
               [("steady", 2), ("worker killed", 3), ("redis down", 3), ("redis back", 3),
                ("postgres cut", 3), ("recovery", 2)])
WORKER_DOWN_S = sized(15, 1)  # the platform runs without a worker this long
PG_CUTS = sized(5, 2)  # terminations, spread over the first half of the "postgres cut" phase
REFRESH_S = sized(10, 2)  # beat's period for the seeds, states and promotion jobs
BIN_S = sized(5, 1)  # the timeline's resolution
HISTORY = 900  # simulated sessions the models are trained on (tiny mode: its own world)
APP = "ralm-soak"  # application_name of the platform's Postgres connections
CELERY = [sys.executable, "-m", "celery", "-A", "workers"]


@dataclass
class Call:
    started: float  # time.monotonic()
    ended: float
    kind: str  # "feed" or "click"
    status: int  # 0: no answer
    ms: float
    degraded: bool  # a feed marked degraded
    click: int | None  # the click id a click's answer acknowledged


class SoakReader(SimReader):
    """A load.py reader that also keeps when each call ran and whether its feed was degraded."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[Call] = []

    def _call(self, kind: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        started = time.monotonic()
        status, answer = super()._call(kind, method, path, body)
        click = answer.get("click") if kind == "click" and status in (200, 201) else None
        self.calls.append(Call(started, time.monotonic(), kind, status, self.timings[-1][2],
                               bool(answer.get("degraded")), click))
        return status, answer


class Platform:
    """gunicorn behind the proxy (on `port`), a Celery worker and beat on the scratch database
    and the soak's Redis, each logging to a file of its own."""

    def __init__(self, env: dict[str, str], folder: Path, port: int) -> None:
        self.env, self.folder, self.port = env, folder, port
        self.procs: dict[str, subprocess.Popen] = {}
        self.starts: Counter[str] = Counter()

    def start(self, name: str) -> None:
        commands = {
            "web": web_command(self.folder / "web.sock"),
            "proxy": proxy_command(self.port, self.folder / "web.sock", self.folder / "proxy"),
            "worker": [*CELERY, "worker", "--loglevel", "INFO", "--concurrency", "2", "--without-mingle",
                       "--without-gossip", "-n", f"soak{self.starts['worker']}@%h"],
            "beat": [*CELERY, "beat", "--loglevel", "INFO"]}
        self.starts[name] += 1
        with (self.folder / f"{name}.log").open("a") as log:
            self.procs[name] = subprocess.Popen(commands[name], cwd=ROOT, env=self.env, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self, name: str) -> None:
        """SIGKILL to the process and its children (a prefork worker's pool goes with it)."""
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def dead(self) -> list[str]:
        return [name for name, proc in self.procs.items() if proc.poll() is not None]

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _pg_rows(sql: str, params: list | None = None) -> list[tuple]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(sql, params or [])
        return cur.fetchall()


def _job_running() -> bool:
    """A refresh job holds its advisory lock in the scratch database (webapp.common.locks)."""
    return bool(_pg_rows("SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
                         " AND application_name LIKE 'ralm job lock: refresh%%'"))


def _terminate_platform_connections() -> int:
    """pg_terminate_backend on every connection of the platform to the scratch database: the
    web's, the worker's, beat's (application_name APP) and the jobs' lock connections."""
    return len(_pg_rows("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND (application_name = %s OR application_name LIKE 'ralm job lock:%%')", [APP]))


def _faults(platform: Platform, redis_server: PrivateRedis, start: float, notes: dict) -> None:
    """Run the phases' faults on schedule, from `start` (monotonic); notes what each did."""
    at = start
    for name, seconds in PHASES:
        while time.monotonic() < at:
            time.sleep(0.05)
        if name == "worker killed":
            # Inside a refresh if one starts within a beat period; the worker is killed either way.
            inside = wait_for(_job_running, timeout=REFRESH_S + 5, every=0.02)
            platform.kill("worker")
            notes[name] = {"at_s": round(time.monotonic() - start, 1), "inside_a_refresh": inside}
            time.sleep(WORKER_DOWN_S)
            platform.start("worker")
        elif name == "redis down":
            redis_server.stop()
            notes[name] = {"at_s": round(time.monotonic() - start, 3)}
        elif name == "redis back":
            notes[name] = {"at_s": round(time.monotonic() - start, 3)}  # the outage ends as the server starts
            redis_server.start()
        elif name == "postgres cut":
            cuts = []
            for n in range(PG_CUTS):
                while time.monotonic() < at + n * seconds / (2 * PG_CUTS):
                    time.sleep(0.05)
                cuts.append(_terminate_platform_connections())
            notes[name] = {"at_s": round(at - start, 1), "terminated": cuts}
        at += seconds


def _phase_rows(readers: list[SoakReader], start: float, stored: set[int],
                outage: tuple[float, float]) -> list[dict]:
    rows, at = [], start
    for name, seconds in PHASES:
        calls = [c for t in readers for c in t.calls if at <= c.started < at + seconds]
        feeds = [c for c in calls if c.kind == "feed"]
        clicks = [c for c in calls if c.kind == "click"]
        acked = {c.click for c in clicks if c.click is not None}
        inside = [c for c in feeds if outage[0] <= c.started and c.ended <= outage[1]]
        ok_ms = [c.ms for c in calls if c.status and c.status < 500]
        rows.append({"phase": name, "seconds": seconds, "requests": len(calls),
                     "errors_5xx": sum(1 for c in calls if c.status >= 500),
                     "dropped": sum(1 for c in calls if c.status == 0),
                     "feeds": len(feeds), "feeds_200": sum(1 for c in feeds if c.status == 200),
                     "feeds_degraded": sum(1 for c in feeds if c.status == 200 and c.degraded),
                     "outage_feeds": len(inside), "outage_feeds_degraded": sum(1 for c in inside if c.degraded),
                     "clicks_sent": len(clicks), "clicks_acked": len(acked), "clicks_stored": len(acked & stored),
                     "p50_ms": _pct(ok_ms, 50), "p99_ms": _pct(ok_ms, 99)})
        at += seconds
    return rows


def _timeline(readers: list[SoakReader], start: float, total: float) -> list[dict]:
    """Per BIN_S seconds from the start: requests, p50/p99 of the answered ones, 5xx, and the
    share of feeds marked degraded (for the plot)."""
    out = []
    for lo in range(0, int(total), BIN_S):
        calls = [c for t in readers for c in t.calls if lo <= c.started - start < lo + BIN_S]
        ms = [c.ms for c in calls if c.status and c.status < 500]
        feeds = [c for c in calls if c.kind == "feed" and c.status == 200]
        out.append({"t": lo, "requests": len(calls), "p50_ms": _pct(ms, 50), "p99_ms": _pct(ms, 99),
                    "errors_5xx": sum(1 for c in calls if c.status >= 500),
                    "degraded_share": round(sum(c.degraded for c in feeds) / len(feeds), 3) if feeds else 0.0})
    return out


def _problems(rows: list[dict], result: dict, *, acked: int) -> list[str]:
    """What the soak must not show: a 5xx, a lost click, an outage feed not marked degraded, a
    refresh that did not catch up, a dead process, an error in nginx's log."""
    problems = []
    for r in rows:
        if r["errors_5xx"] or r["dropped"]:
            problems.append(f"{r['phase']}: {r['errors_5xx']} × 5xx, {r['dropped']} dropped")
        if r["feeds_200"] != r["feeds"]:
            problems.append(f"{r['phase']}: {r['feeds'] - r['feeds_200']} feeds not answered 200")
        if not r["clicks_sent"] == r["clicks_acked"] == r["clicks_stored"]:
            problems.append(f"{r['phase']}: clicks sent {r['clicks_sent']}, acked {r['clicks_acked']}, "
                            f"stored {r['clicks_stored']}")
        if r["outage_feeds_degraded"] != r["outage_feeds"]:
            problems.append(f"{r['phase']}: {r['outage_feeds'] - r['outage_feeds_degraded']} feeds inside the "
                            "Redis outage not marked degraded")
    if result["clicks_new_rows"] != acked:
        problems.append(f"{result['clicks_new_rows']} new click rows for {acked} acknowledged clicks")
    if not any(r["outage_feeds"] for r in rows):
        problems.append("no feed ran inside the Redis outage")
    if not result["refresh_caught_up"]:
        problems.append("the refresh did not catch up after the readers stopped")
    if result["processes_dead"]:
        problems.append(f"processes died: {', '.join(result['processes_dead'])}")
    if result["proxy_errors_logged"]:
        problems.append(f"{result['proxy_errors_logged']} errors in nginx's log")
    return problems


def main() -> int:
    warnings.filterwarnings("ignore", message="No directory at")  # whitenoise: static files not collected here
    folder = Path(tempfile.mkdtemp(prefix="ralm-bench-soak-"))
    redis_server = PrivateRedis(folder)
    redis_server.start()
    os.environ["REDIS_URL"] = redis_server.url
    os.environ["MODEL_DIR"] = str(folder / "models")
    setup_started = time.monotonic()
    platform = None
    try:
        with scratch_database("ralm_feed_bench_soak"):
            from django.conf import settings
            from django.db import connection, connections

            from webapp.lookalike.models import SeedSet
            from webapp.news.models import Click, Reader, Source

            print(f"demo corpus, {HISTORY:,} simulated sessions, training ...", flush=True)
            demo_world(sessions=HISTORY, hours=12, seed=3)
            demo = list(Reader.objects.filter(source=Source.DEMO).order_by("pk").values_list("pk", flat=True))
            reader_ids = random.Random(1).sample(demo, CLIENTS)
            clicks_before = Click.objects.count()
            db = connection.settings_dict
            env = {**os.environ, "DEBUG": "0", "PYTHONUNBUFFERED": "1", "SIMULATOR_TOKEN": TOKEN,
                   "SECRET_KEY": settings.SECRET_KEY or secrets.token_urlsafe(50),
                   "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
                                   f"?application_name={APP}",
                   "LOOKALIKE_REFRESH_SECONDS": str(REFRESH_S), "PROMOTE_REFRESH_SECONDS": str(REFRESH_S)}
            port = free_port()
            platform = Platform(env, folder, port)
            for name in ("web", "proxy", "worker", "beat"):
                platform.start(name)
            _wait_healthy(port, platform.procs["proxy"])
            setup_s = time.monotonic() - setup_started
            total = sum(s for _, s in PHASES)
            print(f"setup {setup_s:.0f} s; {CLIENTS} readers for {total} s, phases: "
                  + ", ".join(f"{n} {s} s" for n, s in PHASES), flush=True)

            start = time.monotonic()
            notes: dict[str, dict] = {}
            readers = [SoakReader(rid, port, start + total, seed=n) for n, rid in enumerate(reader_ids)]
            faults = threading.Thread(target=_faults, args=(platform, redis_server, start, notes), daemon=True)
            faults.start()
            elapsed = _drive(readers, total, start)
            faults.join(timeout=60)

            # After the readers: the refresh catches up with every click of the soak.
            caught_up_started = time.monotonic()
            caught_up = wait_for(lambda: not SeedSet.objects.filter(dirty=True).exists()
                                 and not SeedSet.objects.filter(state_dirty=True).exists(),
                                 timeout=sized(6 * REFRESH_S + 60, 60), every=1)
            caught_up_s = time.monotonic() - caught_up_started
            dead = platform.dead()

            all_acked = {c.click for t in readers for c in t.calls if c.click is not None}
            stored = set(Click.objects.filter(pk__in=all_acked).values_list("pk", flat=True))
            new_clicks = Click.objects.count() - clicks_before
            # Feeds that started after Redis was gone (its client's pooled connections fail on
            # first use) and were answered before it was back.
            outage = (start + notes["redis down"]["at_s"] + 0.1, start + notes["redis back"]["at_s"])
            rows = _phase_rows(readers, start, stored, outage)
            timeline = _timeline(readers, start, total)
            logs = {name: platform.log(name) for name in ("web", "proxy", "worker", "beat")}
            connections.close_all()
    finally:
        if platform is not None:
            platform.stop()
        if redis_server.proc is not None:
            redis_server.stop()

    worker_log = logs["worker"]
    result = {"clients": CLIENTS, "seconds": round(elapsed, 1), "refresh_every_s": REFRESH_S,
              "phases": rows, "faults": notes, "timeline": timeline, "clicks_new_rows": new_clicks,
              "refresh_caught_up": caught_up, "refresh_caught_up_s": round(caught_up_s, 1),
              "processes_dead": dead, "setup_s": round(setup_s, 1),
              "worker_task_failures": worker_log.count("] raised unexpected:"),
              "web_errors_logged": sum(1 for line in logs["web"].splitlines()
                                       if "[ERROR]" in line or "Traceback" in line),
              "proxy_errors_logged": len(proxy_errors(logs["proxy"]))}
    save("soak", result)
    print(table([(r["phase"], r["seconds"], f"{r['requests']:,}", r["errors_5xx"], r["dropped"],
                  f"{r['feeds_200']}/{r['feeds']}", r["feeds_degraded"],
                  f"{r['clicks_sent']} / {r['clicks_acked']} / {r['clicks_stored']}", r["p50_ms"], r["p99_ms"])
                 for r in rows],
                ("phase", "s", "requests", "5xx", "dropped", "feeds 200", "degraded", "clicks sent / acked / stored",
                 "p50 ms", "p99 ms")))
    print(f"faults: {notes}")
    print(f"refresh caught up after the readers: {caught_up} ({caught_up_s:.1f} s); processes dead: {dead or 'none'}; "
          f"worker task failures logged: {result['worker_task_failures']}; new click rows {new_clicks:,}")
    problems = _problems(rows, result, acked=len(all_acked))
    if problems:
        print("FAILED:", *problems, *[p for t in readers for p in t.problems][:20], sep="\n  ", file=sys.stderr)
        for name, text in logs.items():
            print(f"--- {name} log (last 3,000 characters)\n{text[-3000:]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
