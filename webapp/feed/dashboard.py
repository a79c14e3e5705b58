"""The admin's live dashboard: clicks per minute, the share of impressions going to cold and
to tail stories and the exposure Gini per 5 minutes, CTR by ranker arm, and the stories
published in the last hours with their path from cold to warm. Charts are SVG drawn on the
server (webapp.lookalike.insight)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import redis
from django.core.cache import cache
from django.db.models import Count
from django.utils import timezone

from webapp.feed.abtest import traffic_summary
from webapp.lookalike.insight import figure, svg
from webapp.lookalike.models import SeedSet
from webapp.news.models import Click, Item, ItemStatus


@dataclass
class Dashboard:
    minutes: int
    clicks_svg: str
    exposure_svg: str
    arms: list[dict]
    published: list[dict]
    totals: dict


CACHE_KEY, CACHE_SECONDS, LOCK_SECONDS = "dashboard:60", 30, 60


def dashboard_cached(*, wait: float = 10.0) -> Dashboard:
    """`dashboard()` as of at most CACHE_SECONDS ago, shared by every admin watching it
    (Redis, through Django's cache): one computation per period however many dashboards
    refresh, so watching the demo costs the feed's processes next to nothing. Without Redis
    it is computed each time."""
    try:
        got = cache.get(CACHE_KEY)
        if got is not None:
            return got
        if cache.add(f"{CACHE_KEY}:lock", 1, timeout=LOCK_SECONDS):  # this request computes it
            try:
                fresh = dashboard()
                cache.set(CACHE_KEY, fresh, timeout=CACHE_SECONDS)
                return fresh
            finally:
                cache.delete(f"{CACHE_KEY}:lock")
        deadline = time.monotonic() + wait  # another request computes it: wait for its result
        while time.monotonic() < deadline:
            time.sleep(0.2)
            got = cache.get(CACHE_KEY)
            if got is not None:
                return got
    except redis.RedisError:
        pass
    return dashboard()


def dashboard(*, minutes: int = 60, now: datetime | None = None) -> Dashboard:
    """Traffic of the last `minutes`: clicks per minute, the share of impressions going to
    cold and to tail items and the exposure Gini per 5-minute window, CTR by ranker arm (with
    the w a CTR budget left each blend arm), and the stories published in the window with their
    path from cold to warm."""
    now = now or timezone.now()
    since = now - timedelta(minutes=minutes)
    clicks = list(Click.objects.filter(clicked_at__gt=since, clicked_at__lte=now).values_list("clicked_at", flat=True))
    per_min = np.zeros(minutes)
    for t in clicks:
        per_min[min(minutes - 1, int((t - since).total_seconds() // 60))] += 1
    fig, ax = figure()
    ax.bar(np.arange(-minutes, 0), per_min, width=0.9, color="#2b6cb0")
    ax.set_xlabel("minutes ago")
    ax.set_title("clicks per minute", loc="left", fontsize=10)
    clicks_svg = svg(fig)

    live = np.array(Item.objects.filter(published_at__lte=now).values_list("pk", flat=True))
    windows = max(1, minutes // 5)
    traffic = traffic_summary(since=since, now=now, windows=windows, live=live)
    fig, ax = figure()
    x = (np.arange(windows) - windows) * 5
    ax.plot(x, traffic.cold_share, marker="o", label="to cold items", color="#2b6cb0")
    ax.plot(x, traffic.tail_share, marker="o", label="to tail items", color="#c05621")
    ax.plot(x, traffic.gini, marker="o", label="exposure Gini", color="#4a5568", linestyle="--")
    ax.set_ylim(0, 1)
    ax.set_xlabel("minutes ago (5-minute windows)")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title("share of impressions, and exposure inequality", loc="left", fontsize=10)
    exposure_svg = svg(fig)

    recent = (Item.objects.filter(published_at__gt=now - timedelta(hours=6), published_at__lte=now)
              .annotate(clickers=Count("clicks__reader", distinct=True)).order_by("-published_at")[:25])
    seeds = dict(SeedSet.objects.filter(item__in=[i.pk for i in recent]).values_list("item_id", "count"))
    published = [{"item": i, "seeds": seeds.get(i.pk, 0), "clickers": i.clickers,
                  "minutes_to_warm": round((i.warm_since - i.published_at).total_seconds() / 60, 1)
                  if i.warm_since and i.status == ItemStatus.WARM else None} for i in recent]
    totals = {"impressions": traffic.impressions, "clicks": len(clicks),
              "warm": Item.objects.filter(status=ItemStatus.WARM, published_at__lte=now).count(),
              "live": len(live)}
    return Dashboard(minutes, clicks_svg, exposure_svg, traffic.arms, published, totals)
