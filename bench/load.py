"""Load: 50 concurrent simulated readers for 60 s against the web as the Procfile runs it (the
proxy, nginx, in front of gunicorn's 2 workers × 4 threads on a unix socket; bench/front.py),
Postgres and Redis on loopback. Each reader asks for a feed (GET /api/feed), reads for a while,
and now and then clicks a story it was shown (POST /api/clicks), at a human rate (a few seconds
between pages, well under the click rate limit). Required: no 5xx, no dropped connection, no
error in gunicorn's or nginx's log, and every click the API acknowledged is in Postgres
afterwards (new rows of the Click table = clicks acknowledged, and each acknowledged click id
is there).

Then, on the same server and database, the feed's throughput: 16 closed-loop clients (no think
time, a keep-alive connection each) ask GET /api/feed for a random demo reader, one request
after another, for 15 s; any 5xx or dropped connection there fails the run too. Its numbers go
to results.json["load"]["throughput"].

Last, what the proxy costs: 4 closed-loop clients ask for each feed twice in a row, once through
the proxy and once straight from the same gunicorn (also bound to a port of its own), the order
alternating, for 20 s. The p50/p99 of both and the p50 difference with its bootstrap standard
error go to results.json["load"]["proxy"]; a 5xx, a dropped connection, or (full size) a p50
through the proxy over 1 ms above direct fails the run.

On a scratch database (and Redis db 13, flushed before and after): the demo corpus, a short
simulated history, models trained as `make demo` trains them. Writes results.json["load"];
exits non-zero if a requirement fails. Tiny mode (bench/common.py): 4 readers for 2 s, 2
closed-loop clients for 1 s, 2 paired clients for 1 s, on the tiny demo world."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from common import LOAD_REDIS_URL, ROOT, TINY, demo_world, save, scratch_database, sized, table
from front import THREADS, WORKERS, PairedClient, paired_result, proxy_command, proxy_errors, web_command
from tqdm import tqdm

CLIENTS, SECONDS = sized(50, 4), sized(60, 2)
CLICK_SHARE = 0.6  # pages after which the reader clicks a story
READ_S, THINK_S = (1.0, 3.0), (0.5, 2.0)  # seconds reading a page before the next one; before a click
IDLE_S = 1.5  # a connection idle this long is not reused (as a browser with a short keep-alive)
THROUGHPUT_CLIENTS, THROUGHPUT_SECONDS = sized(16, 2), sized(15, 1)  # the closed-loop phase after the readers
PAIRED_CLIENTS, PAIRED_SECONDS = sized(4, 2), sized(20, 1)  # the proxy against direct, last
PROXY_BAR_MS = 1.0  # the most the proxy may add to the feed's p50
# The admin phase: paced feed clients alone, then with two admins reloading the dashboard in a
# loop (as fast as it answers): what watching the demo costs the feed.
ADMIN_FEED_CLIENTS, ADMIN_SECONDS, ADMIN_PACE_S, DASHBOARDS = sized(8, 2), sized(12, 1), 0.05, 2
ADMIN_ROUNDS = sized(5, 1)  # rounds of both phases
# The clients are simulated readers: they present the simulator's token, so that the server
# takes each for a reader of its own rather than 50 requests from one address (per-client limits).
TOKEN = secrets.token_urlsafe(32)
HEADERS = {"Content-Type": "application/json", "X-Simulator-Token": TOKEN}
HISTORY = 900  # simulated sessions the models are trained on (tiny mode: its own world)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SimReader(threading.Thread):
    """One simulated reader on a keep-alive connection of its own."""

    def __init__(self, reader_id: int, port: int, deadline: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.reader_id, self.port, self.deadline = reader_id, port, deadline
        self.rng = random.Random(seed)
        self.conn: http.client.HTTPConnection | None = None
        self.timings: list[tuple[str, int, float]] = []  # (kind, status, ms); status 0: no answer
        self.acked: set[int] = set()  # click ids the API acknowledged (201, or 200 for a repeat)
        self.problems: list[str] = []
        self.retries = 0  # requests sent again after a stale keep-alive connection
        self.last_used = 0.0

    def _call(self, kind: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        started = time.perf_counter()
        if self.conn is not None and time.monotonic() - self.last_used > IDLE_S:
            self.conn.close()  # a connection idle a while may be closing at the server's end: start a new one
            self.conn = None
        for attempt in (1, 2):
            reused = self.conn is not None
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.conn.request(method, path, body=data, headers=HEADERS)
                resp = self.conn.getresponse()
                raw, status = resp.read(), resp.status
                if resp.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                break
            except (OSError, http.client.HTTPException) as exc:
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                # A request sent just as the server closes an idle keep-alive connection is never
                # read; clients send it again on a new connection (as urllib3 and browsers do; a
                # repeated click is answered with the first one, so POST too).
                stale = isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
                if reused and stale and attempt == 1:
                    self.retries += 1
                    continue
                self.timings.append((kind, 0, (time.perf_counter() - started) * 1000))
                self.problems.append(f"{method} {path}: {exc.__class__.__name__}: {exc}")
                return 0, {}
        self.last_used = time.monotonic()
        self.timings.append((kind, status, (time.perf_counter() - started) * 1000))
        if status >= 500:
            self.problems.append(f"{method} {path}: {status} {raw[:200]!r}")
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, {}

    def _sleep(self, span: tuple[float, float]) -> bool:
        """Sleep a random while; False once the run is over."""
        wait = self.rng.uniform(*span)
        if time.monotonic() + wait >= self.deadline:
            return False
        time.sleep(wait)
        return True

    def run(self) -> None:
        time.sleep(self.rng.uniform(0, READ_S[1]))  # readers arrive spread out, not in lockstep
        while time.monotonic() < self.deadline:
            status, page = self._call("feed", "GET", f"/api/feed?reader={self.reader_id}&limit=10")
            entries = page.get("items", []) if status == 200 else []
            if entries and self.rng.random() < CLICK_SHARE:
                if not self._sleep(THINK_S):
                    break
                # Readers click near the top more often.
                entry = entries[min(int(self.rng.expovariate(0.5)), len(entries) - 1)]
                status, body = self._call("click", "POST", "/api/clicks", {"impression": entry["impression"],
                                                                          "reader": self.reader_id})
                if status in (200, 201):
                    self.acked.add(body["click"])
            if not self._sleep(READ_S):
                break
        if self.conn is not None:
            self.conn.close()


class PacedFeedClient(SimReader):
    """GET /api/feed for random demo readers, a fixed pause between requests."""

    def __init__(self, readers: list[int], port: int, deadline: float, seed: int) -> None:
        super().__init__(0, port, deadline, seed)
        self.readers = readers

    def run(self) -> None:
        time.sleep(self.rng.uniform(0, ADMIN_PACE_S))
        while time.monotonic() < self.deadline:
            self._call("feed", "GET", f"/api/feed?reader={self.rng.choice(self.readers)}&limit=10")
            time.sleep(ADMIN_PACE_S)
        if self.conn is not None:
            self.conn.close()


class DashboardClient(threading.Thread):
    """An admin's browser reloading /admin/dashboard/ in a loop with a staff session cookie."""

    def __init__(self, port: int, deadline: float, cookie: str) -> None:
        super().__init__(daemon=True)
        self.port, self.deadline, self.cookie = port, deadline, cookie
        self.timings: list[tuple[str, int, float]] = []

    def run(self) -> None:
        while time.monotonic() < self.deadline:
            started = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                conn.request("GET", "/admin/dashboard/", headers={"Cookie": f"sessionid={self.cookie}"})
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException):
                status = 0
            finally:
                conn.close()
            self.timings.append(("dashboard", status, (time.perf_counter() - started) * 1000))


def _staff_session() -> str:
    """A logged-in staff session in the scratch database, as the admin login would leave it."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    user = get_user_model().objects.create_superuser("bench-admin", password=secrets.token_urlsafe(16))
    session = SessionStore()
    session[SESSION_KEY], session[BACKEND_SESSION_KEY] = str(user.pk), "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def _admin_phase(port: int, demo: list[int], cookie: str) -> dict:
    """Feed p50/p95 of paced clients alone and with DASHBOARDS admins reloading the dashboard,
    in ADMIN_ROUNDS rounds of both (the order alternating, so that a drift of the machine
    falls on both alike): the pooled figures of each, and the rounds' p95 ratios with their
    mean and standard error (a single pair of phases moves by tens of percent from run to run)."""
    feeds_of: dict[str, list[float]] = {"idle": [], "dashboards": []}
    counts = {name: Counter() for name in feeds_of}
    loads = {name: [0, 0] for name in feeds_of}  # dashboard loads, of them answered 200
    ratios = []
    for round_ in range(ADMIN_ROUNDS):
        p95 = {}
        order = (("idle", 0), ("dashboards", DASHBOARDS))
        for name, dashboards in order if round_ % 2 == 0 else order[::-1]:
            started = time.monotonic()
            deadline = started + ADMIN_SECONDS
            feeds = [PacedFeedClient(demo, port, deadline, seed=2000 + 100 * round_ + n)
                     for n in range(ADMIN_FEED_CLIENTS)]
            admins = [DashboardClient(port, deadline, cookie) for _ in range(dashboards)]
            for t in admins:
                t.start()
            _drive(feeds, ADMIN_SECONDS, started)
            for t in admins:
                t.join()
            ms = [m for t in feeds for _, s, m in t.timings if s == 200]
            p95[name] = float(np.percentile(ms, 95)) if ms else 0.0
            feeds_of[name] += ms
            counts[name].update(s for t in feeds + admins for _, s, _ in t.timings)
            loads[name][0] += sum(len(t.timings) for t in admins)
            loads[name][1] += sum(1 for t in admins for _, s, _ in t.timings if s == 200)
        if p95["idle"]:
            ratios.append(p95["dashboards"] / p95["idle"])
    out = {}
    for name, ms in feeds_of.items():
        out[name] = {"feeds": len(ms), "p50_ms": _pct(ms, 50), "p95_ms": _pct(ms, 95), "dashboards": loads[name][0],
                     "dashboard_ok": loads[name][1], "errors_5xx": sum(n for s, n in counts[name].items() if s >= 500),
                     "dropped": counts[name].get(0, 0)}
    out["p95_ratio"] = round(out["dashboards"]["p95_ms"] / out["idle"]["p95_ms"], 3) if out["idle"]["p95_ms"] else None
    out["rounds"] = len(ratios)
    out["p95_ratio_rounds"] = [round(x, 3) for x in ratios]
    out["p95_ratio_mean"] = round(float(np.mean(ratios)), 3) if ratios else None
    out["p95_ratio_se"] = round(float(np.std(ratios, ddof=1) / np.sqrt(len(ratios))), 3) if len(ratios) > 1 else None
    return out


class FeedClient(SimReader):
    """A closed-loop client: one GET /api/feed after another on its keep-alive connection, no
    think time, each for a random demo reader."""

    def __init__(self, readers: list[int], port: int, deadline: float, seed: int) -> None:
        super().__init__(0, port, deadline, seed)
        self.readers = readers
        self.finished = 0.0  # when its last request was answered

    def run(self) -> None:
        while time.monotonic() < self.deadline:
            self._call("feed", "GET", f"/api/feed?reader={self.rng.choice(self.readers)}&limit=10")
        self.finished = time.monotonic()
        if self.conn is not None:
            self.conn.close()


def _drive(clients: list[SimReader], seconds: float, started: float) -> float:
    """Start the clients, show progress until they are all done; the seconds since started."""
    for t in clients:
        t.start()
    with tqdm(total=seconds, unit="s", bar_format="{l_bar}{bar}| {n:.0f}/{total} s {postfix}") as bar:
        while any(t.is_alive() for t in clients):
            time.sleep(0.5)
            bar.n = min(seconds, time.monotonic() - started)
            done = sum(len(t.timings) for t in clients)
            bad = sum(1 for t in clients for _, s, _ in list(t.timings) if s == 0 or s >= 500)
            bar.set_postfix_str(f"{done} requests, {bad} failed")
    return time.monotonic() - started


def _wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return
            conn.close()
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"nothing answered /healthz on port {port}")


def _pct(xs: list[float], q: float) -> float:
    return round(float(np.percentile(xs, q)), 2) if xs else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--throughput-clients", type=int, default=THROUGHPUT_CLIENTS,
                    help="closed-loop clients in the throughput phase (default %(default)s)")
    ap.add_argument("--throughput-seconds", type=float, default=THROUGHPUT_SECONDS,
                    help="length of the throughput phase (default %(default)s)")
    ap.add_argument("--paired-clients", type=int, default=PAIRED_CLIENTS,
                    help="closed-loop clients timing the proxy against direct (default %(default)s)")
    ap.add_argument("--paired-seconds", type=float, default=PAIRED_SECONDS,
                    help="length of the proxy-against-direct phase (default %(default)s)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message="No directory at")  # whitenoise: static files not collected here
    os.environ["REDIS_URL"] = LOAD_REDIS_URL
    os.environ["MODEL_DIR"] = tempfile.mkdtemp(prefix="ralm-bench-load-")
    setup_started = time.monotonic()
    with scratch_database("ralm_feed_bench_load"):
        from django.db import connections

        from webapp.common.connections import redis_client
        from webapp.news.models import Click, Reader, Source

        r = redis_client()
        r.flushdb()
        print(f"demo corpus, {HISTORY:,} simulated sessions, training ...", flush=True)
        demo_world(sessions=HISTORY, hours=12, seed=2)
        demo = list(Reader.objects.filter(source=Source.DEMO).order_by("pk").values_list("pk", flat=True))
        reader_ids = random.Random(0).sample(demo, CLIENTS)
        cookie = _staff_session()
        clicks_before = Click.objects.count()
        connections.close_all()

        port, direct = _free_port(), _free_port()  # the proxy's; gunicorn's own, for the paired phase
        folder = Path(os.environ["MODEL_DIR"])
        log, proxy_log, sock = folder / "gunicorn.log", folder / "proxy.log", folder / "web.sock"
        from django.conf import settings

        # The bench's own key: the staff session it wrote must verify in the server.
        env = {**os.environ, "DEBUG": "0", "PYTHONUNBUFFERED": "1", "SIMULATOR_TOKEN": TOKEN,
               "SECRET_KEY": settings.SECRET_KEY}
        with log.open("w") as out, proxy_log.open("w") as proxy_out:
            proc = subprocess.Popen(web_command(sock, f"127.0.0.1:{direct}"), cwd=ROOT, env=env, stdout=out,
                                    stderr=subprocess.STDOUT)
            proxy = subprocess.Popen(proxy_command(port, sock, folder / "proxy"), cwd=ROOT, env=env,
                                     stdout=proxy_out, stderr=subprocess.STDOUT)
        try:
            _wait_healthy(direct, proc)
            _wait_healthy(port, proxy)
            # Every worker loads its models and catalog copy before the measured run.
            warm = [SimReader(rid, port, 0.0, seed=n) for n, rid in enumerate(reader_ids[:2 * WORKERS * THREADS])]
            threads = [threading.Thread(target=w._call, args=("feed", "GET", f"/api/feed?reader={w.reader_id}"))
                       for w in warm]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if any(s != 200 for w in warm for _, s, _ in w.timings):
                raise RuntimeError(f"warm-up failed: {[p for w in warm for p in w.problems][:5]}")
            setup_s = time.monotonic() - setup_started
            print(f"setup {setup_s:.0f} s; {CLIENTS} readers for {SECONDS} s through the proxy on port {port} "
                  f"to gunicorn ({WORKERS} workers × {THREADS} threads)", flush=True)

            started = time.monotonic()
            deadline = started + SECONDS
            readers = [SimReader(rid, port, deadline, seed=n) for n, rid in enumerate(reader_ids)]
            elapsed = _drive(readers, SECONDS, started)

            print(f"throughput: {args.throughput_clients} closed-loop clients, GET /api/feed only, "
                  f"for {args.throughput_seconds:g} s", flush=True)
            started = time.monotonic()
            loop = [FeedClient(demo, port, started + args.throughput_seconds, seed=1000 + n)
                    for n in range(args.throughput_clients)]
            _drive(loop, args.throughput_seconds, started)
            loop_elapsed = max(t.finished for t in loop) - started  # not rounded up to the progress poll

            print(f"admin: {ADMIN_ROUNDS} rounds of {ADMIN_FEED_CLIENTS} paced feed clients, {ADMIN_SECONDS} s "
                  f"alone and {ADMIN_SECONDS} s with {DASHBOARDS} dashboards reloading in a loop", flush=True)
            admin = _admin_phase(port, demo, cookie)

            print(f"proxy vs direct: {args.paired_clients} closed-loop clients, each feed asked through the proxy "
                  f"and straight from gunicorn in turn, for {args.paired_seconds:g} s", flush=True)
            started = time.monotonic()
            deadline = started + args.paired_seconds
            paired = [PairedClient({"proxy": SimReader(0, port, deadline, seed=3000 + n),
                                    "direct": SimReader(0, direct, deadline, seed=3000 + n)}, demo, deadline, 3000 + n)
                      for n in range(args.paired_clients)]
            versus = paired_result(paired, _drive(paired, args.paired_seconds, started))
        finally:
            for p in (proxy, proc):
                p.terminate()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

        acked = sorted({c for t in readers for c in t.acked})
        clicks_stored = Click.objects.count() - clicks_before
        clicks_missing = len(acked) - Click.objects.filter(pk__in=acked).count()
        connections.close_all()
        r.flushdb()

    timings = [x for t in readers for x in t.timings]
    codes = Counter(s for _, s, _ in timings)
    all_ms = [ms for _, s, ms in timings if s]
    feed_ms = [ms for k, s, ms in timings if k == "feed" and s == 200]
    click_ms = [ms for k, s, ms in timings if k == "click" and s in (200, 201)]
    errors_5xx = sum(n for s, n in codes.items() if s >= 500)
    dropped = codes.get(0, 0)
    retries = sum(t.retries for t in readers)
    server_log = log.read_text()
    logged = [line for line in server_log.splitlines()
              if any(m in line for m in ("[ERROR]", "[CRITICAL]", "WORKER TIMEOUT", "Traceback"))]
    result = {"clients": CLIENTS, "seconds": round(elapsed, 1), "requests": len(timings),
              "requests_per_s": round(len(timings) / elapsed, 1), "p50_ms": _pct(all_ms, 50),
              "p99_ms": _pct(all_ms, 99), "errors_5xx": errors_5xx, "dropped": dropped,
              "rate_limited": codes.get(429, 0), "clicks_sent": len(acked), "clicks_stored": clicks_stored,
              "clicks_missing": clicks_missing, "keepalive_retries": retries, "server_errors_logged": len(logged),
              "feed_ms": {"n": len(feed_ms), "p50": _pct(feed_ms, 50), "p99": _pct(feed_ms, 99)},
              "click_ms": {"n": len(click_ms), "p50": _pct(click_ms, 50), "p99": _pct(click_ms, 99)},
              "status_codes": {str(k): v for k, v in sorted(codes.items())},
              "gunicorn": {"workers": WORKERS, "threads": THREADS}, "setup_s": round(setup_s, 1)}
    loop_timings = [x for t in loop for x in t.timings]
    loop_codes = Counter(s for _, s, _ in loop_timings)
    loop_ms = [ms for _, s, ms in loop_timings if 200 <= s < 300]
    loop_5xx = sum(n for s, n in loop_codes.items() if s >= 500)
    loop_dropped = loop_codes.get(0, 0)
    loop_non_2xx = sum(n for s, n in loop_codes.items() if not 200 <= s < 300)
    result["throughput"] = {
        "clients": args.throughput_clients, "seconds": round(loop_elapsed, 1), "requests": len(loop_timings),
        "requests_per_s": round(len(loop_timings) / loop_elapsed, 1), "p50_ms": _pct(loop_ms, 50),
        "p99_ms": _pct(loop_ms, 99), "errors_5xx": loop_5xx, "non_2xx": loop_non_2xx, "dropped": loop_dropped,
        "keepalive_retries": sum(t.retries for t in loop),
        "status_codes": {str(k): v for k, v in sorted(loop_codes.items())}}
    result["admin"] = admin
    proxy_logged = proxy_errors(proxy_log.read_text(errors="replace"))
    result["proxy_errors_logged"] = len(proxy_logged)
    versus |= {"bar_ms": PROXY_BAR_MS, "within_bar": "p50_diff_ms" in versus and versus["p50_diff_ms"] <= PROXY_BAR_MS}
    result["proxy"] = versus
    save("load", result)
    print(table([
        ("requests (feeds + clicks)", f"{len(timings):,}"),
        ("requests/s", f"{result['requests_per_s']:.1f}"),
        ("p50 / p99 ms, all requests", f"{result['p50_ms']:.1f} / {result['p99_ms']:.1f}"),
        ("p50 / p99 ms, GET /api/feed", f"{result['feed_ms']['p50']:.1f} / {result['feed_ms']['p99']:.1f}"),
        ("p50 / p99 ms, POST /api/clicks", f"{result['click_ms']['p50']:.1f} / {result['click_ms']['p99']:.1f}"),
        ("5xx / dropped connections / errors in gunicorn's log, nginx's",
         f"{errors_5xx} / {dropped} / {len(logged)}, {len(proxy_logged)}"),
        ("sent again after a stale keep-alive connection", retries),
        ("rate limited (429)", result["rate_limited"]),
        ("clicks acknowledged / stored in Postgres", f"{len(acked)} / {clicks_stored}"),
        ("seconds (load) / setup", f"{elapsed:.1f} / {setup_s:.0f}"),
    ], (f"{CLIENTS} readers, gunicorn {WORKERS}×{THREADS}", "value")))
    tp = result["throughput"]
    print()
    print(table([
        ("requests (GET /api/feed)", f"{tp['requests']:,}"),
        ("requests/s", f"{tp['requests_per_s']:.1f}"),
        ("p50 / p99 ms (2xx)", f"{tp['p50_ms']:.1f} / {tp['p99_ms']:.1f}"),
        ("5xx / other non-2xx / dropped connections",
         f"{loop_5xx} / {loop_non_2xx - loop_5xx - loop_dropped} / {loop_dropped}"),
        ("sent again after a stale keep-alive connection", tp["keepalive_retries"]),
        ("seconds", f"{loop_elapsed:.1f}"),
    ], (f"throughput: {tp['clients']} closed-loop clients, gunicorn {WORKERS}×{THREADS}", "value")))
    print()
    print(table([(name, admin[name]["feeds"], admin[name]["p50_ms"], admin[name]["p95_ms"], admin[name]["dashboards"],
                  admin[name]["errors_5xx"]) for name in ("idle", "dashboards")],
                ("feed clients", "feeds", "p50 ms", "p95 ms", "dashboard loads", "5xx")))
    print(f"feed p95 with {DASHBOARDS} dashboards / idle: {admin['p95_ratio']} pooled; per round "
          f"{admin['p95_ratio_mean']} ± {admin['p95_ratio_se']} (SE, {admin['rounds']} rounds: "
          f"{', '.join(map(str, admin['p95_ratio_rounds']))})")
    if "proxy" in versus:
        print()
        print(table([("through the proxy", versus["proxy"]["p50_ms"], versus["proxy"]["p99_ms"]),
                     ("straight to gunicorn", versus["direct"]["p50_ms"], versus["direct"]["p99_ms"]),
                     ("proxy − direct", f"{versus['p50_diff_ms']:+.3f} ± {versus['p50_diff_se_ms']:.3f} (SE)",
                      f"mean {versus['mean_diff_ms']:+.3f} ± {versus['mean_diff_se_ms']:.3f}")],
                    (f"GET /api/feed, {versus['rounds']:,} paired rounds of {versus['clients']} clients", "p50 ms",
                     "p99 ms")))
    problems = [p for t in readers + loop for p in t.problems]
    problems += [p for c in paired for t in c.via.values() for p in t.problems]
    if not versus["within_bar"]:
        problems.append(f"the proxy adds {versus.get('p50_diff_ms')} ms to the feed's p50 (at most {PROXY_BAR_MS})")
    failed = (errors_5xx or dropped or logged or proxy_logged or len(acked) != clicks_stored or clicks_missing
              or loop_5xx or loop_dropped or any(admin[n]["errors_5xx"] or admin[n]["dropped"]
                                                 for n in ("idle", "dashboards"))
              or admin["dashboards"]["dashboard_ok"] < admin["dashboards"]["dashboards"]
              or versus["errors_5xx"] or versus["dropped"] or not versus["rounds"]
              or (not TINY and not versus["within_bar"]))
    if failed:
        print("FAILED:", *problems[:20], sep="\n  ", file=sys.stderr)
        print(f"--- gunicorn log (last 3,000 characters)\n{server_log[-3000:]}", file=sys.stderr)
        print("--- nginx's errors", *proxy_logged[-20:], sep="\n", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
