"""The closed loop: one ranker arm serving its own copy of the demo world for simulated hours.

Readers arrive, read a page the arm ranks (through the feed service, as the API does) and
click by the hidden click model; their clicks make the stories' seeds, and every simulated
minute the project's own refresh (counts, seeds, centroids and E_global, promotion) turns
those seeds into the next minute's exposure. Held-back stories are published at the demo's
rate. Nothing is re-implemented: this module only drives the clock.

Every arm's copy runs the same `Plan`: the same arrivals and publications, and common
random numbers for the clicks (a reader's draw for a story in a session does not depend on
the arm, so where two arms show the same story at the same moment to the same reader, they
get the same click). What differs between the copies is the arm, and what its exposure did
to the stories' seeds. `recsys.abtest.loop_compare` turns the copies' results into each
arm's figures against `ctr`.

Each copy runs in a database, a Redis database and a process of its own
(webapp.feed.loopcopies).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import connection
from tqdm import tqdm

from fixtures.corpus import click_model, load_readers
from recsys.abtest import head_items
from recsys.arms import arm as arm_named
from recsys.simulation import item_truth
from webapp.common.connections import redis_client
from webapp.feed import services
from webapp.feed.selectors import TAIL_WINDOW
from webapp.lookalike import refresh, seeds
from webapp.lookalike.services import item_status_refresh
from webapp.news.models import Item, ItemStatus, Reader, Source
from webapp.news.services import item_popularity_refresh, item_publish_next

TAIL_WINDOW_HOURS = TAIL_WINDOW.total_seconds() / 3600.0  # the long tail, as ab_report and the dashboard fix it
HEAD_SHARE = 0.2  # outside the 20% most shown over the window
SESSIONS_PER_HOUR = 100_000 / 36  # the rate of `make demo`'s history (Makefile: 100,000 sessions over 36 h)


@dataclass(frozen=True)
class Plan:
    """What every arm's copy shares: the start of the simulated clock, the arrivals (seconds
    after the start, and the simulated reader's index in fixtures/readers.jsonl order), the
    publication rate and the seed of the click draws."""

    start: float  # POSIX seconds
    hours: float
    seed: int
    arrivals: list[tuple[float, int]]
    publish_every: float = 45.0  # seconds between held-back stories, as `manage.py simulate` publishes them
    refresh_every: float = 60.0  # the beat schedule's LOOKALIKE_REFRESH_SECONDS
    feed_size: int = 10

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Plan:
        return cls(**{**d, "arrivals": [tuple(a) for a in d["arrivals"]]})


def plan_make(*, start: datetime, hours: float, sessions_per_hour: float, seed: int) -> Plan:
    """Arrivals over `hours` after `start`: a Poisson process of the given rate, each reader
    drawn by activity (as the simulator draws them)."""
    readers = load_readers()
    weights = np.array([r.truth.activity for r in readers], np.float64)
    rng = np.random.default_rng([seed, 0x100B])
    n = int(rng.poisson(sessions_per_hour * hours))
    times = np.sort(rng.uniform(0.0, hours * 3600.0, n))
    who = rng.choice(len(readers), size=n, p=weights / weights.sum())
    return Plan(start=start.timestamp(), hours=hours, seed=seed,
                arrivals=[(round(float(t), 3), int(k)) for t, k in zip(times, who, strict=True)])


def click_draw(seed: int, session: int, item: int) -> float:
    """The uniform draw deciding whether the reader of `session` clicks `item` (a click when
    it falls below the click probability): the same in every arm's copy."""
    h = hashlib.blake2b(f"{seed}:{session}:{item}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2.0 ** 64


@dataclass
class LoopResult:
    """One copy's run: per page, what the hidden click model expects and what the page held;
    per story published during the run, the minutes until it turned warm (None: never)."""

    arm: str
    served_by: dict[str, int] = field(default_factory=dict)  # pages per arm that ranked them (fallbacks)
    expected: list[float] = field(default_factory=list)  # expected clicks per impression
    size: list[int] = field(default_factory=list)
    cold: list[int] = field(default_factory=list)  # impressions of stories cold when shown
    tail: list[int] = field(default_factory=list)  # impressions outside the trailing day's head
    categories: list[int] = field(default_factory=list)
    shown: dict[int, int] = field(default_factory=dict)  # item id -> impressions during the run
    live: list[int] = field(default_factory=list)  # every story live at some point of the run
    minutes_to_warm: dict[int, float | None] = field(default_factory=dict)
    clicks: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict:
        d = asdict(self)
        d["shown"] = {str(k): v for k, v in self.shown.items()}
        d["minutes_to_warm"] = {str(k): v for k, v in self.minutes_to_warm.items()}
        return d


class _Exposure:
    """Impressions per story over the trailing TAIL_WINDOW_HOURS, the world's history
    included, kept as the clock moves; `head` is the most shown HEAD_SHARE of the live stories."""

    def __init__(self, start: float, size: int) -> None:
        since = datetime.fromtimestamp(start - TAIL_WINDOW_HOURS * 3600.0, UTC)
        self.times, self.items = self._history(since, start)
        self.counts = np.bincount(self.items, minlength=size).astype(np.int64)
        self.expired = 0
        self.new_t: list[float] = []
        self.new_i: list[int] = []
        self.new_expired = 0

    @staticmethod
    def _history(since: datetime, start: float) -> tuple[np.ndarray, np.ndarray]:
        with connection.cursor() as cur:
            cur.execute("SELECT EXTRACT(EPOCH FROM i.shown_at), i.item_id FROM news_impression i "
                        "JOIN news_item it ON it.id = i.item_id WHERE i.shown_at >= %s AND i.shown_at <= %s "
                        "AND it.source = %s ORDER BY i.shown_at",
                        [since, datetime.fromtimestamp(start, UTC), Source.DEMO])
            rows = cur.fetchall()
        a = np.array(rows, np.float64).reshape(-1, 2)
        return a[:, 0], a[:, 1].astype(np.int64)

    def add(self, t: float, items: list[int]) -> None:
        for i in items:
            self.counts[i] += 1
            self.new_t.append(t)
            self.new_i.append(i)

    def head(self, now: float, live: np.ndarray) -> set[int]:
        """The head as of `now`: impressions older than the window leave the counts first."""
        cutoff = now - TAIL_WINDOW_HOURS * 3600.0
        while self.expired < len(self.times) and self.times[self.expired] < cutoff:
            self.counts[self.items[self.expired]] -= 1
            self.expired += 1
        while self.new_expired < len(self.new_t) and self.new_t[self.new_expired] < cutoff:
            self.counts[self.new_i[self.new_expired]] -= 1
            self.new_expired += 1
        return head_items(live, self.counts[live], 1.0 - HEAD_SHARE)


def _tick(now: datetime) -> None:
    """One simulated minute of the workers, in the order their chain runs: the counts, the
    seeds of clicked stories, their centroids and E_global, then promotion."""
    item_popularity_refresh(now=now)
    while seeds.seeds_refresh().get("remaining"):
        pass
    while refresh.states_refresh().get("remaining"):
        pass
    item_status_refresh()


class _Run:
    """One copy's run under way: the clock's three kinds of events and what they leave in the
    result."""

    def __init__(self, *, arm: str, plan: Plan, world: str | None) -> None:
        self.arm, self.plan = arm_named(arm), plan
        self.model = click_model(world or settings.DEMO_WORLD)
        self.people = load_readers()
        by_ext = dict(Reader.objects.filter(source=Source.DEMO).values_list("external_id", "pk"))
        self.readers = {k: Reader.objects.get(pk=by_ext[p.id]) for k, p in enumerate(self.people) if p.id in by_ext}
        self.out = LoopResult(arm=self.arm.name)
        self.truths: dict[int, object] = {}
        size = int(Item.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
        self.exposure = _Exposure(plan.start, size)
        self.published: dict[int, float] = {}  # item -> POSIX seconds
        self.live_ids: set[int] = set()
        self.head = self.exposure.head(plan.start, self._live(plan.start))

    def events(self) -> list[tuple[float, int, int]]:
        """(seconds after the start, kind, index): refresh ticks (0), publications (1) and
        sessions (2), in the order they happen."""
        p = self.plan
        ticks = int(math.floor(p.hours * 3600.0 / p.refresh_every))
        publishes = int(math.floor(p.hours * 3600.0 / p.publish_every)) if p.publish_every > 0 else 0
        return sorted([(n * p.refresh_every, 0, n) for n in range(1, ticks + 1)]
                      + [(n * p.publish_every, 1, n) for n in range(1, publishes + 1)]
                      + [(t, 2, s) for s, (t, _) in enumerate(p.arrivals)])

    def _live(self, t: float) -> np.ndarray:
        ids = np.array(Item.objects.filter(source=Source.DEMO, published_at__lte=datetime.fromtimestamp(t, UTC))
                       .values_list("pk", flat=True), np.int64)
        self.live_ids.update(ids.tolist())
        return np.sort(ids)

    def tick(self, t: float) -> None:
        """A minute of the workers, then the stories it turned warm, and the head as of the new minute."""
        _tick(datetime.fromtimestamp(t, UTC))
        waiting = [i for i in self.published if i not in self.out.minutes_to_warm]
        for pk in Item.objects.filter(pk__in=waiting, status=ItemStatus.WARM).values_list("pk", flat=True):
            self.out.minutes_to_warm[pk] = round((t - self.published[pk]) / 60.0, 2)
        self.head = self.exposure.head(t, self._live(t))

    def publish(self, t: float) -> None:
        item = item_publish_next(source=Source.DEMO, now=datetime.fromtimestamp(t, UTC))
        if item is not None:
            self.published[item.pk] = t

    def session(self, t: float, n: int) -> None:
        """Session `n`: the arm's page for its reader, the clicks the hidden model draws, and
        what the page held."""
        k = self.plan.arrivals[n][1]
        reader = self.readers.get(k)
        if reader is None:
            return
        now = datetime.fromtimestamp(t, UTC)
        page = services.feed_build(reader=reader, limit=self.plan.feed_size, now=now, arm=self.arm.name)
        if not page.entries:
            return
        out = self.out
        served = next((e.score_parts.get("served_by") for e in page.entries
                       if isinstance(e.score_parts, dict) and e.score_parts.get("served_by")), self.arm.name)
        out.served_by[served] = out.served_by.get(served, 0) + 1
        expected = 0.0
        items = [e.item.pk for e in page.entries]
        for e in page.entries:
            p = self._probability(k, e, now)
            expected += p
            if click_draw(self.plan.seed, n, e.item.pk) < p:
                when = now + timedelta(seconds=5 + 10 * e.position)  # as the simulator clicks
                out.clicks += services.click_record(impression_id=e.impression_id, reader_id=reader.pk,
                                                    now=when).created
        out.expected.append(expected / len(items))
        out.size.append(len(items))
        out.cold.append(sum(not e.warm for e in page.entries))
        out.tail.append(sum(i not in self.head for i in items))
        out.categories.append(len({e.item.category for e in page.entries}))
        for i in items:
            out.shown[i] = out.shown.get(i, 0) + 1
        self.exposure.add(t, items)

    def _probability(self, k: int, entry, now: datetime) -> float:
        """The hidden click model's probability that reader `k` clicks the page entry."""
        item = entry.item
        if item.pk not in self.truths:
            self.truths[item.pk] = item_truth(external_id=item.external_id, category=item.category,
                                              subcategory=item.subcategory, config=self.model.config)
        age = (now - (item.published_at or now)).total_seconds() / 3600.0
        return self.model.click_probability(self.people[k].truth, self.truths[item.pk], position=entry.position,
                                            age_hours=age)

    def result(self, started: float) -> LoopResult:
        for pk in self.published:
            self.out.minutes_to_warm.setdefault(pk, None)
        self.out.live = sorted(self.live_ids)
        self.out.seconds = round(time.perf_counter() - started, 1)
        return self.out


def loop_run(*, arm: str, plan: Plan, world: str | None = None, progress: bool = True) -> LoopResult:
    """Run the plan with `arm` serving every page, in the database and Redis this process
    points at (a copy of the world: it is written to)."""
    started = time.perf_counter()
    redis_client().flushdb()
    refresh.serving_store_rebuild()
    run = _Run(arm=arm, plan=plan, world=world)
    for offset, kind, n in tqdm(run.events(), desc=f"closed loop {run.arm.name}", unit="event",
                                disable=not progress, mininterval=2.0):
        t = plan.start + offset
        if kind == 0:
            run.tick(t)
        elif kind == 1:
            run.publish(t)
        else:
            run.session(t, n)
    return run.result(started)


def plus_minus(vs: dict, key: str, scale: float = 1.0, unit: str = "") -> str:
    """A compared figure `vs[key]` with its standard error (`key_se`), e.g. "+5.65% ± 0.13"."""
    v, se = vs.get(key), vs.get(f"{key}_se")
    if v is None:
        return "-"
    return f"{scale * v:+.2f}{unit}" + (f" ± {scale * se:.2f}" if se is not None else "")


def loop_table(arms: dict[str, dict], reference: str = "ctr") -> str:
    """recsys.abtest.loop_compare's figures as a text table, each arm against `reference`."""
    pm = plus_minus
    header = ("arm", "expected CTR", "vs ref", "tail exposure", "vs ref", "minutes to warm", "vs ref", "never warm",
              "to cold", "categories/page", "vs ref", "Gini", "stories/1k impr.")
    rows = [header]
    for a, v in arms.items():
        vs = v.get(f"vs_{reference}", {})
        rows.append((a, f"{v['expected_ctr']:.4f}", pm(vs, "expected_ctr_rel", 100, "%") if vs else "ref",
                     f"{v['tail_exposure']:.3f}", pm(vs, "tail_exposure_rel", 100, "%") if vs else "ref",
                     "never" if v["minutes_to_warm"] is None else f"{v['minutes_to_warm']:.1f}",
                     pm(vs, "minutes_to_warm_diff") if vs else "ref", f"{v['never_warm_share']:.2f}",
                     f"{v['cold_share']:.3f}", f"{v['categories_per_page']:.2f}",
                     pm(vs, "categories_per_page_diff") if vs else "ref", f"{v['exposure_gini']:.3f}",
                     f"{v['coverage']:.2f}"))
    widths = [max(len(str(r[c])) for r in rows) for c in range(len(header))]
    return "\n".join("  ".join(str(x).rjust(w) if c else str(x).ljust(w) for c, (x, w) in enumerate(zip(r, widths,
                      strict=True))) for r in rows)
