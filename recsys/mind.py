"""The MIND reader: news.tsv (items) and behaviors.tsv (impression logs with each reader's
history), checked line by line as recsys.datasets checks every format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from recsys.datasets import (
    MAX_CATEGORY,
    MAX_FIELD,
    MAX_ID,
    MAX_IMPRESSION_ID,
    MAX_SUBCATEGORY,
    MAX_TEXT,
    MAX_TITLE,
    MAX_URL,
    ClickRow,
    Dataset,
    DatasetError,
    ImpressionRow,
    ItemRow,
    _read_text,
)

MIND_TIME = "%m/%d/%Y %I:%M:%S %p"


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


def read_mind_folder(folder: Path | str) -> Dataset:
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


