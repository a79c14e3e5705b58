"""Project-wide rules: the layout, recsys/ stays a pure library, settings come from the
environment and refuse to run without a secret when DEBUG is off."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"django", "celery", "webapp", "workers", "rest_framework", "drf_spectacular", "redis", "psycopg"}


def test_layout_of_the_design_card():
    for name in ["webapp", "recsys", "workers", "fixtures", "tests", "bench", "manage.py",
                 "docker-compose.yml", "README.md", "Makefile", ".ci/run"]:
        assert (ROOT / name).exists(), name


def test_recsys_imports_nothing_from_the_web_side():
    for path in (ROOT / "recsys").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path}: imports {name}"


def _django(code: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG"}}
    full.update(env, DJANGO_SETTINGS_MODULE="webapp.settings")
    return subprocess.run([sys.executable, "-c", f"import django; django.setup(); {code}"],
                          cwd=ROOT, env=full, capture_output=True, text=True, timeout=60)


def test_secret_key_is_required_when_debug_is_off(tmp_path):
    # An empty SECRET_KEY in the environment wins over .env, as a missing one would in production.
    out = _django("", SECRET_KEY="", DEBUG="0")
    assert out.returncode != 0 and "SECRET_KEY must be set when DEBUG is off" in out.stderr
    ok = _django("from django.conf import settings; print(settings.DEBUG)", SECRET_KEY="", DEBUG="1")
    assert ok.returncode == 0 and ok.stdout.strip() == "True"


def test_debug_is_off_unless_set_and_database_comes_from_the_environment():
    out = _django("from django.conf import settings as s; d = s.DATABASES['default']; "
                  "print(s.DEBUG, d['NAME'], d['HOST'], d['CONN_HEALTH_CHECKS'], d['CONN_MAX_AGE'] > 0)",
                  SECRET_KEY="x" * 50, DATABASE_URL="postgres://someone@db.example:6543/other")
    assert out.stdout.split() == ["False", "other", "db.example", "True", "True"], out.stderr


def test_models_import_from_the_shell_with_their_app_labels():
    code = ("from webapp.news.models import Item, Reader, Impression, Click; "
            "from webapp.lookalike.models import SeedSet, LookalikeState, ModelRun; "
            "print(Item._meta.db_table, SeedSet._meta.db_table, ModelRun._meta.db_table)")
    out = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1].split() == ["news_item", "lookalike_seedset", "lookalike_modelrun"]
