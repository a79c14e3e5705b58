"""The security list of the platform, each item against the real stack: CSRF on every
state-changing request of every route we serve, no open redirect, the admin behind a staff
login, DEBUG off unless set and then SECRET_KEY required. (SQL built by string formatting is
refused by ruff's S608 in `make test`; the click rate limit has tests of its own.)"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from tests.conftest import ROOT
from webapp.news.models import Impression, Item, Reader

EVIL = "https://evil.example/steal"


def _routes(patterns=None, prefix: str = "") -> list[str]:
    """Every route of ours (the admin's own pages are Django's; its index, login and our
    dashboard and seed views are in), as a URL pattern string."""
    out = []
    for p in patterns if patterns is not None else get_resolver().url_patterns:
        route = prefix + str(p.pattern)
        if isinstance(p, URLResolver):
            if route == "admin/":
                out += ["admin/", "admin/login/"]
                continue
            out += _routes(p.url_patterns, route)
        elif isinstance(p, URLPattern):
            out.append(route)
    return out


@pytest.mark.django_db
def test_every_state_changing_request_needs_the_csrf_token(demo_db):
    item = Item.objects.first()
    reader = Reader.objects.first()
    user = User.objects.create_user("sam", password="correct-horse-9")
    reader.user = user
    reader.save(update_fields=["user"])
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)  # a session cookie: what a forged cross-site request would carry
    routes = _routes()
    assert {"click/", "api/clicks", "start/", "topics/", "accounts/login/", "accounts/logout/"} <= set(routes)
    checked = 0
    for route in routes:
        url = "/" + route.replace("<int:item_id>", str(item.pk)).replace("<int:reader_id>", str(reader.pk))
        assert "<" not in url, f"a route with a parameter this test does not fill: {route}"
        for method in ("post", "put", "patch", "delete"):
            r = getattr(browser, method)(url, data="{}", content_type="application/json")
            assert r.status_code in (403, 405), f"{method.upper()} {url} without a CSRF token: {r.status_code}"
            checked += r.status_code == 403
    assert checked >= 8
    assert Impression.objects.filter(click__isnull=False).count() == 0


@pytest.mark.django_db
def test_no_redirect_goes_to_a_url_taken_from_the_request(demo_db, client):
    User.objects.create_user("ann", password="correct-horse-9")
    cases = [
        client.post(f"/accounts/login/?next={EVIL}", {"username": "ann", "password": "correct-horse-9"}),
        client.post("/accounts/login/", {"username": "ann", "password": "correct-horse-9", "next": EVIL}),
        client.post(f"/accounts/logout/?next={EVIL}"),
        client.post(f"/accounts/signup/?next={EVIL}", {"username": "bob", "password1": "correct-horse-9x",
                                                      "password2": "correct-horse-9x", "next": EVIL}),
        client.get(f"/admin/login/?next={EVIL}"),
        client.post(f"/start/?next={EVIL}", {"next": EVIL}),
    ]
    reader = Reader.objects.filter(user__isnull=True, source="demo").first()
    client.get(f"/feed/?reader={reader.pk}")
    imp = Impression.objects.filter(reader=reader).first()
    cases.append(client.post(f"/click/?next={EVIL}", {"impression": imp.pk, "reader": reader.pk, "next": EVIL}))
    for r in cases:
        assert r.status_code in (200, 302, 303), r.status_code
        location = r.headers.get("Location", "")
        assert "evil.example" not in location and not location.startswith("//"), location


@pytest.mark.django_db
def test_the_admin_needs_a_staff_login(demo_db, client):
    item = Item.objects.first()
    for url in ("/admin/", "/admin/dashboard/", f"/admin/news/item/{item.pk}/seeds/", "/admin/news/reader/"):
        r = client.get(url)
        assert r.status_code == 302 and r.headers["Location"].startswith("/admin/login/"), url
    client.force_login(User.objects.create_user("joe", password="correct-horse-9"))  # a reader's, not staff
    r = client.get("/admin/news/reader/")
    assert r.status_code == 302 and r.headers["Location"].startswith("/admin/login/")


def _settings_in_a_fresh_process(**env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY")}
    code = ("import django; django.setup(); from django.conf import settings as s; d = s.DATABASES['default']; "
            "print('DEBUG', s.DEBUG, d['NAME'], d['HOST'], d['CONN_HEALTH_CHECKS'], d['CONN_MAX_AGE'] > 0)")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**base, "DJANGO_SETTINGS_MODULE": "webapp.settings", **env})


def test_debug_is_off_unless_set_and_then_a_secret_key_is_required():
    """Settings come from the environment: DEBUG off unless set, the database from DATABASE_URL
    (persistent connections with health checks), a secret key required with DEBUG off, and a
    ranker arm the registry does not know refused at start-up."""
    default = _settings_in_a_fresh_process(SECRET_KEY="x" * 50, DATABASE_URL="postgres://someone@db.example:6543/other")
    assert default.returncode == 0 and "DEBUG False other db.example True True" in default.stdout, default.stderr
    missing = _settings_in_a_fresh_process(SECRET_KEY="")  # an empty variable wins over .env
    assert missing.returncode != 0 and "SECRET_KEY must be set when DEBUG is off" in missing.stderr
    debug = _settings_in_a_fresh_process(SECRET_KEY="", DEBUG="1")
    assert debug.returncode == 0 and "DEBUG True" in debug.stdout, debug.stderr
    arm = _settings_in_a_fresh_process(SECRET_KEY="x" * 50, FEED_ARM="magic")
    assert arm.returncode != 0 and "FEED_ARM: unknown ranker arm 'magic' (one of ctr, blend" in arm.stderr


def test_ruff_refuses_sql_built_by_string_formatting():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "S608" in config["tool"]["ruff"]["lint"]["select"]
    bad = "def f(cursor, name):\n    cursor.execute(f\"SELECT * FROM news_item WHERE title = '{name}'\")\n"
    r = subprocess.run([str(ROOT / ".venv" / "bin" / "ruff"), "check", "--select", "S608", "--stdin-filename",
                        "x.py", "-"], input=bad, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "S608" in r.stdout


def _deploy_warnings(**env: str) -> set[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "SECURE_SSL_REDIRECT")}
    env = {**base, "DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(50), **env}
    out = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env=env)
    assert "Traceback" not in out.stderr, out.stderr
    return set(re.findall(r"\(([\w.]+\.[WE]\d+)\)", out.stdout + out.stderr))


def test_check_deploy_warns_of_only_what_docs_security_explains():
    """The README and docs/security.md explain each warning left."""
    readme, explained = (ROOT / "README.md").read_text(), (ROOT / "docs" / "security.md").read_text()
    https_only = _deploy_warnings(SECURE_SSL_REDIRECT="1")
    assert https_only == {"security.W005", "security.W021"}
    both = _deploy_warnings()
    assert both == https_only | {"security.W008", "security.W012", "security.W016"}
    assert all(f"`{code}`" in explained and f"`{code.split('.')[1]}`" in readme for code in both)
