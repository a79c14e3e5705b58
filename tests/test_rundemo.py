"""`make demo`'s last step: the process runner starts the Procfile processes, announces the
URL once the web answers through the proxy, and Ctrl-C stops every one of them."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import urllib.request

from tests.conftest import ROOT, wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rundemo_announces_the_url_and_ctrl_c_stops_everything(celery_env, tmp_path):
    port = _free_port()
    log = tmp_path / "rundemo.log"
    proc = subprocess.Popen([sys.executable, "manage.py", "rundemo", "--port", str(port),
                             "--only", "web", "proxy", "worker"],
                            cwd=ROOT, env=celery_env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        assert wait_for(lambda: f"RALM Feed is up: open {url}" in log.read_text(), timeout=60), log.read_text()
        with urllib.request.urlopen(url + "healthz", timeout=5) as resp:
            assert resp.status == 200
            assert resp.headers["Server"] == "nginx"  # the proxy answered, gunicorn behind it
        assert wait_for(lambda: "celery@" in log.read_text() and "ready" in log.read_text(), timeout=30)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(ROOT / "var" / f"proxy-{port}", ignore_errors=True)
    out = log.read_text()
    assert "demo stopped" in out
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "proxy still listening after Ctrl-C"
    assert not (ROOT / "var" / f"web-{port}.sock").exists(), "gunicorn's socket left behind"
    for name in (f"127.0.0.1:{port}", f"web-{port}.sock", f"proxy-{port}"):
        leftovers = subprocess.run(["pgrep", "-f", name], capture_output=True, text=True)
        assert leftovers.stdout.strip() == "", name


def test_rundemo_rejects_unknown_process_names(celery_env):
    out = subprocess.run([sys.executable, "manage.py", "rundemo", "--only", "nginx"], cwd=ROOT, env=celery_env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "not in Procfile: nginx" in out.stderr
