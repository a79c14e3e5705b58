"""Project-wide rules: the layout, recsys/ stays a pure library, the apps import each other
one way. (Settings from the environment: tests/webapp/test_security.py.)"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"django", "celery", "webapp", "workers", "rest_framework", "drf_spectacular", "redis", "psycopg"}


def test_layout_of_the_design_card():
    for name in ["webapp", "recsys", "workers", "fixtures", "tests", "bench", "manage.py",
                 "docker-compose.yml", "README.md", "Makefile", ".ci/run"]:
        assert (ROOT / name).exists(), name


def test_the_readme_is_for_users_and_short():
    """Design and evidence live in docs/; the README stays a user's page."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 300, len(lines)
    for doc in ("model", "ranker", "evaluation", "serving"):
        assert f"docs/{doc}.md" in "\n".join(lines) and (ROOT / "docs" / f"{doc}.md").exists()


def test_recsys_imports_nothing_from_the_web_side():
    for path in (ROOT / "recsys").rglob("*.py"):
        for name in _imports(path):
            assert name.split(".")[0] not in FORBIDDEN, f"{path}: imports {name}"


def test_models_import_from_the_shell_with_their_app_labels():
    code = ("from webapp.news.models import Item, Reader, Impression, Click; "
            "from webapp.lookalike.models import SeedSet, LookalikeState, ModelRun; "
            "print(Item._meta.db_table, SeedSet._meta.db_table, ModelRun._meta.db_table)")
    out = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1].split() == ["news_item", "lookalike_seedset", "lookalike_modelrun"]



def _imports(path: Path) -> set[str]:
    """The absolute module names a file (or every file under a folder) imports."""
    out = set()
    for file in path.rglob("*.py") if path.is_dir() else [path]:
        for node in ast.walk(ast.parse(file.read_text(), filename=str(file))):
            if isinstance(node, ast.Import):
                out |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                out.add(node.module)
    return out


def test_the_apps_import_each_other_one_way_and_the_web_side_never_imports_the_workers():
    """common <- news <- lookalike <- feed: each app imports only those below it (migrations
    included), so no two apps import each other; webapp reaches the workers only by task name."""
    layers = ["common", "news", "lookalike", "feed"]
    for n, app in enumerate(layers):
        used = {m.split(".")[1] for m in _imports(ROOT / "webapp" / app) if m.startswith("webapp.")}
        assert not used & set(layers[n + 1:]), f"webapp.{app} imports {sorted(used & set(layers[n + 1:]))}"
    assert not {m for m in _imports(ROOT / "webapp") if m.split(".")[0] == "workers"}


def test_pages_reach_recsys_only_through_services():
    """Pages and the admin ask webapp.feed.services (and the selectors) for the arms' names
    and the A/B figures; only the service layer imports recsys."""
    pages = [ROOT / "webapp" / "feed" / name for name in ("views.py", "api.py", "dashboard.py", "urls.py")]
    pages += [ROOT / "webapp" / "urls.py", *sorted((ROOT / "webapp").glob("*/admin.py"))]
    assert len(pages) >= 7
    for page in pages:
        used = {m for m in _imports(page) if m.split(".")[0] == "recsys"}
        assert not used, f"{page.relative_to(ROOT)} imports {sorted(used)}"
