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
from datetime import UTC, datetime, timedelta
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
    movies: dict[str, tuple[str, list[str], datetime | None]] = {}
    movies_path = folder / "movies.csv"
    for line, (movie_id, title, genres) in _csv_rows(movies_path, ["movieId", "title", "genres"]):
        _id(movies_path, line, movie_id, "movieId")
        if not title.strip() or len(title) > MAX_TITLE:
            raise DatasetError(movies_path, line, "title empty or longer than 500 characters")
        if movie_id in movies:
            raise DatasetError(movies_path, line, f"duplicate movieId {movie_id}")
        genre_list = [g for g in genres.split("|") if g and g != "(no genres listed)"]
        if any(len(g) > MAX_CATEGORY for g in genre_list):
            raise DatasetError(movies_path, line, f"a genre longer than {MAX_CATEGORY} characters")
        movies[movie_id] = (title.strip(), genre_list, _year(movies_path, line, title.strip()))

    def check_movie(path: Path, line: int, movie_id: str) -> None:
        _id(path, line, movie_id, "movieId")
        if movie_id not in movies:
            raise DatasetError(path, line, f"unknown movieId {movie_id}")

    clicks: list[ClickRow] = []
    first_seen: dict[str, datetime] = {}
    ratings = folder / "ratings.csv"
    for line, (user, movie_id, rating, ts) in _csv_rows(ratings, ["userId", "movieId", "rating", "timestamp"]):
        _id(ratings, line, user, "userId")
        check_movie(ratings, line, movie_id)
        try:
            value = float(rating)
        except ValueError:
            raise DatasetError(ratings, line, f"rating is not a number: {rating[:40]!r}") from None
        if not 0.0 <= value <= 5.0:
            raise DatasetError(ratings, line, f"rating out of range: {value}")
        at = _epoch(ratings, line, ts)
        clicks.append(ClickRow(user, movie_id, at))
        if movie_id not in first_seen or at < first_seen[movie_id]:
            first_seen[movie_id] = at

    tags: dict[str, Counter] = defaultdict(Counter)
    readers = {c.reader for c in clicks}
    tags_path = folder / "tags.csv"
    if tags_path.exists():
        for line, (user, movie_id, tag, ts) in _csv_rows(tags_path, ["userId", "movieId", "tag", "timestamp"]):
            _id(tags_path, line, user, "userId")
            check_movie(tags_path, line, movie_id)
            _epoch(tags_path, line, ts)
            if len(tag) > 250:
                raise DatasetError(tags_path, line, "tag longer than 250 characters")
            if tag.strip():
                tags[movie_id][tag.strip().lower()] += 1
            readers.add(user)

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


MIND_TIME = "%m/%d/%Y %I:%M:%S %p"
_YEAR = re.compile(r"\((\d{4})\)\s*$")


def _mind_news_row(path: Path, line: int, raw: str) -> tuple[str, list[str]]:
    """One news.tsv line, checked: its news id and [category, subcategory, title, abstract, url]."""
    cols = raw.split("\t")
    if len(cols) < 6 or len(cols) > 8:
        raise DatasetError(path, line, f"expected 6 to 8 tab-separated fields, got {len(cols)}")
    if any(len(c) > MAX_FIELD for c in cols):
        raise DatasetError(path, line, "field too long")
    if "\x00" in raw:
        raise DatasetError(path, line, "NUL byte in a field")
    news_id, category, subcategory, title, abstract, url = cols[:6]
    if not news_id or not category or not title.strip():
        raise DatasetError(path, line, "news id, category and title are required")
    if len(title.strip()) > MAX_TITLE or len(abstract) > MAX_TEXT:
        raise DatasetError(path, line, "title or abstract too long")
    for value, width, what in ((news_id, MAX_ID, "news id"), (category, MAX_CATEGORY, "category"),
                               (subcategory, MAX_SUBCATEGORY, "subcategory"), (url.strip(), MAX_URL, "url")):
        if len(value) > width:
            raise DatasetError(path, line, f"{what} longer than {width} characters")
    return news_id, [category, subcategory, title.strip(), abstract.strip(), url.strip()]


def _mind_news(path: Path) -> dict[str, list[str]]:
    news: dict[str, list[str]] = {}
    for line, raw in enumerate(_read_text(path).splitlines(), start=1):
        if not raw.strip():
            continue
        news_id, values = _mind_news_row(path, line, raw)
        if news_id in news:
            raise DatasetError(path, line, f"duplicate news id {news_id}")
        news[news_id] = values
    return news


class _MindLog:
    """behaviors.tsv read line by line: the impressions, each reader's first history and the
    time of their first logged impression."""

    def __init__(self, path: Path, news: dict[str, list[str]]) -> None:
        self.path, self.news = path, news
        self.impressions: list[ImpressionRow] = []
        self.histories: dict[str, list[str]] = {}
        self.first_time: dict[str, datetime] = {}
        self.seen_requests: set[str] = set()

    def known(self, line: int, news_id: str) -> str:
        if news_id not in self.news:
            raise DatasetError(self.path, line, f"unknown news id {news_id[:40]}")
        return news_id

    def add(self, line: int, raw: str) -> None:
        path = self.path
        cols = raw.split("\t")
        if len(cols) != 5:
            raise DatasetError(path, line, f"expected 5 tab-separated fields, got {len(cols)}")
        if "\x00" in raw:
            raise DatasetError(path, line, "NUL byte in a field")
        imp_id, user, when, history, shown = cols
        if not imp_id or not user:
            raise DatasetError(path, line, "impression id and user id are required")
        if len(user) > MAX_ID or len(imp_id) > MAX_IMPRESSION_ID:
            raise DatasetError(path, line, "impression id or user id too long")
        request_id = f"mind-{imp_id}"
        if request_id in self.seen_requests:
            raise DatasetError(path, line, f"duplicate impression id {imp_id}")
        self.seen_requests.add(request_id)
        try:
            at = datetime.strptime(when, MIND_TIME).replace(tzinfo=UTC)
        except ValueError:
            raise DatasetError(path, line, f"bad time {when[:40]!r} (expected {MIND_TIME})") from None
        self.first_time[user] = min(self.first_time.get(user, at), at)
        hist = [self.known(line, n) for n in history.split()]
        if hist and user not in self.histories:
            self.histories[user] = hist
        tokens = shown.split()
        if not tokens:
            raise DatasetError(path, line, "no impressions")
        for pos, token in enumerate(tokens):
            news_id, sep, label = token.rpartition("-")
            if not sep:
                news_id, label = token, ""
            if label not in ("0", "1", ""):
                raise DatasetError(path, line, f"bad impression {token[:40]!r} (expected ID-0 or ID-1)")
            self.impressions.append(ImpressionRow(user, self.known(line, news_id), request_id, pos, at, label == "1"))

    def clicks(self) -> list[ClickRow]:
        """History clicks one second apart before the reader's first impression, then the
        logged clicks."""
        clicks: list[ClickRow] = []
        for user, hist in self.histories.items():
            start = self.first_time[user] - timedelta(seconds=len(hist) + 1)
            done: set[str] = set()
            for n, news_id in enumerate(hist):
                if news_id not in done:
                    done.add(news_id)
                    clicks.append(ClickRow(user, news_id, start + timedelta(seconds=n)))
        return clicks + [ClickRow(i.reader, i.item, i.shown_at, i.request_id) for i in self.impressions if i.clicked]


def read_mind(folder: Path | str) -> Dataset:
    """MIND: news.tsv (items) and behaviors.tsv (impression logs with history). History
    clicks carry no time in MIND; they are placed one second apart just before the reader's
    first logged impression, in history order."""
    folder = Path(folder)
    news = _mind_news(folder / "news.tsv")
    log = _MindLog(folder / "behaviors.tsv", news)
    for line, raw in enumerate(_read_text(log.path).splitlines(), start=1):
        if raw.strip():
            log.add(line, raw)
    clicks = log.clicks()
    first_seen: dict[str, datetime] = {}
    for c in clicks:
        first_seen[c.item] = min(first_seen.get(c.item, c.clicked_at), c.clicked_at)
    for i in log.impressions:
        first_seen[i.item] = min(first_seen.get(i.item, i.shown_at), i.shown_at)
    items = [
        ItemRow(external_id=n, title=v[2], abstract=v[3], category=v[0], subcategory=v[1], url=v[4],
                published_at=first_seen.get(n))
        for n, v in news.items()
    ]
    return Dataset(name="mind", items=items, readers=sorted(log.first_time), clicks=clicks,
                   impressions=log.impressions)


READERS = {"movielens": read_movielens, "mind": read_mind}


def read_dataset(fmt: str, folder: Path | str) -> Dataset:
    if fmt not in READERS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(READERS)}")
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(folder, None, "not a folder")
    return READERS[fmt](folder)
