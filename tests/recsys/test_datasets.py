"""The dataset readers alone (no database): exact parses, and malformed files named by
file and line."""

from __future__ import annotations

import shutil

import pytest

from recsys.datasets import DatasetError, read_dataset
from tests.conftest import DATA, MOVIELENS_SMALL


def test_mind_sample_parses_exactly():
    d = read_dataset("mind", DATA / "mind_sample")
    assert len(d.items) == 8 and d.readers == ["U10", "U11", "U12", "U13"]
    assert len(d.impressions) == 13
    assert sum(i.clicked for i in d.impressions) == 6
    history = [c for c in d.clicks if c.request_id is None]
    # U10: N1001 N1003; U12: N1004; U13: N1008 N1002 (the repeated N1008 counts once)
    assert sorted((c.reader, c.item) for c in history) == [
        ("U10", "N1001"), ("U10", "N1003"), ("U12", "N1004"), ("U13", "N1002"), ("U13", "N1008")]
    first_u13 = min(i.shown_at for i in d.impressions if i.reader == "U13")
    assert all(c.clicked_at < first_u13 for c in history if c.reader == "U13")
    assert len(d.clicks) == 11


def test_movielens_sample_parses_exactly():
    d = read_dataset("movielens", DATA / "movielens_sample")
    assert len(d.items) == 6 and d.readers == ["1", "2", "3", "4", "5"] and len(d.clicks) == 12
    items = {i.external_id: i for i in d.items}
    assert items["2"].title == "Night Train, The (2004)"
    assert items["2"].category == "Thriller" and items["2"].subcategory == "Thriller|Mystery"
    assert "twist ending" in items["2"].abstract
    assert items["5"].category == "unknown"
    assert items["6"].published_at is None  # never rated: never live


@pytest.mark.parametrize(
    ("fmt", "folder", "where", "what"),
    [("mind", "mind_malformed", "behaviors.tsv:3", "bad time"),
     ("movielens", "movielens_malformed", "ratings.csv:8", "rating is not a number")],
)
def test_committed_malformed_samples_name_file_and_line(fmt, folder, where, what):
    with pytest.raises(DatasetError) as err:
        read_dataset(fmt, DATA / folder)
    assert where in str(err.value) and what in str(err.value)


def _corrupt(tmp_path, src, name, line, new: bytes):
    folder = tmp_path / "data"
    shutil.copytree(DATA / src, folder)
    lines = (folder / name).read_bytes().split(b"\n")
    lines[line - 1] = new
    (folder / name).write_bytes(b"\n".join(lines))
    return folder


@pytest.mark.parametrize(
    ("name", "line", "new", "message"),
    [(f"movielens_sample/{n}", *rest) for n, *rest in [
        ("ratings.csv", 4, b"1,3", "expected 4 fields"),  # truncated line
        ("ratings.csv", 5, b"2,1,9.5,1445714835", "rating out of range"),
        ("ratings.csv", 6, b"2,77,4.5,1445714880", "unknown movieId 77"),
        ("ratings.csv", 7, b"2,5,3.0,soon", "timestamp is not an integer"),
        ("movies.csv", 3, b'2,"Night Train, The (2004),Thriller', "bad CSV"),  # unterminated quote
        ("movies.csv", 4, b"3,Caf\xe9 (2011),Comedy", "not valid UTF-8"),  # latin-1 byte
        ("movies.csv", 5, b"4," + b"x" * 200_000 + b",Action", "field"),  # huge field
        ("movies.csv", 6, b"1,Duplicate (2000),Drama", "duplicate movieId 1"),
        ("movies.csv", 1, b"id,name,genres", "expected header"),
        ("tags.csv", 3, b"2,1," + b"t" * 300 + b",1445714996", "tag longer"),
    ]] + [(f"mind_sample/{n}", *rest) for n, *rest in [
        ("behaviors.tsv", 2, b"2\tU11\t11/11/2019 9:12:00 AM", "expected 5"),  # truncated
        ("behaviors.tsv", 4, b"4\tU12\t11/13/2019 12:00:01 AM\tN1004\tN1005-7", "bad impression"),
        ("behaviors.tsv", 5, b"5\tU13\t11/13/2019 6:45:00 AM\tN9999\tN1004-1", "unknown news id N9999"),
        ("behaviors.tsv", 3, b"1\tU10\t11/12/2019 7:30:15 PM\t\tN1007-0", "duplicate impression id 1"),
        ("news.tsv", 2, b"N1002\tfinance\tmarkets", "expected 6 to 8"),
        ("news.tsv", 3, b"N1003\thealth\tnutrition\t\xff\xfe\tabstract\turl\t[]\t[]", "not valid UTF-8"),
        ("news.tsv", 4, b"N1001\ttravel\trail\tAgain\tAbstract\turl\t[]\t[]", "duplicate news id"),
        ("news.tsv", 5, b"N1005\tsports\ttennis\t" + b"T" * 600 + b"\tA\turl\t[]\t[]", "too long"),
    ]],
)
def test_malformed_variants_name_the_file_and_line(tmp_path, name, line, new, message):
    sample, file = name.split("/")
    folder = _corrupt(tmp_path, sample, file, line, new)
    with pytest.raises(DatasetError) as err:
        read_dataset(sample.removesuffix("_sample"), folder)
    assert f"{file}:{line}:" in str(err.value) and message in str(err.value)


def test_missing_files_and_folders_are_named(tmp_path):
    with pytest.raises(DatasetError, match="not a folder"):
        read_dataset("mind", tmp_path / "nope")
    with pytest.raises(DatasetError, match="news.tsv: file not found"):
        read_dataset("mind", tmp_path)
    with pytest.raises(ValueError, match="unknown format"):
        read_dataset("csv", tmp_path)


@pytest.mark.skipif(not MOVIELENS_SMALL.is_dir(), reason="shared MovieLens data not present")
def test_movielens_latest_small_counts():
    d = read_dataset("movielens", MOVIELENS_SMALL)
    assert (len(d.items), len(d.readers), len(d.clicks)) == (9742, 610, 100836)
