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

    def __init__(self, path: Path, news: dict[str, list[str]], prefix: str = "mind-") -> None:
        self.path, self.news, self.prefix = path, news, prefix
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
        request_id = f"{self.prefix}{imp_id}"
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

    def read(self) -> _MindLog:
        for line, raw in enumerate(_read_text(self.path).splitlines(), start=1):
            if raw.strip():
                self.add(line, raw)
        return self

    def join(self, later: _MindLog) -> None:
        """Adds a later folder's log: its impressions, and the stories of its histories that
        a reader's history here lacks and that they did not click here."""
        clicked = {(i.reader, i.item) for i in self.impressions if i.clicked}
        for user, hist in later.histories.items():
            mine = self.histories.setdefault(user, [])
            have = set(mine)
            mine += [n for n in dict.fromkeys(hist) if n not in have and (user, n) not in clicked]
        for user, at in later.first_time.items():
            self.first_time[user] = min(self.first_time.get(user, at), at)
        self.impressions += later.impressions

    def clicks(self, history_before: datetime | None = None) -> list[ClickRow]:
        """History clicks one second apart before the reader's first impression (and before
        `history_before`, the test period's start, where given), then the logged clicks."""
        clicks: list[ClickRow] = []
        for user, hist in self.histories.items():
            end = self.first_time[user] if history_before is None else min(self.first_time[user], history_before)
            start = end - timedelta(seconds=len(hist) + 1)
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
    log = _MindLog(folder / "behaviors.tsv", news).read()
    return _dataset(news, log, log.clicks())


def read_mind_split(train: Path | str, test: Path | str) -> tuple[Dataset, datetime]:
    """Two MIND folders as one log (MINDsmall_train and MINDsmall_dev): one catalog (a news id
    in both is one item, as the train folder writes it), the train impressions and then the
    test ones. The test folder's histories hold clicks made before its impressions: the
    stories a reader's train history lacks join it, and every history click is placed before
    the test period. Returns the dataset and the test period's start (the test folder's first
    impression), which must come after the train folder's last impression."""
    train, test = _folder(train), _folder(test)
    news = _mind_news(train / "news.tsv")
    for news_id, values in _mind_news(test / "news.tsv").items():
        news.setdefault(news_id, values)
    log = _MindLog(train / "behaviors.tsv", news).read()
    later = _MindLog(test / "behaviors.tsv", news, prefix="mind-test-").read()
    if not later.impressions:
        raise DatasetError(later.path, None, "no impressions")
    start = min(i.shown_at for i in later.impressions)
    last = max((i.shown_at for i in log.impressions), default=None)
    if last is not None and start <= last:
        raise DatasetError(later.path, None, f"its first impression ({start:%m/%d/%Y %H:%M:%S}) is not after "
                                             f"the train folder's last ({last:%m/%d/%Y %H:%M:%S})")
    log.join(later)
    return _dataset(news, log, log.clicks(history_before=start)), start


def read_mind_timesplit(folder: Path | str, train_share: float) -> tuple[Dataset, datetime]:
    """One MIND folder cut in time: the impressions from the time before which `train_share`
    of them fall are the test period (impressions sharing that time all fall in it). History
    clicks are placed before the test period. Returns the dataset and the test period's start."""
    folder = _folder(folder)
    news = _mind_news(folder / "news.tsv")
    log = _MindLog(folder / "behaviors.tsv", news).read()
    times = sorted({i.request_id: i.shown_at for i in log.impressions}.values())
    if not times:
        raise DatasetError(log.path, None, "no impressions")
    start = times[min(int(train_share * len(times)), len(times) - 1)]
    return _dataset(news, log, log.clicks(history_before=start)), start


def _folder(folder: Path | str) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(folder, None, "not a folder")
    return folder


def _dataset(news: dict[str, list[str]], log: _MindLog, clicks: list[ClickRow]) -> Dataset:
    """The Dataset of parsed news and a log with its clicks; an item's publication time is
    when the log first shows or clicks it."""
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
