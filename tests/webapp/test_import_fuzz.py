"""import_dataset against generated malformed folders (hypothesis): the sample folders with
hostile field values, broken structure and stray bytes. Every outcome is either the exact
import of what the reader accepted or a one-line `file:line: problem` error with the
database unchanged; never another exception (which would reach the user as a traceback)."""

from __future__ import annotations

import csv
import io
import shutil
from itertools import count
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys.datasets import DatasetError, read_dataset
from tests.conftest import DATA
from webapp.news.models import Click, Impression, Item, Reader

pytestmark = pytest.mark.django_db

FILES = {"movielens": ["movies.csv", "ratings.csv", "tags.csv"], "mind": ["news.tsv", "behaviors.tsv"]}
SAMPLE = {"movielens": DATA / "movielens_sample", "mind": DATA / "mind_sample"}
HOSTILE = st.one_of(
    st.text(max_size=24),
    st.sampled_from(["", "\x00", "a\x00b", "nan", "inf", "-1", "1e400", "٣", " 1", "1_0", "0x10", "9" * 100,
                     "x" * 1000, "Film (0000)", "Film (9999)", '"', 'a"b', "a\tb", "a\nb", "|||", "g" * 65 + "|Drama",
                     "(no genres listed)", "-", "N1001-2", "N1001-1 N1001-1", "N9999", "13/45/2019 9:05:58 AM",
                     "11/11/0000 9:05:58 AM", "<script>alert(1)</script>", "\u202e", "\ufeff", "u" * 70]),
    st.from_regex(r"[0-9]{1,120}", fullmatch=True),
)
EXAMPLES = count()


def _table_state() -> tuple:
    return (Item.objects.count(), Reader.objects.count(), Impression.objects.count(), Click.objects.count(),
            tuple(Item.objects.order_by("pk").values_list("title", "abstract", "category", "subcategory", "url")))


def _expected(fmt: str, folder: Path) -> tuple[int, int, int, int]:
    """What an exact import of the folder stores: distinct natural keys of what the reader kept."""
    ds = read_dataset(fmt, folder)
    history = {(c.reader, c.item, c.clicked_at) for c in ds.clicks if c.request_id is None}
    logged = {(c.request_id, c.item) for c in ds.clicks if c.request_id is not None}
    return (len({i.external_id for i in ds.items}), len(set(ds.readers)),
            len({(i.request_id, i.item) for i in ds.impressions}), len(history) + len(logged))


def _mutate(fmt: str, folder: Path, data) -> None:
    """One to three mutations of the sample's files: a field replaced, a line dropped or
    repeated, bytes inserted, the file cut short, or the file removed."""
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        name = data.draw(st.sampled_from(FILES[fmt]), label="file")
        path = folder / name
        if not path.exists():
            continue
        kind = data.draw(st.sampled_from(["field", "field", "field", "drop", "repeat", "bytes", "cut", "remove"]),
                         label="kind")
        raw = path.read_bytes()
        if kind == "remove":
            path.unlink()
        elif kind == "bytes":
            at = data.draw(st.integers(0, len(raw)), label="offset")
            path.write_bytes(raw[:at] + data.draw(st.binary(min_size=1, max_size=8), label="bytes") + raw[at:])
        elif kind == "cut":
            path.write_bytes(raw[:data.draw(st.integers(0, len(raw)), label="offset")])
        else:
            text = raw.decode("utf-8", errors="replace")
            if name.endswith(".csv"):
                rows = list(csv.reader(io.StringIO(text, newline="")))
            else:
                rows = [line.split("\t") for line in text.splitlines()]
            if not rows:
                continue
            r = data.draw(st.integers(0, len(rows) - 1), label="row")
            if kind == "drop":
                del rows[r]
            elif kind == "repeat":
                rows.insert(r, list(rows[r]))
            elif rows[r]:
                rows[r][data.draw(st.integers(0, len(rows[r]) - 1), label="field")] = data.draw(HOSTILE, label="value")
            if name.endswith(".csv"):
                out = io.StringIO(newline="")
                csv.writer(out, lineterminator="\n").writerows(rows)
                path.write_text(out.getvalue(), encoding="utf-8", errors="surrogatepass")
            else:
                path.write_text("\n".join("\t".join(row) for row in rows) + "\n", encoding="utf-8",
                                errors="surrogatepass")


def _run(fmt: str, tmp_path: Path, data) -> None:
    folder = tmp_path / f"{fmt}-{next(EXAMPLES)}"
    shutil.copytree(SAMPLE[fmt], folder)
    _mutate(fmt, folder, data)
    with transaction.atomic():  # every example starts from the same database
        before = _table_state()
        try:
            call_command("import_dataset", "--format", fmt, str(folder), verbosity=0)
        except CommandError as exc:
            message = str(exc)
            assert "\n" not in message and "nothing imported" in message, message
            assert message.startswith(str(folder)), message  # it names the file (and line)
            assert _table_state() == before
        else:
            stored = (Item.objects.filter(source=fmt).count(), Reader.objects.filter(source=fmt).count(),
                      Impression.objects.filter(item__source=fmt).count(),
                      Click.objects.filter(item__source=fmt).count())
            assert stored == _expected(fmt, folder)
        transaction.set_rollback(True)
    shutil.rmtree(folder)


FUZZ = settings(max_examples=130, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture
def other_source_present():
    """Rows of another source in the database: an error must leave them as they were."""
    call_command("import_dataset", "--format", "mind", str(SAMPLE["mind"]), verbosity=0)


@FUZZ
@given(data=st.data())
def test_malformed_movielens_folders_import_exactly_or_fail_in_one_line(other_source_present, tmp_path, data):
    _run("movielens", tmp_path, data)


@FUZZ
@given(data=st.data())
def test_malformed_mind_folders_import_exactly_or_fail_in_one_line(tmp_path, data):
    _run("mind", tmp_path, data)


@pytest.mark.parametrize(("fmt", "file", "line", "old", "new", "problem"), [
    ("movielens", "movies.csv", 5, "4,Salt", "4" * 100 + ",Salt", "not a non-negative integer"),
    ("movielens", "movies.csv", 5, "Action", "g" * 1000, "genre longer than 64"),
    ("movielens", "movies.csv", 5, "Salt and Steel", "Salt\x00Steel", "NUL byte"),
    ("movielens", "movies.csv", 5, "(1987)", "(0000)", "release year 0000 out of range"),
    ("movielens", "ratings.csv", 2, "1,1,4.0", "9" * 100 + ",1,4.0", "userId is not"),
    ("mind", "news.tsv", 1, "sports\t", "s" * 65 + "\t", "category longer than 64"),
    ("mind", "news.tsv", 1, "N1001\t", "N" * 65 + "\t", "news id longer than 64"),
    ("mind", "behaviors.tsv", 2, "U11", "U\x0011", "NUL byte"),
])
def test_each_column_rule_is_reported_by_file_and_line(tmp_path, fmt, file, line, old, new, problem):
    folder = tmp_path / fmt
    shutil.copytree(SAMPLE[fmt], folder)
    text = (folder / file).read_text()
    assert old in text
    (folder / file).write_text(text.replace(old, new, 1))
    with pytest.raises(DatasetError, match=f"{file}:{line}: .*{problem}"):
        read_dataset(fmt, folder)
    with pytest.raises(CommandError, match=f"{file}:{line}: .*{problem}.*nothing imported"):
        call_command("import_dataset", "--format", fmt, str(folder), verbosity=0)
    assert Item.objects.count() == 0
