"""The web as the Procfile runs it, for the benchmarks that drive it over HTTP (load.py, soak.py):
gunicorn, 2 workers × 4 threads, on a unix socket, and the proxy (`manage.py proxy`, nginx) in
front of it on a loopback port. gunicorn may also listen on a port of its own, so that one run
can time the same server with and without the proxy (PairedClient)."""

from __future__ import annotations

import random
import re
import sys
import threading
import time
from pathlib import Path

import numpy as np

WORKERS, THREADS = 2, 4  # the Procfile's web process (WEB_CONCURRENCY defaults to 2)
BOOTSTRAP = 2000  # resamples for the standard error of the p50 difference
# nginx's lines from `error` up: a refused or failed request to gunicorn, a worker that crashed.
PROXY_ERROR = re.compile(r"\[(error|crit|alert|emerg)\]")


def web_command(socket_path: Path, *also: str) -> list[str]:
    """gunicorn as the Procfile starts it, bound to `socket_path` (and to each address in `also`);
    gunicorn's control socket path is shared: a demo's is left alone."""
    binds = [arg for address in (f"unix:{socket_path}", *also) for arg in ("--bind", address)]
    return [str(Path(sys.executable).parent / "gunicorn"), "webapp.wsgi", *binds, "--workers", str(WORKERS),
            "--threads", str(THREADS), "--timeout", "30", "--no-control-socket"]


def proxy_command(port: int, socket_path: Path, state: Path) -> list[str]:
    """The Procfile's proxy on `port`, in front of the gunicorn on `socket_path`."""
    return [sys.executable, "manage.py", "proxy", "--listen", f"127.0.0.1:{port}", "--upstream", f"unix:{socket_path}",
            "--state-dir", str(state)]


def proxy_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if PROXY_ERROR.search(line)]


class PairedClient(threading.Thread):
    """A closed-loop client with a keep-alive connection through the proxy and one straight to
    gunicorn: each round asks both for the same random demo reader's feed, one right after the
    other, the order alternating, so that whatever the server is doing falls on both alike."""

    def __init__(self, via: dict[str, object], readers: list[int], deadline: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.via, self.readers, self.deadline = via, readers, deadline  # "proxy", "direct": load.SimReader
        self.rng = random.Random(seed)
        self.timings: list = []  # what load._drive counts: both paths' requests

    def run(self) -> None:
        rounds = 0
        while time.monotonic() < self.deadline:
            reader = self.rng.choice(self.readers)
            for name in ("proxy", "direct") if rounds % 2 == 0 else ("direct", "proxy"):
                self.via[name]._call("feed", "GET", f"/api/feed?reader={reader}&limit=10")
                self.timings.append(self.via[name].timings[-1])
            rounds += 1
        for client in self.via.values():
            if client.conn is not None:
                client.conn.close()


def paired_result(clients: list[PairedClient], seconds: float, seed: int = 0) -> dict:
    """p50/p99 through the proxy and direct, over the rounds both answered 200, and the p50
    difference (proxy − direct) with its bootstrap standard error over rounds."""
    proxy, direct, statuses = [], [], []
    for c in clients:
        for (_, sp, mp), (_, sd, md) in zip(c.via["proxy"].timings, c.via["direct"].timings, strict=False):
            statuses += [sp, sd]
            if sp == 200 and sd == 200:
                proxy.append(mp)
                direct.append(md)
    p, d = np.asarray(proxy), np.asarray(direct)
    out = {"clients": len(clients), "seconds": round(seconds, 1), "rounds": len(p),
           "errors_5xx": sum(s >= 500 for s in statuses), "dropped": sum(s == 0 for s in statuses)}
    if not len(p):
        return out
    picks = np.random.default_rng(seed).integers(0, len(p), (BOOTSTRAP, len(p)))
    diffs = np.median(p[picks], axis=1) - np.median(d[picks], axis=1)
    out |= {"proxy": {"p50_ms": round(float(np.median(p)), 3), "p99_ms": round(float(np.percentile(p, 99)), 3)},
            "direct": {"p50_ms": round(float(np.median(d)), 3), "p99_ms": round(float(np.percentile(d, 99)), 3)},
            "p50_diff_ms": round(float(np.median(p) - np.median(d)), 3),
            "p50_diff_se_ms": round(float(np.std(diffs, ddof=1)), 3),
            "mean_diff_ms": round(float(np.mean(p - d)), 3),
            "mean_diff_se_ms": round(float(np.std(p - d, ddof=1) / np.sqrt(len(p))), 3)}
    return out
