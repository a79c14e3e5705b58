from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
MOVIELENS_SMALL = ROOT.parent / "shared" / "data" / "movielens" / "ml-latest-small"


@pytest.fixture
def demo_db(db):
    """The demo corpus and population, loaded through the real command."""
    call_command("load_demo", verbosity=0)


@pytest.fixture
def api(client):
    return client
