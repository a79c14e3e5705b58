"""Real processes for the benchmarks (bench/soak.py, bench/scale.py) and the fault tests
(tests/procs.py): a free loopback port, a Redis server of their own to stop and start, and
polling for a condition. Nothing here imports Django or pytest."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], bool], timeout: float, every: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


class PrivateRedis:
    """A redis-server of the caller's own on a free port, nothing kept on disk (as ours run),
    so that stopping it takes nothing shared down."""

    def __init__(self, folder: Path) -> None:
        self.port, self.folder, self.proc = free_port(), folder, None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--dir", str(self.folder)],
            stdout=(self.folder / "redis.log").open("a"), stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_connect_timeout=1, retry=None)
        assert wait_for(lambda: self._pings(client), timeout=10, every=0.05), (self.folder / "redis.log").read_text()

    @staticmethod
    def _pings(client: redis.Redis) -> bool:
        try:
            return client.ping()
        except redis.RedisError:
            return False

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = None
