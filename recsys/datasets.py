"""Readers for public interaction logs: MovieLens (movies/ratings/tags CSV) and MIND
(news.tsv + behaviors.tsv). Pure Python; the importer and the replay evaluation share them.

Every file is decoded as strict UTF-8 and checked line by line before anything is returned;
the first problem raises DatasetError naming the file and line.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

MAX_TITLE = 500
MAX_TEXT = 20_000
MAX_FIELD = 100_000  # anything longer is a broken file, not a long abstract
# The widths of the columns these land in (webapp.news.models), checked here so that a
# malformed file is reported by line rather than refused by the database.
MAX_ID = 64
MAX_CATEGORY = 64
MAX_SUBCATEGORY = 128
MAX_URL = 500
MAX_IMPRESSION_ID = 58  # the request id is "mind-" + it, in 64 characters
_DIGITS = re.compile(r"[0-9]{1,20}")
_YEAR = re.compile(r"\((\d{4})\)\s*$")


class DatasetError(ValueError):
    def __init__(self, path: Path | str, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path, self.line = str(path), line


class ItemRow(NamedTuple):
    external_id: str
    title: str
    abstract: str
    category: str
    subcategory: str
    url: str
    published_at: datetime | None  # first time the item was seen in the log
    released_at: datetime | None = None  # when the item itself came out, if the data says


class ClickRow(NamedTuple):
    reader: str
    item: str
    clicked_at: datetime
    request_id: str | None = None  # set when the click belongs to a logged impression


class ImpressionRow(NamedTuple):
    reader: str
    item: str
    request_id: str
    position: int
    shown_at: datetime
    clicked: bool


@dataclass
class Dataset:
    name: str
    items: list[ItemRow] = field(default_factory=list)
    readers: list[str] = field(default_factory=list)
    clicks: list[ClickRow] = field(default_factory=list)
    impressions: list[ImpressionRow] = field(default_factory=list)


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise DatasetError(path, None, "file not found")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DatasetError(path, line, f"not valid UTF-8 (byte {raw[exc.start]:#04x})") from None


def _csv_rows(path: Path, header: list[str]):
    """Yield (line number, row) for a CSV file with exactly this header. A record's line is
    where it starts (a quoted field may span lines)."""
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    try:
        first = next(reader, None)
        if first != header:
            raise DatasetError(path, 1, f"expected header {','.join(header)}")
        while True:
            start = reader.line_num + 1
            row = next(reader, None)
            if row is None:
                return
            if len(row) != len(header):
                raise DatasetError(path, start, f"expected {len(header)} fields, got {len(row)}")
            if any(len(v) > MAX_FIELD for v in row):
                raise DatasetError(path, start, "field too long")
            if any("\x00" in v for v in row):
                raise DatasetError(path, start, "NUL byte in a field")
            yield start, row
    except csv.Error as exc:
        raise DatasetError(path, start, f"bad CSV ({exc})") from None


def _int(path: Path, line: int, value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DatasetError(path, line, f"{what} is not an integer: {value[:40]!r}") from None


def _id(path: Path, line: int, value: str, what: str) -> str:
    """A MovieLens id: 1 to 20 ASCII digits, kept as written."""
    if not _DIGITS.fullmatch(value):
        raise DatasetError(path, line, f"{what} is not a non-negative integer of at most 20 digits: {value[:40]!r}")
    return value


def _year(path: Path, line: int, title: str) -> datetime | None:
    """The release year a MovieLens title ends with, "(1995)"; None if it has none."""
    year = _YEAR.search(title)
    if not year:
        return None
    if not 1800 <= int(year.group(1)) <= 2100:
        raise DatasetError(path, line, f"release year {year.group(1)} out of range (1800-2100)")
    return datetime(int(year.group(1)), 1, 1, tzinfo=UTC)


def _epoch(path: Path, line: int, value: str) -> datetime:
    seconds = _int(path, line, value, "timestamp")
    if not 0 <= seconds < 4_102_444_800:  # before 2100
        raise DatasetError(path, line, f"timestamp out of range: {seconds}")
    return datetime.fromtimestamp(seconds, tz=UTC)


def read_movielens(folder: Path | str) -> Dataset:
    """MovieLens latest(-small): movies are items (first genre = category, all genres =
    subcategory), every rating is a click, genres and tags are the item text."""
    folder = Path(folder)
    movies = _movielens_movies(folder / "movies.csv")
    clicks, first_seen = _movielens_ratings(folder / "ratings.csv", movies)
    readers = {c.reader for c in clicks}
    tags = _movielens_tags(folder / "tags.csv", movies, readers)
    items = []
    for movie_id, (title, genres, released) in movies.items():
        top_tags = [t for t, _ in tags[movie_id].most_common(20)]
        text = f"Genres: {', '.join(genres) or 'none'}."
        if top_tags:
            text += f" Tags: {', '.join(top_tags)}."
        items.append(ItemRow(
            external_id=movie_id, title=title, abstract=text,
            category=genres[0] if genres else "unknown", subcategory="|".join(genres)[:128],
            url=f"https://movielens.org/movies/{movie_id}", published_at=first_seen.get(movie_id),
            released_at=released,
        ))
    return Dataset(name="movielens", items=items, readers=sorted(readers, key=int), clicks=clicks)


def _movielens_movies(path: Path) -> dict[str, tuple[str, list[str], datetime | None]]:
    movies: dict[str, tuple[str, list[str], datetime | None]] = {}
    for line, (movie_id, title, genres) in _csv_rows(path, ["movieId", "title", "genres"]):
        _id(path, line, movie_id, "movieId")
        if not title.strip() or len(title) > MAX_TITLE:
            raise DatasetError(path, line, "title empty or longer than 500 characters")
        if movie_id in movies:
            raise DatasetError(path, line, f"duplicate movieId {movie_id}")
        genre_list = [g for g in genres.split("|") if g and g != "(no genres listed)"]
        if any(len(g) > MAX_CATEGORY for g in genre_list):
            raise DatasetError(path, line, f"a genre longer than {MAX_CATEGORY} characters")
        movies[movie_id] = (title.strip(), genre_list, _year(path, line, title.strip()))
    return movies


def _movielens_movie(path: Path, line: int, movie_id: str, movies: dict) -> None:
    _id(path, line, movie_id, "movieId")
    if movie_id not in movies:
        raise DatasetError(path, line, f"unknown movieId {movie_id}")


def _movielens_ratings(path: Path, movies: dict) -> tuple[list[ClickRow], dict[str, datetime]]:
    clicks: list[ClickRow] = []
    first_seen: dict[str, datetime] = {}
    for line, (user, movie_id, rating, ts) in _csv_rows(path, ["userId", "movieId", "rating", "timestamp"]):
        _id(path, line, user, "userId")
        _movielens_movie(path, line, movie_id, movies)
        try:
            value = float(rating)
        except ValueError:
            raise DatasetError(path, line, f"rating is not a number: {rating[:40]!r}") from None
        if not 0.0 <= value <= 5.0:
            raise DatasetError(path, line, f"rating out of range: {value}")
        at = _epoch(path, line, ts)
        clicks.append(ClickRow(user, movie_id, at))
        if movie_id not in first_seen or at < first_seen[movie_id]:
            first_seen[movie_id] = at
    return clicks, first_seen


def _movielens_tags(path: Path, movies: dict, readers: set[str]) -> dict[str, Counter]:
    """Each movie's tag counts (a missing tags.csv is none); taggers join `readers`."""
    tags: dict[str, Counter] = defaultdict(Counter)
    if not path.exists():
        return tags
    for line, (user, movie_id, tag, ts) in _csv_rows(path, ["userId", "movieId", "tag", "timestamp"]):
        _id(path, line, user, "userId")
        _movielens_movie(path, line, movie_id, movies)
        _epoch(path, line, ts)
        if len(tag) > 250:
            raise DatasetError(path, line, "tag longer than 250 characters")
        if tag.strip():
            tags[movie_id][tag.strip().lower()] += 1
        readers.add(user)
    return tags


def read_mind(folder: Path | str) -> Dataset:
    """MIND (recsys.mind): news are items, a click in an impression or a history is a click."""
    from recsys.mind import read_mind_folder  # it builds on this module's rows and checks

    return read_mind_folder(folder)


READERS = {"movielens": read_movielens, "mind": read_mind}


def read_dataset(fmt: str, folder: Path | str) -> Dataset:
    if fmt not in READERS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(READERS)}")
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(folder, None, "not a folder")
    return READERS[fmt](folder)
