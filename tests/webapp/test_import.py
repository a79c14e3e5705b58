"""import_dataset against the real database: exact imports, idempotent re-imports, and
malformed files that import nothing."""

from __future__ import annotations

import shutil

import pytest
from django.core.management import CommandError, call_command

from tests.conftest import DATA
from webapp.lookalike.models import SeedSet
from webapp.news.models import Click, Impression, Item, Reader

pytestmark = pytest.mark.django_db


def counts() -> tuple[int, int, int, int]:
    return Item.objects.count(), Reader.objects.count(), Impression.objects.count(), Click.objects.count()


def test_mind_sample_imports_exactly_and_reimport_adds_nothing():
    call_command("import_dataset", "--format", "mind", str(DATA / "mind_sample"), verbosity=0)
    assert counts() == (8, 4, 13, 11)
    linked = Click.objects.filter(impression__isnull=False)
    assert linked.count() == 6
    assert all(c.item_id == c.impression.item_id and c.reader_id == c.impression.reader_id for c in linked)
    # U10: history N1001 N1003, then clicked N1005 (impression 1), N1008 and N1002 (impression 3)
    u10 = Reader.objects.get(source="mind", external_id="U10")
    clicked = sorted(u10.clicks.values_list("item__external_id", flat=True))
    assert clicked == ["N1001", "N1002", "N1003", "N1005", "N1008"]
    assert SeedSet.objects.filter(dirty=True).count() == len({c.item_id for c in Click.objects.all()})
    call_command("import_dataset", "--format", "mind", str(DATA / "mind_sample"), verbosity=0)
    assert counts() == (8, 4, 13, 11)


def test_movielens_sample_imports_exactly_and_reimport_adds_nothing():
    call_command("import_dataset", "--format", "movielens", str(DATA / "movielens_sample"), verbosity=0)
    assert counts() == (6, 5, 0, 12)
    assert Item.objects.get(source="movielens", external_id="6").published_at is None
    first = Item.objects.get(source="movielens", external_id="1")
    assert first.published_at == Click.objects.filter(item=first).order_by("clicked_at").first().clicked_at
    call_command("import_dataset", "--format", "movielens", str(DATA / "movielens_sample"), verbosity=0)
    assert counts() == (6, 5, 0, 12)


@pytest.mark.parametrize(
    ("fmt", "folder", "where"),
    [("mind", "mind_malformed", "behaviors.tsv:3"), ("movielens", "movielens_malformed", "ratings.csv:8")],
)
def test_malformed_files_fail_with_file_and_line_and_change_nothing(fmt, folder, where):
    call_command("import_dataset", "--format", "mind", str(DATA / "mind_sample"), verbosity=0)
    before = counts()
    with pytest.raises(CommandError) as err:
        call_command("import_dataset", "--format", fmt, str(DATA / folder), verbosity=0)
    assert where in str(err.value) and "nothing imported" in str(err.value)
    assert counts() == before


def test_a_fix_to_a_text_field_is_applied_on_reimport(tmp_path):
    folder = tmp_path / "ml"
    shutil.copytree(DATA / "movielens_sample", folder)
    call_command("import_dataset", "--format", "movielens", str(folder), verbosity=0)
    text = (folder / "movies.csv").read_text().replace("Salt and Steel (1987)", "Salt & Steel (1987)")
    (folder / "movies.csv").write_text(text)
    call_command("import_dataset", "--format", "movielens", str(folder), verbosity=0)
    assert Item.objects.get(source="movielens", external_id="4").title == "Salt & Steel (1987)"
    assert counts() == (6, 5, 0, 12)


def test_bad_format_is_a_clear_error():
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("import_dataset", "--format", "csv", str(DATA))
