"""The front door, with real connections: nginx (`manage.py proxy`) in front of gunicorn, both
started as the Procfile starts them. Slow clients hold nginx's connections, not gunicorn's
threads; nginx answers its own errors in the API's JSON shape under /api/, /healthz and /metrics
and as a page elsewhere; it serves the collected static files; Django sees the client's host,
scheme and address, not what a client claims them to be."""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from tests.conftest import ROOT
from tests.factories import ItemFactory, ReaderFactory
from tests.procs import free_port, wait_for
from webapp.news.management.commands import proxy as proxy_command
from webapp.news.management.commands.rundemo import read_procfile

# Every test here on committed rows the servers see; one kind of database test keeps them together
# (pytest-django runs each kind as a group), so that the servers start once for the module.
pytestmark = pytest.mark.django_db(transaction=True)
STATIC_CSS = b"/* the proxy's copy of base.css */\n"
SLOW = 20  # slow header senders, and as many slow body senders


@dataclass
class Front:
    port: int  # the proxy
    direct: int  # the same gunicorn, also bound to a port of its own to be reached around the proxy
    folder: Path

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")


def _send(sock: socket.socket, raw: bytes) -> http.client.HTTPResponse:
    """Write a raw request, read the whole response (the body in `.body`)."""
    sock.sendall(raw)
    resp = http.client.HTTPResponse(sock, method=raw.split(b" ", 1)[0].decode("latin-1"))
    resp.begin()
    resp.body = resp.read()
    return resp


def _exchange(port: int, raw: bytes) -> http.client.HTTPResponse:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        return _send(sock, raw)


def _get(port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        resp.body = resp.read()
        return resp
    finally:
        conn.close()


def _healthy(port: int) -> bool:
    try:
        return _get(port, "/healthz", timeout=2).status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def front(django_db_setup, tmp_path_factory):
    """The Procfile's web and proxy on the test database, a free port and a socket of their own;
    gunicorn is also bound to a port of its own, and leaves the control socket every gunicorn
    shares by default alone; the proxy serves a static folder of this test's."""
    folder = tmp_path_factory.mktemp("front")
    (folder / "static" / "admin" / "css").mkdir(parents=True)
    (folder / "static" / "admin" / "css" / "base.css").write_bytes(STATIC_CSS)
    port, direct = free_port(), free_port()
    db = connection.settings_dict
    env = {**os.environ, "PORT": str(port), "PYTHONUNBUFFERED": "1", "METRICS_TOKEN": "",
           "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
           "REDIS_URL": settings.REDIS_URL, "MODEL_DIR": str(folder / "models"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    procfile = read_procfile(ROOT / "Procfile")
    commands = {"web": f"{procfile['web']} --bind 127.0.0.1:{direct} --no-control-socket",
                "proxy": f"{procfile['proxy']} --state-dir {shlex.quote(str(folder / 'proxy'))}"
                         f" --static-root {shlex.quote(str(folder / 'static'))}"}
    (ROOT / "var").mkdir(exist_ok=True)
    procs = {name: subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=ROOT, env=env,
                                    stdout=(folder / f"{name}.log").open("w"), stderr=subprocess.STDOUT,
                                    start_new_session=True)
             for name, command in commands.items()}
    served = Front(port, direct, folder)
    try:
        assert wait_for(lambda: _healthy(port) and _healthy(direct), timeout=90, every=0.3), \
            f"--- web\n{served.log('web')[-3000:]}\n--- proxy\n{served.log('proxy')[-3000:]}"
        yield served
    finally:
        for proc in procs.values():
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


# --- nginx's own answers ------------------------------------------------------------------------

def _too_much(path: str) -> dict[str, bytes]:
    """Requests nginx refuses itself, by what is wrong with them."""
    head = b"Host: 127.0.0.1\r\n"
    target = path.encode()
    return {
        "body over the limit": b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n"
                               % (target, head, settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1),
        "header line over the limit": b"GET %s HTTP/1.1\r\n%sX-Big: %s\r\n\r\n" % (target, head, b"a" * 9000),
        "bad request line": b"GET %s HTTP/1.1 junk\r\n%s\r\n" % (target, head),
        "byte gunicorn refuses in the target": b"GET %s?q=\xff HTTP/1.1\r\n%s\r\n" % (target, head),
        "request line over the limit": b"GET %s?%s HTTP/1.1\r\n%s\r\n" % (target, b"q" * 9000, head),
        "Content-Length and chunked": b"POST %s HTTP/1.1\r\n%sContent-Length: 4\r\nTransfer-Encoding: chunked"
                                      b"\r\n\r\n0\r\n\r\n" % (target, head),
        "a method nginx refuses": b"TRACE %s HTTP/1.1\r\n%s\r\n" % (target, head),
    }


STATUS = {"body over the limit": 413, "header line over the limit": 431, "bad request line": 400,
          "byte gunicorn refuses in the target": 400, "request line over the limit": 414,
          "Content-Length and chunked": 400, "a method nginx refuses": 405}


def test_the_proxys_own_errors_are_json_under_the_api_and_a_page_elsewhere(front):
    for path, json_expected in (("/api/clicks", True), ("/healthz", True), ("/metrics", True), ("/feed/", False)):
        for case, raw in _too_much(path).items():
            resp = _exchange(front.port, raw)
            where = f"{case} at {path}"
            assert resp.status == STATUS[case], where
            assert resp.getheader("Server") == "nginx" and resp.getheader("Connection") == "close", where
            if json_expected:
                assert resp.getheader("Content-Type") == "application/json", where
                assert isinstance(json.loads(resp.body)["detail"], str), where
            else:
                assert resp.getheader("Content-Type") == "text/html", where
                assert resp.body.startswith(b"<!doctype html>") and b"RALM Feed" in resp.body, where
    assert "Body larger than" in json.loads(_exchange(front.port, _too_much("/api/clicks")["body over the limit"])
                                            .body)["detail"]
    # Django's own errors pass through as Django wrote them (here a JSON 404 naming no proxy).
    resp = _get(front.port, "/api/no-such-thing")
    assert resp.status == 404 and json.loads(resp.body) == {"detail": "Not found."}
    assert resp.getheader("X-Request-ID")


def test_after_a_413_the_connection_is_closed_or_still_answers(front):
    with socket.create_connection(("127.0.0.1", front.port), timeout=10) as sock:
        assert _send(sock, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").status == 200  # kept alive
        big = settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1
        resp = _send(sock, b"POST /api/clicks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n" % big)
        assert resp.status == 413
        if resp.getheader("Connection", "").lower() != "close":
            assert _send(sock, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").status == 200


# --- what goes through -----------------------------------------------------------------------------

def test_static_files_are_the_proxys_with_cache_headers(front):
    resp = _get(front.port, "/static/admin/css/base.css")
    assert resp.status == 200 and resp.body == STATIC_CSS  # this folder's copy, not Django's
    assert resp.getheader("Content-Type").startswith("text/css")
    assert re.search(r"\bmax-age=\d+", resp.getheader("Cache-Control", ""))
    assert resp.getheader("Last-Modified") and resp.getheader("ETag")
    # A file not collected falls through to Django, which finds it in its app.
    fallback = _get(front.port, "/static/admin/js/core.js")
    assert fallback.status == 200 and b"function" in fallback.body
    assert wait_for(lambda: "/static/admin/js/core.js" in front.log("web"), timeout=5)
    assert "/static/admin/css/base.css" not in front.log("web")


def test_a_feed_and_a_click_through_the_proxy(front):
    reader = ReaderFactory()
    ItemFactory.create_batch(12)
    resp = _get(front.port, f"/api/feed?reader={reader.pk}&limit=5")
    assert resp.status == 200 and resp.getheader("Server") == "nginx"
    page = json.loads(resp.body)
    assert len(page["items"]) == 5
    conn = http.client.HTTPConnection("127.0.0.1", front.port, timeout=10)
    conn.request("POST", "/api/clicks", body=json.dumps({"impression": page["items"][0]["impression"]}),
                 headers={"Content-Type": "application/json"})
    click = conn.getresponse()
    assert click.status == 201, click.read()
    conn.close()


def test_django_sees_the_clients_host_scheme_and_address(front):
    """Django's CSRF check compares the Origin with the scheme and host it sees: a login form
    posted through the proxy passes it only if the Host keeps its port and a client's
    X-Forwarded-Proto is replaced by the proxy's. /metrics (no token set) answers a client on
    this machine: the address Django takes is the proxy's X-Forwarded-For, not the client's."""
    form = _get(front.port, "/accounts/login/")
    assert form.status == 200
    cookie = form.getheader("Set-Cookie").split(";")[0]
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', form.body).group(1).decode()
    conn = http.client.HTTPConnection("127.0.0.1", front.port, timeout=10)
    conn.request("POST", "/accounts/login/", body=f"csrfmiddlewaretoken={token}&username=nobody&password=wrong",
                 headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie,
                          "Origin": f"http://127.0.0.1:{front.port}", "X-Forwarded-Proto": "https"})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    # The form again, its credentials refused; a failed CSRF check would be a 403 without it.
    assert resp.status in (200, 400) and b"csrfmiddlewaretoken" in body, (resp.status, body[:300])
    assert _get(front.port, "/metrics", headers={"X-Forwarded-For": "203.0.113.7"}).status == 200


def test_the_command_renders_a_configuration_nginx_accepts(tmp_path, capsys):
    state = tmp_path / "state"
    call_command("proxy", "--listen", "127.0.0.1:8123", "--upstream", f"unix:{tmp_path / 'web.sock'}",
                 "--state-dir", str(state), "--check")
    assert "configuration ok" in capsys.readouterr().out
    config = (state / "nginx.conf").read_text()
    assert "{{" not in config and "listen 127.0.0.1:8123 default_server;" in config
    assert f"client_max_body_size {settings.DATA_UPLOAD_MAX_MEMORY_SIZE};" in config
    assert f'server "unix:{tmp_path / "web.sock"}";' in config
    for status in proxy_command.ERRORS:
        assert isinstance(json.loads((state / "errors" / f"{status}.json").read_text())["detail"], str)
        assert f"<title>{status} " in (state / "errors" / f"{status}.html").read_text()


def test_the_command_says_how_to_install_nginx_when_it_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(proxy_command, "SEARCH_PATH", str(tmp_path))
    with pytest.raises(CommandError, match=r"nginx is not installed: install Debian's nginx \(`make nginx`"):
        call_command("proxy", "--state-dir", str(tmp_path / "state"))
    with pytest.raises(CommandError, match="no-such-nginx not found"):
        call_command("proxy", "--nginx", "no-such-nginx")
    monkeypatch.undo()
    for listen in ("127.0.0.1:", "8000; include /etc/passwd", "localhost:99999"):
        with pytest.raises(CommandError, match="expected HOST:PORT"):
            call_command("proxy", "--listen", listen, "--state-dir", str(tmp_path / "state"))
    with pytest.raises(CommandError, match="over 107 bytes"):
        call_command("proxy", "--upstream", f"unix:/{'x' * 120}.sock", "--state-dir", str(tmp_path / "state"))


# --- slow clients (last: the direct half ties gunicorn's threads up for a while) ------------------

class SlowClients:
    """SLOW connections sending a request line, then a header line every 2 s, and SLOW sending
    `Content-Length: 100` and then one byte of the body every 0.7 s, all held open at once."""

    def __init__(self, port: int) -> None:
        self.port, self.stop, self.socks = port, threading.Event(), []
        self.threads = [threading.Thread(target=f, daemon=True) for f in [self._headers] * SLOW + [self._body] * SLOW]

    def _open(self, first: bytes) -> socket.socket | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            self.socks.append(sock)
            sock.sendall(first)
            return sock
        except OSError:
            return None

    def _headers(self) -> None:
        sock, n = self._open(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"), 0
        while sock is not None and not self.stop.wait(2.0):
            try:
                sock.sendall(b"X-Slow-%d: 1\r\n" % n)
            except OSError:
                return
            n += 1

    def _body(self) -> None:
        sock = self._open(b"POST /api/clicks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 100\r\n\r\n")
        while sock is not None and not self.stop.wait(0.7):
            try:
                sock.sendall(b" ")
            except OSError:
                return

    def __enter__(self) -> SlowClients:
        for t in self.threads:
            t.start()
        time.sleep(0.5)  # every one connected and its first bytes sent
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=5)
        for sock in self.socks:
            sock.close()


def _probes(port: int) -> list[tuple[int | None, float]]:
    """Six GET /healthz, one a second, each given 1 s: (status or None, seconds)."""
    out = []
    for _ in range(6):
        started = time.perf_counter()
        try:
            status = _get(port, "/healthz", timeout=1.0).status
        except OSError:
            status = None
        took = time.perf_counter() - started
        out.append((status, round(took, 3)))
        time.sleep(max(0.0, 1.0 - took))
    return out


def test_slow_clients_hold_the_proxy_not_gunicorn(front):
    with SlowClients(front.port):
        through_proxy = _probes(front.port)
    assert all(status == 200 and took < 1.0 for status, took in through_proxy), through_proxy
    # The same load on gunicorn itself: each slow client holds one of its 2 × 4 threads, and
    # the health check waits behind them.
    with SlowClients(front.direct):
        direct = _probes(front.direct)
    print(f"probes through the proxy {through_proxy}; straight to gunicorn {direct}")
    assert sum(status is None for status, _ in direct) >= 4, direct
    assert wait_for(lambda: _healthy(front.direct), timeout=30), "gunicorn did not recover"
