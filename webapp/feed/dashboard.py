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

from recsys.abtest import ab_summary, arm_label, was_cold
from recsys.arms import ARMS
from webapp.feed.selectors import exposure_before
from webapp.lookalike.insight import figure, svg
from webapp.lookalike.models import SeedSet
from webapp.news.models import Click, Impression, Item, ItemStatus


def _budget_use(imps: list[tuple]) -> dict[str, dict]:
    """Per blend arm with a CTR budget (recsys.arms): how much of its w the budget left the
    pages (the parts log the w asked for and the w used, the same on every row of a page)."""
    pages: dict[str, dict[str, tuple[float, float]]] = {}
    for _, _, parts, _, arm, _, request, _ in imps:
        budgeted = arm in ARMS and ARMS[arm].budget > 0
        if budgeted and isinstance(parts, dict) and parts.get("weight_used") is not None and parts.get("weight"):
            pages.setdefault(arm_label(arm, parts), {})[request] = (float(parts["weight_used"]),
                                                                    float(parts["weight"]))
    out = {}
    for label, seen in pages.items():
        used = np.array(list(seen.values()))
        out[label] = {"pages": len(used), "full_share": float(np.mean(used[:, 0] >= used[:, 1])),
                      "zero_share": float(np.mean(used[:, 0] == 0)), "mean_w": float(used[:, 0].mean())}
    return out


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

    imps = list(Impression.objects.filter(shown_at__gt=since, shown_at__lte=now).values_list(
        "shown_at", "item_id", "score_parts", "item__status", "arm", "click__id", "request_id", "item__category"))
    live = np.array(Item.objects.filter(published_at__lte=now).values_list("pk", flat=True))
    windows = max(1, minutes // 5)
    cold_share, tail_share, gini = np.full(windows, np.nan), np.full(windows, np.nan), np.full(windows, np.nan)
    by_arm: dict[str, dict] = {}
    if imps:
        items = np.array([r[1] for r in imps], np.int64)
        catalog = np.union1d(live, items)
        logged = {"request": np.array([r[6] for r in imps]), "item": items,
                  "clicked": np.array([r[5] is not None for r in imps]),
                  "cold": np.array([was_cold(r[2], r[3]) for r in imps]),
                  "category": np.array([r[7] for r in imps]), "catalog": catalog,
                  "popularity": exposure_before(catalog=catalog, before=since)}
        slot = np.array([str(min(windows - 1, int((r[0] - since).total_seconds() // 300))) for r in imps])
        for w, stats in ab_summary(arm=slot, **logged).items():
            cold_share[int(w)], tail_share[int(w)], gini[int(w)] = (stats["cold_share"], stats["tail_share"],
                                                                    stats["exposure_gini"])
        by_arm = ab_summary(arm=np.array([arm_label(r[4], r[2]) for r in imps]), **logged)
    fig, ax = figure()
    x = (np.arange(windows) - windows) * 5
    ax.plot(x, cold_share, marker="o", label="to cold items", color="#2b6cb0")
    ax.plot(x, tail_share, marker="o", label="to tail items", color="#c05621")
    ax.plot(x, gini, marker="o", label="exposure Gini", color="#4a5568", linestyle="--")
    ax.set_ylim(0, 1)
    ax.set_xlabel("minutes ago (5-minute windows)")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title("share of impressions, and exposure inequality", loc="left", fontsize=10)
    exposure_svg = svg(fig)

    budget = _budget_use(imps)
    arm_rows = [{"arm": m, "impressions": v["impressions"], "clicks": v["clicks"], "ctr": v["ctr"],
                 "tail": v["tail_share"], "cold": v["cold_share"], "coverage": v["coverage"], "budget": budget.get(m)}
                for m, v in by_arm.items()]

    recent = (Item.objects.filter(published_at__gt=now - timedelta(hours=6), published_at__lte=now)
              .annotate(clickers=Count("clicks__reader", distinct=True)).order_by("-published_at")[:25])
    seeds = dict(SeedSet.objects.filter(item__in=[i.pk for i in recent]).values_list("item_id", "count"))
    published = [{"item": i, "seeds": seeds.get(i.pk, 0), "clickers": i.clickers,
                  "minutes_to_warm": round((i.warm_since - i.published_at).total_seconds() / 60, 1)
                  if i.warm_since and i.status == ItemStatus.WARM else None} for i in recent]
    totals = {"impressions": len(imps), "clicks": len(clicks),
              "warm": Item.objects.filter(status=ItemStatus.WARM, published_at__lte=now).count(),
              "live": len(live)}
    return Dashboard(minutes, clicks_svg, exposure_svg, arm_rows, published, totals)
