"""Replay evaluation of RALM and baselines on a public log, without a database.

    python -m recsys.evaluate --format movielens --data DIR --out results.json
    python -m recsys.evaluate --format mind --train TRAIN --test TEST --out mind.json  # MIND's protocol

Events are ordered by time; the first 80% train every model; the rest are replayed in time
order with seeds updated in real time and nothing retrained (see recsys.replay). Each scorer
is measured in the `overall` and `buckets` views, over several negative-sampling seeds, and,
where it can score a reader with no train history (from their clicks before each group,
no refit), in the `unseen_readers` view. MIND's own protocol (every shown story of every test
impression, MIND's metrics) is the `impressions` protocol, recsys.mind_eval.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from recsys import mind_eval
from recsys.arms import ARMS, DEFAULT_ARM, REFERENCE
from recsys.datasets import READERS, DatasetError, read_dataset
from recsys.evaluation_models import TooLittleData, build_models
from recsys.hybrid import Calibration, labelled, reliability
from recsys.interactions import from_dataset
from recsys.metrics import positive_metrics
from recsys.pipeline import PipelineConfig
from recsys.replay import VIEWS, Groups, Timeline, replay_groups
from recsys.stage2 import BUCKETS, SNAPSHOT_SHARES

DEFAULTS = PipelineConfig()
SCORERS = ["random", "popularity", "itemknn", "mf", "als", "als_seed_avg", "eu_seed_avg", "ralm_avg",
           "ralm_noclust", "ralm", "coldstart_linear", "hybrid", "ranker_ctr", "ranker"]
# Paired differences of per-group AUC on the same groups: (scorer, baseline).
PAIRS = [("ralm", "ralm_avg"), ("ralm", "mf"), ("ralm", "als"), ("ralm", "als_seed_avg"),
         ("ralm", "ralm_noclust"), ("eu_seed_avg", "als_seed_avg"), ("coldstart_linear", "popularity"),
         ("hybrid", "coldstart_linear"), ("hybrid", "ralm"), ("ranker", "ranker_ctr"), ("ranker", "hybrid")]
# The unseen_readers view against the baselines that need no train history.
UNSEEN_PAIRS = [(a, b) for a in ("ralm", "hybrid", "ranker", "coldstart_linear", "mf")
                for b in ("popularity", "itemknn")]
METRICS = ["auc", "mrr", "ndcg@5", "ndcg@10"]
POOLED = {"5-99": ("5-19", "20-99")}


def summarize(per_seed: list[dict[str, np.ndarray]]) -> dict:
    """Mean over sampling seeds of per-group metrics; `auc_se` is the standard error of the
    mean AUC from the groups, `auc_seed_sd` the spread between sampling seeds."""
    out = {}
    for m in METRICS:
        out[m] = round(float(np.mean([np.nanmean(s[m]) for s in per_seed])), 4)
    aucs = [s["auc"] for s in per_seed]
    out["groups"] = int(np.mean([len(a) for a in aucs]))
    out["auc_se"] = round(float(np.mean([np.nanstd(a) / np.sqrt(max(len(a), 1)) for a in aucs])), 4)
    out["auc_seed_sd"] = round(float(np.std([np.nanmean(a) for a in aucs])), 4) if len(aucs) > 1 else 0.0
    return out


def _slices(bucket_groups: list[Groups]) -> dict[str, list[np.ndarray]]:
    """Per bucket label (and pooled label), a boolean group mask for each sampling seed."""
    out = {label: [g.bucket == b for g in bucket_groups] for b, (label, _, _) in enumerate(BUCKETS)}
    for label, parts in POOLED.items():
        idx = [next(n for n, b in enumerate(BUCKETS) if b[0] == p) for p in parts]
        out[label] = [np.isin(g.bucket, idx) for g in bucket_groups]
    return out


def _paired(a: list[np.ndarray], b: list[np.ndarray], masks: list[np.ndarray] | None) -> dict:
    """Mean per-group AUC difference on the same groups, with its standard error."""
    diffs = [(x - y) if masks is None else (x - y)[m] for x, y, m in
             zip(a, b, masks or [None] * len(a), strict=True)]
    diffs = [d[~np.isnan(d)] for d in diffs]
    if not sum(len(d) for d in diffs):
        return {"diff": None, "se": None, "groups": 0}
    return {"diff": round(float(np.mean([d.mean() for d in diffs if len(d)])), 4),
            "se": round(float(np.mean([d.std() / np.sqrt(len(d)) for d in diffs if len(d)])), 4),
            "groups": int(np.mean([len(d) for d in diffs]))}


def evaluate_groups(score: Callable[[Groups], np.ndarray], groups: Groups) -> dict[str, np.ndarray]:
    s = score(groups)
    valid = groups.valid
    return positive_metrics(s[:, 0], s[:, 1:], valid[:, 1:])


def config_of(args) -> PipelineConfig:
    """The pipeline's config of the command line's training options."""
    return PipelineConfig(dim=args.dim, k=args.k, seed_cap=args.seed_cap, seed_threshold=args.seed_threshold,
                          min_history=args.min_history, stage1_epochs=args.stage1_epochs,
                          stage2_epochs=args.stage2_epochs, seed=args.seed)


def run(args) -> dict:
    started = time.perf_counter()
    log = (lambda msg: print(msg, file=sys.stderr)) if not args.quiet else (lambda msg: None)
    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    inter = from_dataset(read_dataset(args.format, args.data))
    if len(inter.click_item) < 20:
        raise TooLittleData(f"{len(inter.click_item)} clicks")
    seconds = {"load": round(time.perf_counter() - t, 1)}
    log(f"{args.format}: {inter.n_readers:,} readers, {inter.n_items:,} items, {len(inter.click_item):,} clicks")
    scorers, info = build_models(inter, config_of(args), train_share=args.train_share, arm=args.arm,
                                 quiet=args.quiet, log=log)
    seconds.update(info.pop("seconds"))
    wanted = [name for name in (args.scorers or SCORERS) if name in scorers]

    tl = Timeline.build(inter, train_before=info["train_before"], min_history=args.min_history)
    t = time.perf_counter()
    groups = {v: [replay_groups(tl, view=v, rng=np.random.default_rng(args.seed + 1000 * s))
                  for s in range(args.seeds)] for v in VIEWS}
    unseen = info.pop("unseen")
    seconds["replay"] = round(time.perf_counter() - t, 1)
    if inter.has_impressions:  # real impression lists: one draw, nothing to resample
        groups = {v: g[:1] for v, g in groups.items()}
    cal = info.pop("calibration")
    if isinstance(cal, Calibration):  # how the maps fitted before the test period hold in it
        cal.report["test_overall"] = reliability(cal, *labelled(groups["overall"][:1], scorers["hybrid"].parts))
        cal = cal.report

    results: dict[str, dict] = {}
    raw: dict[str, dict[str, list[np.ndarray]]] = {}  # scorer -> view -> per-seed per-group AUC
    seconds["scoring"] = {}
    for name in tqdm(wanted, desc="scoring", unit="scorer", disable=args.quiet):
        t = time.perf_counter()
        per_view = {v: [evaluate_groups(scorers[name], g) for g in gs] for v, gs in groups.items()
                    if v != "unseen_readers"}
        if name in unseen and len(groups["unseen_readers"][0]):
            per_view["unseen_readers"] = [evaluate_groups(unseen[name], g) for g in groups["unseen_readers"]]
        raw[name] = {v: [r["auc"] for r in rs] for v, rs in per_view.items()}
        entry = {"overall": summarize(per_view["overall"]), "buckets": {}, "pooled": {}}
        if "unseen_readers" in per_view:
            entry["unseen_readers"] = summarize(per_view["unseen_readers"])
        for label, sel in _slices(groups["buckets"]).items():
            part = [{m: r[m][mask] for m in METRICS} for r, mask in zip(per_view["buckets"], sel, strict=True)]
            if sum(len(p["auc"]) for p in part):
                entry["pooled" if label in POOLED else "buckets"][label] = summarize(part)
        results[name] = entry
        seconds["scoring"][name] = round(time.perf_counter() - t, 1)
    pairs = {}
    for a, b in PAIRS:
        if a in raw and b in raw:
            pairs[f"{a} - {b}"] = {"overall": _paired(raw[a]["overall"], raw[b]["overall"], None)} | {
                label: _paired(raw[a]["buckets"], raw[b]["buckets"], sel)
                for label, sel in _slices(groups["buckets"]).items()}
    unseen_pairs = {f"{a} - {b}": _paired(raw[a]["unseen_readers"], raw[b]["unseen_readers"], None)
                    for a, b in UNSEEN_PAIRS
                    if "unseen_readers" in raw.get(a, {}) and "unseen_readers" in raw.get(b, {})}
    seconds["total"] = round(time.perf_counter() - started, 1)
    return {"dataset": args.format, "data": str(args.data), "train_share": args.train_share,
            "sampling_seeds": args.seeds, "calibration": cal, "scorers": results,
            "paired_auc_differences": pairs, "paired_auc_differences_unseen_readers": unseen_pairs,
            "unseen_readers": {"groups": len(groups["unseen_readers"][0]),
                               "readers": len(set(groups["unseen_readers"][0].reader.tolist()))},
            "seconds": seconds,
            "config": {"dim": args.dim, "k": args.k, "seed_cap": args.seed_cap, "min_history": args.min_history,
                       "seed_threshold": args.seed_threshold, "arm": args.arm,
                       "stage1_epochs": args.stage1_epochs, "stage2_epochs": args.stage2_epochs,
                       "stage2_snapshots": list(SNAPSHOT_SHARES), "seed": args.seed},
            **info}


def table(result: dict) -> str:
    labels = [b[0] for b in BUCKETS] + list(POOLED)
    head = ["scorer", "overall"] + labels + ["unseen readers"]
    rows = []
    for name, r in result["scorers"].items():
        cells = [name, f"{r['overall']['auc']:.3f}"]
        for b in labels:
            cell = r["buckets"].get(b) or r["pooled"].get(b)
            cells.append(f"{cell['auc']:.3f}" if cell else "-")
        cells.append(f"{r['unseen_readers']['auc']:.3f}" if "unseen_readers" in r else "-")
        rows.append(cells)
    groups = ["groups", str(next(iter(result["scorers"].values()))["overall"]["groups"])]
    first = next(iter(result["scorers"].values()))
    for b in labels:
        cell = first["buckets"].get(b) or first["pooled"].get(b)
        groups.append(str(cell["groups"]) if cell else "-")
    groups.append(str(result.get("unseen_readers", {}).get("groups", "-")))
    widths = [max(len(r[i]) for r in [head, groups, *rows]) for i in range(len(head))]
    fmt = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(fmt, rows), fmt(groups)])


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [b[0] for b in BUCKETS]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, r in result["scorers"].items():
        xs = [i for i, b in enumerate(labels) if b in r["buckets"]]
        ys = [r["buckets"][labels[i]]["auc"] for i in xs]
        es = [r["buckets"][labels[i]]["auc_se"] for i in xs]
        style = {"linewidth": 2.5} if name.startswith("ralm") else {"linewidth": 1.2, "alpha": 0.8}
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=name, **style)
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_xticks(range(len(labels)), [f"{b} seeds" for b in labels])
    ax.set_ylabel("AUC (bucket view, ±1 s.e.)")
    ax.set_title(f"{result['dataset']}: AUC by seed count at click time")
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _protocol(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Checks which folders go with which protocol and sets args.protocol."""
    if args.train is not None or args.test is not None:
        if args.train is None or args.test is None:
            ap.error("--train and --test go together")
        if args.data is not None:
            ap.error("give either --data DIR or --train A --test B, not both")
        if args.format != "mind":
            ap.error("--train and --test are MIND folders: use --format mind")
        if args.protocol == "replay":
            ap.error("the replay reads one folder: --data DIR")
        args.protocol = "impressions"
        return
    if args.data is None:
        ap.error("need --data DIR, or (MIND) --train A --test B")
    args.protocol = args.protocol or "replay"
    if args.protocol == "impressions" and args.format != "mind":
        ap.error("--protocol impressions needs logged impression lists: --format mind")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m recsys.evaluate", description=__doc__.splitlines()[0])
    ap.add_argument("--format", required=True, choices=sorted(READERS))
    ap.add_argument("--data", type=Path, help="the log's folder")
    ap.add_argument("--train", type=Path, help="MIND's protocol: the train folder (e.g. MINDsmall_train)")
    ap.add_argument("--test", type=Path, help="MIND's protocol: the later folder scored (e.g. MINDsmall_dev)")
    ap.add_argument("--protocol", choices=["replay", "impressions"],
                    help="replay (the default with --data): each test click against sampled negatives; "
                         "impressions (the default with --train/--test; MIND only): every shown story of every "
                         "test impression, MIND's metrics; with --data, the last of the impressions by time "
                         "(1 - --train-share) are the test")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--plot", type=Path, help="PNG of AUC by seed bucket (default: OUT with .png; the replay only)")
    ap.add_argument("--train-share", type=float, default=0.8,
                    help="the share of clicks (the replay) or of impressions (--data with --protocol impressions) "
                         "before the test period")
    ap.add_argument("--seeds", type=int, default=3, help="negative-sampling seeds")
    ap.add_argument("--seed", type=int, default=DEFAULTS.seed, help="training seed")
    ap.add_argument("--dim", type=int, default=DEFAULTS.dim)
    ap.add_argument("--k", type=int, default=DEFAULTS.k)
    ap.add_argument("--seed-cap", type=int, default=DEFAULTS.seed_cap)
    ap.add_argument("--seed-threshold", type=int, default=DEFAULTS.seed_threshold,
                    help="seeds at which an item turns warm (hybrid)")
    ap.add_argument("--arm", default=DEFAULT_ARM, choices=sorted(set(ARMS) - {REFERENCE}),
                    help="the ranker arm the `ranker` scorer serves with (recsys.arms; `ranker_ctr` is ctr)")
    ap.add_argument("--min-history", type=int, default=DEFAULTS.min_history,
                    help="train clicks a reader needs to be scored")
    ap.add_argument("--stage1-epochs", type=int, default=DEFAULTS.stage1_epochs)
    ap.add_argument("--stage2-epochs", type=int, default=DEFAULTS.stage2_epochs)
    ap.add_argument("--scorers", nargs="*", choices=sorted(set(SCORERS) | set(mind_eval.SCORERS)))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if not 0.1 <= args.train_share < 1 or args.seeds < 1 or args.dim < 2 or args.k < 1:
        ap.error("need 0.1 <= --train-share < 1, --seeds >= 1, --dim >= 2, --k >= 1")
    _protocol(ap, args)
    try:
        result = mind_eval.run(args, config_of(args)) if args.protocol == "impressions" else run(args)
    except DatasetError as exc:
        print(f"recsys.evaluate: {exc}", file=sys.stderr)
        return 2
    except TooLittleData as exc:
        print(f"recsys.evaluate: too little data: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.protocol == "impressions":
        print(mind_eval.table(result))
        print(f"wrote {args.out} in {result['seconds']['total']:.0f} s")
        return 0
    plot_path = args.plot or args.out.with_suffix(".png")
    plot(result, plot_path)
    print(table(result))
    print(f"wrote {args.out} and {plot_path} in {result['seconds']['total']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
