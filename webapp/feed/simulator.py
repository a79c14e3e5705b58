"""Simulated readers using the running system: they request feeds through the web's code
path (over HTTP, or in-process through the same services), click by the hidden click model
(recsys.simulation), and held-back stories are published as time passes."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np
from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from fixtures.corpus import DemoReader
from recsys.arms import Arm
from recsys.arms import arms as arms_named
from recsys.simulation import ClickModel, ItemTruth, item_truth
from webapp.feed import services
from webapp.feed.clients import HEADER
from webapp.news.models import Reader, Source
from webapp.news.services import item_publish_next


@dataclass(frozen=True)
class Shown:
    impression: int
    position: int
    external_id: str
    category: str
    subcategory: str
    published_at: datetime


class Transport(Protocol):
    def feed(self, reader_id: int, limit: int, now: datetime | None, arm: str | None = None) -> list[Shown]: ...
    def click(self, impression: int, reader_id: int, now: datetime | None) -> bool: ...


class TransportError(RuntimeError):
    pass


class HttpTransport:
    """Talks to GET /api/feed and POST /api/clicks of a running server."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url, self.timeout = base_url.rstrip("/"), timeout
        self.headers = {"Content-Type": "application/json"}
        if settings.SIMULATOR_TOKEN:  # the server then takes it for the simulator, outside the per-client limits
            self.headers[HEADER] = settings.SIMULATOR_TOKEN

    def _call(self, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method="POST" if body else "GET",
                                     headers=self.headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise TransportError(f"{path} answered {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise TransportError(f"{self.base_url}{path}: {getattr(exc, 'reason', exc)}") from None

    def feed(self, reader_id: int, limit: int, now: datetime | None, arm: str | None = None) -> list[Shown]:
        _, page = self._call(f"/api/feed?reader={reader_id}&limit={limit}" + (f"&arm={arm}" if arm else ""))
        return [Shown(e["impression"], e["position"], e["item"]["external_id"], e["item"]["category"],
                      e["item"]["subcategory"], parse_datetime(e["item"]["published_at"]))
                for e in page["items"]]

    def click(self, impression: int, reader_id: int, now: datetime | None) -> bool:
        status, _ = self._call("/api/clicks", {"impression": impression, "reader": reader_id})
        return status == 201

    def wait_ready(self) -> None:
        self._call("/healthz")


class LocalTransport:
    """Calls the services the API views call, in this process (and can backdate)."""

    def feed(self, reader_id: int, limit: int, now: datetime | None, arm: str | None = None) -> list[Shown]:
        page = services.feed_build(reader=Reader.objects.get(pk=reader_id), limit=limit, now=now, arm=arm)
        return [Shown(e.impression_id, e.position, e.item.external_id, e.item.category,
                      e.item.subcategory, e.item.published_at) for e in page.entries]

    def click(self, impression: int, reader_id: int, now: datetime | None) -> bool:
        return services.click_record(impression_id=impression, reader_id=reader_id, now=now).created


@dataclass
class Stats:
    sessions: int = 0
    impressions: int = 0
    clicks: int = 0
    published: int = 0
    errors: int = 0

    @property
    def ctr(self) -> float:
        return self.clicks / self.impressions if self.impressions else 0.0


class Simulator:
    def __init__(self, *, readers: list[DemoReader], click_model: ClickModel, transport: Transport,
                 feed_size: int = 10, seed: int = 0, arms: str | list[str] = "") -> None:
        by_ext = dict(Reader.objects.filter(source=Source.DEMO).values_list("external_id", "pk"))
        self.readers = [r for r in readers if r.id in by_ext]
        if not self.readers:
            raise ValueError("no demo readers in the database: run load_demo first")
        self.db_ids = [by_ext[r.id] for r in self.readers]
        weights = np.array([r.truth.activity for r in self.readers])
        self.p = weights / weights.sum()
        self.model, self.transport, self.feed_size = click_model, transport, feed_size
        self.rng = np.random.default_rng(seed)
        # Ranker arms to split sessions between (an A/B test); none: the configured one (FEED_ARM).
        self.arms: list[Arm] = arms_named(arms)  # UnknownArm for a name not in the registry
        self.stats = Stats()
        self._truths: dict[str, ItemTruth] = {}
        self._turns: dict[int, int] = {}  # reader index -> sessions so far (+ a random start)

    def _truth(self, shown: Shown) -> ItemTruth:
        if shown.external_id not in self._truths:
            self._truths[shown.external_id] = item_truth(
                external_id=shown.external_id, category=shown.category,
                subcategory=shown.subcategory, config=self.model.config)
        return self._truths[shown.external_id]

    def arm_for(self, k: int) -> str | None:
        """The arm of reader k's next session: each reader's sessions rotate through the arms
        from a random start, so every arm sees the same mix of readers (a within-reader
        design: the reader-to-reader spread drops out of the comparison). None: FEED_ARM."""
        if not self.arms:
            return None
        if k not in self._turns:
            self._turns[k] = int(self.rng.integers(len(self.arms)))
        turn = self._turns[k]
        self._turns[k] = turn + 1
        return self.arms[turn % len(self.arms)].name

    def draw_reader(self) -> int:
        """The index of the next visiting reader, drawn by activity."""
        return int(self.rng.choice(len(self.readers), p=self.p))

    def expected_clicks(self, k: int, page: list[Shown], now: datetime) -> float:
        """The hidden click model's expected clicks of reader k on a page."""
        return sum(self.model.click_probability(self.readers[k].truth, self._truth(s), position=s.position,
                                                age_hours=(now - s.published_at).total_seconds() / 3600.0)
                   for s in page)

    def session(self, now: datetime | None = None, reader: int | None = None) -> None:
        """One visit: a reader (drawn by activity unless given) reads one feed page and clicks."""
        k = self.draw_reader() if reader is None else reader
        reader, reader_id = self.readers[k], self.db_ids[k]
        page = self.transport.feed(reader_id, self.feed_size, now, self.arm_for(k))
        self.stats.sessions += 1
        self.stats.impressions += len(page)
        at = now or timezone.now()
        for shown in page:
            age = (at - shown.published_at).total_seconds() / 3600.0
            p = self.model.click_probability(reader.truth, self._truth(shown),
                                             position=shown.position, age_hours=age)
            if self.rng.random() < p:
                when = now + timedelta(seconds=5 + 10 * shown.position) if now else None
                stored = self.transport.click(shown.impression, reader_id, when)
                self.stats.clicks += stored

    def publish_next(self, now: datetime | None = None) -> str | None:
        item = item_publish_next(source=Source.DEMO, now=now)
        if item is not None:
            self.stats.published += 1
            return item.title
        return None


def backfill_times(*, hours: float, sessions: int, now: datetime, rng: np.random.Generator) -> list[datetime]:
    """Session times over the last `hours`, busier in the day than at night, sorted."""
    offsets = []
    while len(offsets) < sessions:
        t = rng.uniform(0, hours)
        hour_of_day = ((now - timedelta(hours=hours - t)).hour + 0.5) % 24
        if rng.random() < 0.35 + 0.65 * math.sin(math.pi * hour_of_day / 24) ** 2:
            offsets.append(t)
    return [now - timedelta(hours=hours - t) for t in sorted(offsets)]
