"""Replay evaluation of RALM and baselines on a public log, without a database.

    python -m recsys.evaluate --format movielens --data DIR --out results.json

Events are ordered by time; the first 80% train every model; the rest are replayed in time
order with seeds updated in real time and nothing retrained (see recsys.replay). Each scorer
is measured in the `overall` and `buckets` views, over several negative-sampling seeds, and,
where it can score a reader with no train history (from their clicks before each group,
no refit), in the `unseen_readers` view.
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

from recsys import ranker
from recsys.arms import ARMS, DEFAULT_ARM, REFERENCE
from recsys.baselines import ItemKNN, fit_als, reader_item_matrix
from recsys.calibration import CalibrationError
from recsys.datasets import READERS, DatasetError, read_dataset
from recsys.hybrid import (
    Calibration,
    NotEnoughData,
    calibrate,
    fit_coldstart,
    fit_replay_ctr,
    fit_replay_learned,
    labelled,
    profiles_at,
    reliability,
)
from recsys.interactions import Interactions, from_dataset
from recsys.lookalike import LookalikeConfig
from recsys.metrics import positive_metrics
from recsys.replay import VIEWS, Groups, Timeline, replay_groups
from recsys.scorers import (
    AsOfReaders,
    ColdStart,
    Hybrid,
    Lookalike,
    Ranker,
    SeedAverage,
    SeedTimeline,
    Unseen,
    dot_scorer,
    frozen_profiles,
    itemknn_scorer,
    popularity,
    query_dot_scorer,
    random_scorer,
)
from recsys.serving import LookalikeScorer
from recsys.stage1 import Stage1Params, fit_tower, reader_vectors
from recsys.stage2 import (
    BUCKETS,
    SNAPSHOT_SHARES,
    Stage2Params,
    fit_lookalike,
    snapshots_for,
)
from recsys.text import TextEncoder

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


class TooLittleData(ValueError):
    pass


def time_cut(times: np.ndarray, share: float) -> float:
    """The time before which `share` of the events fall (ties stay on one side)."""
    return float(times[min(int(share * len(times)), len(times) - 1)])


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


def _ticker(bar: tqdm) -> Callable[[str, dict], None]:
    def tick(_stage: str, epoch: dict) -> None:
        bar.update(1)
        bar.set_postfix(val_auc=epoch["val_auc"])
    return tick


def build_models(inter: Interactions, args, log) -> tuple[dict[str, Callable], dict]:
    seconds: dict[str, float] = {}
    cut = time_cut(inter.click_time, args.train_share)
    train = inter.click_time < cut
    train_counts = np.bincount(inter.click_reader[train], minlength=inter.n_readers)
    has_vector = train_counts >= 1

    t = time.perf_counter()
    matrix = reader_item_matrix(inter.click_reader[train], inter.click_item[train], (inter.n_readers, inter.n_items))
    als_u, als_i = fit_als(matrix, factors=args.dim, seed=args.seed)
    knn = ItemKNN(matrix)
    seconds["als_and_itemknn"] = round(time.perf_counter() - t, 1)

    log(f"stage 1: user tower on {int(train.sum()):,} train clicks")
    bar = tqdm(total=args.stage1_epochs, desc="stage 1", unit="epoch", leave=False, disable=args.quiet)
    s1 = fit_tower(inter, train_before=cut, tower={"dim": args.dim},
                   params=Stage1Params(epochs=args.stage1_epochs, seed=args.seed),
                   progress=_ticker(bar))
    bar.close()
    seconds["stage1"] = round(s1.seconds, 1)
    e_u = reader_vectors(s1, before=cut)

    # Stage 2 learns from snapshots through the training period: seeds and vectors as of a
    # cut, labels from the window after it.
    train_times = inter.click_time[train]
    cuts = [time_cut(train_times, q) for q in SNAPSHOT_SHARES]
    snaps = snapshots_for(inter, vectors=lambda c: reader_vectors(s1, before=c), cuts=cuts, until=cut,
                          seed_cap=args.seed_cap, negatives=4, rng=np.random.default_rng(args.seed))
    n_samples = sum(len(x.samples.label) for x in snaps)
    if n_samples == 0:
        raise TooLittleData("no returning reader clicked an item with seeds during training; nothing for stage 2")
    log(f"stage 2: {len(snaps)} snapshots, {n_samples:,} samples "
        f"({int(sum(x.samples.label.sum() for x in snaps)):,} clicks)")
    fits = {}
    for mode in ("attention", "mean"):
        bar = tqdm(total=args.stage2_epochs, desc=f"stage 2 ({mode})", unit="epoch", leave=False,
                   disable=args.quiet)
        fits[mode] = fit_lookalike(
            snaps, config=LookalikeConfig(dim=args.dim, k=args.k, mode=mode),
            params=Stage2Params(epochs=args.stage2_epochs, seed_cap=args.seed_cap, seed=args.seed,
                                validation_from=cuts[-1]),
            progress=_ticker(bar))
        bar.close()
        seconds[f"stage2_{mode}"] = round(fits[mode].seconds, 1)

    timeline = SeedTimeline.build(inter.click_reader, inter.click_item, inter.click_time, has_vector, inter.n_items)
    ralm = LookalikeScorer.from_model(fits["attention"].model)
    avg = LookalikeScorer.from_model(fits["mean"].model)
    bias = s1.softmax.bias.weight.detach().numpy().ravel()
    scorers = {
        "random": random_scorer(args.seed),
        "popularity": popularity,
        "itemknn": itemknn_scorer(knn),
        "mf": dot_scorer(e_u, s1.softmax.weight.weight.detach().numpy(), bias),
        "als": dot_scorer(als_u, als_i),
        "als_seed_avg": SeedAverage(als_u, timeline, args.seed_cap),
        # Diagnostic: our E_u in place of ALS factors, untrained seed average (E_u vs ALS).
        "eu_seed_avg": SeedAverage(e_u, timeline, args.seed_cap),
        "ralm_avg": Lookalike(avg, e_u, timeline, args.seed_cap),
        "ralm_noclust": Lookalike(ralm, e_u, timeline, args.seed_cap, clustered=False),
        "ralm": Lookalike(ralm, e_u, timeline, args.seed_cap),
    }
    training = {"stage1": {"best_epoch": s1.best_epoch, "history": s1.history},
                "stage2": {m: {"best_epoch": f.best_epoch, "history": f.history} for m, f in fits.items()},
                "stage2_final": {m: {k: round(float(getattr(f.model, k).detach()), 4) for k in
                                     ("alpha", "beta", "temperature", "bias")} for m, f in fits.items()}}
    training["stage2_samples"] = n_samples

    # Cold start: the linear model on text features, trained on the windows before the last
    # cut; the last window [cuts[-1], cut) is replayed to calibrate both parts of the hybrid.
    t = time.perf_counter()
    item_vectors = TextEncoder().encode(inter.item_text, progress=not args.quiet)
    seconds["text_vectors"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    cold_model, n_cold = fit_coldstart(inter, item_vectors, cuts, seed=args.seed)
    seconds["coldstart"] = round(time.perf_counter() - t, 1)
    log(f"cold start: linear model on {n_cold:,} samples")
    cold = ColdStart(cold_model, profiles_at(inter, item_vectors, cut), item_vectors, inter.item_category,
                     inter.item_published)
    scorers["coldstart_linear"] = cold
    t = time.perf_counter()
    try:
        cal = calibrate(inter, cal_from=cuts[-1], until=cut, cold_model=cold_model, item_vectors=item_vectors,
                        ralm=ralm, e_u=reader_vectors(s1, before=cuts[-1]), seed_cap=args.seed_cap,
                        threshold=args.seed_threshold, min_history=args.min_history, seed=args.seed)
    except (CalibrationError, NotEnoughData) as exc:  # no hybrid, said in the JSON and on stderr
        log(f"no hybrid: calibration slice: {exc}")
        calibration = {"error": str(exc), "threshold": args.seed_threshold}
    else:
        scorers["hybrid"] = Hybrid(cold, scorers["ralm"], cal.cold, cal.warm, args.seed_threshold)
        calibration = cal  # run() adds how the maps hold on the test period
    seconds["calibration"] = round(time.perf_counter() - t, 1)
    ctr = None
    if "hybrid" in scorers:  # the feed ranker: a CTR model from the same slice, blended with the hybrid
        t = time.perf_counter()
        try:
            ctr = fit_replay_ctr(inter, cal, seed=args.seed)
        except NotEnoughData as exc:
            log(f"no ranker: {exc}")
        else:
            try:  # the learned-weight arms' models; without them those arms serve by their fallback
                learned = fit_replay_learned(inter, cal, cold=cold, ralm=scorers["ralm"], seed=args.seed)
            except NotEnoughData as exc:
                log(f"no learned-weight models: {exc}")
                learned = {}
            models = ranker.Models(coldstart=cold_model.linear(), ctr=ctr.linear(), cold_map=cal.cold,
                                   warm_map=cal.warm, **learned)
            served = {"ranker_ctr": ARMS[REFERENCE], "ranker": ARMS[args.arm]}
            for name, arm in served.items():
                scorers[name] = Ranker(arm, models, inter, item_vectors, frozen_profiles(cold.profiles),
                                       scorers["ralm"], args.seed_threshold)

    # Readers with no train history, scored from their clicks before each group (no refit):
    # E_u from the tower, the text profile, itemknn's rows. ALS factors would need a fold-in,
    # so `als` and `als_seed_avg` have no unseen view.
    asof = AsOfReaders(inter, s1, item_vectors)
    unseen = {"random": scorers["random"], "popularity": popularity, "itemknn": Unseen(knn, asof, "history"),
              "mf": Unseen(query_dot_scorer(s1.softmax.weight.weight.detach().numpy(), bias), asof, "vector"),
              "coldstart_linear": Unseen(cold, asof, "profile")}
    for name in ("eu_seed_avg", "ralm_avg", "ralm_noclust", "ralm"):
        unseen[name] = Unseen(scorers[name], asof, "vector")
    if "hybrid" in scorers:
        unseen["hybrid"] = Hybrid(unseen["coldstart_linear"], unseen["ralm"], cal.cold, cal.warm, args.seed_threshold)
    if ctr is not None:  # the same rankers with each group's reader as of its time
        for name, arm in served.items():
            unseen[name] = Ranker(arm, models, inter, item_vectors, asof.profiles, unseen["ralm"],
                                  args.seed_threshold)
        seconds["ranker_ctr"] = round(time.perf_counter() - t, 1)
    return scorers, {"seconds": seconds, "training": training, "train_before": cut, "unseen": unseen,
                     "readers_with_vector": int(has_vector.sum()), "calibration": calibration}


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
    scorers, info = build_models(inter, args, log)
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m recsys.evaluate", description=__doc__.splitlines()[0])
    ap.add_argument("--format", required=True, choices=sorted(READERS))
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--plot", type=Path, help="PNG of AUC by seed bucket (default: OUT with .png)")
    ap.add_argument("--train-share", type=float, default=0.8)
    ap.add_argument("--seeds", type=int, default=3, help="negative-sampling seeds")
    ap.add_argument("--seed", type=int, default=0, help="training seed")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--seed-cap", type=int, default=200)
    ap.add_argument("--seed-threshold", type=int, default=20, help="seeds at which an item turns warm (hybrid)")
    ap.add_argument("--arm", default=DEFAULT_ARM, choices=sorted(set(ARMS) - {REFERENCE}),
                    help="the ranker arm the `ranker` scorer serves with (recsys.arms; `ranker_ctr` is ctr)")
    ap.add_argument("--min-history", type=int, default=1, help="train clicks a reader needs to be scored")
    ap.add_argument("--stage1-epochs", type=int, default=30)
    ap.add_argument("--stage2-epochs", type=int, default=4)
    ap.add_argument("--scorers", nargs="*", choices=SCORERS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if not 0.1 <= args.train_share < 1 or args.seeds < 1 or args.dim < 2 or args.k < 1:
        ap.error("need 0.1 <= --train-share < 1, --seeds >= 1, --dim >= 2, --k >= 1")
    try:
        result = run(args)
    except DatasetError as exc:
        print(f"recsys.evaluate: {exc}", file=sys.stderr)
        return 2
    except TooLittleData as exc:
        print(f"recsys.evaluate: too little data: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    plot_path = args.plot or args.out.with_suffix(".png")
    plot(result, plot_path)
    print(table(result))
    print(f"wrote {args.out} and {plot_path} in {result['seconds']['total']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
