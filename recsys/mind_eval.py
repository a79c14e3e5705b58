"""MIND's own evaluation protocol, a view of recsys.evaluate:

    python -m recsys.evaluate --format mind --train MINDsmall_train --test MINDsmall_dev --out mind.json
    python -m recsys.evaluate --format mind --data DIR --protocol impressions --out mind.json

Every model is trained as the replay trains it (recsys.evaluation_models.build_models), on
everything before the test period: the train impressions and their clicks, and every reader's
history (the test folder's History column holds clicks made before its impressions, so they
are train clicks, seeds and the reader's history, never labels). The feed's ranker
(`ranker_ctr`, `ranker`) is the exception: its CTR models are fitted as the feed fits them,
on every train impression logged (shown and skipped), and read the features the feed
computes from its impression log (recsys.ctr.ImpressionCounts); the JSON's `ranker_models`
holds that fit's report and learned weights. Then every shown story of
every test impression is scored, one group per impression with its logged list and all its
clicks, no negative sampling, and measured with the definitions of MIND's scoring script
(recsys.metrics.impression_metrics), averaged over impressions.

Nothing is retrained in the test period. Each story's seeds and clicks are taken as of each
impression's time: clicks in histories, in train impressions and in earlier test impressions
count; impressions sharing a time never see each other.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from recsys.datasets import Dataset
from recsys.evaluation_models import TooLittleData, build_models
from recsys.hybrid import Calibration
from recsys.interactions import Interactions, from_dataset
from recsys.metrics import impression_metrics
from recsys.mind import read_mind_split, read_mind_timesplit
from recsys.pipeline import PipelineConfig
from recsys.replay import Groups

SCORERS = ["random", "popularity", "popularity_recent", "itemknn", "mf", "als", "als_seed_avg", "eu_seed_avg",
           "ralm_avg", "ralm_noclust", "ralm", "coldstart_linear", "hybrid", "ranker_ctr", "ranker"]
BASELINES = ("popularity", "als", "hybrid")  # every scorer's paired differences are taken against these
METRICS = {"auc": "auc", "mrr": "mrr", "ndcg@5": "ndcg5", "ndcg@10": "ndcg10"}  # metric -> JSON key
RECENT_HOURS = 24.0  # popularity_recent counts the clicks of this window before the impression
CHUNK_CELLS = 50_000  # shown stories per scorer call: bounds the padded arrays of long impressions


def count_before(event_key: np.ndarray, event_time: np.ndarray, key: np.ndarray, when: np.ndarray) -> np.ndarray:
    """Per query (key, when): the events with that key strictly before that time. Times are
    compared exactly (as ranks on one clock), keys are non-negative integers."""
    clock = np.unique(np.concatenate([event_time, when]))
    width = np.int64(len(clock) + 1)
    events = np.sort(event_key.astype(np.int64) * width + np.searchsorted(clock, event_time))
    base = key.astype(np.int64) * width
    return np.searchsorted(events, base + np.searchsorted(clock, when), "left") - np.searchsorted(events, base, "left")


@dataclass
class RecentPopularity:
    """The story's clicks in the `hours` before the group's time: what a news feed's
    popularity signal counts, where the replay's `popularity` counts every click so far."""

    inter: Interactions
    hours: float = RECENT_HOURS

    def __call__(self, groups: Groups) -> np.ndarray:
        v = groups.valid
        items, t = groups.items[v], np.broadcast_to(groups.time[:, None], v.shape)[v]
        both = count_before(self.inter.click_item, self.inter.click_time, np.concatenate([items, items]),
                            np.concatenate([t, t - self.hours * 3600.0]))
        out = np.zeros(v.shape)
        out[v] = both[: len(items)] - both[len(items):]
        return out


@dataclass
class Impressions:
    """The test period's impressions, flat: impression g shows the cells offsets[g] to
    offsets[g] + lengths[g] - 1, in logged order; each cell's seeds and clicks as of g's time."""

    reader: np.ndarray  # (G,)
    time: np.ndarray  # (G,)
    lengths: np.ndarray  # (G,)
    seen: np.ndarray  # (G,) bool: the reader has a train vector (a click before the test period)
    item: np.ndarray  # (S,)
    label: np.ndarray  # (S,) bool: clicked
    seeds: np.ndarray  # (S,) distinct clickers with a train vector before the impression
    pop: np.ndarray  # (S,) clicks before the impression

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)

    def chunks(self, cells: int = CHUNK_CELLS) -> list[np.ndarray]:
        """Impression indices in chunks of about `cells` shown stories; a chunk's readers all
        have a train vector or none has, and its impressions are of similar length."""
        out = []
        for seen in (True, False):
            rows = np.flatnonzero(self.seen == seen)
            rows = rows[np.argsort(self.lengths[rows], kind="stable")]
            part = (np.cumsum(self.lengths[rows]) - 1) // cells
            out += [c for c in np.split(rows, np.flatnonzero(np.diff(part)) + 1) if len(c)]
        return out

    def groups(self, rows: np.ndarray) -> tuple[Groups, np.ndarray]:
        """The impressions `rows` as padded Groups, and the flat cell of each valid candidate
        (in the order of groups.items[groups.valid])."""
        n = self.lengths[rows]
        valid = np.arange(int(n.max())) < n[:, None]
        cells = np.where(valid, self.offsets[rows][:, None] + np.arange(valid.shape[1]), 0)
        groups = Groups(view="impressions", reader=self.reader[rows], time=self.time[rows],
                        items=np.where(valid, self.item[cells], -1), seeds=np.where(valid, self.seeds[cells], 0),
                        pop=np.where(valid, self.pop[cells], 0), bucket=np.zeros(len(rows), np.int64))
        return groups, cells[valid]


def held_out_impressions(inter: Interactions, test_from: float, has_vector: np.ndarray) -> Impressions:
    """Every logged impression at or after `test_from`, with its stories' seeds (readers with
    a train vector, counted from their first click of the story, as recsys.scorers.SeedTimeline
    counts them) and clicks strictly before the impression's time."""
    test = np.flatnonzero(inter.imp_time >= test_from)
    test = test[np.argsort(inter.imp_request[test], kind="stable")]  # one request's rows stay in shown order
    req = inter.imp_request[test]
    starts = np.flatnonzero(np.r_[True, req[1:] != req[:-1]]) if len(req) else np.zeros(0, np.int64)
    lengths = np.diff(np.r_[starts, len(test)]).astype(np.int64)
    first = test[starts]
    reader, when = inter.imp_reader[first].astype(np.int64), inter.imp_time[first]
    item, cell_time = inter.imp_item[test].astype(np.int64), np.repeat(when, lengths)
    by = has_vector[inter.click_reader]
    pairs = inter.click_reader[by].astype(np.int64) * inter.n_items + inter.click_item[by]
    _, firsts = np.unique(pairs, return_index=True)  # clicks are in time order: each pair's first click
    return Impressions(
        reader=reader, time=when, lengths=lengths, seen=has_vector[reader], item=item,
        label=inter.imp_clicked[test].astype(bool),
        seeds=count_before(inter.click_item[by][firsts], inter.click_time[by][firsts], item, cell_time),
        pop=count_before(inter.click_item, inter.click_time, item, cell_time))


def _finite(s: np.ndarray, valid: np.ndarray, name: str) -> np.ndarray:
    """Scores the official script accepts: a story a gate drops (-inf) ranks below every other
    of its impression, one scored +inf above; a NaN is a scorer's bug and raises."""
    if np.isnan(s[valid]).any():
        raise ValueError(f"scorer {name} gave NaN scores")
    if np.isfinite(s[valid]).all():
        return s
    ok = np.isfinite(s) & valid
    lo = np.min(np.where(ok, s, np.inf), 1, keepdims=True)
    hi = np.max(np.where(ok, s, -np.inf), 1, keepdims=True)
    lo, hi = np.where(np.isfinite(lo), lo, 0.0), np.where(np.isfinite(hi), hi, 0.0)
    return np.where(s == -np.inf, lo - 1.0, np.where(s == np.inf, hi + 1.0, s))


def score_impressions(imps: Impressions, chunks: list[np.ndarray], seen_fn: Callable | None,
                      unseen_fn: Callable | None, name: str, bar: tqdm) -> np.ndarray:
    """One scorer's score of every shown story (S,). Readers with a train vector are scored
    by `seen_fn`, the others by `unseen_fn`; None scores every story alike (a tie)."""
    out = np.zeros(len(imps.item))
    for rows in chunks:
        groups, cells = imps.groups(rows)
        fn = seen_fn if imps.seen[rows[0]] else unseen_fn
        s = np.zeros(groups.items.shape) if fn is None else np.asarray(fn(groups), np.float64)
        out[cells] = _finite(s, groups.valid, name)[groups.valid]
        bar.update(len(rows))
    return out


def summary(per: dict[str, np.ndarray], scored: np.ndarray) -> dict:
    """Means over the scored impressions, each with its standard error."""
    out: dict = {}
    for metric, key in METRICS.items():
        x = per[metric][scored]
        out[key] = round(float(x.mean()), 4) if len(x) else None
        out[f"{key}_se"] = round(float(x.std(ddof=1) / np.sqrt(len(x))), 4) if len(x) > 1 else None
    out["impressions"] = int(scored.sum())
    return out


def paired(a: dict[str, np.ndarray], b: dict[str, np.ndarray], scored: np.ndarray) -> dict:
    """Mean per-impression difference a - b of each metric on the same impressions, with its
    standard error."""
    out = {}
    for metric, key in METRICS.items():
        d = a[metric][scored] - b[metric][scored]
        out[key] = {"diff": round(float(d.mean()), 4) if len(d) else None,
                    "se": round(float(d.std(ddof=1) / np.sqrt(len(d))), 4) if len(d) > 1 else None}
    return out


def load(args) -> tuple[Dataset, float, dict]:
    """The log of --train and --test, or of --data cut at --train-share; the test period's
    start (seconds); what the results say of where it came from."""
    if args.train is not None:
        ds, start = read_mind_split(args.train, args.test)
        where = {"train": str(args.train), "test": str(args.test)}
    else:
        ds, start = read_mind_timesplit(args.data, args.train_share)
        where = {"data": str(args.data), "train_share": args.train_share}
    return ds, start.timestamp(), where | {"test_from": start.isoformat()}


def run(args, config: PipelineConfig) -> dict:
    """MIND's protocol on the command line's folders (recsys.evaluate's arguments)."""
    started = time.perf_counter()
    log = (lambda msg: print(msg, file=sys.stderr)) if not args.quiet else (lambda msg: None)
    torch.set_num_threads(args.threads)
    log("reading the MIND folders")
    ds, test_from, where = load(args)
    inter = from_dataset(ds)
    seconds = {"load": round(time.perf_counter() - started, 1)}
    n_train = int((inter.click_time < test_from).sum())
    if n_train < 20:
        raise TooLittleData(f"{n_train} clicks before the test period")
    log(f"mind: {inter.n_readers:,} readers, {inter.n_items:,} stories, {n_train:,} clicks before the test period")
    scorers, info = build_models(inter, config, train_share=0.0, train_before=test_from, arm=args.arm,
                                 quiet=args.quiet, log=log, served_ctr=True)
    seconds |= info.pop("seconds")
    unseen, cal = info.pop("unseen"), info.pop("calibration")
    scorers["popularity_recent"] = unseen["popularity_recent"] = RecentPopularity(inter)
    for name in ("random", "popularity"):  # the reader plays no part
        unseen.setdefault(name, scorers[name])
    t = time.perf_counter()
    has_vector = np.bincount(inter.click_reader[inter.click_time < test_from], minlength=inter.n_readers) >= 1
    imps = held_out_impressions(inter, test_from, has_vector)
    seconds["impressions"] = round(time.perf_counter() - t, 1)
    wanted = [n for n in (args.scorers or SCORERS) if n in scorers]
    per, seconds["scoring"] = _score_all(imps, wanted, scorers, unseen, args.quiet)
    scored = ~np.isnan(next(iter(per.values()))["auc"])  # the labels alone decide: one mask for all
    if not scored.any():
        raise TooLittleData("no test impression has both a clicked and an unclicked story")
    pairs = {f"{a} - {b}": paired(per[a], per[b], scored) for b in BASELINES if b in per for a in per if a != b}
    seconds["total"] = round(time.perf_counter() - started, 1)
    return {"dataset": "mind", "protocol": "impressions", **where,
            "impressions": {"test": len(imps.lengths), "scored": int(scored.sum()),
                            "skipped_one_class": int((~scored).sum()),
                            "scored_readers_without_train_vector": int((scored & ~imps.seen).sum()),
                            "stories_shown": int(imps.lengths[scored].sum())},
            "scorers": {n: summary(per[n], scored) for n in wanted}, "paired_differences": pairs,
            "calibration": cal.report if isinstance(cal, Calibration) else cal, "seconds": seconds,
            "config": {"dim": config.dim, "k": config.k, "seed_cap": config.seed_cap, "arm": args.arm,
                       "seed_threshold": config.seed_threshold, "stage1_epochs": config.stage1_epochs,
                       "stage2_epochs": config.stage2_epochs, "seed": config.seed, "recent_hours": RECENT_HOURS},
            **info}


def _score_all(imps: Impressions, wanted: list[str], scorers: dict, unseen: dict,
               quiet: bool) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, float]]:
    """Per scorer, the per-impression metrics and the seconds taken.

    A reader with a train vector is scored with it (E_u, ALS factors and text profile as of the
    test period's start), as the replay scores its seen readers: the tower sees their history
    and train clicks, and nothing is refit. A reader without one (no history, no train click)
    is embedded from their clicks before each impression through the unseen-reader path
    (recsys.scorers.AsOfReaders, Unseen). ALS factors need a fold-in, so `als` and
    `als_seed_avg` score such a reader's stories alike (ties)."""
    chunks = imps.chunks()
    per, seconds = {}, {}
    with tqdm(total=len(wanted) * len(imps.lengths), desc="scoring impressions", unit="imp", disable=quiet) as bar:
        for name in wanted:
            bar.set_postfix_str(name)
            t = time.perf_counter()
            scores = score_impressions(imps, chunks, scorers[name], unseen.get(name), name, bar)
            per[name] = impression_metrics(scores, imps.label, imps.lengths)
            seconds[name] = round(time.perf_counter() - t, 1)
    return per, seconds


def table(result: dict) -> str:
    """The scorers' metrics (mean ± standard error over impressions) and the impression counts."""
    head = ["scorer", "AUC", "MRR", "nDCG@5", "nDCG@10"]
    rows = [[name] + [f"{r[k]:.3f} ± {r[k + '_se']:.3f}" if r[k + "_se"] is not None else f"{r[k]:.3f}"
                      for k in METRICS.values()] for name, r in result["scorers"].items()]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    n = result["impressions"]
    foot = (f"{n['scored']:,} impressions scored ({n['stories_shown']:,} stories shown, "
            f"{n['scored_readers_without_train_vector']:,} of readers without a train vector); "
            f"{n['skipped_one_class']:,} skipped: one class only (every story clicked, or none)")
    return "\n".join([fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(fmt, rows), foot])
