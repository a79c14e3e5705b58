"""Run every process of the Procfile (web, proxy, worker, beat, simulator, flower) in the
foreground, with prefixed output; print the URL once the proxy answers /healthz (gunicorn
listens on a unix socket behind it); Ctrl-C stops them all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

COLORS = ["\033[36m", "\033[33m", "\033[35m", "\033[32m", "\033[34m"]
RESET = "\033[0m"


def read_procfile(path: Path) -> dict[str, str]:
    procs = {}
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not name.strip() or not command.strip():
            raise CommandError(f"{path}:{lineno}: expected 'name: command'")
        procs[name.strip()] = command.strip()
    return procs


class Command(BaseCommand):
    help = "Start web, proxy, worker, beat and the reader simulator from the Procfile; Ctrl-C stops all."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--procfile", type=Path, default=Path(settings.BASE_DIR) / "Procfile")
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--only", nargs="*", help="run only these processes")

    def handle(self, *args, procfile: Path, port: int, only: list[str] | None, **options) -> None:
        procs = read_procfile(procfile)
        if only:
            unknown = set(only) - set(procs)
            if unknown:
                raise CommandError(f"not in {procfile.name}: {', '.join(sorted(unknown))}")
            procs = {k: v for k, v in procs.items() if k in only}
        (Path(settings.BASE_DIR) / "var").mkdir(exist_ok=True)
        env = {**os.environ, "PORT": str(port), "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "30",
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        width = max(len(n) for n in procs)
        lock = threading.Lock()
        children: dict[str, subprocess.Popen] = {}
        pumps: list[threading.Thread] = []
        for n, (name, command) in enumerate(procs.items()):
            child = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=settings.BASE_DIR, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
            children[name] = child
            prefix = f"{COLORS[n % len(COLORS)]}{name:<{width}}{RESET} | "
            pumps.append(threading.Thread(target=self._pump, args=(child, prefix, lock), daemon=True))
            pumps[-1].start()
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # even if started with SIGINT ignored
            signal.signal(sig, lambda *_: stop.set())
        if "proxy" in children:  # the front door: its URL is the demo's
            threading.Thread(target=self._announce, args=(port, lock, stop), daemon=True).start()
        elif "web" in children:
            self.stdout.write("no proxy: the web answers only on the socket the Procfile binds it to "
                              "(add `proxy` to --only to serve it over HTTP)")
        failed = None
        while not stop.is_set() and failed is None:
            failed = next((n for n, c in children.items() if c.poll() is not None), None)
            stop.wait(0.5)
        self._stop_all(children)
        for pump in pumps:  # let the last lines (the simulator's summary) through
            pump.join(timeout=2)
        if failed:
            raise CommandError(f"{failed} exited with code {children[failed].returncode}; stopped the rest")
        self.stdout.write("demo stopped")

    def _pump(self, child: subprocess.Popen, prefix: str, lock: threading.Lock) -> None:
        for raw in iter(child.stdout.readline, b""):
            for part in raw.decode(errors="replace").replace("\r", "\n").splitlines():
                if part.strip():
                    with lock:
                        sys.stdout.write(prefix + part + "\n")
                        sys.stdout.flush()

    def _announce(self, port: int, lock: threading.Lock, stop: threading.Event) -> None:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(120):
            if stop.is_set():
                return
            try:
                with urllib.request.urlopen(url + "healthz", timeout=2) as resp:
                    if resp.status == 200:
                        with lock:
                            banner = f"RALM Feed is up: open {url}  (admin: {url}admin/, API: {url}api/feed?reader=1)"
                            sys.stdout.write(f"\n\033[1m{banner}\033[0m\n\n")
                            sys.stdout.flush()
                        return
            except OSError:
                pass
            time.sleep(1.0)

    def _stop_all(self, children: dict[str, subprocess.Popen]) -> None:
        for child in children.values():
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
