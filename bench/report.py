"""Render what `make bench` measured: bench/results.md (every table, with plots) and the
README's generated blocks, from bench/results.json and bench/evaluation-movielens.json.

    python bench/report.py          # write results.md, the plots and the README's blocks
    python bench/report.py --check  # exit 1 if the README's blocks differ from the results

A README block is the text between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`; only
those lines are rewritten, the prose around them is the author's.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]

from common import SCRIPTS  # noqa: E402

from recsys.arms import ARMS  # noqa: E402 (the project on the path first)

RESULTS = BENCH / "results.json"
EVALUATION = BENCH / "evaluation-movielens.json"
README = ROOT / "README.md"
BLOCK = re.compile(r"(<!-- bench:(?P<name>[a-z_]+) -->\n)(?P<body>.*?)(<!-- /bench:(?P=name) -->)", re.S)
BUCKETS = ("0", "1-4", "5-19", "20-99", "100+")
SCORER_LABELS = {"mf": "`mf` (E_u · item)", "eu_seed_avg": "`eu_seed_avg` (diagnostic)",
                 "ranker_ctr": "`ranker_ctr` (arm `ctr`)"}
SCORER_ORDER = ("random", "popularity", "itemknn", "mf", "als", "als_seed_avg", "eu_seed_avg", "ralm_avg",
                "ralm_noclust", "ralm", "coldstart_linear", "hybrid", "ranker_ctr", "ranker")


def md_table(header: tuple, rows: list[tuple]) -> str:
    out = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(out)


def ms(x: float) -> str:
    return f"{x:.2f}"


def pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


def pm(diff: float, se: float) -> str:
    return f"{diff:+.3f} ± {se:.3f}"


# --- blocks -----------------------------------------------------------------------------

def numbers(r: dict, ev: dict | None) -> str:
    parts = {"bench": _numbers_bench, "import": _numbers_import, "demo": _numbers_demo, "refresh": _numbers_refresh,
             "feed": _numbers_feed, "load": _numbers_load, "soak": _numbers_soak, "scale": _numbers_scale,
             "readers": _numbers_readers, "ab": _numbers_ab, "mind": _numbers_mind}
    rows = [row for key, part in parts.items() if key in r for row in part(r)]
    if ev:
        rows += _numbers_evaluation_seconds(ev)
    return md_table(("measurement", "value"), rows)


def _numbers_bench(r: dict) -> list[tuple[str, str]]:
    rows = []
    timed = r["bench"]["scripts"]
    per = ", ".join(f"{Path(k).stem} {v:.0f}" for k, v in sorted(timed.items()))
    untimed = sorted(Path(s).stem for s in SCRIPTS if s not in timed)
    rows.append(("`make bench`, every benchmark below (the sum of each one's latest wall time)",
                 f"{sum(timed.values()) / 60:.1f} min ({per} s" + (f"; {', '.join(untimed)} not timed yet"
                                                                  if untimed else "") + ")"))
    return rows


def _numbers_import(r: dict) -> list[tuple[str, str]]:
    rows = []
    i = r["import"]
    rows += [(f"`import_dataset --format movielens` {i['dataset']} ({i['rows']:,} rows): parse and store in "
              "one transaction", f"{i['store_seconds_median']:.1f} s ({i['rows_per_s']:,} rows/s)"),
             ("the same, re-import (adds nothing)", f"{i['reimport_seconds_median']:.1f} s"),
             ("text vectors for its movies (all-MiniLM-L6-v2, 2 CPU cores)",
              f"{i['embed_seconds']:.0f} s ({i['embed_items_per_s']} items/s)")]
    return rows


def _numbers_demo(r: dict) -> list[tuple[str, str]]:
    rows = []
    d = r["demo"]
    st = d["train_stages"]
    rows += [("`load_demo` (336 stories, 1,200 readers, their text vectors)", f"{d['load_demo_seconds']:.1f} s"),
             (f"36-hour backfill of `make demo`, {d['backfill_sessions']:,} sessions written in bulk "
              f"({d['clicks']:,} clicks, {d['impressions']:,} impressions)", f"{d['backfill_seconds']:.0f} s"),
             (f"`manage.py train` on that history ({d['readers']:,} readers): both RALM stages, the cold-start "
              "model and its calibration, the CTR models, E_u to Postgres and Redis",
              f"{d['train_seconds']:.0f} s (load {st['load']}, stage 1 {st['stage1']}, stage 2 {st['stage2']}, "
              f"cold start {st['coldstart']}, CTR {st['ctr']}, store {st['store']}); val AUC stage 1 "
              f"{d['stage1_val_auc']}, stage 2 {d['stage2_val_auc']}")]
    return rows


def _numbers_refresh(r: dict) -> list[tuple[str, str]]:
    rows = []
    f = r["refresh"]
    rows.append((f"seed + look-alike state refresh, {f['items']:,} dirty items × {f['seeds_per_item']} seeds "
                 "(`bench/refresh.py`)", f"{f['seconds']:.1f} s ({f['items_per_s']:,} items/s)"))
    return rows


def _numbers_feed(r: dict) -> list[tuple[str, str]]:
    rows = []
    c = r["feed"]["candidates"]
    rows.append(("`GET /api/feed`, 1,000 candidates, through Django, one client (`bench/feed.py`)",
                 f"p50 {ms(c['1000']['p50_ms'])} ms, p99 {ms(c['1000']['p99_ms'])} ms (100: "
                 f"{ms(c['100']['p50_ms'])} / {ms(c['100']['p99_ms'])}; 5,000: {ms(c['5000']['p50_ms'])} / "
                 f"{ms(c['5000']['p99_ms'])})"))
    s = r["feed"]["scoring_1000_ms"]
    rows.append(("look-alike scoring of 1,000 candidates, centroids vs 500 raw seeds each",
                 f"{s['centroids_k20']} ms vs {s['raw_seeds_500']} ms ({r['feed']['raw_seed_ratio_500']}×)"))
    if "observability" in r["feed"]:
        o = r["feed"]["observability"]
        rows.append((f"what the feed pays for its metrics and its JSON line per request ({o['candidates']:,} "
                     f"candidates, {o['requests']:,} readers, each arm in turn in one web process, "
                     "`bench/feed.py`)",
                     f"metrics {o['metrics_cost']['ms']:+.2f} ± {o['metrics_cost']['se_ms']:.2f} ms at p50 "
                     f"(off {o['p50_ms']['off']:.2f} ms), the line {o['log_line_cost']['ms']:+.2f} ± "
                     f"{o['log_line_cost']['se_ms']:.2f} ms"))
    return rows


def _numbers_load(r: dict) -> list[tuple[str, str]]:
    rows = []
    lo = r["load"]
    value = (f"{lo['requests']:,} requests ({lo.get('requests_per_s', 0):,.0f}/s), p50 "
             f"{ms(lo.get('p50_ms', 0))} ms, p99 {ms(lo['p99_ms'])} ms, {lo['errors_5xx']} × 5xx, "
             f"clicks sent {lo['clicks_sent']:,} = stored {lo['clicks_stored']:,}")
    if "throughput" in lo:
        tp = lo["throughput"]
        value += (f"; closed loop, {tp['clients']} clients: {tp['requests_per_s']:,.0f} feeds/s, p50 "
                  f"{ms(tp['p50_ms'])} ms, p99 {ms(tp['p99_ms'])} ms, {tp['errors_5xx']} × 5xx")
    px = lo.get("proxy", {})
    if "p50_diff_ms" in px:
        value += f"; the proxy adds {pm(px['p50_diff_ms'], px['p50_diff_se_ms'])} ms to the feed's p50"
    rows.append((f"load: {lo['clients']} concurrent readers for {lo['seconds']} s against "
                 f"{'nginx in front of ' if px else ''}gunicorn (feeds and clicks, `bench/load.py`)", value))
    return rows


def _numbers_soak(r: dict) -> list[tuple[str, str]]:
    rows = []
    so = r["soak"]
    ph = so["phases"]
    rows.append((f"soak with faults: {so['clients']} readers for {so['seconds'] / 60:.0f} min (`bench/soak.py`: "
                 "worker SIGKILL, Redis stopped and started, Postgres connections terminated)",
                 f"{sum(p['requests'] for p in ph):,} requests, {sum(p['errors_5xx'] for p in ph)} × 5xx, clicks "
                 f"sent {sum(p['clicks_sent'] for p in ph):,} = stored {sum(p['clicks_stored'] for p in ph):,}, "
                 f"worst phase p99 {ms(max(p['p99_ms'] for p in ph))} ms"))
    return rows


def _numbers_scale(r: dict) -> list[tuple[str, str]]:
    rows = []
    sc = r["scale"]
    c, f, fd = sc["counts"], sc["refresh"], sc["feed"]
    scale = {"k": 1_000, "M": 1_000_000}
    sizes = sorted((k for k in c if k.endswith("_s")), key=lambda k: int(k[:-3]) * scale[k[-3]])
    rows.append((f"scale (`bench/scale.py`, {sc['stories']:,} stories and readers, {fd['warm_stories']:,} of "
                 f"them warm): the feed through recall, what its page keeps of the full ranking's top 10 and a "
                 f"web process's peak memory; the minute's counts job after a history of "
                 f"{' and '.join(k.removesuffix('_s') for k in sizes)} impressions; the refresh of "
                 f"{f['items']:,} dirty stories × {f['seeds_per_item']} seeds by one and two worker processes",
                 f"p50 {ms(fd['p50_ms'])} ms, p99 {ms(fd['p99_ms'])} ms, top 10 kept {fd['top10_kept']:.3f} ± "
                 f"{fd['top10_kept_se'] or 0:.3f}, {sc['web_rss_mib']:,.0f} MiB; "
                 f"{' / '.join(f'{c[k] * 1000:.0f} ms' for k in sizes)} ({c['ratio']}×); "
                 f"{f['one_worker_s']} s / {f['two_workers_s']} s ({f['speedup']}×)"))
    return rows


def _numbers_mind(r: dict) -> list[tuple[str, str]]:
    m = r["mind"]
    return [(f"MIND-small's size (`bench/mind.py`: {m['users']:,} readers, {m['news']:,} stories, "
             f"{m['impressions']:,} impressions with {m['shown']:,} shown, {m['history_clicks']:,} history clicks): "
             f"`import_dataset`, its text vectors, `train` (every stage), a fresh web process's first feed, the feed "
             f"for imported readers, the largest resident set of train",
             f"{m['import_s']:.0f} s, {m['embed_s']:.0f} s, {m['train_s']:.0f} s, {m['first_feed_s']:.2f} s, "
             f"p50 {ms(m['feed']['p50_ms'])} ms / p99 {ms(m['feed']['p99_ms'])} ms, "
             f"{m['train_peak_rss_mib'] / 1024:.1f} GiB")]


def mind(r: dict) -> str:
    """MIND's protocol on the MIND-small-sized world (bench/mind.py): every shown story of the
    dev day's impressions, means over impressions with their standard errors."""
    rows = [(name, f"{v['auc']:.3f} ± {v['auc_se']:.3f}", f"{v['mrr']:.3f}", f"{v['ndcg5']:.3f}",
             f"{v['ndcg10']:.3f}") for name, v in r["mind"]["eval"].items()]
    return md_table(("scorer", "AUC", "MRR", "nDCG@5", "nDCG@10"), rows)


def _numbers_readers(r: dict) -> list[tuple[str, str]]:
    rows = []
    n = r["readers"]
    rows.append((f"a new reader's click to their new vector (`bench/readers.py`, {n['readers']} new readers, "
                 f"{n['clicks']} clicks)", f"p50 {n['click_to_vector_ms']['p50']} ms, p99 "
                 f"{n['click_to_vector_ms']['p99']} ms (the recompute alone: p50 "
                 f"{n['vector_recompute_ms']['p50']} ms, p99 {n['vector_recompute_ms']['p99']} ms)"))
    return rows


def _numbers_ab(r: dict) -> list[tuple[str, str]]:
    rows = []
    a = r["ab"]
    loop = a.get("closed_loop")
    copies = "" if not loop else (f", closed loop: {loop['replicates']} replicates × {len(loop['arms'])} + "
                                  f"{len((loop.get('other_world') or {}).get('arms', {}))} arms × "
                                  f"{loop['hours']:g} simulated hours, a copy of the world each")
    rows.append((f"ranker A/B on simulated traffic (`bench/ab.py`: two worlds' history and training"
                 f"{copies}; {a['sessions']:,} paired sessions)", f"{a['seconds']} s"))
    return rows


def _numbers_evaluation_seconds(ev: dict) -> list[tuple[str, str]]:
    rows = []
    s = ev["seconds"]
    rows.append(("replay evaluation on ml-latest-small (`python -m recsys.evaluate`: every model trained, "
                 f"{len(ev['scorers'])} scorers × 3 views × {ev['sampling_seeds']} seeds)",
                 f"{s['total']:.0f} s (stage 1 {s['stage1']}, stage 2 {s['stage2_attention']}, text vectors "
                 f"{s['text_vectors']})"))
    return rows


HEADLINE_ROWS = 12  # the README's table stays short; bench/results.md has every table


def headline(r: dict, ev: dict | None) -> str:
    """The README's short table: one row per thing a newcomer asks first."""
    rows = []
    if "bench" in r:
        rows.append(("`make bench`, every benchmark", f"{sum(r['bench']['scripts'].values()) / 60:.1f} min"))
    if "demo" in r:
        d = r["demo"]
        rows.append((f"`make demo`'s world: load, {d['backfill_sessions']:,}-session backfill, `train`",
                     f"{d['load_demo_seconds']:.0f} s, {d['backfill_seconds']:.0f} s, {d['train_seconds']:.0f} s"))
    if "feed" in r:
        c = r["feed"]["candidates"]["1000"]
        rows.append(("`GET /api/feed`, 1,000 candidates, p50 / p99", f"{ms(c['p50_ms'])} / {ms(c['p99_ms'])} ms"))
    if "load" in r and "throughput" in r["load"]:
        tp = r["load"]["throughput"]
        rows.append((f"feeds per second through nginx + gunicorn, {tp['clients']} clients",
                     f"{tp['requests_per_s']:,.0f}/s, p99 {ms(tp['p99_ms'])} ms, {tp['errors_5xx']} × 5xx"))
    if "soak" in r:
        ph = r["soak"]["phases"]
        lost = sum(p["clicks_sent"] - p["clicks_stored"] for p in ph)
        rows.append(("soak with worker, Redis and Postgres faults",
                     f"{sum(p['requests'] for p in ph):,} requests, {sum(p['errors_5xx'] for p in ph)} × 5xx, "
                     f"{lost} clicks lost"))
    if "refresh" in r:
        f = r["refresh"]
        rows.append((f"seed and state refresh, {f['items']:,} stories × {f['seeds_per_item']} seeds",
                     f"{f['seconds']:.1f} s"))
    if "scale" in r:
        fd = r["scale"]["feed"]
        rows.append((f"feed at {r['scale']['stories']:,} stories (recall), p50 / p99",
                     f"{ms(fd['p50_ms'])} / {ms(fd['p99_ms'])} ms"))
    if "readers" in r:
        rows.append(("a new reader's click to their new vector, p50",
                     f"{r['readers']['click_to_vector_ms']['p50']} ms"))
    rows += _headline_ab(r.get("ab", {}))
    if ev:
        sc = ev["scorers"]
        views = (("overall", lambda v: v["overall"]), ("pooled 5-99", lambda v: v["pooled"]["5-99"]),
                 ("unseen readers", lambda v: v.get("unseen_readers")))
        cells = [f"{get(sc['ranker'])['auc']:.3f} vs {get(sc['hybrid'])['auc']:.3f}" for _, get in views
                 if get(sc["ranker"]) and get(sc["hybrid"])]
        rows.append((f"replay AUC on ml-latest-small, `ranker` vs `hybrid` ({' / '.join(n for n, _ in views)})",
                     " / ".join(cells)))
    assert len(rows) <= HEADLINE_ROWS, len(rows)
    return md_table(("measurement", "value"), rows)


def _headline_ab(a: dict) -> list[tuple[str, str]]:
    loop = a.get("closed_loop")
    if not loop:
        return []
    default = a["default_arm"]
    vs = loop["arms"][default]["vs_ctr"]
    rows = [(f"closed loop, `{default}` against `ctr` ({loop['world']}): expected CTR, minutes to warm",
             f"{_pm_loop(vs, 'expected_ctr_rel', percent=True)}, {_pm_loop(vs, 'minutes_to_warm_diff')}")]
    ablation = loop.get("ablation")
    if ablation:
        rows.append((f"closed loop, `{default}` against `{ablation['arm']}` (no RALM): expected CTR",
                     _pm_loop(ablation, "expected_ctr_rel", percent=True)))
    return rows


def feed(r: dict) -> str:
    c = r["feed"]["candidates"]
    rows = sorted(c.items(), key=lambda x: int(x[0]))
    return md_table(("candidates", "p50 ms", "p99 ms"),
                    [(f"{int(n):,}", ms(v["p50_ms"]), ms(v["p99_ms"])) for n, v in rows])


def _arm_key(name: str) -> tuple:
    """The registry's order (recsys.arms.ARMS), arms it no longer has last."""
    names = list(ARMS)
    return (names.index(name) if name in names else len(names)), name


def _arm_label(name: str, v: dict) -> str:
    served = v.get("served_by")
    return f"{name} (served by {served})" if served and served != name else name


def _vs_ctr(v: dict) -> str:
    change, se = v.get("expected_ctr_vs_ctr_only"), v.get("expected_ctr_vs_ctr_only_se")
    return "ref" if se is None and not change else f"{pct(change)} ± {se * 100:.1f}"


def _pm_loop(vs: dict, key: str, *, percent: bool = False, digits: int = 1) -> str:
    v, se = vs.get(key), vs.get(f"{key}_se")
    if v is None:
        return "—"
    k, unit = (100.0, "%") if percent else (1.0, "")
    return f"{k * v:+.{digits}f}{unit}" + (f" ± {k * se:.{digits}f}" if se is not None else "")


def closed_loop(r: dict) -> str:
    """Each world's arms against `ctr` in the closed loop: mean ± standard error over replicates."""
    loop = r["ab"]["closed_loop"]
    rows = []
    for block in (loop, loop.get("other_world")):
        if not block:
            continue
        for name, v in sorted(block["arms"].items(), key=lambda x: _arm_key(x[0])):
            vs = v.get("vs_ctr", {})
            warm = "never" if v.get("minutes_to_warm") is None else f"{v['minutes_to_warm']:.1f}"
            ref = name == "ctr"
            served = next(iter(v.get("served_by") or {name: 0}))
            rows.append((block["world"], _arm_label(name, {"served_by": served}), f"{v['expected_ctr']:.4f}",
                         "ref" if ref else _pm_loop(vs, "expected_ctr_rel", percent=True),
                         "ref" if ref else _pm_loop(vs, "tail_exposure_rel", percent=True, digits=2),
                         warm if name == "ctr" else f"{warm} ({_pm_loop(vs, 'minutes_to_warm_diff')})",
                         f"{v['never_warm_share']:.2f}", f"{v['categories_per_page']:.2f}"
                         + ("" if name == "ctr" else f" ({_pm_loop(vs, 'categories_per_page_diff', digits=2)})"),
                         f"{v['exposure_gini']:.3f}", f"{v['coverage']:.1f}"))
    return md_table(("world", "arm", "expected CTR", "vs `ctr`", "tail exposure vs `ctr`", "minutes to warm (vs `ctr`)",
                     "never warm", "categories / page (vs `ctr`)", "exposure Gini", "stories / 1,000 impressions"),
                    rows)


def ab(r: dict) -> str:
    if "closed_loop" in r["ab"]:
        return closed_loop(r)
    p = r["ab"]["paired"]
    return md_table(("arm", "expected CTR", "vs `ctr`", "to cold", "to tail", "exposure Gini", "categories / page"),
                    [(_arm_label(k, v), f"{v['expected_ctr']:.4f}", _vs_ctr(v), f"{v['cold_share']:.3f}",
                      f"{v['tail_share']:.3f}", f"{v['exposure_gini']:.3f}", f"{v['categories_per_page']:.2f}")
                     for k, v in sorted(p.items(), key=lambda x: _arm_key(x[0]))])


AUDIENCE_SCORERS = ("ralm", "seed_average", "click_profile", "category_affinity", "coldstart", "category_truth")
AUDIENCE_LABELS = {"ralm": "`ralm` (the served logit)", "seed_average": "seeds' mean E_u (cosine)",
                   "click_profile": "click-profile look-alike (untrained)",
                   "category_affinity": "the reader's category affinity (counting)",
                   "coldstart": "cold-start model", "category_truth": "the truth's category term (ceiling)"}


def audience(r: dict) -> str:
    """Spearman rho (AUC of the truly top 10%) per seed bucket, mean ± standard error over stories."""
    b = r["audience"]["buckets"]
    buckets = [k for k in BUCKETS if k in b and k != "0"]
    rows = []
    for name in AUDIENCE_SCORERS:
        cells = [f"{b[k][name]['rho']:.3f} ± {b[k][name]['rho_se']:.3f} ({b[k][name]['auc']:.3f})"
                 if name in b[k] else "—" for k in buckets]
        rows.append((AUDIENCE_LABELS[name], *cells))
    rows.append(("stories", *(f"{max(v['stories'] for v in b[k].values())}" for k in buckets)))
    return md_table(("scorer", *(f"{k} seeds" for k in buckets)), rows)


def _pm(d: dict | None) -> str:
    if not d or d.get("diff") is None or d["diff"] != d["diff"]:
        return "—"
    return f"{d['diff']:+.3f} ± {d['se']:.3f}"


def worlds(r: dict) -> str:
    """Per world and view: what RALM adds to the count and to the default arm, against the truth."""
    a = r["audience"]
    rows = []
    for name, w in a.get("worlds", {}).items():
        if "feed_view" not in w:
            continue
        label = f"`{name}`" + (" (default)" if name == a.get("default_world") else "")
        for view, v in (("feed", w["feed_view"]), ("audience, 20-99 seeds", w["buckets"].get("20-99"))):
            if not v:
                continue
            weight = w.get("ralm_weight")
            rows.append((label, view, _pm(v["arm_minus_ablation"]), _pm(v["count_plus_ralm"]), _pm(v["ceiling"]),
                         _pm(v["count_plus"].get("oracle")), _pm(v["ralm_minus_seed_average"]),
                         "—" if weight is None else f"{weight:.3f}"))
    return md_table(("world", "view", "default arm − ablation", "count + RALM", "count + ceiling",
                     "count + oracle", "RALM − seeds' mean E_u", "RALM's learned weight"), rows)


def load(r: dict) -> str:
    lo = r["load"]
    keys = ("clients", "seconds", "requests", "requests_per_s", "p50_ms", "p99_ms", "errors_5xx", "rate_limited",
            "clicks_sent", "clicks_stored")
    if "throughput" not in lo:
        return md_table(tuple(k for k in keys if k in lo), [tuple(lo[k] for k in keys if k in lo)])
    # The human-paced readers, then the closed-loop feed clients on the same server (no clicks).
    tp = lo["throughput"]
    shown = tuple(k for k in keys if k in lo)
    out = md_table(("phase", *shown),
                   [("readers, human-paced (feeds + clicks)", *(lo[k] for k in shown)),
                    ("closed loop, feeds only", *(tp.get(k, "—") for k in shown))])
    if "admin" in lo:  # paced feed clients alone, then with two admins reloading the dashboard in a loop
        ad = lo["admin"]
        out += "\n\n" + md_table(
            ("paced feed clients", "feeds", "p50_ms", "p95_ms", "dashboard loads", "errors_5xx"),
            [(label, ad[k]["feeds"], ad[k]["p50_ms"], ad[k]["p95_ms"], ad[k]["dashboards"], ad[k]["errors_5xx"])
             for k, label in (("idle", "alone"), ("dashboards", "two dashboards reloading in a loop"))]
            + ([("p95 with the dashboards / alone", "", "", f"{ad['p95_ratio']} pooled; per round "
                 f"{ad['p95_ratio_mean']} ± {ad['p95_ratio_se']} ({ad['rounds']} rounds)", "", "")]
               if ad.get("rounds") else []))
    px = lo.get("proxy", {})
    if "p50_diff_ms" in px:  # each feed asked through the proxy and straight from gunicorn in turn
        out += "\n\n" + md_table(
            (f"GET /api/feed, {px['rounds']:,} rounds of {px['clients']} closed-loop clients", "p50 ms", "p99 ms"),
            [("through the proxy (nginx)", ms(px["proxy"]["p50_ms"]), ms(px["proxy"]["p99_ms"])),
             ("straight to gunicorn, the same server", ms(px["direct"]["p50_ms"]), ms(px["direct"]["p99_ms"])),
             ("proxy − direct (± SE)", pm(px["p50_diff_ms"], px["p50_diff_se_ms"]), "")])
    return out


def soak(r: dict) -> str:
    so = r["soak"]
    out = md_table(("phase", "seconds", "requests", "5xx", "dropped", "feeds 200", "feeds degraded", "clicks sent",
                    "clicks stored", "p50 ms", "p99 ms"),
                   [(p["phase"], p["seconds"], f"{p['requests']:,}", p["errors_5xx"], p["dropped"],
                     f"{p['feeds_200']:,} / {p['feeds']:,}", f"{p['feeds_degraded']:,}", f"{p['clicks_sent']:,}",
                     f"{p['clicks_stored']:,}", ms(p["p50_ms"]), ms(p["p99_ms"])) for p in so["phases"]])
    f = so["faults"]
    killed = f.get("worker killed", {})
    cuts = f.get("postgres cut", {}).get("terminated", [])
    out += (f"\n\nThe worker was killed {'inside' if killed.get('inside_a_refresh') else 'between'} refresh runs; "
            f"{len(cuts)} cuts terminated {', '.join(map(str, cuts))} connections. After the readers stopped, the "
            f"refresh {'caught up' if so['refresh_caught_up'] else 'did not catch up'} in "
            f"{so['refresh_caught_up_s']} s (beat every {so['refresh_every_s']} s); processes dead at the end: "
            f"{', '.join(so['processes_dead']) or 'none'}.")
    return out


def evaluation(ev: dict) -> str:
    sc = ev["scorers"]
    names = [n for n in SCORER_ORDER if n in sc] + [n for n in sc if n not in SCORER_ORDER]
    cols = [("overall", lambda s: s["overall"]["auc"]), ("MRR", lambda s: s["overall"]["mrr"]),
            ("nDCG@5", lambda s: s["overall"]["ndcg@5"])]
    cols += [(f"{b} seeds" if b == "0" else b, lambda s, b=b: s["buckets"][b]["auc"]) for b in BUCKETS]
    cols.append(("pooled 5-99", lambda s: s["pooled"]["5-99"]["auc"]))
    best = [max(f(sc[n]) for n in names) for _, f in cols]
    rows = []
    for n in names:
        label = SCORER_LABELS.get(n, f"`{n}`")
        if n == "ranker":
            label = f"`ranker` (arm `{ev['config'].get('arm', 'blend')}`)"
        cells = [f"**{f(sc[n]):.3f}**" if round(f(sc[n]), 4) == round(b, 4) else f"{f(sc[n]):.3f}"
                 for (_, f), b in zip(cols, best, strict=True)]
        rows.append((label, *cells))
    any_s = sc[names[0]]
    rows.append(("groups", f"{any_s['overall']['groups']:,}", "", "",
                 *(f"{any_s['buckets'][b]['groups']:,}" for b in BUCKETS), f"{any_s['pooled']['5-99']['groups']:,}"))
    return md_table(("scorer", *(c for c, _ in cols)), rows)


def evaluation_paired(ev: dict) -> str:
    rows = []
    for pair, d in ev["paired_auc_differences"].items():
        cells = []
        for k in ("overall", *BUCKETS, "5-99"):
            v = d.get(k)
            cells.append("—" if v is None or (v["diff"] == 0 and v["se"] == 0) else pm(v["diff"], v["se"]))
        rows.append((f"`{pair.replace(' - ', ' − ')}`", *cells))
    return md_table(("", "overall", *BUCKETS, "pooled 5-99"), rows)


def evaluation_unseen(ev: dict) -> str:
    sc = ev["scorers"]
    diffs = ev.get("paired_auc_differences_unseen_readers", {})
    names = [n for n in SCORER_ORDER if n in sc and "unseen_readers" in sc[n]]
    best = {m: max(sc[n]["unseen_readers"][m] for n in names) for m in ("auc", "mrr", "ndcg@5")}
    rows = []
    for n in names:
        u = sc[n]["unseen_readers"]
        cells = [f"**{u[m]:.3f}**" if u[m] == best[m] else f"{u[m]:.3f}" for m in ("auc", "mrr", "ndcg@5")]
        vs = [pm(diffs[k]["diff"], diffs[k]["se"]) if k in diffs else ""
              for k in (f"{n} - popularity", f"{n} - itemknn")]
        label = SCORER_LABELS.get(n, f"`{n}`")
        if n == "ranker":
            label = f"`ranker` (arm `{ev['config'].get('arm', 'blend')}`)"
        rows.append((label, *cells, *vs))
    return md_table(("scorer", "unseen readers", "MRR", "nDCG@5", "vs `popularity`", "vs `itemknn`"), rows)


def blocks(r: dict, ev: dict | None) -> dict[str, str]:
    out = {"headline": headline(r, ev), "numbers": numbers(r, ev)}
    if "feed" in r:
        out["feed"] = feed(r)
    if "ab" in r:
        out["ab"] = ab(r)
    if "load" in r:
        out["load"] = load(r)
    if "soak" in r:
        out["soak"] = soak(r)
    if "audience" in r:
        if r["audience"].get("worlds"):
            out["worlds"] = worlds(r)
        out["audience"] = audience(r)
    if r.get("mind", {}).get("eval"):
        out["mind"] = mind(r)
    if ev:
        out |= {"evaluation": evaluation(ev), "evaluation_paired": evaluation_paired(ev),
                "evaluation_unseen": evaluation_unseen(ev)}
    return out


def readme_with(text: str, rendered: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        name = m.group("name")
        if name not in rendered:
            return m.group(0)
        return f"{m.group(1)}{rendered[name]}\n{m.group(4)}"
    return BLOCK.sub(sub, text)


# --- plots and results.md ---------------------------------------------------------------

def plots(r: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    if "feed" in r:
        made.append(_plot_feed(plt, r))
    if "ab" in r:
        made.append(_plot_ab(plt, r))
    if "soak" in r and r["soak"].get("timeline"):
        made.append(_plot_soak(plt, r))
    return made


def _plot_feed(plt, r: dict) -> str:
    c = sorted(r["feed"]["candidates"].items(), key=lambda x: int(x[0]))
    fig, ax = plt.subplots(figsize=(5, 3.2))
    xs = [int(n) for n, _ in c]
    ax.plot(xs, [v["p50_ms"] for _, v in c], "o-", label="p50")
    ax.plot(xs, [v["p99_ms"] for _, v in c], "s-", label="p99")
    ax.axhline(10, color="grey", ls=":", lw=1)
    ax.axhline(25, color="grey", ls="--", lw=1)
    ax.set(xscale="log", xlabel="candidates", ylabel="ms", title="GET /api/feed latency")
    ax.legend()
    fig.tight_layout()
    fig.savefig(BENCH / "feed-latency.png", dpi=110)
    plt.close(fig)
    return "feed-latency.png"


def _plot_ab(plt, r: dict) -> str:
    if "closed_loop" in r["ab"]:
        # The closed loop's trade-off: what each arm gains in clicks against what it costs a new
        # story's first readers, per world, with the standard errors over replicates.
        loop = r["ab"]["closed_loop"]
        fig, ax = plt.subplots(figsize=(6, 3.8))
        for block, marker, color in ((loop, "o", "#2b6cb0"), (loop.get("other_world"), "s", "#c05621")):
            points: dict[tuple, list[str]] = {}  # arms that land on one point share a label (an arm as its ablation)
            for name, v in sorted(((block or {}).get("arms") or {}).items(), key=lambda x: _arm_key(x[0])):
                vs = v.get("vs_ctr", {})
                x, y = vs.get("minutes_to_warm_diff"), vs.get("expected_ctr_rel")
                if name == "ctr" or x is None or y is None:
                    continue
                ax.errorbar(x, y * 100, xerr=vs.get("minutes_to_warm_diff_se") or 0,
                            yerr=(vs.get("expected_ctr_rel_se") or 0) * 100, fmt=marker, ms=5, capsize=2, color=color,
                            label=block["world"] if not points else None)
                points.setdefault((round(x, 3), round(y, 5)), []).append(name)
            for (x, y), names in points.items():
                ax.annotate(" = ".join(names), (x, y * 100), fontsize=7, xytext=(4, 3), textcoords="offset points")
        ax.scatter([0], [0], color="black", s=12, zorder=3)
        ax.annotate("ctr", (0, 0), fontsize=7, xytext=(4, 3), textcoords="offset points")
        ax.axhline(1, color="grey", ls="--", lw=1)
        ax.axvline(0, color="grey", lw=1)
        ax.legend(frameon=False, fontsize=8, title="world", title_fontsize=8)
        ax.set(xlabel="median minutes to warm vs ctr (left is faster)", ylabel="expected CTR vs ctr (%)",
               title="Closed loop: each arm in its own world, ± SE over replicates")
    else:
        p = r["ab"]["paired"]
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for name, v in sorted(p.items(), key=lambda x: _arm_key(x[0])):
            ax.scatter(v["tail_share"], v["expected_ctr_vs_ctr_only"] * 100, s=30)
            ax.annotate(name, (v["tail_share"], v["expected_ctr_vs_ctr_only"] * 100), fontsize=8,
                        xytext=(4, 3), textcoords="offset points")
        ax.axhline(0, color="grey", lw=1)
        ax.axhline(-2, color="grey", ls="--", lw=1)
        ax.set(xlabel="share of impressions to tail stories", ylabel="expected CTR vs ctr (%)",
               title="Ranker arms, paired simulated sessions")
    fig.tight_layout()
    fig.savefig(BENCH / "ab-tradeoff.png", dpi=110)
    plt.close(fig)
    return "ab-tradeoff.png"


def _plot_soak(plt, r: dict) -> str:
    so = r["soak"]
    tl = so["timeline"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    at = 0
    for n, p in enumerate(so["phases"]):
        if n % 2:
            ax.axvspan(at, at + p["seconds"], color="0.93", lw=0)
        ax.text(at + p["seconds"] / 2, 1.01 + 0.06 * (n % 2), p["phase"], transform=ax.get_xaxis_transform(),
                ha="center", va="bottom", fontsize=7)  # staggered: short phases' names do not overlap
        at += p["seconds"]
    xs = [b["t"] for b in tl]
    ax.plot(xs, [b["p50_ms"] for b in tl], label="p50")
    ax.plot(xs, [b["p99_ms"] for b in tl], label="p99")
    ax.set(xlabel="seconds", ylabel="ms (answered requests)", ylim=(0, None))
    share = ax.twinx()
    share.fill_between(xs, [b["degraded_share"] for b in tl], step="post", color="tab:red", alpha=0.25,
                       label="feeds degraded")
    share.set(ylim=(0, 1.05), ylabel="share of feeds degraded")
    lines = ax.get_legend_handles_labels()
    more = share.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(BENCH / "soak-timeline.png", dpi=110)
    plt.close(fig)
    return "soak-timeline.png"


def results_md(rendered: dict[str, str], images: list[str]) -> str:
    titles = {"headline": "Headline numbers (the README's table)", "numbers": "Numbers",
              "feed": "Feed latency (`bench/feed.py`)",
              "load": "Load (`bench/load.py`)", "soak": "Soak with faults (`bench/soak.py`)",
              "audience": "A story's audience against the truth (`bench/audience.py`)",
              "worlds": "What RALM adds, per demo world (`bench/audience.py`)",
              "ab": "Ranker arms, paired (`bench/ab.py`)",
              "mind": "MIND's protocol on a MIND-small-sized world with a known truth (`bench/mind.py`)",
              "evaluation": "Replay evaluation on ml-latest-small, AUC (`bench/evaluate.py`)",
              "evaluation_paired": "Paired AUC differences",
              "evaluation_unseen": "Readers with no train history"}
    image_for = {"feed": "feed-latency.png", "ab": "ab-tradeoff.png", "soak": "soak-timeline.png",
                 "evaluation": "evaluation-movielens.png"}
    out = ["# Benchmark results", "",
           "Generated by `bench/report.py` from `results.json` (`make bench`); do not edit by hand.", ""]
    for name, body in rendered.items():
        out += [f"## {titles.get(name, name)}", "", body, ""]
        img = image_for.get(name)
        if img and (img in images or (BENCH / img).exists()):
            out += [f"![{titles.get(name, name)}]({img})", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check that the README's blocks match the results")
    args = ap.parse_args(argv)
    if not RESULTS.exists():
        print(f"{RESULTS} not found: run `make bench` first", file=sys.stderr)
        return 1
    r = json.loads(RESULTS.read_text())
    ev = json.loads(EVALUATION.read_text()) if EVALUATION.exists() else None
    rendered = blocks(r, ev)
    text = README.read_text()
    new = readme_with(text, rendered)
    if args.check:
        if new != text:
            print("README.md's generated blocks differ from bench/results.json: run python bench/report.py",
                  file=sys.stderr)
            return 1
        return 0
    images = plots(r)
    (BENCH / "results.md").write_text(results_md(rendered, images))
    README.write_text(new)
    print(f"wrote bench/results.md, {', '.join(images) or 'no plots'} and {len(BLOCK.findall(new))} README blocks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
