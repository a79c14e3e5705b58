"""docker-compose.yml, the Procfile, the Makefile and .ci/run agree with each other and
with the project. No Docker engine is needed: the compose file is parsed and checked."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import yaml
from django.core.management import get_commands

from webapp.news.management.commands.rundemo import read_procfile

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
PROCFILE = read_procfile(ROOT / "Procfile")
# Where the two deployments legitimately differ: host names, ports and paths. Locally gunicorn
# listens on a unix socket behind the proxy; between containers, on the compose network.
WEB_SOCKET = "unix:var/web-${PORT:-8000}.sock"
COMPOSE_TO_LOCAL = {
    "0.0.0.0:8000": WEB_SOCKET,
    "web:8000": WEB_SOCKET,
    "0.0.0.0:8080": "${LISTEN_HOST:-127.0.0.1}:${PORT:-8000}",
    "http://proxy:8080": "http://127.0.0.1:${PORT:-8000}",
    "--address=0.0.0.0": "--address=127.0.0.1",
    "--port=5555": "--port=${FLOWER_PORT:-5555}",
}
APP = ("web", "proxy", "worker", "beat", "simulator", "flower")  # the processes of our image (and of the Procfile)


def _steps(command: str) -> list[list[str]]:
    """Split `sh -c "a && b && exec c"` (or a plain command) into token lists."""
    tokens = shlex.split(command)
    if tokens[:2] == ["sh", "-c"]:
        return [shlex.split(part.strip().removeprefix("exec ")) for part in tokens[2].split("&&")]
    return [tokens]


def _check_runs_here(tokens: list[str]) -> None:
    """The command names something that exists in this project."""
    if tokens[:2] == ["python", "manage.py"]:
        assert tokens[2] in get_commands(), f"no management command {tokens[2]}"
    elif tokens[0] == "celery":
        assert tokens[1:3] == ["-A", "workers"] and tokens[3] in {"worker", "beat", "flower"}
        importlib.import_module("workers.celery")
    elif tokens[0] == "gunicorn":
        module, _, attr = tokens[1].partition(":")
        assert hasattr(importlib.import_module(module), attr or "application")
    else:
        raise AssertionError(f"unexpected program {tokens[0]}")


def test_compose_has_every_service_from_one_image():
    services = COMPOSE["services"]
    assert set(services) == {"postgres", "redis", *APP, "prometheus", "grafana"}
    app = [services[s] for s in APP]
    assert len({(s["build"], s["image"]) for s in app}) == 1
    for name, s in zip(APP, app, strict=True):
        assert s["environment"]["DATABASE_URL"].startswith("postgres://")
        assert s["environment"]["REDIS_URL"].startswith("redis://redis:")
        assert set(s["depends_on"]) == ({"web"} if name == "proxy" else {"postgres", "redis"})


def test_compose_publishes_the_proxy_not_gunicorn():
    """Clients reach the app through nginx only; gunicorn trusts the proxy's forwarded headers."""
    services = COMPOSE["services"]
    assert "ports" not in services["web"]
    listen = _steps(services["proxy"]["command"])[-1]
    assert services["proxy"]["ports"] == [f"8000:{listen[listen.index('--listen') + 1].rpartition(':')[2]}"]
    upstream = listen[listen.index("--upstream") + 1]
    gunicorn = _steps(services["web"]["command"])[-1]
    assert gunicorn[gunicorn.index("--bind") + 1] == f"0.0.0.0:{upstream.rpartition(':')[2]}"
    assert services["web"]["environment"]["TRUSTED_PROXIES"] and services["web"]["environment"]["FORWARDED_ALLOW_IPS"]
    assert "proxy" in services["web"]["environment"]["ALLOWED_HOSTS"].split(",")


def test_the_procfile_proxy_fronts_the_procfile_web():
    """The proxy's upstream is the socket gunicorn binds, and it listens where the simulator and
    rundemo's announcement go."""
    web, proxy = shlex.split(PROCFILE["web"]), shlex.split(PROCFILE["proxy"])
    assert web[web.index("--bind") + 1] == proxy[proxy.index("--upstream") + 1] == WEB_SOCKET
    assert proxy[proxy.index("--listen") + 1].endswith(":${PORT:-8000}")
    assert "http://127.0.0.1:${PORT:-8000}" in PROCFILE["simulator"]


def test_compose_commands_are_the_procfile_processes():
    for name in APP:
        compose = _steps(COMPOSE["services"][name]["command"])[-1]
        local = [COMPOSE_TO_LOCAL.get(t, t) for t in compose]
        proc = shlex.split(PROCFILE[name])
        proc = [t.replace("${WEB_CONCURRENCY:-2}", "2") for t in proc]
        assert local == proc, f"{name}: compose {compose} vs Procfile {proc}"
        for step in _steps(COMPOSE["services"][name]["command"]):
            _check_runs_here(step)


def test_compose_web_runs_the_same_setup_steps_as_make_demo():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^demo:.*?\n((?:\t.*\n)+)", makefile, re.M).group(1)
    make_steps = [shlex.split(line.strip().replace("$(BIN)/python", "python"))
                  for line in recipe.splitlines() if "manage.py" in line and "rundemo" not in line]
    compose_steps = _steps(COMPOSE["services"]["web"]["command"])[:-1]
    assert compose_steps[0] == ["python", "manage.py", "migrate", "--noinput"]
    assert compose_steps[1:] == make_steps


def test_procfile_processes_exist():
    assert set(PROCFILE) == set(APP)
    for command in PROCFILE.values():
        _check_runs_here(shlex.split(command))


def test_dockerfile_installs_pinned_requirements_offline():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "-r requirements.txt" in dockerfile and "HF_HUB_OFFLINE=1" in dockerfile
    assert "torch==2.13.0" in (ROOT / "requirements.txt").read_text().split()
    assert re.search(r"apt-get install -y [^\n]*\bnginx\b", dockerfile)  # the proxy runs from the app image
    assert '"rundemo", "--only", "web", "proxy"' in dockerfile  # alone, it serves through the proxy too


def test_make_installs_nginx_for_demo_and_test():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test", "serve"):
        assert re.search(rf"^{target}:[^#\n]*\bnginx\b", makefile, re.M), target
    recipe = re.search(r"^nginx:.*?\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert "RUNLEVEL=1 apt-get install -y -q nginx" in recipe and "apt-get update" in recipe


def test_ci_runs_make_test_and_starts_services():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "pg_ctlcluster" in ci and "redis-server" in ci
